/* Training layers: linear, LayerNorm, DyT, point-wise norm affine, GELU,
 * residual, layer scale, drop path, patch embedding, tokens, pooling.
 * Attention is in attention.c. See layers.h for shapes and conventions. */
#include "train/layers.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ---- linear ---- */

void nl_tr_linear_forward(float *out, const float *inp, const float *w, const float *b,
                          int N, int IC, int OC) {
  if (b) {
    for (int i = 0; i < N; i++) memcpy(out + (size_t)i * OC, b, (size_t)OC * sizeof(float));
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC,
              b ? 1.0f : 0.0f, out, OC);
}

void nl_tr_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, int N, int IC, int OC) {
  if (dinp)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w, IC,
                1.0f, dinp, IC);
  if (dw)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC,
                1.0f, dw, IC);
  if (db) {
    for (int i = 0; i < N; i++) {
      const float *d = dout + (size_t)i * OC;
      for (int o = 0; o < OC; o++) db[o] += d[o];
    }
  }
}

/* ---- LayerNorm ---- */

void nl_tr_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                             const float *w, const float *b, int N, int C, float eps) {
  for (int i = 0; i < N; i++) {
    const float *x = inp + (size_t)i * C;
    float *y = out + (size_t)i * C;
    double s = 0.0;
    for (int c = 0; c < C; c++) s += x[c];
    float m = (float)(s / C);
    double v = 0.0;
    for (int c = 0; c < C; c++) {
      float d = x[c] - m;
      v += (double)d * d;
    }
    float r = (float)(1.0 / sqrt(v / C + eps));
    for (int c = 0; c < C; c++) y[c] = (x[c] - m) * r * w[c] + b[c];
    mean[i] = m;
    rstd[i] = r;
  }
}

void nl_tr_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, const float *mean,
                              const float *rstd, int N, int C) {
  for (int i = 0; i < N; i++) {
    const float *x = inp + (size_t)i * C;
    const float *dy = dout + (size_t)i * C;
    const float m = mean[i], r = rstd[i];
    if (dw || db) {
      for (int c = 0; c < C; c++) {
        float xh = (x[c] - m) * r;
        if (dw) dw[c] += dy[c] * xh;
        if (db) db[c] += dy[c];
      }
    }
    if (!dinp) continue;
    /* dx = r * (g - mean(g) - xh * mean(g * xh)), g = dy * w */
    float sg = 0.0f, sgx = 0.0f;
    for (int c = 0; c < C; c++) {
      float g = dy[c] * w[c];
      sg += g;
      sgx += g * (x[c] - m) * r;
    }
    sg /= (float)C;
    sgx /= (float)C;
    float *dx = dinp + (size_t)i * C;
    for (int c = 0; c < C; c++) {
      float xh = (x[c] - m) * r;
      dx[c] += r * (dy[c] * w[c] - sg - xh * sgx);
    }
  }
}

/* ---- DyT ---- */

void nl_tr_dyt_forward(float *out, const float *inp, float alpha, const float *w,
                       const float *b, int N, int C) {
  for (int i = 0; i < N; i++) {
    const float *x = inp + (size_t)i * C;
    float *y = out + (size_t)i * C;
    for (int c = 0; c < C; c++) y[c] = tanhf(alpha * x[c]) * w[c] + b[c];
  }
}

void nl_tr_dyt_backward(float *dinp, float *dalpha, float *dw, float *db, const float *dout,
                        const float *inp, float alpha, const float *w, int N, int C) {
  double da = 0.0;
  for (int i = 0; i < N; i++) {
    const float *x = inp + (size_t)i * C;
    const float *dy = dout + (size_t)i * C;
    float *dx = dinp ? dinp + (size_t)i * C : NULL;
    float sa = 0.0f;
    for (int c = 0; c < C; c++) {
      float t = tanhf(alpha * x[c]);
      float g = dy[c] * w[c] * (1.0f - t * t);
      sa += g * x[c];
      if (dx) dx[c] += g * alpha;
      if (dw) dw[c] += dy[c] * t;
      if (db) db[c] += dy[c];
    }
    da += sa;
  }
  if (dalpha) dalpha[0] += (float)da;
}

/* ---- point-wise norm affine ---- */

void nl_tr_pwnorm_forward(float *out, const float *fx, const float *w, const float *b,
                          int N, int C) {
  for (int i = 0; i < N; i++) {
    const float *f = fx + (size_t)i * C;
    float *y = out + (size_t)i * C;
    for (int c = 0; c < C; c++) y[c] = f[c] * w[c] + b[c];
  }
}

void nl_tr_pwnorm_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *fx, const float *dfx, const float *w, int N, int C) {
  for (int i = 0; i < N; i++) {
    size_t o = (size_t)i * C;
    const float *dy = dout + o;
    if (dinp) {
      float *dx = dinp + o;
      const float *fp = dfx + o;
      for (int c = 0; c < C; c++) dx[c] += dy[c] * w[c] * fp[c];
    }
    if (dw) {
      const float *f = fx + o;
      for (int c = 0; c < C; c++) dw[c] += dy[c] * f[c];
    }
    if (db)
      for (int c = 0; c < C; c++) db[c] += dy[c];
  }
}

/* ---- GELU (exact, erf) ---- */

void nl_tr_gelu_forward(float *out, const float *inp, size_t n) {
  const float s = 0.70710678118654752f;
  for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * s));
}

void nl_tr_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
  const float s = 0.70710678118654752f, k = 0.39894228040143268f; /* 1/sqrt(2 pi) */
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float cdf = 0.5f * (1.0f + erff(x * s));
    float pdf = k * expf(-0.5f * x * x);
    dinp[i] += dout[i] * (cdf + x * pdf);
  }
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

void nl_tr_layerscale_backward(float *dinp, float *dgamma, const float *dout,
                               const float *inp, const float *gamma, int N, int C) {
  for (int i = 0; i < N; i++) {
    size_t o = (size_t)i * C;
    const float *dy = dout + o;
    if (dinp) {
      float *dx = dinp + o;
      for (int c = 0; c < C; c++) dx[c] += dy[c] * gamma[c];
    }
    if (dgamma) {
      const float *x = inp + o;
      for (int c = 0; c < C; c++) dgamma[c] += dy[c] * x[c];
    }
  }
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
