/* Extraction of mappings (Carrigg et al. 2026, section 2.1): run images
 * through a model and record, at every norm layer, points (x, y_pre) where
 * x is the layer's input and y_pre = (y - b) / (w + 1e-12) its output with
 * the per-channel affine w, b taken off.
 *
 * Each layer gets `points` samples drawn uniformly, with replacement, over
 * all its (image, token, channel) positions. The positions are drawn before
 * the forward pass from the layer's own seeded stream
 * (nl_rng_stream(seed, layer index)) and bucketed by image, so the norm tap
 * only gathers; the result depends on the seed alone, not on the batch size
 * or the thread count. points <= 0 records every position instead, in
 * (image, token, channel) order. */
#ifndef NL_MODEL_EXTRACT_H
#define NL_MODEL_EXTRACT_H

#include <stdint.h>

#include "base/error.h"
#include "base/progress.h"
#include "model/maps.h"

struct nl_vit;

#define NL_EXTRACT_POINTS 50000
#define NL_EXTRACT_IMAGES 64
#define NL_EXTRACT_SEED 42

/* Writes images [first, first + n) into dst [n, C, H, W], normalised as the
 * model expects. Returns 0, or -1 with err filled. */
typedef int (*nl_image_fn)(int first, int n, float *dst, void *user, nl_error *err);

typedef struct nl_extract_opts {
  long points;              /* per layer; <= 0: every position */
  uint64_t seed;
  int batch;                /* images per forward pass; <= 0: 32 */
  int threads;              /* worker threads of the forward passes; 0: the default */
  nl_progress_fn progress;  /* called after each batch (task "extract"); may be NULL */
  void *progress_user;
  int only;                 /* > 0: record only norm slot only - 1 (its points are the ones
                               a full extraction draws for it); 0: every slot */
} nl_extract_opts;

/* Extract mappings of `images` images into out (initialised here; layers
 * in the model's forward order; one layer with o->only). Sets metadata images, points, seed; the
 * caller adds model and data. Polls nl_interrupted() between batches. */
int nl_extract(const struct nl_vit *m, int images, nl_image_fn fill, void *fill_user,
               const nl_extract_opts *o, nl_maps *out, nl_error *err);

/* The sampler on its own: positions of one layer, drawn as nl_extract does.
 * idx receives `points` flat indices in [0, population). */
void nl_extract_sample(uint64_t seed, int layer, uint64_t population, long points, uint64_t *idx);

#endif
