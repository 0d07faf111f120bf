/* Attention reuse: the pass in stages with some blocks applying an earlier
 * block's attention probabilities. */
#include "train/reuse.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "base/timer.h"
#include "model/norm.h"
#include "tensor/layers.h"
#include "train/evaluate.h"

int nl_reuse_parse(const char *list, int depth, unsigned char *reuse, nl_error *err) {
  memset(reuse, 0, (size_t)depth);
  const char *p = list;
  while (*p) {
    char *end;
    long k = strtol(p, &end, 10);
    if (end == p || (*end && *end != ','))
      return nl_fail(err, NL_EINPUT, "--blocks '%s': not a comma-separated list of block numbers", list);
    if (k < 1 || k >= depth)
      return nl_fail(err, NL_EINPUT, "--blocks: block %ld %s (the model has blocks 0..%d; block 0 "
                     "has no earlier attention to reuse)", k, k < 0 || k >= depth ? "does not exist" : "cannot reuse", depth - 1);
    if (reuse[k]) return nl_fail(err, NL_EINPUT, "--blocks: block %ld given twice", k);
    reuse[k] = 1;
    p = *end ? end + 1 : end;
  }
  return 0;
}

double nl_reuse_flops(const nl_vit_config *c, int nreuse) {
  double T = c->tokens, D = c->dim;
  return nl_vit_flops_per_image(c) - nreuse * (2.0 * T * D * 2 * D + 2.0 * T * T * D);
}

typedef struct {
  const float *att, *v;
  float *out;
  int T, D, NH, hd;
} apply_job;

/* out[b, :, head h] = P[b, h] v[b, :, head h] */
static void apply_task(size_t i, int worker, void *user) {
  (void)worker;
  const apply_job *j = user;
  const int b = (int)(i / j->NH), h = (int)(i % j->NH), T = j->T, D = j->D;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, j->hd, T, 1.0f,
              j->att + i * (size_t)T * T, T, j->v + (size_t)b * T * D + (size_t)h * j->hd, D,
              0.0f, j->out + (size_t)b * T * D + (size_t)h * j->hd, D);
}

static void add_branch(float *x, const float *y, const float *gamma, float *scratch, int rows,
                       int D) {
  if (gamma) {
    nl_layerscale_forward(scratch, y, gamma, rows, D);
    y = scratch;
  }
  nl_residual_forward(x, x, y, (size_t)rows * D);
}

/* Block l reusing the probabilities left in a->layer[l].att, on x in place. */
static void reuse_block(const nl_vit *m, nl_vit_acts *a, int l, float *x, float *v, int n) {
  const nl_vit_config *c = &m->cfg;
  const nl_vit_block *B = &m->blocks[l];
  nl_vit_layer_acts *L = &a->layer[l];
  const int T = c->tokens, D = c->dim, Hm = nl_vit_mlp_width(c, l), rows = n * T;
  nl_norm_forward(B->norm1, L->ln1, NULL, NULL, NULL, NULL, x, rows, D, c->eps, NULL);
  nl_linear_forward(v, L->ln1, B->qkv_w + (size_t)2 * D * D, B->qkv_b ? B->qkv_b + 2 * D : NULL,
                    rows, D, D);
  apply_job j = {L->att, v, L->atty, T, D, c->heads, D / c->heads};
  nl_parallel_for((size_t)n * c->heads, apply_task, &j);
  nl_linear_forward(L->proj, L->atty, B->proj_w, B->proj_b, rows, D, D);
  add_branch(x, L->proj, B->ls1, a->normed, rows, D);
  nl_norm_forward(B->norm2, L->ln2, NULL, NULL, NULL, NULL, x, rows, D, c->eps, NULL);
  nl_linear_forward(L->fc1, L->ln2, B->fc1_w, B->fc1_b, rows, D, Hm);
  nl_gelu_forward(L->gelu, L->fc1, (size_t)rows * Hm);
  nl_linear_forward(L->fc2, L->gelu, B->fc2_w, B->fc2_b, rows, Hm, D);
  add_branch(x, L->fc2, B->ls2, a->normed, rows, D);
}

int nl_reuse_eval(const nl_vit *m, const unsigned char *reuse, const nl_dataset *d, int batch,
                  int threads, long *top1, double *seconds, nl_error *err) {
  if (nl_vit_check_data(m, d, NULL, err) || nl_vit_check_finite(m, NULL, err)) return -1;
  if (reuse[0]) return nl_fail(err, NL_EINPUT, "block 0 has no earlier attention to reuse");
  const nl_vit_config *c = &m->cfg;
  if (batch < 1) batch = 100;
  nl_vit_acts a;
  if (nl_vit_acts_init(&a, c, batch, 0, err)) return -1;
  a.threads = threads;
  const size_t TD = (size_t)c->tokens * c->dim, D = (size_t)c->dim;
  float *x = nl_aalloc(sizeof(float) * batch * TD), *v = nl_aalloc(sizeof(float) * batch * TD);
  float *img = nl_aalloc(sizeof(float) * batch * c->in_chans * c->img_size * c->img_size);
  float *pooled = nl_aalloc(sizeof(float) * batch * D), *nb = nl_aalloc(sizeof(float) * batch * D);
  float *lg = nl_aalloc(sizeof(float) * batch * c->classes);
  int rc = 0;
  long right = 0;
  double secs = 0;
  for (int i = 0; i < d->n && !rc; i += batch) {
    int n = d->n - i < batch ? d->n - i : batch;
    nl_dataset_normalize(d, i, n, c->in_chans, c->nmean, c->mean, c->std, img);
    double t0 = nl_now();
    rc = nl_vit_embed(m, &a, img, n, x, err);
    for (int l = 0; l < c->depth && !rc; l++) {
      if (!reuse[l]) {
        rc = nl_vit_block_run(m, &a, l, x, n, err);
        continue;
      }
      int outer = nl_threads_enter(threads);
      reuse_block(m, &a, l, x, v, n);
      nl_threads_leave(outer);
    }
    if (rc) break;
    int outer = nl_threads_enter(threads);
    nl_pool_forward(pooled, x, c->avg_pool ? NL_POOL_AVG : NL_POOL_TOKEN, c->class_token, n,
                    c->tokens, c->dim);
    nl_norm_forward(m->final_norm, nb, NULL, NULL, NULL, NULL, pooled, n, c->dim, c->eps, NULL);
    nl_linear_forward(lg, nb, m->head_w, m->head_b, n, c->dim, c->classes);
    nl_threads_leave(outer);
    secs += nl_now() - t0;
    for (int r = 0; r < n; r++) {
      const float *l = lg + (size_t)r * c->classes;
      int best = 0;
      for (int k = 1; k < c->classes; k++)
        if (l[k] > l[best]) best = k;
      right += best == d->labels[i + r];
    }
  }
  nl_afree(x);
  nl_afree(v);
  nl_afree(img);
  nl_afree(pooled);
  nl_afree(nb);
  nl_afree(lg);
  nl_vit_acts_free(&a);
  if (!rc) {
    *top1 = right;
    if (seconds) *seconds = secs;
  }
  return rc;
}
