/* Decoded 8-bit images: JPEG through libjpeg(-turbo), PNG through libpng,
 * as PIL decodes them for torchvision's ImageFolder loader.
 *
 * An nl_image holds interleaved pixels, 1 channel (grey, PIL's "L") or 3
 * (RGB). Decoding keeps what the file holds (grey or RGB; a palette is
 * expanded to RGB, alpha dropped, 16-bit samples cut to their high byte,
 * as PIL's convert("RGB") does); nl_image_convert then gives the channels
 * a model takes: grey to RGB replicates, RGB to grey is PIL's ITU-R 601-2
 * luma in fixed point, (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
 *
 * Errors are NL_EINPUT naming the file: not a JPEG or PNG, corrupt or
 * truncated data (a JPEG that ends early is an error, as in PIL, not a
 * grey-filled image), unsupported colour spaces (CMYK JPEG). */
#ifndef NL_DATA_IMAGE_H
#define NL_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct nl_image {
  int w, h, c;     /* width, height, channels (1 or 3) */
  uint8_t *px;     /* h * w * c, row-major, interleaved */
} nl_image;

/* Decode a JPEG or PNG held in memory (the format from its signature);
 * `name` names it in messages. */
int nl_image_decode(nl_image *im, const unsigned char *data, size_t len, const char *name,
                    nl_error *err);
/* Read and decode a file. */
int nl_image_read(nl_image *im, const char *path, nl_error *err);
/* Convert in place to c channels (1 or 3). */
void nl_image_convert(nl_image *im, int c);
void nl_image_free(nl_image *im);

/* 1 when the file name ends in .jpg, .jpeg or .png (any case). */
int nl_image_name_ok(const char *name);

#endif
