/* Backward halves of the ViT layers (linear, LayerNorm, DyT, point-wise
 * norm affine, GELU, residual, layer scale, tokens, pooling) and drop path.
 * Attention's is in attention.c; the forward halves are in
 * tensor/layers.c. See layers.h for shapes and conventions. */
/* The element-wise loops here are meant to vectorise: the vectoriser is on
 * for this file, and the row kernels are NL_VKERNEL (O3 without trapping
 * math, so that selects become blends; NaN values still propagate; one
 * clone per instruction set). */
#pragma GCC optimize("tree-vectorize", "no-trapping-math")

#include "train/layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/vmath.h"

/* add acc[0 .. n) into dst (if dst) */
static void scatter_add(float *dst, const float *acc, int n) {
  if (dst)
    for (int k = 0; k < n; k++) dst[k] += acc[k];
}

typedef struct {
  float *dinp;
  const float *inp, *w, *dout, *fx, *dfx, *cmean, *crstd;
  float alpha;
  int C;
} lay_ctx;

/* ---- linear ---- */

NL_VKERNEL static void colsum_kern(void *p, size_t r0, size_t r1, float *acc) {
  const lay_ctx *c = p;
  const int C = c->C;
  for (size_t i = r0; i < r1; i++) {
    const float *d = c->dout + i * C;
    for (int o = 0; o < C; o++) acc[o] += d[o];
  }
}

/* dinp in tiles of nl_gemm_row_tile(N) rows, dw in tiles of 64 output
 * channels, each entry summing over all N rows in one call; the input
 * channels of dw are halved (down to 32) until there are at least 16
 * tiles, so that small layers still give every worker a share. */
#define GEMM_OC 64

static int dw_col_tile(int OC, int IC) {
  const int nrb = (OC + GEMM_OC - 1) / GEMM_OC;
  int ncb = 1;
  while (nrb * ncb < 16 && IC / (2 * ncb) >= 32) ncb *= 2;
  const int cb = (IC + ncb - 1) / ncb;
  return (cb + 31) / 32 * 32;
}

/* beta 1: dinp accumulates; 0: dinp is overwritten. bf16: the products'
 * operands rounded to bfloat16 (nl_gemm_tiles_bf16), on the same tiles. */
static void linear_backward(float *dinp, float beta, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int N, int IC, int OC, int bf16) {
  void (*gemm)(int, int, int, int, int, float, const float *, int, const float *, int, float,
               float *, int, const float *, int, int) = bf16 ? nl_gemm_tiles_bf16 : nl_gemm_tiles;
  if (dinp) /* dinp[N, IC] (+)= dout[N, OC] w[OC, IC] */
    gemm(0, 0, N, IC, OC, 1.0f, dout, OC, w, IC, beta, dinp, IC, NULL, nl_gemm_row_tile(N), IC);
  if (dw) /* dw[OC, IC] += dout^T inp */
    gemm(1, 0, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC, NULL, GEMM_OC,
         dw_col_tile(OC, IC));
  if (db) {
    float *acc = nl_xcalloc((size_t)OC, sizeof(float));
    lay_ctx c = {.dout = dout, .C = OC};
    nl_rows_run(colsum_kern, &c, (size_t)N, (size_t)OC, OC, acc);
    scatter_add(db, acc, OC);
    free(acc);
  }
}

void nl_tr_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, int N, int IC, int OC) {
  linear_backward(dinp, 1.0f, dw, db, dout, inp, w, N, IC, OC, 0);
}

void nl_tr_linear_backward_set(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, int N, int IC, int OC) {
  linear_backward(dinp, 0.0f, dw, db, dout, inp, w, N, IC, OC, 0);
}

void nl_tr_linear_backward_prec(float *dinp, int set, float *dw, float *db, const float *dout,
                                const float *inp, const float *w, int N, int IC, int OC,
                                int bf16) {
  linear_backward(dinp, set ? 0.0f : 1.0f, dw, db, dout, inp, w, N, IC, OC, bf16);
}

/* ---- LayerNorm ---- */

/* acc = [dw (C) | db (C)] */
NL_VKERNEL static void ln_bwd_kern(void *p, size_t r0, size_t r1, float *acc) {
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
  nl_rows_run(ln_bwd_kern, &k, (size_t)N, (size_t)C, 2 * C, acc);
  scatter_add(dw, acc, C);
  scatter_add(db, acc + C, C);
  free(acc);
}

/* ---- DyT ---- */

/* acc = [dw (C) | db (C) | dalpha per column (C)]. tanh is computed into a
 * small block first so that both loops vectorise. */
NL_VKERNEL static void dyt_bwd_kern(void *p, size_t r0, size_t r1, float *acc) {
  const lay_ctx *k = p;
  const int C = k->C;
  const float alpha = k->alpha;
  float t[256];
  for (size_t i = r0; i < r1; i++) {
    for (int c0 = 0; c0 < C; c0 += 256) {
      const int n = C - c0 < 256 ? C - c0 : 256;
      const float *x = k->inp + i * C + c0, *dy = k->dout + i * C + c0, *w = k->w + c0;
      float *dw = acc + c0, *db = acc + C + c0, *da = acc + 2 * C + c0;
      for (int c = 0; c < n; c++) t[c] = nl_vm_tanh(alpha * x[c]);
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
  nl_rows_run(dyt_bwd_kern, &k, (size_t)N, (size_t)C, 3 * C, acc);
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

/* acc = [dw (C) | db (C)] */
NL_VKERNEL static void pw_bwd_kern(void *p, size_t r0, size_t r1, float *acc) {
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
  nl_rows_run(pw_bwd_kern, &k, (size_t)N, (size_t)C, 2 * C, acc);
  scatter_add(dw, acc, C);
  scatter_add(db, acc + C, C);
  free(acc);
}

/* ---- expression constants ---- */

typedef struct {
  const float *dout, *inp, *w;
  const nl_prog *prog;
  int C, K;
} cgrad_ctx;

/* acc[k] += sum over rows [r0, r1) of dout * w * df/dc_k, in sub-chunks of
 * NL_EVAL_CHUNK elements, summed in double. */
static void cgrad_kern(void *p, size_t r0, size_t r1, float *acc) {
  const cgrad_ctx *k = p;
  const int C = k->C, K = k->K;
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, k->prog->len);
  float *jac = nl_xmalloc(sizeof(float) * (size_t)K * NL_EVAL_CHUNK);
  double *sum = nl_xcalloc((size_t)K, sizeof(double));
  const size_t e1 = r1 * (size_t)C;
  for (size_t e0 = r0 * (size_t)C; e0 < e1; e0 += NL_EVAL_CHUNK) {
    size_t n = e1 - e0 < NL_EVAL_CHUNK ? e1 - e0 : NL_EVAL_CHUNK;
    nl_eval_jac(k->prog, k->inp + e0, NULL, jac, n, &ws);
    for (int c = 0; c < K; c++) {
      const float *jc = jac + (size_t)c * n;
      double s = 0.0;
      for (size_t i = 0; i < n; i++) s += (double)(k->dout[e0 + i] * k->w[(e0 + i) % C] * jc[i]);
      sum[c] += s;
    }
  }
  for (int c = 0; c < K; c++) acc[c] += (float)sum[c];
  free(sum);
  free(jac);
  nl_eval_ws_free(&ws);
}

void nl_tr_exprnorm_const_backward(float *dc, const float *dout, const float *inp,
                                   const nl_prog *prog, const float *w, int N, int C) {
  int K = nl_prog_nconst(prog);
  if (K == 0 || N <= 0) return;
  cgrad_ctx k = {dout, inp, w, prog, C, K};
  float *acc = nl_xcalloc((size_t)K, sizeof(float));
  nl_rows_run(cgrad_kern, &k, (size_t)N, (size_t)C, K, acc);
  scatter_add(dc, acc, K);
  free(acc);
}

/* ---- GELU (exact, erf) ---- */

NL_VKERNEL static void gelu_bwd_kern(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const lay_ctx *k = p;
  const float s = 0.70710678118654752f, c = 0.39894228040143268f; /* 1/sqrt(2 pi) */
  const float *in = k->inp, *dout = k->dout;
  float *dinp = k->dinp;
  for (size_t i = r0; i < r1; i++) {
    float x = in[i];
    float e = nl_vm_exp(-0.5f * x * x);
    float cdf = 0.5f * (1.0f + nl_vm_erf(x * s));
    dinp[i] += dout[i] * (cdf + x * c * e);
  }
}

/* Overwriting form with the forward's output g = x Phi(x): Phi(x) = g / x
 * (1/2 at 0), so that only phi(x) needs an exp; no erf. */
NL_VKERNEL static void gelu_bwd_set_kern(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const lay_ctx *k = p;
  const float c = 0.39894228040143268f; /* 1/sqrt(2 pi) */
  const float *in = k->inp, *dout = k->dout, *g = k->fx;
  float *dinp = k->dinp;
  for (size_t i = r0; i < r1; i++) {
    float x = in[i];
    float e = nl_vm_exp(-0.5f * x * x);
    float cdf = x != 0.0f ? g[i] / x : 0.5f;
    dinp[i] = dout[i] * (cdf + x * c * e);
  }
}

void nl_tr_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
  lay_ctx k = {.dinp = dinp, .dout = dout, .inp = inp};
  nl_rows_run(gelu_bwd_kern, &k, n, 1, 0, NULL);
}

void nl_tr_gelu_backward_set(float *dinp, const float *dout, const float *inp, const float *out,
                             size_t n) {
  lay_ctx k = {.dinp = dinp, .dout = dout, .inp = inp, .fx = out};
  nl_rows_run(gelu_bwd_set_kern, &k, n, 1, 0, NULL);
}

/* ---- residual ---- */

void nl_tr_residual_backward(float *da, float *db, const float *dout, size_t n) {
  if (da)
    for (size_t i = 0; i < n; i++) da[i] += dout[i];
  if (db)
    for (size_t i = 0; i < n; i++) db[i] += dout[i];
}

/* ---- layer scale ---- */

/* acc = [dgamma (C)] */
NL_VKERNEL static void ls_bwd_kern(void *p, size_t r0, size_t r1, float *acc) {
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
  nl_rows_run(ls_bwd_kern, &k, (size_t)N, (size_t)C, C, acc);
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

void nl_tr_droppath_backward_set(float *dinp, const float *dout, const float *scale, int B,
                                 size_t per) {
  for (int b = 0; b < B; b++) {
    const float s = scale[b];
    const float *dy = dout + (size_t)b * per;
    float *dx = dinp + (size_t)b * per;
    if (s == 0.0f)
      memset(dx, 0, per * sizeof(float));
    else
      for (size_t i = 0; i < per; i++) dx[i] = dy[i] * s;
  }
}

/* ---- tokens ---- */

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

void nl_tr_pool_backward(float *dx, const float *dout, nl_pool pool, int prefix, int B,
                         int T, int C) {
  for (int b = 0; b < B; b++) {
    float *g = dx + (size_t)b * T * C;
    const float *dy = dout + (size_t)b * C;
    if (pool == NL_POOL_TOKEN) {
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
