/* ViT forward pass: one function per layer, activations kept in nl_vit_acts. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "model/norm_expr.h"
#include "model/vit.h"
#include "tensor/kernels.h"

/* ---- norm slots ---- */

void nl_norm_set_layernorm(nl_vit *m, nl_norm *n) {
  nl_norm_expr_release(n);
  nl_vit_alpha_view(m, n, 0);
  n->kind = NL_NORM_LAYERNORM;
}

void nl_norm_set_dyt(nl_vit *m, nl_norm *n, float alpha) {
  nl_norm_expr_release(n);
  nl_vit_alpha_view(m, n, 1);
  n->kind = NL_NORM_DYT;
  *n->alpha = alpha;
}

/* Rows per parallel task of the row-wise kernels. */
#define ROW_CHUNK 64

typedef struct norm_job {
  const nl_norm *n;
  float *out, *mean, *rstd;
  const float *x;
  size_t rows;
  int d;
  float eps;
} norm_job;

static void norm_task(size_t i, int worker, void *user) {
  (void)worker;
  const norm_job *j = user;
  size_t r0 = i * ROW_CHUNK, r1 = r0 + ROW_CHUNK < j->rows ? r0 + ROW_CHUNK : j->rows;
  size_t off = r0 * (size_t)j->d;
  switch (j->n->kind) {
    case NL_NORM_LAYERNORM:
      nl_layernorm_rows(j->out + off, j->mean ? j->mean + r0 : NULL, j->rstd ? j->rstd + r0 : NULL,
                        j->x + off, j->n->w, j->n->b, r1 - r0, j->d, j->eps);
      break;
    case NL_NORM_DYT:
      nl_dyt_rows(j->out + off, j->x + off, *j->n->alpha, j->n->w, j->n->b, r1 - r0, j->d);
      break;
    case NL_NORM_EXPR:
      nl_norm_expr_rows(j->n, j->out + off, j->x + off, r1 - r0, j->d);
      break;
  }
}

static void norm_forward(const nl_norm *n, float *out, float *mean, float *rstd, const float *x,
                         size_t rows, int d, float eps) {
  norm_job j = {n, out, mean, rstd, x, rows, d, eps};
  nl_parallel_for((rows + ROW_CHUNK - 1) / ROW_CHUNK, norm_task, &j);
}

typedef struct gelu_job {
  float *out;
  const float *x;
  size_t n;
} gelu_job;

#define ELEM_CHUNK 16384
static void gelu_task(size_t i, int worker, void *user) {
  (void)worker;
  const gelu_job *j = user;
  size_t a = i * ELEM_CHUNK, b = a + ELEM_CHUNK < j->n ? a + ELEM_CHUNK : j->n;
  nl_gelu(j->out + a, j->x + a, b - a);
}

static void gelu_forward(float *out, const float *x, size_t n) {
  gelu_job j = {out, x, n};
  nl_parallel_for((n + ELEM_CHUNK - 1) / ELEM_CHUNK, gelu_task, &j);
}

/* ---- activations ---- */

int nl_vit_acts_init(nl_vit_acts *a, const nl_vit_config *c, int batch, int keep_all,
                     nl_error *err) {
  memset(a, 0, sizeof *a);
  if (batch < 1) return nl_fail(err, NL_EINPUT, "batch size %d must be at least 1", batch);
  size_t B = (size_t)batch, T = (size_t)c->tokens, D = (size_t)c->dim, Hm = (size_t)c->mlp_hidden;
  size_t H = (size_t)c->heads;
  size_t BTD = B * T * D, BT = B * T;
  /* sizes rounded to 16 floats to keep each array 64-byte aligned */
#define R(n) (((n) + 15) / 16 * 16)
  size_t per_layer = R(BTD) * 7 + R(BT) * 4 + R(B * T * 3 * D) + R(B * H * T * T) + R(B * T * Hm) * 2;
  size_t nl = keep_all ? (size_t)c->depth : 1;
  size_t total = R(B * (size_t)c->npatch * c->in_chans * c->patch * c->patch) + nl * per_layer +
                 R(BTD) * 2 + R(BT) * 2 + R(B * D) + R(B * (size_t)c->classes);
  a->mem = nl_try_alloc(total, sizeof(float));
  if (!a->mem)
    return nl_fail(err, NL_ENOMEM, "cannot allocate %.1f MB of activations for batch %d",
                   total * 4.0 / 1e6, batch);
  a->batch = batch;
  a->keep_all = keep_all;
  float *p = a->mem;
#define TAKE(dst, n) \
  do {               \
    dst = p;         \
    p += R(n);       \
  } while (0)
  TAKE(a->patches, B * (size_t)c->npatch * c->in_chans * c->patch * c->patch);
  a->layer = nl_xcalloc((size_t)c->depth, sizeof(nl_vit_layer_acts));
  float *res_shared = NULL;
  for (size_t l = 0; l < nl; l++) {
    nl_vit_layer_acts *L = &a->layer[l];
    TAKE(L->res1, BTD);
    TAKE(L->ln1, BTD);
    TAKE(L->ln1_mean, BT);
    TAKE(L->ln1_rstd, BT);
    TAKE(L->qkv, B * T * 3 * D);
    TAKE(L->att, B * H * T * T);
    TAKE(L->atty, BTD);
    TAKE(L->proj, BTD);
    TAKE(L->res2, BTD);
    TAKE(L->ln2, BTD);
    TAKE(L->ln2_mean, BT);
    TAKE(L->ln2_rstd, BT);
    TAKE(L->fc1, B * T * Hm);
    TAKE(L->gelu, B * T * Hm);
    TAKE(L->fc2, BTD);
  }
  for (size_t l = nl; l < (size_t)c->depth; l++) a->layer[l] = a->layer[0];
  (void)res_shared;
  TAKE(a->out, BTD);
  TAKE(a->normed, BTD);
  TAKE(a->norm_mean, BT);
  TAKE(a->norm_rstd, BT);
  TAKE(a->pooled, B * D);
  TAKE(a->logits, B * (size_t)c->classes);
#undef TAKE
#undef R
  return 0;
}

void nl_vit_acts_free(nl_vit_acts *a) {
  if (!a) return;
  free(a->mem);
  free(a->layer);
  memset(a, 0, sizeof *a);
}

/* ---- layers ---- */

/* Patch embedding as one GEMM over im2col patches; then class token and
 * position embedding (added to every token, the class token included). */
static void patch_embed_forward(const nl_vit *m, nl_vit_acts *a, const float *img, int n,
                                float *x) {
  const nl_vit_config *c = &m->cfg;
  int P = c->patch, C = c->in_chans, G = c->grid, S = c->img_size, D = c->dim, T = c->tokens;
  int K = C * P * P;
  for (int b = 0; b < n; b++)
    for (int gy = 0; gy < G; gy++)
      for (int gx = 0; gx < G; gx++) {
        float *row = a->patches + ((size_t)b * c->npatch + (size_t)gy * G + gx) * K;
        for (int ch = 0; ch < C; ch++)
          for (int py = 0; py < P; py++)
            memcpy(row + (ch * P + py) * P,
                   img + (((size_t)b * C + ch) * S + (size_t)gy * P + py) * S + (size_t)gx * P,
                   sizeof(float) * (size_t)P);
      }
  /* patch rows land after the prefix token of each image */
  float *emb = a->normed; /* scratch: [n * npatch, D] fits in [B, T, D] */
  nl_linear(emb, a->patches, m->patch_w, m->patch_b, n * c->npatch, K, D);
  int pre = c->class_token;
  for (int b = 0; b < n; b++) {
    float *xb = x + (size_t)b * T * D;
    if (pre)
      for (int j = 0; j < D; j++) xb[j] = m->cls_token[j] + m->pos_embed[j];
    for (int t = 0; t < c->npatch; t++) {
      const float *e = emb + ((size_t)b * c->npatch + t) * D;
      const float *pe = m->pos_embed + (size_t)(t + pre) * D;
      float *xt = xb + (size_t)(t + pre) * D;
      for (int j = 0; j < D; j++) xt[j] = e[j] + pe[j];
    }
  }
}

typedef struct attn_job {
  const nl_vit_config *c;
  const float *qkv;
  float *att, *out;
} attn_job;

/* One (image, head): scores = q k^T, softmax(scores / sqrt(hd)), out = p v. */
static void attn_task(size_t i, int worker, void *user) {
  (void)worker;
  const attn_job *j = user;
  int T = j->c->tokens, D = j->c->dim, H = j->c->heads, hd = D / H;
  size_t b = i / (size_t)H, h = i % (size_t)H;
  const float *q = j->qkv + b * T * 3 * D + h * hd;
  const float *k = q + D, *v = q + 2 * D;
  float *s = j->att + i * (size_t)T * T;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, q, 3 * D, k, 3 * D, 0.0f, s,
              T);
  nl_softmax_rows(s, (size_t)T, T, 1.0f / sqrtf((float)hd));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, s, T, v, 3 * D, 0.0f,
              j->out + b * T * D + h * hd, D);
}

static void residual_add(float *out, const float *x, const float *y, const float *gamma,
                         size_t rows, int d) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * d, *yr = y + r * d;
    float *o = out + r * d;
    if (gamma)
      for (int j = 0; j < d; j++) o[j] = xr[j] + gamma[j] * yr[j];
    else
      for (int j = 0; j < d; j++) o[j] = xr[j] + yr[j];
  }
}

static int tap_call(nl_norm_tap_fn tap, void *user, const nl_vit *m, const nl_norm *nm,
                    const float *x, const float *y, int n, int tokens, nl_error *err) {
  if (!tap) return 0;
  if (tap(nm->name, (int)(nm - m->norms), x, y, n, tokens, m->cfg.dim, user))
    return nl_fail(err, NL_EINTR, "forward pass stopped at %s", nm->name);
  return 0;
}

static int block_forward(const nl_vit *m, int l, nl_vit_layer_acts *L, float *out, int n,
                         nl_norm_tap_fn tap, void *user, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  const nl_vit_block *B = &m->blocks[l];
  int T = c->tokens, D = c->dim, Hm = c->mlp_hidden;
  size_t rows = (size_t)n * T;
  norm_forward(B->norm1, L->ln1, L->ln1_mean, L->ln1_rstd, L->res1, rows, D, c->eps);
  if (tap_call(tap, user, m, B->norm1, L->res1, L->ln1, n, T, err)) return -1;
  nl_linear(L->qkv, L->ln1, B->qkv_w, B->qkv_b, (int)rows, D, 3 * D);
  attn_job aj = {c, L->qkv, L->att, L->atty};
  nl_parallel_for((size_t)n * c->heads, attn_task, &aj);
  nl_linear(L->proj, L->atty, B->proj_w, B->proj_b, (int)rows, D, D);
  residual_add(L->res2, L->res1, L->proj, B->ls1, rows, D);
  norm_forward(B->norm2, L->ln2, L->ln2_mean, L->ln2_rstd, L->res2, rows, D, c->eps);
  if (tap_call(tap, user, m, B->norm2, L->res2, L->ln2, n, T, err)) return -1;
  nl_linear(L->fc1, L->ln2, B->fc1_w, B->fc1_b, (int)rows, D, Hm);
  gelu_forward(L->gelu, L->fc1, rows * Hm);
  nl_linear(L->fc2, L->gelu, B->fc2_w, B->fc2_b, (int)rows, Hm, D);
  residual_add(out, L->res2, L->fc2, B->ls2, rows, D);
  return 0;
}

static int forward_pass(const nl_vit *m, nl_vit_acts *a, const float *images, int n,
                        nl_norm_tap_fn tap, void *user, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  if (n < 1 || n > a->batch)
    return nl_fail(err, NL_EINTERNAL, "forward of %d images with activations for %d", n, a->batch);
  int T = c->tokens, D = c->dim;
  size_t rows = (size_t)n * T;
  patch_embed_forward(m, a, images, n, a->layer[0].res1);
  for (int l = 0; l < c->depth; l++) {
    float *out = l + 1 < c->depth ? a->layer[l + 1].res1 : a->out;
    if (block_forward(m, l, &a->layer[l], out, n, tap, user, err)) return -1;
  }
  const nl_norm *fn = m->final_norm;
  if (!c->avg_pool) {
    norm_forward(fn, a->normed, a->norm_mean, a->norm_rstd, a->out, rows, D, c->eps);
    if (tap_call(tap, user, m, fn, a->out, a->normed, n, T, err)) return -1;
    for (int b = 0; b < n; b++)
      memcpy(a->pooled + (size_t)b * D, a->normed + (size_t)b * T * D, sizeof(float) * D);
    nl_linear(a->logits, a->pooled, m->head_w, m->head_b, n, D, c->classes);
  } else {
    int pre = c->class_token;
    for (int b = 0; b < n; b++) {
      float *p = a->pooled + (size_t)b * D;
      for (int j = 0; j < D; j++) p[j] = 0.0f;
      for (int t = pre; t < T; t++) {
        const float *xt = a->out + ((size_t)b * T + t) * D;
        for (int j = 0; j < D; j++) p[j] += xt[j];
      }
      for (int j = 0; j < D; j++) p[j] /= (float)(T - pre);
    }
    norm_forward(fn, a->normed, a->norm_mean, a->norm_rstd, a->pooled, (size_t)n, D, c->eps);
    if (tap_call(tap, user, m, fn, a->pooled, a->normed, n, 1, err)) return -1;
    nl_linear(a->logits, a->normed, m->head_w, m->head_b, n, D, c->classes);
  }
  return 0;
}

/* The pass runs on a->threads workers (its own BLAS count included). */
int nl_vit_forward(const nl_vit *m, nl_vit_acts *a, const float *images, int n,
                   nl_norm_tap_fn tap, void *user, nl_error *err) {
  int outer = nl_threads_enter(a->threads);
  int rc = forward_pass(m, a, images, n, tap, user, err);
  nl_threads_leave(outer);
  return rc;
}
