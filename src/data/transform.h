/* timm's image transforms on 8-bit images, with PIL's arithmetic, so a
 * model sees what torchvision's PIL pipeline would give it.
 *
 * Resampling is PIL's ImagingResample (Resample.c): separable, horizontal
 * pass then vertical, a filter stretched by the scale when downscaling
 * (antialiasing), weights normalised per output pixel and rounded to
 * 22-bit fixed point, each pass rounded and clipped to 8 bits.
 *
 * Evaluation (timm transforms_imagenet_eval, crop_mode "center"): resize the
 * shorter side to floor(size / crop_pct) (the longer side to
 * int(that * long / short), as torchvision's Resize), centre-crop size x size
 * (offsets int(round((H - size) / 2.0)), Python's round half to even).
 *
 * Training (torchvision RandomResizedCrop, scale 0.08-1, ratio 3/4-4/3):
 * up to 10 draws of an area fraction and a log-uniform aspect ratio, the
 * first box that fits wins; else the central crop clamped to the ratio
 * range. The box is cropped and resized to size x size, then mirrored with
 * probability 1/2. Draws come from the rng given (one stream per image:
 * the same images whatever the thread count). */
#ifndef NL_DATA_TRANSFORM_H
#define NL_DATA_TRANSFORM_H

#include <stdint.h>

#include "base/error.h"
#include "base/rng.h"
#include "data/image.h"

typedef enum nl_interp {
  NL_INTERP_BILINEAR = 0,
  NL_INTERP_BICUBIC,
  NL_INTERP_BOX,
  NL_INTERP_HAMMING,
  NL_INTERP_LANCZOS,
} nl_interp;

/* "bilinear", "bicubic", ...; -1 for an unknown name. */
int nl_interp_parse(const char *name);
const char *nl_interp_name(int interp);

/* PIL's resize of the box (x0, y0, bw, bh) of in to ow x oh: out gets
 * ow * oh * in->c bytes (allocated). */
void nl_resample(const nl_image *in, int x0, int y0, int bw, int bh, int ow, int oh, int interp,
                 nl_image *out);

/* A crop box: top row i, left column j, height h, width w. */
typedef struct nl_crop {
  int i, j, h, w;
  int flip; /* mirrored after resizing */
} nl_crop;

/* The box of RandomResizedCrop for an image of width x height. */
void nl_rrc_params(int width, int height, double smin, double smax, double rmin, double rmax,
                   nl_rng *rng, nl_crop *box);
/* The box of the evaluation transform in the resized image, and the size
 * it is resized to (rw x rh). */
void nl_eval_geometry(int width, int height, int size, double crop_pct, int *rw, int *rh,
                      nl_crop *box);

/* The evaluation transform of im to size x size, written planar
 * [c, size, size] into out. */
void nl_tf_eval(const nl_image *im, int size, double crop_pct, int interp, uint8_t *out);
/* The training transform with a box from nl_rrc_params (flip included). */
void nl_tf_train(const nl_image *im, const nl_crop *box, int size, int interp, uint8_t *out);

#endif
