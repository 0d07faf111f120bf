/* Forward halves of the ViT layers and the deterministic parallel drivers
 * they share with the backward halves (train/layers.c). See layers.h. */
#include "tensor/layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "base/vmath.h"
#include "tensor/gemm.h"
#include "tensor/kernels.h"

/* ---- row-parallel driver ----
 * The chunk size depends only on the problem's shape (row width and row
 * count), and column reductions are summed per chunk and then added in
 * chunk order, so results are the same for any thread count. Small
 * problems run as one chunk on the calling thread. */
#define ROWS_CHUNK_ELEMS 16384
#define ROWS_PAR_MIN 32768
#define ROWS_MAX_CHUNKS 64

typedef struct {
  nl_rows_fn fn;
  void *ctx;
  size_t N, chunk;
  int nacc;
  float *part;
} rows_job;

static void rows_task(size_t i, int worker, void *user) {
  (void)worker;
  const rows_job *j = user;
  size_t r0 = i * j->chunk, r1 = r0 + j->chunk < j->N ? r0 + j->chunk : j->N;
  j->fn(j->ctx, r0, r1, j->nacc ? j->part + i * (size_t)j->nacc : NULL);
}

void nl_rows_run(nl_rows_fn fn, void *ctx, size_t N, size_t C, int nacc, float *acc) {
  size_t chunk = N;
  if (N * C >= ROWS_PAR_MIN) {
    chunk = ROWS_CHUNK_ELEMS / (C ? C : 1);
    if (chunk < 1) chunk = 1;
    /* at most ROWS_MAX_CHUNKS chunks, bounding the partial sums' memory */
    if (chunk < (N + ROWS_MAX_CHUNKS - 1) / ROWS_MAX_CHUNKS)
      chunk = (N + ROWS_MAX_CHUNKS - 1) / ROWS_MAX_CHUNKS;
  }
  size_t nch = chunk ? (N + chunk - 1) / chunk : 0;
  if (nch == 0) return;
  float *part = nacc ? nl_xcalloc(nch * (size_t)nacc, sizeof(float)) : NULL;
  rows_job j = {fn, ctx, N, chunk, nacc, part};
  if (nch == 1)
    rows_task(0, 0, &j);
  else
    nl_parallel_for(nch, rows_task, &j);
  for (size_t i = 0; i < nch; i++)
    for (int k = 0; k < nacc; k++) acc[k] += part[i * (size_t)nacc + k];
  free(part);
}

/* ---- tiled matrix products ----
 * Every tile is one single-threaded sgemm call (nl_parallel_for keeps BLAS
 * single-threaded inside), and the tiles depend on the shapes only: each
 * output element is computed by the same call whatever the thread count,
 * so the result is bitwise the same (OpenBLAS's own threading may split a
 * product differently). */
#define GEMM_PAR_MIN (1 << 18) /* multiply-adds below which one call is made */

typedef struct {
  int ta, tb, M, N, K, lda, ldb, ldc, rb, cb, ncb;
  float alpha, beta;
  const float *a, *b, *bias;
  float *c;
} gemm_job;

static void gemm_task(size_t i, int worker, void *user) {
  (void)worker;
  const gemm_job *j = user;
  const int r0 = (int)(i / (size_t)j->ncb) * j->rb, c0 = (int)(i % (size_t)j->ncb) * j->cb;
  const int m = r0 + j->rb < j->M ? j->rb : j->M - r0;
  const int n = c0 + j->cb < j->N ? j->cb : j->N - c0;
  const float *a = j->a + (j->ta ? (size_t)r0 : (size_t)r0 * j->lda);
  const float *b = j->b + (j->tb ? (size_t)c0 * j->ldb : (size_t)c0);
  float *c = j->c + (size_t)r0 * j->ldc + c0;
  if (j->bias)
    nl_sgemm_bias(j->ta, j->tb, m, n, j->K, j->alpha, a, j->lda, b, j->ldb, j->bias + c0, c, j->ldc);
  else
    nl_sgemm(j->ta, j->tb, m, n, j->K, j->alpha, a, j->lda, b, j->ldb, j->beta, c, j->ldc);
}

void nl_gemm_tiles(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc, const float *bias,
                   int rb, int cb) {
  if (M < 1 || N < 1) return;
  if ((double)M * N * K < GEMM_PAR_MIN) rb = M, cb = N;
  if (rb < 1 || rb > M) rb = M;
  if (cb < 1 || cb > N) cb = N;
  const int nrb = (M + rb - 1) / rb, ncb = (N + cb - 1) / cb;
  gemm_job j = {ta, tb, M, N, K, lda, ldb, ldc, rb, cb, ncb, alpha, beta, a, b, bias, c};
  nl_parallel_for((size_t)nrb * ncb, gemm_task, &j);
}

int nl_gemm_row_tile(int M) {
  if (M <= 256) return M;
  const int tiles = 2 * ((M + 511) / 512);
  const int rows = (M + tiles - 1) / tiles;
  return (rows + 11) / 12 * 12;
}

/* ---- linear ---- */

#define LIN_MIN_TILES 4  /* below this many row tiles, split the columns too */
#define LIN_COL_ALIGN 16 /* column tiles are a multiple of this */

void nl_linear_forward(float *out, const float *inp, const float *w, const float *b, int N,
                       int IC, int OC) {
  const int rows = nl_gemm_row_tile(N);
  const int nrb = (N + rows - 1) / rows;
  int cb = OC;
  if (nrb < LIN_MIN_TILES) {
    const int ncb = (LIN_MIN_TILES + nrb - 1) / nrb;
    cb = (OC + ncb - 1) / ncb;
    cb = (cb + LIN_COL_ALIGN - 1) / LIN_COL_ALIGN * LIN_COL_ALIGN;
  }
  nl_gemm_tiles(0, 1, N, OC, IC, 1.0f, inp, IC, w, IC, 0.0f, out, OC, b, rows, cb);
}

/* ---- row-wise layers over nl_rows_run ---- */

typedef struct {
  float *out, *mean, *rstd;
  const float *inp, *w, *b;
  float alpha, eps;
  int C;
} fwd_ctx;

static void ln_rows(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const fwd_ctx *k = p;
  const size_t off = r0 * (size_t)k->C;
  nl_layernorm_rows(k->out + off, k->mean ? k->mean + r0 : NULL, k->rstd ? k->rstd + r0 : NULL,
                    k->inp + off, k->w, k->b, r1 - r0, k->C, k->eps);
}

void nl_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C, float eps) {
  fwd_ctx k = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .w = w, .b = b, .eps = eps,
               .C = C};
  nl_rows_run(ln_rows, &k, (size_t)N, (size_t)C, 0, NULL);
}

static void dyt_rows(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const fwd_ctx *k = p;
  const size_t off = r0 * (size_t)k->C;
  nl_dyt_rows(k->out + off, k->inp + off, k->alpha, k->w, k->b, r1 - r0, k->C);
}

void nl_dyt_forward(float *out, const float *inp, float alpha, const float *w, const float *b,
                    int N, int C) {
  fwd_ctx k = {.out = out, .inp = inp, .alpha = alpha, .w = w, .b = b, .C = C};
  nl_rows_run(dyt_rows, &k, (size_t)N, (size_t)C, 0, NULL);
}

static void pw_rows(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const fwd_ctx *k = p;
  const size_t off = r0 * (size_t)k->C;
  nl_affine_rows(k->out + off, k->inp + off, k->w, k->b, r1 - r0, k->C);
}

void nl_pwnorm_forward(float *out, const float *fx, const float *w, const float *b, int N,
                       int C) {
  fwd_ctx k = {.out = out, .inp = fx, .w = w, .b = b, .C = C};
  nl_rows_run(pw_rows, &k, (size_t)N, (size_t)C, 0, NULL);
}

static void gelu_rows(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const fwd_ctx *k = p;
  nl_gelu(k->out + r0, k->inp + r0, r1 - r0);
}

void nl_gelu_forward(float *out, const float *inp, size_t n) {
  fwd_ctx k = {.out = out, .inp = inp};
  nl_rows_run(gelu_rows, &k, n, 1, 0, NULL);
}

/* ---- attention: one GEMM pair and a softmax per (image, head); q, k, v
 * are read in place from qkv with leading dimension 3*C ---- */

typedef struct {
  float *out, *att;
  const float *qkv;
  int T, C, NH, hd;
  float scale;
} att_job;

static void att_task(size_t i, int worker, void *user) {
  (void)worker;
  const att_job *j = user;
  const int T = j->T, C = j->C, hd = j->hd, b = (int)(i / j->NH), h = (int)(i % j->NH);
  const int ld = 3 * C;
  const float *q = j->qkv + (size_t)b * T * ld + (size_t)h * hd;
  const float *k = q + C, *v = q + 2 * C;
  float *P = j->att + i * (size_t)T * T;
  nl_sgemm(0, 1, T, T, hd, j->scale, q, ld, k, ld, 0.0f, P, T);
  nl_softmax_rows(P, (size_t)T, T, 1.0f);
  nl_sgemm(0, 0, T, hd, T, 1.0f, P, T, v, ld, 0.0f, j->out + (size_t)b * T * C + (size_t)h * hd, C);
}

void nl_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C,
                          int NH) {
  att_job j = {.out = out, .att = att, .qkv = qkv, .T = T, .C = C, .NH = NH, .hd = C / NH};
  j.scale = (float)(1.0 / sqrt((double)j.hd));
  nl_parallel_for((size_t)B * NH, att_task, &j);
}

/* ---- residual, layer scale ---- */

NL_VKERNEL void nl_residual_forward(float *out, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

NL_VKERNEL void nl_layerscale_forward(float *out, const float *inp, const float *gamma, int N,
                                      int C) {
  for (int i = 0; i < N; i++) {
    const float *x = inp + (size_t)i * C;
    float *y = out + (size_t)i * C;
    for (int c = 0; c < C; c++) y[c] = x[c] * gamma[c];
  }
}

/* ---- patch embedding, tokens, pooling ---- */

void nl_im2col(float *patches, const float *img, int B, int CI, int H, int W, int P) {
  const int GH = H / P, GW = W / P, K = CI * P * P;
  for (int b = 0; b < B; b++)
    for (int py = 0; py < GH; py++)
      for (int px = 0; px < GW; px++) {
        float *row = patches + ((size_t)b * GH * GW + (size_t)py * GW + px) * K;
        for (int c = 0; c < CI; c++)
          for (int ky = 0; ky < P; ky++) {
            const float *src = img + (((size_t)b * CI + c) * H + (size_t)py * P + ky) * W +
                               (size_t)px * P;
            memcpy(row + (c * P + ky) * P, src, (size_t)P * sizeof(float));
          }
      }
}

void nl_tokens_forward(float *x, const float *patch, const float *cls, const float *pos, int B,
                       int NP, int D) {
  const int pre = cls ? 1 : 0, T = NP + pre;
  for (int b = 0; b < B; b++) {
    float *xb = x + (size_t)b * T * D;
    if (cls)
      for (int d = 0; d < D; d++) xb[d] = cls[d] + pos[d];
    for (int t = 0; t < NP; t++) {
      const float *p = patch + ((size_t)b * NP + t) * D;
      const float *q = pos + (size_t)(t + pre) * D;
      float *y = xb + (size_t)(t + pre) * D;
      for (int d = 0; d < D; d++) y[d] = p[d] + q[d];
    }
  }
}

void nl_pool_forward(float *out, const float *x, nl_pool pool, int prefix, int B, int T, int C) {
  for (int b = 0; b < B; b++) {
    const float *xb = x + (size_t)b * T * C;
    float *y = out + (size_t)b * C;
    if (pool == NL_POOL_TOKEN) {
      memcpy(y, xb, (size_t)C * sizeof(float));
      continue;
    }
    for (int c = 0; c < C; c++) y[c] = 0.0f;
    for (int t = prefix; t < T; t++) {
      const float *r = xb + (size_t)t * C;
      for (int c = 0; c < C; c++) y[c] += r[c];
    }
    const float inv = 1.0f / (float)(T - prefix);
    for (int c = 0; c < C; c++) y[c] *= inv;
  }
}
