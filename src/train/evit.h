/* The EViT token-pruning baseline (Liang et al. 2022), training-free: at
 * each pruning block b (b >= 1) the patch tokens (every token but the
 * class token) are ranked by the class token's attention in block b-1,
 * averaged over heads; the top ceil(keep * N) stay (in their order) and the
 * rest are fused into one token, their mean weighted by that attention
 * (fuse) or dropped. Blocks b.. then run on the fewer tokens. Needs a
 * class-token model. The library never prints. */
#ifndef NL_TRAIN_EVIT_H
#define NL_TRAIN_EVIT_H

#include "base/error.h"
#include "data/dataset.h"
#include "model/reuse_plan.h"
#include "model/vit.h"

typedef struct nl_evit {
  unsigned char prune[NL_VIT_MAX_DEPTH]; /* 1: prune before this block */
  double keep;                           /* in (0, 1] */
  int drop;                              /* 1: drop the rest; 0: fuse them (EViT) */
} nl_evit;

/* "3,6,9" into ev (keep 1, fuse). NL_EINPUT for a block that does not
 * exist, block 0, a repeat, or a model without a class token. */
int nl_evit_parse(const char *list, const nl_vit_config *c, nl_evit *ev, nl_error *err);
/* Tokens entering block l. */
int nl_evit_tokens(const nl_evit *ev, const nl_vit_config *c, int l);
/* Matrix FLOPs per image (nl_vit_flops_per_image counting, every block at
 * its token count). */
double nl_evit_flops(const nl_evit *ev, const nl_vit_config *c);
/* The keep ratio (a multiple of 1/1000) whose FLOPs are nearest to flops
 * without exceeding it (the smallest ratio when none is below). */
double nl_evit_keep_for_flops(const nl_evit *ev, const nl_vit_config *c, double flops);

/* Workspace of the pruned pass. */
typedef struct nl_evit_ws {
  nl_vit_acts acts;
  float *x, *x2, *pooled, *normed, *score;
  int batch;
} nl_evit_ws;
int nl_evit_ws_init(nl_evit_ws *w, const nl_vit *m, int batch, int threads, nl_error *err);
void nl_evit_ws_free(nl_evit_ws *w);
/* n normalised images -> logits [n, classes]. */
int nl_evit_forward(const nl_vit *m, const nl_evit *ev, nl_evit_ws *w, const float *images, int n,
                    float *logits, nl_error *err);

/* The contenders of `normlab reuse` on the same images, alternating batch
 * by batch: [0] the full model, [1] the model under plan, [2] EViT (when
 * ev is not NULL). top1 counts and seconds of the passes. */
typedef struct nl_reuse_bench {
  const nl_vit *m;
  const nl_vit_reuse *plan;
  const nl_evit *ev;
  const nl_dataset *d;
  int batch, threads;
} nl_reuse_bench;
typedef struct nl_reuse_bench_result {
  long top1[3];
  double seconds[3];
} nl_reuse_bench_result;
int nl_reuse_bench_run(const nl_reuse_bench *b, nl_reuse_bench_result *r, nl_error *err);

#endif
