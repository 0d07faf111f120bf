/* Activation profile (EdgeFlex, section "activation profiling"): run images
 * through a model with an observer on the forward pass (nl_vit_observer)
 * and keep, for every Linear's input and every norm's input, per channel
 *   absmean = mean |x|, mean, var = mean (x - mean)^2, absmax = max |x|
 * over all rows seen (images x tokens), and the measured wall time of each
 * block part (norm1, qkv, attention, proj, norm2, fc1, GELU, fc2); when
 * there are several batches the first one is a warm-up and is not timed.
 *
 * Layers are named "<site>" as in nl_vit_site_name under their block:
 * "blocks.3.norm1.in", "blocks.3.attn.qkv.in", "blocks.3.attn.proj.in",
 * "blocks.3.norm2.in", "blocks.3.mlp.fc1.in", "blocks.3.mlp.fc2.in" (the
 * GELU output, the hidden channels an MLP prune removes), then
 * "<norm>.in" for the final norm (norm or fc_norm) and "head.in".
 *
 * File (safetensors, nl_profile_save): per layer F32 [width] tensors
 * "<layer>.absmean", ".mean", ".var", ".absmax"; "time.parts" F32
 * [depth, 9]: milliseconds per image of each part; metadata "images",
 * "rows.<layer>" is not stored (rows = images x tokens, or images for the
 * pooled features), "parts" (the part names, comma-separated), and what the
 * caller adds (model, data). With the covariance (nl_profile_opts.cov):
 * "blocks.N.mlp.fc2.in.cov" F32 [width, width]. */
#ifndef NL_MODEL_PROFILE_H
#define NL_MODEL_PROFILE_H

#include "base/error.h"
#include "base/progress.h"
#include "model/extract.h"
#include "model/vit.h"

typedef struct nl_profile_layer {
  char name[64];
  int block;           /* -1: final norm, head */
  nl_vit_site site;
  int width;
  double rows;         /* rows seen */
  float *absmean, *mean, *var, *absmax; /* [width] each */
  float *cov;          /* [width, width]: the channels' covariance (population, over the
                        * rows), mlp.fc2.in layers only and only when collected
                        * (nl_profile_opts.cov, file tensor "<layer>.cov"); else NULL */
} nl_profile_layer;

/* The timed parts of a block, in order: norm1, qkv, attention, proj,
 * norm2, fc1, gelu, fc2, residual (the two residual adds): part k is
 * nl_vit_part NL_PART_NORM1 + k, timed by the forward pass (acts.part_s). */
#define NL_PROFILE_PARTS 9
#define nl_profile_part(k) ((nl_vit_part)(NL_PART_NORM1 + (k)))

typedef struct nl_profile {
  nl_profile_layer *layers; /* forward order */
  int nlayers;
  int depth;
  long images;
  double *part_ms;     /* [depth * NL_PROFILE_PARTS]: milliseconds per image */
} nl_profile;

typedef struct nl_profile_opts {
  int batch;                /* images per forward pass; <= 0: 32 */
  int threads;              /* worker threads of the forward passes; 0: the default */
  nl_progress_fn progress;  /* after each batch (task "profile"); may be NULL */
  void *progress_user;
  int cov;                  /* 1: also the covariance of every block's hidden channels
                             * (mlp.fc2.in), for prune's refit */
} nl_profile_opts;

/* Profile `images` images (fill as for nl_extract). Polls nl_interrupted()
 * between batches. */
int nl_profile_run(const nl_vit *m, int images, nl_image_fn fill, void *fill_user,
                   const nl_profile_opts *o, nl_profile *p, nl_error *err);
void nl_profile_free(nl_profile *p);
/* The layer of that name, or NULL. */
const nl_profile_layer *nl_profile_find(const nl_profile *p, const char *name);
/* Block b's attention output (proj's input: heads x head_dim channels, head
 * h in channels h*head_dim ..), NULL when absent. */
const nl_profile_layer *nl_profile_attn(const nl_profile *p, int block);
/* Block b's hidden MLP channels (fc2's input), NULL when absent. */
const nl_profile_layer *nl_profile_hidden(const nl_profile *p, int block);

/* Save atomically; meta: key, value pairs, `nmeta` of them (model, data). */
int nl_profile_save(const nl_profile *p, const char *path, const char *const *meta, int nmeta,
                    nl_error *err);
/* Load a profile file (the layers present in it; time.parts when there).
 * NL_EINPUT naming the file and tensor for a file that is not a profile. */
int nl_profile_load(nl_profile *p, const char *path, nl_error *err);
/* Check that p fits model m: every block's fc2 input is there with the
 * block's MLP width, and proj's input, where present, with the block's
 * attention width. NL_EINPUT naming the block otherwise. */
int nl_profile_check(const nl_profile *p, const nl_vit *m, const char *what, nl_error *err);

#endif
