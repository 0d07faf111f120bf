/* EViT token pruning (train/evit.h) and the alternating comparison of
 * `normlab reuse`. */
#include "train/evit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "base/timer.h"
#include "model/norm.h"
#include "tensor/layers.h"
#include "train/evaluate.h"

int nl_evit_parse(const char *list, const nl_vit_config *c, nl_evit *ev, nl_error *err) {
  memset(ev, 0, sizeof *ev);
  ev->keep = 1;
  if (!c->class_token)
    return nl_fail(err, NL_EINPUT, "EViT ranks tokens by the class token's attention: this model "
                   "has no class token");
  const char *p = list;
  while (*p) {
    char *end;
    long k = strtol(p, &end, 10);
    if (end == p || (*end && *end != ','))
      return nl_fail(err, NL_EINPUT, "--evit-blocks '%s': not a comma-separated list of block "
                     "numbers", list);
    if (k < 1 || k >= c->depth)
      return nl_fail(err, NL_EINPUT, "--evit-blocks: block %ld %s (the model has blocks 0..%d; "
                     "pruning before block 0 has no attention to rank by)", k,
                     k < 0 || k >= c->depth ? "does not exist" : "cannot prune", c->depth - 1);
    if (ev->prune[k]) return nl_fail(err, NL_EINPUT, "--evit-blocks: block %ld given twice", k);
    ev->prune[k] = 1;
    p = *end ? end + 1 : end;
  }
  return 0;
}

/* Patch tokens kept of N. */
static int kept(const nl_evit *ev, int N) {
  int k = (int)ceil(ev->keep * N - 1e-9);
  return k < 1 ? 1 : k > N ? N : k;
}

int nl_evit_tokens(const nl_evit *ev, const nl_vit_config *c, int l) {
  int T = c->tokens;
  for (int b = 1; b <= l && b < c->depth; b++) {
    if (!ev->prune[b]) continue;
    int N = T - 1, k = kept(ev, N);
    if (k < N) T = 1 + k + (ev->drop ? 0 : 1);
  }
  return T;
}

double nl_evit_flops(const nl_evit *ev, const nl_vit_config *c) {
  const double D = c->dim, N = c->npatch;
  double f = 2.0 * N * D * c->in_chans * c->patch * c->patch;
  for (int l = 0; l < c->depth; l++) {
    double T = nl_evit_tokens(ev, c, l);
    const double A = nl_vit_attn_width(c, l);
    f += 2.0 * T * D * 3 * A + 4.0 * T * T * A + 2.0 * T * A * D +
         4.0 * T * D * nl_vit_mlp_width(c, l);
  }
  return f + 2.0 * D * c->classes;
}

double nl_evit_keep_for_flops(const nl_evit *ev, const nl_vit_config *c, double flops) {
  nl_evit e = *ev;
  double best = 0.001;
  for (int i = 1000; i >= 1; i--) {
    e.keep = i / 1000.0;
    if (nl_evit_flops(&e, c) <= flops) {
      best = e.keep;
      break;
    }
  }
  return best;
}

int nl_evit_ws_init(nl_evit_ws *w, const nl_vit *m, int batch, int threads, nl_error *err) {
  memset(w, 0, sizeof *w);
  const nl_vit_config *c = &m->cfg;
  if (nl_vit_acts_init(&w->acts, c, batch, 0, err)) return -1;
  w->acts.threads = threads;
  const size_t TD = (size_t)c->tokens * c->dim;
  w->x = nl_aalloc(sizeof(float) * batch * TD);
  w->x2 = nl_aalloc(sizeof(float) * batch * TD);
  w->pooled = nl_aalloc(sizeof(float) * batch * c->dim);
  w->normed = nl_aalloc(sizeof(float) * batch * c->dim);
  w->score = nl_aalloc(sizeof(float) * c->tokens);
  w->batch = batch;
  return 0;
}

void nl_evit_ws_free(nl_evit_ws *w) {
  nl_vit_acts_free(&w->acts);
  nl_afree(w->x), nl_afree(w->x2), nl_afree(w->pooled), nl_afree(w->normed), nl_afree(w->score);
  memset(w, 0, sizeof *w);
}

/* x [n, T, D] -> x2 [n, T2, D] by the class-token attention att [n, H, T, T]. */
static void prune(const nl_evit *ev, const float *att, const float *x, float *x2, float *score,
                  int n, int T, int H, int D, int *T2) {
  const int N = T - 1, k = kept(ev, N);
  *T2 = 1 + k + (ev->drop ? 0 : 1);
  for (int b = 0; b < n; b++) {
    const float *xb = x + (size_t)b * T * D;
    float *yb = x2 + (size_t)b * *T2 * D;
    for (int j = 1; j < T; j++) {
      double s = 0;
      for (int h = 0; h < H; h++) s += att[(((size_t)b * H + h) * T) * T + j];
      score[j] = (float)(s / H);
    }
    /* the k largest (first of ties), kept in token order: select by rank */
    unsigned char *take = calloc((size_t)T, 1);
    for (int r = 0; r < k; r++) {
      int best = -1;
      for (int j = 1; j < T; j++)
        if (!take[j] && (best < 0 || score[j] > score[best])) best = j;
      take[best] = 1;
    }
    memcpy(yb, xb, sizeof(float) * D);
    int o = 1;
    double wsum = 0;
    float *fused = yb + (size_t)(1 + k) * D;
    if (!ev->drop) memset(fused, 0, sizeof(float) * D);
    for (int j = 1; j < T; j++) {
      if (take[j]) {
        memcpy(yb + (size_t)o++ * D, xb + (size_t)j * D, sizeof(float) * D);
      } else if (!ev->drop) {
        wsum += score[j];
        for (int d = 0; d < D; d++) fused[d] += score[j] * xb[(size_t)j * D + d];
      }
    }
    if (!ev->drop)
      for (int d = 0; d < D; d++) fused[d] = wsum > 0 ? (float)(fused[d] / wsum) : 0.0f;
    free(take);
  }
}

int nl_evit_forward(const nl_vit *m, const nl_evit *ev, nl_evit_ws *w, const float *images, int n,
                    float *logits, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  nl_vit mm = *m; /* the same parameters at fewer tokens */
  mm.reuse = NULL;
  if (nl_vit_embed(m, &w->acts, images, n, w->x, err)) return -1;
  int T = c->tokens;
  for (int l = 0; l < c->depth; l++) {
    if (ev->prune[l] && kept(ev, T - 1) < T - 1) {
      int T2;
      /* the probabilities of the block before (its own heads: head-pruned models differ) */
      prune(ev, w->acts.layer[0].att, w->x, w->x2, w->score, n, T, nl_vit_heads(c, l > 0 ? l - 1 : 0),
            c->dim, &T2);
      float *t = w->x;
      w->x = w->x2, w->x2 = t;
      T = T2;
      mm.cfg.tokens = T, mm.cfg.npatch = T - 1;
    }
    if (nl_vit_block_run(&mm, &w->acts, l, w->x, n, err)) return -1;
  }
  int outer = nl_threads_enter(w->acts.threads);
  /* the norms are row-wise: pooling first gives the plain pass's token 0 */
  nl_pool_forward(w->pooled, w->x, c->avg_pool ? NL_POOL_AVG : NL_POOL_TOKEN, 1, n, T, c->dim);
  nl_norm_forward(m->final_norm, w->normed, NULL, NULL, NULL, NULL, w->pooled, n, c->dim, c->eps,
                  NULL);
  nl_linear_forward(logits, w->normed, m->head_w, m->head_b, n, c->dim, c->classes);
  nl_threads_leave(outer);
  return 0;
}

static long right(const float *lg, const int32_t *labels, int n, int C) {
  long r = 0;
  for (int i = 0; i < n; i++) {
    const float *l = lg + (size_t)i * C;
    int best = 0;
    for (int k = 1; k < C; k++)
      if (l[k] > l[best]) best = k;
    r += best == labels[i];
  }
  return r;
}

int nl_reuse_bench_run(const nl_reuse_bench *b, nl_reuse_bench_result *r, nl_error *err) {
  memset(r, 0, sizeof *r);
  const nl_vit *m = b->m;
  const nl_vit_config *c = &m->cfg;
  if (nl_vit_check_data(m, b->d, NULL, err) || nl_vit_check_finite(m, NULL, err)) return -1;
  const int B = b->batch > 0 ? b->batch : 64;
  nl_vit full = *m, planned = *m;
  full.reuse = NULL;
  planned.reuse = b->plan && nl_reuse_plan_count(b->plan) ? (nl_vit_reuse *)b->plan : NULL;
  nl_vit_acts a;
  if (nl_vit_acts_init(&a, c, B, 0, err)) return -1;
  a.threads = b->threads;
  nl_evit_ws w;
  memset(&w, 0, sizeof w);
  if (b->ev && nl_evit_ws_init(&w, m, B, b->threads, err)) {
    nl_vit_acts_free(&a);
    return -1;
  }
  float *img = nl_aalloc(sizeof(float) * B * c->in_chans * c->img_size * c->img_size);
  float *lg = nl_aalloc(sizeof(float) * B * c->classes);
  int rc = 0;
  for (int i = 0; i < b->d->n && !rc; i += B) {
    int n = b->d->n - i < B ? b->d->n - i : B;
    nl_dataset_normalize(b->d, i, n, c->in_chans, c->nmean, c->mean, c->std, img);
    for (int k = 0; k < (b->ev ? 3 : 2) && !rc; k++) {
      double t0 = nl_now();
      if (k < 2) {
        rc = nl_vit_forward(k ? &planned : &full, &a, img, n, NULL, NULL, err);
        if (!rc) memcpy(lg, a.logits, sizeof(float) * n * c->classes);
      } else {
        rc = nl_evit_forward(m, b->ev, &w, img, n, lg, err);
      }
      r->seconds[k] += nl_now() - t0;
      if (!rc) r->top1[k] += right(lg, b->d->labels + i, n, c->classes);
    }
  }
  nl_afree(img);
  nl_afree(lg);
  nl_vit_acts_free(&a);
  if (b->ev) nl_evit_ws_free(&w);
  return rc;
}
