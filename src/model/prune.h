/* Structured pruning of MLP hidden channels (EdgeFlex, "memory-aware
 * pruning"), with the published rules filled in: a channel j of block l is
 * fc1's row j (weight and bias) and fc2's column j; removing it takes it out
 * of the model physically (a smaller checkpoint, not a mask).
 *
 * Scores (low: removed first):
 *   variance   the variance of the channel's activation after GELU (profile)
 *   absmean    its mean |activation| (profile)
 *   magnitude  ||W1[j,:]|| * ||W2[:,j]|| (weights only)
 *   random     uniform from the seeded stream nl_rng_stream(seed, block)
 *   contribution  Var[h_j] * ||W2[:,j]||^2 (profile): the variance channel
 *              j adds to the block's output, which is the mean squared error
 *              that removing it leaves after bias compensation (the output-
 *              variance criterion of reconstruction-based structured pruning)
 * Ties go to the lower index.
 *
 * Rules:
 *   ratio R    every block loses round(R * width) of its channels (at least
 *              one channel is kept): equal widths, a timm-loadable mlp_ratio.
 *   budget B   the globally lowest channels go, by score relative to its
 *              block's mean score (blocks score on different scales), until
 *              the parameter bytes (F32) are at most B; at least one channel
 *              per block is kept. Widths per block (nl_vit_config.mlp_widths).
 *
 * Bias compensation (variance-based pruning with compensation, as in the
 * structured-pruning literature): a removed channel's activation is replaced
 * by its mean mu_j, so fc2.bias += W2[:, j] * mu_j for each removed j; exact
 * for a channel whose activation is constant.
 *
 * Refit (least-squares reconstruction, as in data-driven structured pruning
 * of the "reconstruct the layer output" kind): fc2 on the kept channels K is
 * replaced by the ridge regression of the unpruned fc2 output on the kept
 * hidden activations over the profiled rows, in closed form from the hidden
 * channels' mean mu and covariance C (profile with cov):
 *   W2' = W2 C[:, K] (C[K, K] + lambda I)^-1,   lambda = damp * mean diag C[K, K]
 *   b2' = b2 + W2 mu - W2' mu_K
 * It minimises the mean of ||W2 h + b2 - W2' h_K - b2'||^2 + lambda ||W2'||^2;
 * with damp 0 it is exact when the removed channels are affine functions of
 * the kept ones, and it contains bias compensation (W2' = W2[:, K]) as one
 * candidate, so its error is never above it (for damp 0). Each block is fitted on
 * the unpruned model's activations. */
#ifndef NL_MODEL_PRUNE_H
#define NL_MODEL_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "model/profile.h"
#include "model/vit.h"

typedef enum nl_prune_score {
  NL_PRUNE_VARIANCE,
  NL_PRUNE_ABSMEAN,
  NL_PRUNE_MAGNITUDE,
  NL_PRUNE_RANDOM,
  NL_PRUNE_CONTRIBUTION,
} nl_prune_score;

/* "variance", "absmean", "magnitude", "random", "contribution". */
const char *nl_prune_score_name(nl_prune_score s);
/* 1 when the score needs a profile (variance, absmean, contribution). */
int nl_prune_score_needs_profile(nl_prune_score s);

typedef struct nl_prune_opts {
  nl_prune_score score;
  double ratio;         /* [0, 1): fraction of each block's channels removed */
  double budget_bytes;  /* > 0: the budget rule instead of ratio */
  int compensate;       /* fold removed channels' means into fc2.bias */
  uint64_t seed;        /* random score */
  int refit;            /* refit fc2 on the kept channels (needs the profile's covariance);
                         * takes the place of compensate */
  double refit_damp;    /* the refit's ridge, relative to the mean kept variance (>= 0) */
} nl_prune_opts;

/* Parameter bytes of m as stored (F32). */
size_t nl_vit_param_bytes(const nl_vit *m);

/* Per-block scores: scores[l] gets width(l) floats (caller frees each and
 * the array with nl_prune_scores_free). p may be NULL for magnitude and
 * random; it must fit m (nl_profile_check). */
int nl_prune_scores(const nl_vit *m, const nl_profile *p, nl_prune_score s, uint64_t seed,
                    float ***scores, nl_error *err);
void nl_prune_scores_free(float **scores, int depth);

/* Channels to keep: keep[l][j] = 1 or 0 (caller frees as scores), by the
 * ratio or budget rule of o. NL_EINPUT for a ratio outside [0, 1) or a
 * budget below the model with one MLP channel per block (the message gives
 * that floor). */
int nl_prune_plan(const nl_vit *m, float *const *scores, const nl_prune_opts *o,
                  unsigned char ***keep, nl_error *err);
void nl_prune_keep_free(unsigned char **keep, int depth);

/* The pruned model: dst gets src's config with each block's kept channels,
 * every other tensor and every norm kind copied. mu[l]: block l's channel
 * means (width(l) floats) for bias compensation; mu NULL: none. */
int nl_prune_apply(const nl_vit *src, unsigned char *const *keep, const float *const *mu,
                   nl_vit *dst, nl_error *err);

/* Refit dst's fc2 (weight and bias) of every block by the closed form
 * above: src the unpruned model, keep its plan, p a profile of src with the
 * covariance of every block's hidden channels, damp >= 0. NL_EINPUT when a
 * covariance is missing or not finite, or when C[K, K] + lambda I is not
 * positive definite (the message says to raise damp). */
int nl_prune_refit(const nl_vit *src, unsigned char *const *keep, const nl_profile *p,
                   double damp, nl_vit *dst, nl_error *err);

/* scores, plan and apply in one call. p: the profile (needed for variance,
 * absmean and for compensation). */
int nl_prune(const nl_vit *m, const nl_profile *p, const nl_prune_opts *o, nl_vit *dst,
             nl_error *err);

/* ---- attention heads ----
 * Head h of block l owns the head_dim (dim / heads) rows h*hd.. of each of
 * qkv's q, k and v parts (weight and bias) and the same columns of proj's
 * weight; removing it takes those out (per-block head counts,
 * nl_vit_config.head_counts; the head dimension is unchanged).
 *
 * Scores (low: removed first):
 *   contribution  sum over the head's output channels j (proj's inputs) of
 *              Var[o_j] * ||W_proj[:, j]||^2 (profile, attn.proj.in): the
 *              variance the head adds to the block's output, the mean
 *              squared error its removal leaves after bias compensation
 *              (when its channels are uncorrelated with the others')
 *   random     uniform from the seeded stream nl_rng_stream(seed, block)
 * Ties go to the lower index.
 *
 * Rules: ratio R removes round(R * h) of a block's h heads, keep N keeps
 * min(N, h); every block keeps at least one head.
 *
 * Bias compensation: a removed head's output channels are replaced by their
 * means mu_j (profile), proj.bias += W_proj[:, j] * mu_j for every removed
 * channel j; exact when the head's output is constant. */
typedef struct nl_prune_head_opts {
  nl_prune_score score; /* NL_PRUNE_CONTRIBUTION or NL_PRUNE_RANDOM */
  double ratio;         /* [0, 1): fraction of each block's heads removed */
  int keep;             /* > 0: heads each block keeps (instead of ratio); <= cfg.heads */
  int compensate;       /* fold removed heads' output means into proj.bias */
  uint64_t seed;        /* random score */
} nl_prune_head_opts;

/* Per-block head scores: scores[l] gets nl_vit_heads(l) floats (free with
 * nl_prune_scores_free). p (attn.proj.in of every block, at the block's
 * attention width) is needed for contribution; NULL is fine for random. */
int nl_prune_head_scores(const nl_vit *m, const nl_profile *p, nl_prune_score s, uint64_t seed,
                         float ***scores, nl_error *err);
/* Heads to keep, keep[l][h] = 1 or 0 (free with nl_prune_keep_free), by o's
 * ratio or keep. NL_EINPUT for a ratio outside [0, 1) or keep outside
 * [1, cfg.heads]. */
int nl_prune_head_plan(const nl_vit *m, float *const *scores, const nl_prune_head_opts *o,
                       unsigned char ***keep, nl_error *err);
/* The head-pruned model: dst gets src's config with each block's kept heads,
 * every other tensor and every norm kind copied. mu[l]: block l's attention
 * output means (attention width floats) for bias compensation; mu NULL:
 * none. NL_EINPUT for a quantized model or one with an attention-reuse
 * plan (prune first, then quantize or plan). */
int nl_prune_heads_apply(const nl_vit *src, unsigned char *const *keep, const float *const *mu,
                         nl_vit *dst, nl_error *err);
/* scores, plan and apply in one call; p: the profile (contribution,
 * compensation), checked for attn.proj.in at m's attention widths. */
int nl_prune_heads(const nl_vit *m, const nl_profile *p, const nl_prune_head_opts *o,
                   nl_vit *dst, nl_error *err);
/* MLP channels (mo, NULL: none) then heads (ho, NULL: none), both by the
 * statistics of one profile p of the unpruned m (the head step reads only
 * attn.proj.in, which the MLP step leaves at its width). At least one of mo,
 * ho. */
int nl_prune_model(const nl_vit *m, const nl_profile *p, const nl_prune_opts *mo,
                   const nl_prune_head_opts *ho, nl_vit *dst, nl_error *err);

#endif
