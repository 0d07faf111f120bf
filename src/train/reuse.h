/* Attention reuse (TReX-style, training-free): a chosen block skips its q
 * and k projections, q k^T and the softmax, and applies the attention
 * probabilities of the last block before it that computed its own to its
 * own values (v projection, P v, proj and the MLP as usual). Block 0 has
 * nothing to reuse. The library never prints. */
#ifndef NL_TRAIN_REUSE_H
#define NL_TRAIN_REUSE_H

#include "base/error.h"
#include "data/dataset.h"
#include "model/vit.h"

/* Parse "4,9" (0-based block indices, any order, no repeats) into
 * reuse[depth] (1: the block reuses). NL_EINPUT naming the word for a
 * block that does not exist, block 0, or a repeat. */
int nl_reuse_parse(const char *list, int depth, unsigned char *reuse, nl_error *err);

/* FLOPs per image (nl_vit_flops_per_image counting) with nreuse blocks
 * reusing: each saves its q, k projections (2 T D 2D) and q k^T
 * (2 T T D). */
double nl_reuse_flops(const nl_vit_config *c, int nreuse);

/* Top-1 count of m on d with the plan reuse[depth] (all zero: the plain
 * pass, bit for bit), batch images per pass; seconds (may be NULL) gets
 * the wall time of the passes. */
int nl_reuse_eval(const nl_vit *m, const unsigned char *reuse, const nl_dataset *d, int batch,
                  int threads, long *top1, double *seconds, nl_error *err);

#endif
