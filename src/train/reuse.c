/* Attention reuse: plans from text, evaluation under a plan, and TBs
 * fitted by ridge least squares on recorded attention outputs. */
#include "train/reuse.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/linalg.h"
#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "tensor/kernels.h"
#include "tensor/layers.h"
#include "train/evaluate.h"

int nl_reuse_parse(const char *list, nl_tb_kind tb, int hidden, nl_vit_reuse *p, nl_error *err) {
  const int depth = p->depth;
  int src[NL_VIT_MAX_DEPTH], listed[NL_VIT_MAX_DEPTH] = {0};
  const char *q = list;
  while (*q) {
    char *end;
    long k = strtol(q, &end, 10), s = -1;
    if (end == q || (*end && *end != ',' && *end != ':'))
      return nl_fail(err, NL_EINPUT, "--blocks '%s': not a comma-separated list of blocks (L or "
                     "L:SOURCE)", list);
    if (*end == ':') {
      const char *sp = end + 1;
      s = strtol(sp, &end, 10);
      if (end == sp || s < 0 || (*end && *end != ','))
        return nl_fail(err, NL_EINPUT, "--blocks '%s': '%ld:' wants a source block number", list, k);
    }
    if (k < 1 || k >= depth)
      return nl_fail(err, NL_EINPUT, "--blocks: block %ld %s (the model has blocks 0..%d; block 0 "
                     "has no earlier attention to reuse)", k, k < 0 || k >= depth ? "does not exist" : "cannot reuse", depth - 1);
    if (listed[k]) return nl_fail(err, NL_EINPUT, "--blocks: block %ld given twice", k);
    if (s >= k)
      return nl_fail(err, NL_EINPUT, "--blocks: block %ld cannot reuse the attention of block %ld "
                     "(only an earlier block's: 0..%ld)", k, s, k - 1);
    listed[k] = 1;
    src[k] = (int)s;
    q = *end ? end + 1 : end;
  }
  for (int l = 1; l < depth; l++) {
    if (!listed[l]) continue;
    int s = src[l];
    if (s < 0 && tb != NL_TB_NONE) s = l - 1;
    if (s < 0) {
      s = l - 1;
      while (s > 0 && listed[s]) s--;
    }
    if (nl_reuse_plan_set(p, l, s, tb, hidden, err)) return -1;
  }
  return 0;
}

double nl_reuse_flops(const nl_vit_config *c, int nreuse) {
  double T = c->tokens, D = c->dim;
  return nl_vit_flops_per_image(c) - nreuse * (2.0 * T * D * 2 * D + 2.0 * T * T * D);
}

int nl_reuse_eval(const nl_vit *m, const nl_vit_reuse *plan, const nl_dataset *d, int batch,
                  int threads, long *top1, double *seconds, nl_error *err) {
  nl_vit mm = *m; /* a view: the same parameters under the given plan */
  mm.reuse = plan && nl_reuse_plan_count(plan) ? (nl_vit_reuse *)plan : NULL;
  nl_eval_opts o;
  nl_eval_opts_default(&o);
  o.batch = batch;
  o.threads = threads;
  nl_eval_result r;
  if (nl_vit_evaluate(&mm, d, &o, &r, err)) return -1;
  *top1 = r.top1;
  if (seconds) *seconds = r.seconds;
  return 0;
}

void nl_reuse_fit_opts_default(nl_reuse_fit_opts *o) {
  memset(o, 0, sizeof *o);
  o->batch = 64;
  o->ridge = 1e-4;
  o->seed = 1;
}

/* ---- least squares on recorded attention outputs ---- */

typedef struct {
  int l, s, F;         /* block, source, features (D or H) */
  double *xtx, *xty;   /* [(F+1), (F+1)], [(F+1), D] */
  nl_vit_reuse *plan;  /* the output plan (its TB views) */
  int init_fc1;        /* mlp: draw fc1 at the first batch */
} target;

static void features(const target *t, const float *z, int rows, int D, float *hid, double *X) {
  const int F = t->F;
  const float *f = z;
  if (t->plan->tb[t->l] == NL_TB_MLP) {
    nl_linear_forward(hid, z, t->plan->w1[t->l], t->plan->b1[t->l], rows, D, F);
    nl_gelu(hid, hid, (size_t)rows * F);
    f = hid;
  }
  for (int r = 0; r < rows; r++) {
    for (int j = 0; j < F; j++) X[(size_t)r * (F + 1) + j] = f[(size_t)r * F + j];
    X[(size_t)r * (F + 1) + F] = 1.0;
  }
}

static void draw_fc1(target *t, const float *z, size_t nz, int D, uint64_t seed) {
  double ss = 0;
  for (size_t i = 0; i < nz; i++) ss += (double)z[i] * z[i];
  double rms = sqrt(ss / (nz ? nz : 1));
  if (!(rms > 0)) rms = 1;
  nl_rng r;
  nl_rng_stream(&r, seed, (uint64_t)t->l);
  const int H = t->F;
  const double sd = 1.0 / sqrt((double)D) / rms;
  for (size_t i = 0; i < (size_t)H * D; i++) t->plan->w1[t->l][i] = (float)(sd * nl_rng_normal(&r));
  memset(t->plan->b1[t->l], 0, sizeof(float) * H);
  t->init_fc1 = 0;
}

static int solve(target *t, int D, double ridge, nl_error *err) {
  const int k = t->F + 1;
  double mean = 0;
  for (int i = 0; i < k; i++) mean += t->xtx[(size_t)i * k + i];
  mean /= k;
  for (int i = 0; i < k; i++) t->xtx[(size_t)i * k + i] += ridge * (mean > 0 ? mean : 1);
  if (nl_cholesky(t->xtx, k))
    return nl_fail(err, NL_EINPUT, "reuse: block %d's transformation block: the normal equations "
                   "are not positive definite (raise the ridge)", t->l);
  nl_cholesky_solve(t->xtx, t->xty, k, D);
  nl_vit_reuse *p = t->plan;
  float *w = p->tb[t->l] == NL_TB_MLP ? p->w2[t->l] : p->w1[t->l];
  float *b = p->tb[t->l] == NL_TB_MLP ? p->b2[t->l] : p->b1[t->l];
  for (int o = 0; o < D; o++) {
    for (int f = 0; f < t->F; f++) w[(size_t)o * t->F + f] = (float)t->xty[(size_t)f * D + o];
    b[o] = (float)t->xty[(size_t)t->F * D + o];
  }
  return 0;
}

int nl_reuse_fit_each(const nl_vit *m, const int *blocks, const int *srcs, int n, nl_tb_kind tb,
                      int hidden, const nl_dataset *d, const nl_reuse_fit_opts *o,
                      nl_vit_reuse **out, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  const int D = c->dim, T = c->tokens, depth = c->depth;
  if (tb == NL_TB_NONE) return nl_fail(err, NL_EINPUT, "reuse: fitting needs a linear or mlp TB");
  if (nl_vit_check_data(m, d, NULL, err)) return -1;
  for (int i = 0; i < n; i++) out[i] = NULL;
  target *tg = nl_xcalloc((size_t)(n ? n : 1), sizeof *tg);
  int rc = 0, last = 0;
  for (int i = 0; i < n && !rc; i++) {
    if (m->reuse && m->reuse->src[blocks[i]] >= 0) {
      rc = nl_fail(err, NL_EINTERNAL, "reuse: block %d already reuses", blocks[i]);
      break;
    }
    out[i] = m->reuse ? nl_reuse_plan_copy(m->reuse) : nl_reuse_plan_new(depth, D);
    rc = nl_reuse_plan_set(out[i], blocks[i], srcs[i], tb, hidden, err);
    target *t = &tg[i];
    t->l = blocks[i], t->s = srcs[i], t->plan = out[i];
    t->F = tb == NL_TB_MLP ? hidden : D;
    t->init_fc1 = tb == NL_TB_MLP;
    size_t k = (size_t)t->F + 1;
    t->xtx = nl_xcalloc(k * k, sizeof(double));
    t->xty = nl_xcalloc(k * D, sizeof(double));
    if (t->l > last) last = t->l;
  }
  const int B = o->batch > 0 ? o->batch : 64;
  nl_vit_acts a;
  if (!rc) rc = nl_vit_acts_init(&a, c, B, 0, err);
  else memset(&a, 0, sizeof a);
  a.threads = o->threads;
  int Fmax = D;
  for (int i = 0; i < n; i++) Fmax = tg[i].F > Fmax ? tg[i].F : Fmax;
  const size_t BTD = (size_t)B * T * D;
  float *z = nl_aalloc(sizeof(float) * BTD * (last + 1));
  float *x = nl_aalloc(sizeof(float) * BTD);
  float *hid = nl_aalloc(sizeof(float) * (size_t)B * T * Fmax);
  double *X = nl_aalloc(sizeof(double) * (size_t)B * T * (Fmax + 1));
  double *Y = nl_aalloc(sizeof(double) * BTD);
  float *img = nl_aalloc(sizeof(float) * B * c->in_chans * c->img_size * c->img_size);
  for (int i0 = 0; i0 < d->n && !rc; i0 += B) {
    int nb = d->n - i0 < B ? d->n - i0 : B, rows = nb * T;
    nl_dataset_normalize(d, i0, nb, c->in_chans, c->nmean, c->mean, c->std, img);
    rc = nl_vit_embed(m, &a, img, nb, x, err);
    for (int l = 0; l <= last && !rc; l++) {
      rc = nl_vit_block_run(m, &a, l, x, nb, err);
      if (rc) break;
      memcpy(z + BTD * l, a.layer[l].proj, sizeof(float) * (size_t)rows * D);
      int outer = nl_threads_enter(o->threads);
      for (int i = 0; i < n; i++) {
        target *t = &tg[i];
        if (t->l != l) continue;
        const float *zs = z + BTD * t->s, *zl = z + BTD * l;
        if (t->init_fc1) draw_fc1(t, zs, (size_t)rows * D, D, o->seed);
        features(t, zs, rows, D, hid, X);
        for (size_t j = 0; j < (size_t)rows * D; j++) Y[j] = zl[j];
        const int k = t->F + 1;
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, k, rows, 1.0, X, k, 1.0, t->xtx, k);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, D, rows, 1.0, X, k, Y, D, 1.0,
                    t->xty, D);
      }
      nl_threads_leave(outer);
    }
  }
  for (int i = 0; i < n && !rc; i++) {
    target *t = &tg[i];
    const int k = t->F + 1;
    for (int r = 0; r < k; r++) /* the upper triangle to the whole */
      for (int q = 0; q < r; q++) t->xtx[(size_t)r * k + q] = t->xtx[(size_t)q * k + r];
    rc = solve(t, D, o->ridge, err);
  }
  for (int i = 0; i < n; i++) {
    free(tg[i].xtx);
    free(tg[i].xty);
    if (rc) {
      nl_reuse_plan_free(out[i]);
      out[i] = NULL;
    }
  }
  free(tg);
  nl_afree(z), nl_afree(x), nl_afree(hid), nl_afree(X), nl_afree(Y), nl_afree(img);
  nl_vit_acts_free(&a);
  return rc;
}

int nl_reuse_fit(nl_vit *m, const nl_dataset *d, const nl_reuse_fit_opts *o, nl_error *err) {
  nl_vit_reuse *P = m->reuse;
  if (!P) return 0;
  for (int l = 1; l < P->depth; l++) {
    if (P->src[l] < 0 || P->tb[l] == NL_TB_NONE) continue;
    /* the plan of the blocks before l (refitted), l computing its own */
    nl_vit_reuse *before = nl_reuse_plan_copy(P);
    for (int k = l; k < P->depth; k++) before->src[k] = -1, before->tb[k] = NL_TB_NONE;
    nl_vit mm = *m;
    mm.reuse = before;
    nl_vit_reuse *fit = NULL;
    int s = P->src[l];
    int rc = nl_reuse_fit_each(&mm, &l, &s, 1, P->tb[l], P->hidden[l], d, o, &fit, err);
    if (!rc) {
      size_t numel = P->tb[l] == NL_TB_LINEAR ? (size_t)P->dim * P->dim + P->dim
                     : (size_t)2 * P->hidden[l] * P->dim + P->hidden[l] + P->dim;
      memcpy(P->w1[l], fit->w1[l], numel * sizeof(float)); /* one run per block */
    }
    nl_reuse_plan_free(fit);
    nl_reuse_plan_free(before);
    if (rc) return -1;
  }
  return 0;
}
