/* Attention reuse: plans from text, their evaluation, and the fitting of
 * transformation blocks (TBs) by least squares on recorded activations.
 * The plan itself, its cost and its checkpoint form are model/reuse_plan.h;
 * the passes follow the plan a model carries. The library never prints. */
#ifndef NL_TRAIN_REUSE_H
#define NL_TRAIN_REUSE_H

#include <stdint.h>

#include "base/error.h"
#include "data/dataset.h"
#include "model/reuse_plan.h"
#include "model/vit.h"

/* Parse "4,9" or "5:4,9" (0-based block L, optionally ":S" its source)
 * into p (blocks added with TB kind tb, mlp width hidden). Without ":S"
 * the source is, for tb none, the last block before L that is not listed
 * (it computes its own attention), and L-1 for a TB. NL_EINPUT naming the
 * word for a block that does not exist, block 0, a repeat, or a source
 * that is not earlier. */
int nl_reuse_parse(const char *list, nl_tb_kind tb, int hidden, nl_vit_reuse *p, nl_error *err);

/* FLOPs per image (nl_vit_flops_per_image counting) with nreuse blocks
 * reusing probabilities (tb none): each saves its q, k projections
 * (2 T D 2D) and q k^T (2 T T D). */
double nl_reuse_flops(const nl_vit_config *c, int nreuse);

/* Top-1 count of m on d under plan (NULL or empty: the plain pass, bit
 * for bit; m's own plan is ignored), batch images per pass; seconds (may
 * be NULL) gets the wall time of the passes. */
int nl_reuse_eval(const nl_vit *m, const nl_vit_reuse *plan, const nl_dataset *d, int batch,
                  int threads, long *top1, double *seconds, nl_error *err);

typedef struct nl_reuse_fit_opts {
  int batch;      /* images per pass (64) */
  int threads;
  double ridge;   /* added to the normal equations' diagonal, times its mean (1e-4) */
  uint64_t seed;  /* mlp TBs: fc1 drawn from stream (seed, block) */
} nl_reuse_fit_opts;
void nl_reuse_fit_opts_default(nl_reuse_fit_opts *o);

/* Fit, from one pass over d under m's plan, a TB of kind tb (linear or
 * mlp of width hidden) for each block blocks[i] (which must not reuse in
 * m's plan) reading block srcs[i]'s attention output, mapping it to the
 * block's own attention output (proj output) by ridge least squares: a
 * linear TB all of it, an mlp TB its fc2 on GELU features of a random fc1
 * (N(0, 1/D) over the source's RMS). out[i] gets a copy of m's plan with
 * block blocks[i] added (caller frees). */
int nl_reuse_fit_each(const nl_vit *m, const int *blocks, const int *srcs, int n, nl_tb_kind tb,
                      int hidden, const nl_dataset *d, const nl_reuse_fit_opts *o,
                      nl_vit_reuse **out, nl_error *err);
/* Refit every TB of m->reuse in block order (each under the plan of the
 * blocks before it, already refitted). */
int nl_reuse_fit(nl_vit *m, const nl_dataset *d, const nl_reuse_fit_opts *o, nl_error *err);

#endif
