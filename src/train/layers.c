/* Training layers: linear, LayerNorm, DyT, point-wise norm affine, GELU,
 * residual, layer scale, drop path, patch embedding, tokens, pooling.
 * Attention is in attention.c. See layers.h for shapes and conventions. */
/* The element-wise loops here are meant to vectorise: the vectoriser is on
 * for this file, and trapping math off so that the selects in fastmath.h
 * become blends (NaN values still propagate; nothing assumes finite math). */
#pragma GCC optimize("tree-vectorize", "no-trapping-math")

#include "train/layers.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "train/fastmath.h"

/* ---- row-parallel driver ----
 * Element-wise layers run over fixed chunks of rows: the chunk size depends
 * only on the problem's shape (row width and row count), and column reductions (dw, db, ...) are summed per
 * chunk and then added in chunk order, so results are the same for any
 * thread count. Small problems run as one chunk on the calling thread. */
#define ROWS_CHUNK_ELEMS 16384
#define ROWS_PAR_MIN 65536
#define ROWS_MAX_CHUNKS 64

typedef void (*rows_kernel)(void *ctx, size_t r0, size_t r1, float *acc);

typedef struct {
  rows_kernel kern;
  void *ctx;
  size_t N, chunk;
  int nacc;
  float *part;
} rows_job;

static void rows_task(size_t i, int worker, void *user) {
  (void)worker;
  const rows_job *j = user;
  size_t r0 = i * j->chunk, r1 = r0 + j->chunk < j->N ? r0 + j->chunk : j->N;
  j->kern(j->ctx, r0, r1, j->nacc ? j->part + i * (size_t)j->nacc : NULL);
}

/* Run kern over rows [0, N) of width C; its `acc` outputs (nacc floats,
 * starting at zero) are summed over chunks into acc (not cleared). */
static void run_rows(rows_kernel kern, void *ctx, size_t N, size_t C, int nacc, float *acc) {
  size_t chunk = N;
  if (N * C >= ROWS_PAR_MIN) {
    chunk = ROWS_CHUNK_ELEMS / (C ? C : 1);
    if (chunk < 1) chunk = 1;
    /* at most ROWS_MAX_CHUNKS chunks, bounding the partial sums' memory */
    if (chunk < (N + ROWS_MAX_CHUNKS - 1) / ROWS_MAX_CHUNKS)
      chunk = (N + ROWS_MAX_CHUNKS - 1) / ROWS_MAX_CHUNKS;
  }
  size_t nch = (N + chunk - 1) / chunk;
  if (nch == 0) return;
  float *part = nacc ? nl_xcalloc(nch * (size_t)nacc, sizeof(float)) : NULL;
  rows_job j = {kern, ctx, N, chunk, nacc, part};
  if (nch == 1)
    rows_task(0, 0, &j);
  else
    nl_parallel_for(nch, rows_task, &j);
  for (size_t i = 0; i < nch; i++)
    for (int k = 0; k < nacc; k++) acc[k] += part[i * (size_t)nacc + k];
  free(part);
}

/* add acc[off .. off+n) into dst (if dst) */
static void scatter_add(float *dst, const float *acc, int n) {
  if (dst)
    for (int k = 0; k < n; k++) dst[k] += acc[k];
}

typedef struct {
  float *out, *mean, *rstd, *dinp;
  const float *inp, *w, *b, *dout, *fx, *dfx, *cmean, *crstd;
  float alpha, eps;
  int C;
} lay_ctx;

/* ---- linear ---- */

static void colsum_kern(void *p, size_t r0, size_t r1, float *acc) {
  const lay_ctx *c = p;
  const int C = c->C;
  for (size_t i = r0; i < r1; i++) {
    const float *d = c->dout + i * C;
    for (int o = 0; o < C; o++) acc[o] += d[o];
  }
}

/* The three products of a linear layer run as single-threaded sgemm calls
 * on fixed blocks, handed out over nl_parallel_for: rows of out / dinp in
 * blocks of GEMM_ROWS, rows of dw (output channels) in blocks of GEMM_OC,
 * each dw entry summing over all N rows in one call. The blocks depend on
 * the shapes only, so every output element is computed by the same
 * single-threaded call whatever the thread count: bitwise the same result
 * (OpenBLAS's own threading may split a product differently). Small
 * products run as one block. */
#define GEMM_ROWS 256
#define GEMM_OC 64
#define GEMM_PAR_MIN (1 << 18) /* multiply-adds below which one call is made */

typedef struct {
  int which; /* 0 forward, 1 dinp, 2 dw */
  int blk;   /* rows (0, 1) or output channels (2) per block */
  float *out;
  const float *a, *w, *b;
  int N, IC, OC;
} gemm_job;

static void gemm_task(size_t i, int worker, void *user) {
  (void)worker;
  const gemm_job *j = user;
  const int lim = j->which == 2 ? j->OC : j->N;
  const int r0 = (int)i * j->blk, r1 = r0 + j->blk < lim ? r0 + j->blk : lim;
  if (j->which == 0) { /* out[r0:r1] = inp[r0:r1] w^T (+ b) */
    if (j->b)
      for (int r = r0; r < r1; r++)
        memcpy(j->out + (size_t)r * j->OC, j->b, (size_t)j->OC * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, j->OC, j->IC, 1.0f,
                j->a + (size_t)r0 * j->IC, j->IC, j->w, j->IC, j->b ? 1.0f : 0.0f,
                j->out + (size_t)r0 * j->OC, j->OC);
  } else if (j->which == 1) { /* dinp[r0:r1] += dout[r0:r1] w */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, j->IC, j->OC, 1.0f,
                j->a + (size_t)r0 * j->OC, j->OC, j->w, j->IC, 1.0f,
                j->out + (size_t)r0 * j->IC, j->IC);
  } else { /* dw[r0:r1] += dout[:, r0:r1]^T inp */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, j->IC, j->N, 1.0f, j->a + r0,
                j->OC, j->w, j->IC, 1.0f, j->out + (size_t)r0 * j->IC, j->IC);
  }
}

/* Always inside nl_parallel_for, so BLAS is single-threaded in every call;
 * a small product is one block. */
static void gemm_run(gemm_job *j) {
  const int lim = j->which == 2 ? j->OC : j->N;
  const double madds = (double)j->N * j->IC * j->OC;
  j->blk = madds < GEMM_PAR_MIN ? lim : j->which == 2 ? GEMM_OC : GEMM_ROWS;
  if (j->blk < 1) j->blk = 1;
  nl_parallel_for((size_t)(lim + j->blk - 1) / (size_t)j->blk, gemm_task, j);
}

void nl_tr_linear_forward(float *out, const float *inp, const float *w, const float *b,
                          int N, int IC, int OC) {
  gemm_job j = {0, 0, out, inp, w, b, N, IC, OC};
  gemm_run(&j);
}

void nl_tr_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, int N, int IC, int OC) {
  if (dinp) {
    gemm_job j = {1, 0, dinp, dout, w, NULL, N, IC, OC};
    gemm_run(&j);
  }
  if (dw) {
    gemm_job j = {2, 0, dw, dout, inp, NULL, N, IC, OC};
    gemm_run(&j);
  }
  if (db) {
    float *acc = nl_xcalloc((size_t)OC, sizeof(float));
    lay_ctx c = {.dout = dout, .C = OC};
    run_rows(colsum_kern, &c, (size_t)N, (size_t)OC, OC, acc);
    scatter_add(db, acc, OC);
    free(acc);
  }
}

/* ---- LayerNorm ---- */

static void ln_fwd_kern(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const lay_ctx *k = p;
  const int C = k->C;
  const float *w = k->w, *b = k->b;
  for (size_t i = r0; i < r1; i++) {
    const float *x = k->inp + i * C;
    float *y = k->out + i * C;
    double s = 0.0;
    for (int c = 0; c < C; c++) s += x[c];
    float m = (float)(s / C);
    double v = 0.0;
    for (int c = 0; c < C; c++) {
      float d = x[c] - m;
      v += (double)d * d;
    }
    float r = (float)(1.0 / sqrt(v / C + k->eps));
    for (int c = 0; c < C; c++) y[c] = (x[c] - m) * r * w[c] + b[c];
    k->mean[i] = m;
    k->rstd[i] = r;
  }
}

void nl_tr_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                             const float *w, const float *b, int N, int C, float eps) {
  lay_ctx k = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .w = w, .b = b, .eps = eps,
               .C = C};
  run_rows(ln_fwd_kern, &k, (size_t)N, (size_t)C, 0, NULL);
}

/* acc = [dw (C) | db (C)] */
static void ln_bwd_kern(void *p, size_t r0, size_t r1, float *acc) {
  const lay_ctx *k = p;
  const int C = k->C;
  const float *w = k->w;
  float *dw = acc, *db = acc + C;
  for (size_t i = r0; i < r1; i++) {
    const float *x = k->inp + i * C;
    const float *dy = k->dout + i * C;
    const float m = k->cmean[i], r = k->crstd[i];
    for (int c = 0; c < C; c++) {
      dw[c] += dy[c] * (x[c] - m) * r;
      db[c] += dy[c];
    }
    if (!k->dinp) continue;
    /* dx = r * (g - mean(g) - xh * mean(g * xh)), g = dy * w */
    float sg = 0.0f, sgx = 0.0f;
    for (int c = 0; c < C; c++) {
      float g = dy[c] * w[c];
      sg += g;
      sgx += g * (x[c] - m) * r;
    }
    sg /= (float)C;
    sgx /= (float)C;
    float *dx = k->dinp + i * C;
    for (int c = 0; c < C; c++) dx[c] += r * (dy[c] * w[c] - sg - (x[c] - m) * r * sgx);
  }
}

void nl_tr_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, const float *mean,
                              const float *rstd, int N, int C) {
  lay_ctx k = {.dinp = dinp, .dout = dout, .inp = inp, .w = w, .cmean = mean, .crstd = rstd,
               .C = C};
  float *acc = nl_xcalloc(2 * (size_t)C, sizeof(float));
  run_rows(ln_bwd_kern, &k, (size_t)N, (size_t)C, 2 * C, acc);
  scatter_add(dw, acc, C);
  scatter_add(db, acc + C, C);
  free(acc);
}

/* ---- DyT ---- */

static void dyt_fwd_kern(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const lay_ctx *k = p;
  const int C = k->C;
  const float alpha = k->alpha, *w = k->w, *b = k->b;
  for (size_t i = r0; i < r1; i++) {
    const float *x = k->inp + i * C;
    float *y = k->out + i * C;
    for (int c = 0; c < C; c++) y[c] = nl_tr_tanhf(alpha * x[c]) * w[c] + b[c];
  }
}

void nl_tr_dyt_forward(float *out, const float *inp, float alpha, const float *w,
                       const float *b, int N, int C) {
  lay_ctx k = {.out = out, .inp = inp, .alpha = alpha, .w = w, .b = b, .C = C};
  run_rows(dyt_fwd_kern, &k, (size_t)N, (size_t)C, 0, NULL);
}

/* acc = [dw (C) | db (C) | dalpha per column (C)]. tanh is computed into a
 * small block first so that both loops vectorise. */
static void dyt_bwd_kern(void *p, size_t r0, size_t r1, float *acc) {
  const lay_ctx *k = p;
  const int C = k->C;
  const float alpha = k->alpha;
  float t[256];
  for (size_t i = r0; i < r1; i++) {
    for (int c0 = 0; c0 < C; c0 += 256) {
      const int n = C - c0 < 256 ? C - c0 : 256;
      const float *x = k->inp + i * C + c0, *dy = k->dout + i * C + c0, *w = k->w + c0;
      float *dw = acc + c0, *db = acc + C + c0, *da = acc + 2 * C + c0;
      for (int c = 0; c < n; c++) t[c] = nl_tr_tanhf(alpha * x[c]);
      for (int c = 0; c < n; c++) da[c] += dy[c] * w[c] * (1.0f - t[c] * t[c]) * x[c];
      for (int c = 0; c < n; c++) dw[c] += dy[c] * t[c];
      for (int c = 0; c < n; c++) db[c] += dy[c];
      if (k->dinp) {
        float *dx = k->dinp + i * C + c0;
        for (int c = 0; c < n; c++) dx[c] += dy[c] * w[c] * (1.0f - t[c] * t[c]) * alpha;
      }
    }
  }
}

void nl_tr_dyt_backward(float *dinp, float *dalpha, float *dw, float *db, const float *dout,
                        const float *inp, float alpha, const float *w, int N, int C) {
  lay_ctx k = {.dinp = dinp, .dout = dout, .inp = inp, .alpha = alpha, .w = w, .C = C};
  float *acc = nl_xcalloc(3 * (size_t)C, sizeof(float));
  run_rows(dyt_bwd_kern, &k, (size_t)N, (size_t)C, 3 * C, acc);
  scatter_add(dw, acc, C);
  scatter_add(db, acc + C, C);
  if (dalpha) {
    double sa = 0.0;
    for (int c = 0; c < C; c++) sa += acc[2 * C + c];
    dalpha[0] += (float)sa;
  }
  free(acc);
}

/* ---- point-wise norm affine ---- */

static void pw_fwd_kern(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const lay_ctx *k = p;
  const int C = k->C;
  const float *w = k->w, *b = k->b;
  for (size_t i = r0; i < r1; i++) {
    const float *f = k->fx + i * C;
    float *y = k->out + i * C;
    for (int c = 0; c < C; c++) y[c] = f[c] * w[c] + b[c];
  }
}

void nl_tr_pwnorm_forward(float *out, const float *fx, const float *w, const float *b,
                          int N, int C) {
  lay_ctx k = {.out = out, .fx = fx, .w = w, .b = b, .C = C};
  run_rows(pw_fwd_kern, &k, (size_t)N, (size_t)C, 0, NULL);
}

/* acc = [dw (C) | db (C)] */
static void pw_bwd_kern(void *p, size_t r0, size_t r1, float *acc) {
  const lay_ctx *k = p;
  const int C = k->C;
  const float *w = k->w;
  float *dw = acc, *db = acc + C;
  for (size_t i = r0; i < r1; i++) {
    const float *dy = k->dout + i * C, *f = k->fx + i * C;
    if (k->dinp) {
      float *dx = k->dinp + i * C;
      const float *fp = k->dfx + i * C;
      for (int c = 0; c < C; c++) dx[c] += dy[c] * w[c] * fp[c];
    }
    for (int c = 0; c < C; c++) {
      dw[c] += dy[c] * f[c];
      db[c] += dy[c];
    }
  }
}

void nl_tr_pwnorm_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *fx, const float *dfx, const float *w, int N, int C) {
  lay_ctx k = {.dinp = dinp, .dout = dout, .fx = fx, .dfx = dfx, .w = w, .C = C};
  float *acc = nl_xcalloc(2 * (size_t)C, sizeof(float));
  run_rows(pw_bwd_kern, &k, (size_t)N, (size_t)C, 2 * C, acc);
  scatter_add(dw, acc, C);
  scatter_add(db, acc + C, C);
  free(acc);
}

/* ---- GELU (exact, erf) ---- */

static void gelu_fwd_kern(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const lay_ctx *k = p;
  const float s = 0.70710678118654752f;
  const float *x = k->inp;
  float *y = k->out;
  for (size_t i = r0; i < r1; i++) {
    float v = x[i];
    y[i] = 0.5f * v * (1.0f + nl_tr_erff_e(v * s, nl_tr_expf(-0.5f * v * v)));
  }
}

void nl_tr_gelu_forward(float *out, const float *inp, size_t n) {
  lay_ctx k = {.out = out, .inp = inp};
  run_rows(gelu_fwd_kern, &k, n, 1, 0, NULL);
}

static void gelu_bwd_kern(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const lay_ctx *k = p;
  const float s = 0.70710678118654752f, c = 0.39894228040143268f; /* 1/sqrt(2 pi) */
  const float *in = k->inp, *dout = k->dout;
  float *dinp = k->dinp;
  for (size_t i = r0; i < r1; i++) {
    float x = in[i];
    float e = nl_tr_expf(-0.5f * x * x);
    float cdf = 0.5f * (1.0f + nl_tr_erff_e(x * s, e));
    dinp[i] += dout[i] * (cdf + x * c * e);
  }
}

void nl_tr_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
  lay_ctx k = {.dinp = dinp, .dout = dout, .inp = inp};
  run_rows(gelu_bwd_kern, &k, n, 1, 0, NULL);
}

/* ---- residual ---- */

void nl_tr_residual_forward(float *out, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void nl_tr_residual_backward(float *da, float *db, const float *dout, size_t n) {
  if (da)
    for (size_t i = 0; i < n; i++) da[i] += dout[i];
  if (db)
    for (size_t i = 0; i < n; i++) db[i] += dout[i];
}

/* ---- layer scale ---- */

void nl_tr_layerscale_forward(float *out, const float *inp, const float *gamma, int N, int C) {
  for (int i = 0; i < N; i++) {
    const float *x = inp + (size_t)i * C;
    float *y = out + (size_t)i * C;
    for (int c = 0; c < C; c++) y[c] = x[c] * gamma[c];
  }
}

/* acc = [dgamma (C)] */
static void ls_bwd_kern(void *p, size_t r0, size_t r1, float *acc) {
  const lay_ctx *k = p;
  const int C = k->C;
  const float *gamma = k->w;
  for (size_t i = r0; i < r1; i++) {
    const float *dy = k->dout + i * C, *x = k->inp + i * C;
    if (k->dinp) {
      float *dx = k->dinp + i * C;
      for (int c = 0; c < C; c++) dx[c] += dy[c] * gamma[c];
    }
    for (int c = 0; c < C; c++) acc[c] += dy[c] * x[c];
  }
}

void nl_tr_layerscale_backward(float *dinp, float *dgamma, const float *dout,
                               const float *inp, const float *gamma, int N, int C) {
  lay_ctx k = {.dinp = dinp, .dout = dout, .inp = inp, .w = gamma, .C = C};
  float *acc = nl_xcalloc((size_t)C, sizeof(float));
  run_rows(ls_bwd_kern, &k, (size_t)N, (size_t)C, C, acc);
  scatter_add(dgamma, acc, C);
  free(acc);
}

/* ---- drop path ---- */

void nl_tr_droppath_mask(float *scale, int B, float p, int training, nl_rng *rng) {
  if (!training || p <= 0.0f) {
    for (int b = 0; b < B; b++) scale[b] = 1.0f;
    return;
  }
  const double keep = 1.0 - (double)p;
  for (int b = 0; b < B; b++) scale[b] = nl_rng_uniform(rng) < keep ? (float)(1.0 / keep) : 0.0f;
}

float nl_tr_drop_path_rate(float drop_path_rate, int block, int depth) {
  if (depth <= 1) return 0.0f;
  return (float)((double)drop_path_rate * block / (depth - 1));
}

void nl_tr_droppath_forward(float *out, const float *inp, const float *scale, int B,
                            size_t per) {
  for (int b = 0; b < B; b++) {
    const float s = scale[b];
    const float *x = inp + (size_t)b * per;
    float *y = out + (size_t)b * per;
    for (size_t i = 0; i < per; i++) y[i] = x[i] * s;
  }
}

void nl_tr_droppath_backward(float *dinp, const float *dout, const float *scale, int B,
                             size_t per) {
  for (int b = 0; b < B; b++) {
    const float s = scale[b];
    if (s == 0.0f) continue;
    const float *dy = dout + (size_t)b * per;
    float *dx = dinp + (size_t)b * per;
    for (size_t i = 0; i < per; i++) dx[i] += dy[i] * s;
  }
}

/* ---- patch embedding ---- */

void nl_tr_im2col(float *patches, const float *img, int B, int CI, int H, int W, int P) {
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

/* ---- tokens ---- */

void nl_tr_tokens_forward(float *x, const float *patch, const float *cls, const float *pos,
                          int B, int NP, int D) {
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

void nl_tr_tokens_backward(float *dpatch, float *dcls, float *dpos, const float *dx,
                           const float *cls, int B, int NP, int D) {
  const int pre = cls ? 1 : 0, T = NP + pre;
  for (int b = 0; b < B; b++) {
    const float *g = dx + (size_t)b * T * D;
    if (dpos)
      for (size_t i = 0; i < (size_t)T * D; i++) dpos[i] += g[i];
    if (cls && dcls)
      for (int d = 0; d < D; d++) dcls[d] += g[d];
    if (dpatch) {
      float *dp = dpatch + (size_t)b * NP * D;
      const float *gp = g + (size_t)pre * D;
      for (size_t i = 0; i < (size_t)NP * D; i++) dp[i] += gp[i];
    }
  }
}

/* ---- pooling ---- */

void nl_tr_pool_forward(float *out, const float *x, nl_tr_pool pool, int prefix, int B, int T,
                        int C) {
  for (int b = 0; b < B; b++) {
    const float *xb = x + (size_t)b * T * C;
    float *y = out + (size_t)b * C;
    if (pool == NL_TR_POOL_TOKEN) {
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

void nl_tr_pool_backward(float *dx, const float *dout, nl_tr_pool pool, int prefix, int B,
                         int T, int C) {
  for (int b = 0; b < B; b++) {
    float *g = dx + (size_t)b * T * C;
    const float *dy = dout + (size_t)b * C;
    if (pool == NL_TR_POOL_TOKEN) {
      for (int c = 0; c < C; c++) g[c] += dy[c];
      continue;
    }
    const float inv = 1.0f / (float)(T - prefix);
    for (int t = prefix; t < T; t++) {
      float *r = g + (size_t)t * C;
      for (int c = 0; c < C; c++) r[c] += dy[c] * inv;
    }
  }
}
