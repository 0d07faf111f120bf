/* MLP channel pruning: scores, the keep plan, and the smaller model. */
#include "model/prune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/linalg.h"
#include "base/mem.h"
#include "base/rng.h"
#include "model/norm.h"

static const char *const score_names[] = {"variance", "absmean", "magnitude", "random",
                                          "contribution"};

const char *nl_prune_score_name(nl_prune_score s) {
  return (int)s >= 0 && s <= NL_PRUNE_CONTRIBUTION ? score_names[s] : "?";
}

int nl_prune_score_needs_profile(nl_prune_score s) {
  return s == NL_PRUNE_VARIANCE || s == NL_PRUNE_ABSMEAN || s == NL_PRUNE_CONTRIBUTION;
}

size_t nl_vit_param_bytes(const nl_vit *m) { return nl_vit_param_count(m) * sizeof(float); }

void nl_prune_scores_free(float **scores, int depth) {
  if (!scores) return;
  for (int l = 0; l < depth; l++) free(scores[l]);
  free(scores);
}

void nl_prune_keep_free(unsigned char **keep, int depth) {
  if (!keep) return;
  for (int l = 0; l < depth; l++) free(keep[l]);
  free(keep);
}

int nl_prune_scores(const nl_vit *m, const nl_profile *p, nl_prune_score s, uint64_t seed,
                    float ***scores, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  *scores = NULL;
  if ((int)s < 0 || s > NL_PRUNE_CONTRIBUTION)
    return nl_fail(err, NL_EINPUT, "unknown prune score %d", (int)s);
  if (nl_prune_score_needs_profile(s)) {
    if (!p)
      return nl_fail(err, NL_EINPUT, "the %s score needs an activation profile",
                     nl_prune_score_name(s));
    if (nl_profile_check(p, m, "the profile", err)) return -1;
  }
  const int D = c->dim;
  float **sc = nl_xcalloc((size_t)c->depth, sizeof(float *));
  for (int l = 0; l < c->depth; l++) {
    const int H = nl_vit_mlp_width(c, l);
    const nl_vit_block *B = &m->blocks[l];
    float *v = sc[l] = nl_xmalloc((size_t)H * sizeof(float));
    const nl_profile_layer *L = p ? nl_profile_hidden(p, l) : NULL;
    nl_rng r;
    nl_rng_stream(&r, seed, (uint64_t)l);
    for (int j = 0; j < H; j++) {
      switch (s) {
        case NL_PRUNE_VARIANCE: v[j] = L->var[j]; break;
        case NL_PRUNE_ABSMEAN: v[j] = L->absmean[j]; break;
        case NL_PRUNE_MAGNITUDE: {
          double a = 0, b = 0;
          for (int i = 0; i < D; i++) a += (double)B->fc1_w[(size_t)j * D + i] * B->fc1_w[(size_t)j * D + i];
          for (int i = 0; i < D; i++) b += (double)B->fc2_w[(size_t)i * H + j] * B->fc2_w[(size_t)i * H + j];
          v[j] = (float)(sqrt(a) * sqrt(b));
          break;
        }
        case NL_PRUNE_RANDOM: v[j] = (float)nl_rng_uniform(&r); break;
        case NL_PRUNE_CONTRIBUTION: {
          double b = 0;
          for (int i = 0; i < D; i++) b += (double)B->fc2_w[(size_t)i * H + j] * B->fc2_w[(size_t)i * H + j];
          v[j] = (float)(L->var[j] * b);
          break;
        }
      }
      if (!isfinite(v[j])) {
        nl_prune_scores_free(sc, c->depth);
        return nl_fail(err, NL_EINPUT, "blocks.%d: the %s score of channel %d is not finite", l,
                       nl_prune_score_name(s), j);
      }
    }
  }
  *scores = sc;
  return 0;
}

typedef struct ranked {
  double score;
  int block, index;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  if (x->score != y->score) return x->score < y->score ? -1 : 1;
  if (x->block != y->block) return x->block < y->block ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

int nl_prune_plan(const nl_vit *m, float *const *scores, const nl_prune_opts *o,
                  unsigned char ***keep, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  *keep = NULL;
  int budget = o->budget_bytes > 0;
  if (!budget && !(o->ratio >= 0 && o->ratio < 1))
    return nl_fail(err, NL_EINPUT, "prune ratio %g is outside [0, 1)", o->ratio);
  const size_t per_channel = sizeof(float) * (2 * (size_t)c->dim + 1);
  size_t bytes = nl_vit_param_bytes(m), floor_bytes = bytes;
  long total = 0;
  for (int l = 0; l < c->depth; l++) {
    floor_bytes -= per_channel * (size_t)(nl_vit_mlp_width(c, l) - 1);
    total += nl_vit_mlp_width(c, l);
  }
  if (budget && o->budget_bytes < (double)floor_bytes)
    return nl_fail(err, NL_EINPUT,
                   "budget %.3f MB is below %.3f MB, the model with one MLP channel per block "
                   "(embeddings, attention, norms and head are not pruned)",
                   o->budget_bytes / 1e6, floor_bytes / 1e6);
  unsigned char **k = nl_xcalloc((size_t)c->depth, sizeof(unsigned char *));
  int *left = nl_xcalloc((size_t)c->depth, sizeof(int));
  ranked *all = nl_xmalloc((size_t)total * sizeof(ranked));
  for (int l = 0; l < c->depth; l++) {
    const int H = nl_vit_mlp_width(c, l);
    k[l] = nl_xmalloc((size_t)H);
    memset(k[l], 1, (size_t)H);
    left[l] = H;
  }
  if (!budget) {
    for (int l = 0; l < c->depth; l++) {
      const int H = nl_vit_mlp_width(c, l);
      int drop = (int)floor(o->ratio * H + 0.5);
      if (drop > H - 1) drop = H - 1;
      for (int j = 0; j < H; j++) all[j] = (ranked){scores[l][j], l, j};
      qsort(all, (size_t)H, sizeof *all, cmp_ranked);
      for (int i = 0; i < drop; i++) k[l][all[i].index] = 0;
    }
  } else {
    /* channels to go: enough to bring bytes under the budget */
    long need = bytes > o->budget_bytes
                    ? (long)ceil((bytes - o->budget_bytes) / (double)per_channel - 1e-9)
                    : 0;
    long n = 0;
    for (int l = 0; l < c->depth; l++) {
      const int H = nl_vit_mlp_width(c, l);
      double mean = 0;
      for (int j = 0; j < H; j++) mean += scores[l][j];
      mean /= H;
      for (int j = 0; j < H; j++)
        all[n++] = (ranked){mean > 0 ? scores[l][j] / mean : scores[l][j], l, j};
    }
    qsort(all, (size_t)n, sizeof *all, cmp_ranked);
    for (long i = 0; i < n && need > 0; i++) {
      ranked *r = &all[i];
      if (left[r->block] <= 1) continue;
      k[r->block][r->index] = 0;
      left[r->block]--;
      need--;
    }
  }
  free(all);
  free(left);
  *keep = k;
  return 0;
}

/* Copy the norm kinds (DyT alpha, expression) of src's slots to dst's. */
static int copy_norms(const nl_vit *src, nl_vit *dst, nl_error *err) {
  for (int i = 0; i < src->nnorms; i++) {
    const nl_norm *s = &src->norms[i];
    nl_norm *d = &dst->norms[i];
    if (s->kind == NL_NORM_DYT) nl_norm_set_dyt(dst, d, *s->alpha);
    else if (s->kind == NL_NORM_EXPR && nl_norm_set_expr(dst, d, s->prog, err)) return -1;
  }
  return 0;
}

int nl_prune_apply(const nl_vit *src, unsigned char *const *keep, const float *const *mu,
                   nl_vit *dst, nl_error *err) {
  const nl_vit_config *c = &src->cfg;
  nl_vit_config nc = *c;
  nc.mlp_hidden = 0;
  for (int l = 0; l < c->depth; l++) {
    int w = 0;
    for (int j = 0; j < nl_vit_mlp_width(c, l); j++) w += keep[l][j] != 0;
    if (w < 1) return nl_fail(err, NL_EINPUT, "blocks.%d: every MLP channel removed", l);
    nc.mlp_widths[l] = w;
    if (w > nc.mlp_hidden) nc.mlp_hidden = w;
  }
  if (nl_vit_create(dst, &nc, err)) return -1;
  if (copy_norms(src, dst, err)) {
    nl_vit_free(dst);
    return -1;
  }
  /* every tensor of the same shape as it is; the MLP's by the plan below */
  for (int i = 0; i < dst->ntensors; i++) {
    const nl_param *d = &dst->tensors[i];
    for (int k = 0; k < src->ntensors; k++) {
      const nl_param *s = &src->tensors[k];
      if (strcmp(s->name, d->name) == 0 && s->numel == d->numel) {
        memcpy(dst->params + d->offset, src->params + s->offset, d->numel * sizeof(float));
        break;
      }
    }
  }
  const int D = c->dim;
  for (int l = 0; l < c->depth; l++) {
    const int H = nl_vit_mlp_width(c, l), W = nc.mlp_widths[l];
    const nl_vit_block *S = &src->blocks[l];
    nl_vit_block *B = &dst->blocks[l];
    int o = 0;
    for (int j = 0; j < H; j++) {
      if (!keep[l][j]) continue;
      memcpy(B->fc1_w + (size_t)o * D, S->fc1_w + (size_t)j * D, (size_t)D * sizeof(float));
      B->fc1_b[o] = S->fc1_b[j];
      for (int i = 0; i < D; i++) B->fc2_w[(size_t)i * W + o] = S->fc2_w[(size_t)i * H + j];
      o++;
    }
    for (int i = 0; i < D; i++) {
      double b = S->fc2_b[i];
      for (int j = 0; mu && j < H; j++)
        if (!keep[l][j]) b += (double)S->fc2_w[(size_t)i * H + j] * mu[l][j];
      B->fc2_b[i] = (float)b;
    }
  }
  return 0;
}

int nl_prune_refit(const nl_vit *src, unsigned char *const *keep, const nl_profile *p,
                   double damp, nl_vit *dst, nl_error *err) {
  const nl_vit_config *c = &src->cfg;
  const int D = c->dim;
  if (!(damp >= 0) || !isfinite(damp))
    return nl_fail(err, NL_EINPUT, "refit damping %g must be a finite number >= 0", damp);
  for (int l = 0; l < c->depth; l++) {
    const nl_profile_layer *L = nl_profile_hidden(p, l);
    const int H = nl_vit_mlp_width(c, l);
    if (!L || L->width != H || !L->cov)
      return nl_fail(err, NL_EINPUT, "the refit needs the covariance of blocks.%d.mlp.fc2.in "
                     "(profile --cov, or prune --refit without --profile)", l);
    for (size_t i = 0; i < (size_t)H * H; i++)
      if (!isfinite(L->cov[i]))
        return nl_fail(err, NL_EINPUT, "blocks.%d.mlp.fc2.in.cov: entry (%zu, %zu) is not finite",
                       l, i / (size_t)H, i % (size_t)H);
    for (int j = 0; j < H; j++)
      if (!isfinite(L->mean[j]))
        return nl_fail(err, NL_EINPUT, "blocks.%d.mlp.fc2.in.mean: channel %d is not finite", l,
                       j);
  }
  for (int l = 0; l < c->depth; l++) {
    const nl_profile_layer *L = nl_profile_hidden(p, l);
    const int H = nl_vit_mlp_width(c, l), W = nl_vit_mlp_width(&dst->cfg, l);
    const nl_vit_block *S = &src->blocks[l];
    nl_vit_block *B = &dst->blocks[l];
    int *K = nl_xmalloc((size_t)W * sizeof(int)), k = 0;
    for (int j = 0; j < H && k < W; j++)
      if (keep[l][j]) K[k++] = j;
    double *A = nl_xmalloc((size_t)k * k * sizeof(double));
    double *G = nl_xmalloc((size_t)k * D * sizeof(double));
    double tr = 0;
    for (int a = 0; a < k; a++) {
      for (int b = 0; b < k; b++) A[(size_t)a * k + b] = L->cov[(size_t)K[a] * H + K[b]];
      tr += A[(size_t)a * k + a];
    }
    double lambda = damp * (k ? tr / k : 0);
    if (damp > 0 && !(lambda > 0)) lambda = damp;
    for (int a = 0; a < k; a++) A[(size_t)a * k + a] += lambda;
    /* G = C[K, :] W2^T: k x D */
    for (int a = 0; a < k; a++) {
      const float *ca = L->cov + (size_t)K[a] * H;
      for (int i = 0; i < D; i++) {
        const float *w = S->fc2_w + (size_t)i * H;
        double t = 0;
        for (int h = 0; h < H; h++) t += (double)ca[h] * w[h];
        G[(size_t)a * D + i] = t;
      }
    }
    int rc = nl_cholesky(A, k);
    if (rc == 0) {
      nl_cholesky_solve(A, G, k, D); /* G: W2'^T */
      for (int i = 0; i < D; i++) {
        const float *w = S->fc2_w + (size_t)i * H;
        double b = S->fc2_b[i];
        for (int h = 0; h < H; h++) b += (double)w[h] * L->mean[h];
        for (int a = 0; a < k; a++) {
          double v = G[(size_t)a * D + i];
          B->fc2_w[(size_t)i * W + a] = (float)v;
          b -= v * L->mean[K[a]];
        }
        B->fc2_b[i] = (float)b;
      }
    }
    free(A);
    free(G);
    free(K);
    if (rc)
      return nl_fail(err, NL_EINPUT, "blocks.%d: the kept hidden channels' covariance plus "
                     "damping is not positive definite (raise the refit damping, now %g)", l,
                     damp);
  }
  return 0;
}

int nl_prune(const nl_vit *m, const nl_profile *p, const nl_prune_opts *o, nl_vit *dst,
             nl_error *err) {
  const int depth = m->cfg.depth;
  if (o->compensate && !p)
    return nl_fail(err, NL_EINPUT, "bias compensation needs an activation profile (the channels' "
                   "means)");
  if (o->refit && !p)
    return nl_fail(err, NL_EINPUT, "the refit needs an activation profile with the hidden "
                   "channels' covariance");
  if (p && nl_profile_check(p, m, "the profile", err)) return -1;
  float **scores = NULL;
  unsigned char **keep = NULL;
  if (nl_prune_scores(m, p, o->score, o->seed, &scores, err)) return -1;
  int rc = nl_prune_plan(m, scores, o, &keep, err);
  if (rc == 0) {
    const float **mu = NULL;
    if (o->compensate && !o->refit) {
      mu = nl_xcalloc((size_t)depth, sizeof(float *));
      for (int l = 0; l < depth; l++) mu[l] = nl_profile_hidden(p, l)->mean;
    }
    rc = nl_prune_apply(m, keep, mu, dst, err);
    free(mu);
    if (rc == 0 && o->refit && nl_prune_refit(m, keep, p, o->refit_damp, dst, err)) {
      nl_vit_free(dst);
      rc = -1;
    }
  }
  nl_prune_scores_free(scores, depth);
  nl_prune_keep_free(keep, depth);
  return rc;
}

/* ---- attention heads ---- */

int nl_prune_head_scores(const nl_vit *m, const nl_profile *p, nl_prune_score s, uint64_t seed,
                         float ***scores, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  *scores = NULL;
  if (s != NL_PRUNE_CONTRIBUTION && s != NL_PRUNE_RANDOM)
    return nl_fail(err, NL_EINPUT, "heads are scored by contribution or random, not %s",
                   nl_prune_score_name(s));
  const int D = c->dim, hd = nl_vit_head_dim(c);
  for (int l = 0; s == NL_PRUNE_CONTRIBUTION && l < c->depth; l++) {
    const nl_profile_layer *P = p ? nl_profile_attn(p, l) : NULL;
    if (!P)
      return nl_fail(err, NL_EINPUT, "the contribution score of heads needs the activation "
                     "profile of blocks.%d.attn.proj.in", l);
    if (P->width != nl_vit_attn_width(c, l))
      return nl_fail(err, NL_EINPUT, "the profile's blocks.%d.attn.proj.in has %d channels but "
                     "the model's block %d has %d (a profile of another model?)", l, P->width, l,
                     nl_vit_attn_width(c, l));
  }
  float **sc = nl_xcalloc((size_t)c->depth, sizeof(float *));
  for (int l = 0; l < c->depth; l++) {
    const int NH = nl_vit_heads(c, l), A = nl_vit_attn_width(c, l);
    const nl_vit_block *B = &m->blocks[l];
    float *v = sc[l] = nl_xmalloc((size_t)NH * sizeof(float));
    nl_rng r;
    nl_rng_stream(&r, seed, (uint64_t)l);
    for (int h = 0; h < NH; h++) {
      if (s == NL_PRUNE_RANDOM) {
        v[h] = (float)nl_rng_uniform(&r);
      } else {
        const nl_profile_layer *P = nl_profile_attn(p, l);
        double t = 0;
        for (int j = h * hd; j < (h + 1) * hd; j++) {
          double w2 = 0;
          for (int i = 0; i < D; i++) w2 += (double)B->proj_w[(size_t)i * A + j] * B->proj_w[(size_t)i * A + j];
          t += (double)P->var[j] * w2;
        }
        v[h] = (float)t;
      }
      if (!isfinite(v[h])) {
        nl_prune_scores_free(sc, c->depth);
        return nl_fail(err, NL_EINPUT, "blocks.%d: the %s score of head %d is not finite", l,
                       nl_prune_score_name(s), h);
      }
    }
  }
  *scores = sc;
  return 0;
}

int nl_prune_head_plan(const nl_vit *m, float *const *scores, const nl_prune_head_opts *o,
                       unsigned char ***keep, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  *keep = NULL;
  if (o->keep != 0 && (o->keep < 1 || o->keep > c->heads))
    return nl_fail(err, NL_EINPUT, "heads to keep %d is outside [1, %d] (the model's heads)",
                   o->keep, c->heads);
  if (o->keep == 0 && !(o->ratio >= 0 && o->ratio < 1))
    return nl_fail(err, NL_EINPUT, "head prune ratio %g is outside [0, 1)", o->ratio);
  unsigned char **k = nl_xcalloc((size_t)c->depth, sizeof(unsigned char *));
  ranked *all = nl_xmalloc((size_t)c->heads * sizeof(ranked));
  for (int l = 0; l < c->depth; l++) {
    const int NH = nl_vit_heads(c, l);
    k[l] = nl_xmalloc((size_t)NH);
    memset(k[l], 1, (size_t)NH);
    int drop = o->keep > 0 ? NH - (o->keep < NH ? o->keep : NH) : (int)floor(o->ratio * NH + 0.5);
    if (drop > NH - 1) drop = NH - 1;
    for (int h = 0; h < NH; h++) all[h] = (ranked){scores[l][h], l, h};
    qsort(all, (size_t)NH, sizeof *all, cmp_ranked);
    for (int i = 0; i < drop; i++) k[l][all[i].index] = 0;
  }
  free(all);
  *keep = k;
  return 0;
}

int nl_prune_heads_apply(const nl_vit *src, unsigned char *const *keep, const float *const *mu,
                         nl_vit *dst, nl_error *err) {
  const nl_vit_config *c = &src->cfg;
  if (src->quant)
    return nl_fail(err, NL_EINPUT, "heads of a quantized model cannot be pruned (prune the FP32 "
                   "model, then quantize)");
  if (src->reuse)
    return nl_fail(err, NL_EINPUT, "heads of a model with an attention-reuse plan cannot be "
                   "pruned (prune first, then fit the plan)");
  nl_vit_config nc = *c;
  for (int l = 0; l < c->depth; l++) {
    int h = 0;
    for (int j = 0; j < nl_vit_heads(c, l); j++) h += keep[l][j] != 0;
    if (h < 1) return nl_fail(err, NL_EINPUT, "blocks.%d: every attention head removed", l);
    nc.head_counts[l] = h == c->heads ? 0 : h;
  }
  if (nl_vit_create(dst, &nc, err)) return -1;
  if (copy_norms(src, dst, err)) {
    nl_vit_free(dst);
    return -1;
  }
  for (int i = 0; i < dst->ntensors; i++) {
    const nl_param *d = &dst->tensors[i];
    for (int k = 0; k < src->ntensors; k++) {
      const nl_param *s = &src->tensors[k];
      if (strcmp(s->name, d->name) == 0 && s->numel == d->numel) {
        memcpy(dst->params + d->offset, src->params + s->offset, d->numel * sizeof(float));
        break;
      }
    }
  }
  const int D = c->dim, hd = nl_vit_head_dim(c);
  for (int l = 0; l < c->depth; l++) {
    const int NH = nl_vit_heads(c, l), A = NH * hd, A2 = nl_vit_attn_width(&nc, l);
    const nl_vit_block *S = &src->blocks[l];
    nl_vit_block *B = &dst->blocks[l];
    int o = 0;
    for (int h = 0; h < NH; h++) {
      if (!keep[l][h]) continue;
      for (int g = 0; g < 3; g++) { /* q, k, v rows of head h */
        memcpy(B->qkv_w + ((size_t)g * A2 + (size_t)o * hd) * D,
               S->qkv_w + ((size_t)g * A + (size_t)h * hd) * D, (size_t)hd * D * sizeof(float));
        if (S->qkv_b)
          memcpy(B->qkv_b + (size_t)g * A2 + (size_t)o * hd, S->qkv_b + (size_t)g * A + (size_t)h * hd,
                 (size_t)hd * sizeof(float));
      }
      for (int i = 0; i < D; i++)
        memcpy(B->proj_w + (size_t)i * A2 + (size_t)o * hd, S->proj_w + (size_t)i * A + (size_t)h * hd,
               (size_t)hd * sizeof(float));
      o++;
    }
    for (int i = 0; i < D; i++) {
      double b = S->proj_b[i];
      for (int j = 0; mu && j < A; j++)
        if (!keep[l][j / hd]) b += (double)S->proj_w[(size_t)i * A + j] * mu[l][j];
      B->proj_b[i] = (float)b;
    }
  }
  return 0;
}

int nl_prune_heads(const nl_vit *m, const nl_profile *p, const nl_prune_head_opts *o,
                   nl_vit *dst, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  if (o->compensate) {
    for (int l = 0; l < c->depth; l++) {
      const nl_profile_layer *P = p ? nl_profile_attn(p, l) : NULL;
      if (!P)
        return nl_fail(err, NL_EINPUT, "bias compensation of heads needs the activation profile "
                       "of blocks.%d.attn.proj.in (the attention output's means)", l);
      if (P->width != nl_vit_attn_width(c, l))
        return nl_fail(err, NL_EINPUT, "the profile's blocks.%d.attn.proj.in has %d channels but "
                       "the model's block %d has %d (a profile of another model?)", l, P->width,
                       l, nl_vit_attn_width(c, l));
      for (int j = 0; j < P->width; j++)
        if (!isfinite(P->mean[j]))
          return nl_fail(err, NL_EINPUT, "blocks.%d.attn.proj.in.mean: channel %d is not finite",
                         l, j);
    }
  }
  float **scores = NULL;
  unsigned char **keep = NULL;
  if (nl_prune_head_scores(m, p, o->score, o->seed, &scores, err)) return -1;
  int rc = nl_prune_head_plan(m, scores, o, &keep, err);
  if (rc == 0) {
    const float **mu = NULL;
    if (o->compensate) {
      mu = nl_xcalloc((size_t)c->depth, sizeof(float *));
      for (int l = 0; l < c->depth; l++) mu[l] = nl_profile_attn(p, l)->mean;
    }
    rc = nl_prune_heads_apply(m, keep, mu, dst, err);
    free(mu);
  }
  nl_prune_scores_free(scores, c->depth);
  nl_prune_keep_free(keep, c->depth);
  return rc;
}

int nl_prune_model(const nl_vit *m, const nl_profile *p, const nl_prune_opts *mo,
                   const nl_prune_head_opts *ho, nl_vit *dst, nl_error *err) {
  if (!mo && !ho) return nl_fail(err, NL_EINPUT, "nothing to prune: give MLP channels or heads");
  if (!ho) return nl_prune(m, p, mo, dst, err);
  if (!mo) return nl_prune_heads(m, p, ho, dst, err);
  nl_vit mid;
  if (nl_prune(m, p, mo, &mid, err)) return -1;
  int rc = nl_prune_heads(&mid, p, ho, dst, err);
  nl_vit_free(&mid);
  return rc;
}
