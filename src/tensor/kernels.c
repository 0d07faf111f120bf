/* Element-wise kernels are branch-free loops the compiler vectorises (O3;
 * no-trapping-math lets it if-convert the selects, NaNs still propagate);
 * an AVX2 clone is chosen at run time where the CPU has it. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif
#include "tensor/kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NL_VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#elif defined(__clang__) && defined(__x86_64__)
#define NL_VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NL_VEC_CLONES
#endif

void nl_linear(float *out, const float *x, const float *w, const float *b, int m, int k, int n) {
  float beta = 0.0f;
  if (b) {
    for (int i = 0; i < m; i++) memcpy(out + (size_t)i * n, b, sizeof(float) * (size_t)n);
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, beta, out, n);
}

static inline float bits_f(unsigned u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline int f_bits(float f) {
  int u;
  memcpy(&u, &f, 4);
  return u;
}

/* exp(x) for x clamped to [-87, 88]: 2^k * e^r, |r| <= ln2/2, Taylor to r^7.
 * NaN stays NaN (comparisons are false for NaN). */
static inline float exp_core(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float magic = 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
  float kf = x * 1.44269504088896341f + magic;
  int ki = f_bits(kf) - f_bits(magic);
  kf -= magic;
  float r = x - kf * 0.693145751953125f;
  r = r - kf * 1.428606765330187045e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * bits_f((unsigned)(ki + 127) << 23);
}

/* erf through the Chebyshev fit of erfc (fractional error < 1.2e-7). */
static inline float erf_core(float x) {
  float z = fabsf(x);
  float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  float erfc = t * exp_core(-z * z + p);
  float r = 1.0f - erfc;
  return x < 0.0f ? -r : r;
}

static inline float tanh_core(float x) {
  float z = fabsf(x);
  float e = exp_core(2.0f * z);
  float r = 1.0f - 2.0f / (e + 1.0f);
  /* small |x|: odd Taylor polynomial avoids the cancellation */
  float z2 = z * z;
  float s = z * (1.0f + z2 * (-1.0f / 3.0f + z2 * (2.0f / 15.0f + z2 * (-17.0f / 315.0f))));
  r = z < 0.0625f ? s : r;
  r = z != z ? x : r;
  return x < 0.0f ? -r : r;
}

NL_VEC_CLONES void nl_vexp(float *out, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = exp_core(x[i]);
}

NL_VEC_CLONES void nl_verf(float *out, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = erf_core(x[i]);
}

NL_VEC_CLONES void nl_vtanh(float *out, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = tanh_core(x[i]);
}

NL_VEC_CLONES void nl_gelu(float *out, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    out[i] = 0.5f * v * (1.0f + erf_core(v * 0.70710678118654752f));
  }
}

NL_VEC_CLONES void nl_dyt_rows(float *out, const float *x, float alpha, const float *w,
                               const float *b, size_t rows, int d) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * (size_t)d;
    float *o = out + r * (size_t)d;
    for (int j = 0; j < d; j++) o[j] = tanh_core(alpha * xr[j]) * w[j] + b[j];
  }
}

NL_VEC_CLONES void nl_layernorm_rows(float *out, float *mean, float *rstd, const float *x,
                                     const float *w, const float *b, size_t rows, int d,
                                     float eps) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * (size_t)d;
    float *o = out + r * (size_t)d;
    float s = 0.0f;
    for (int j = 0; j < d; j++) s += xr[j];
    float m = s / (float)d;
    float v = 0.0f;
    for (int j = 0; j < d; j++) {
      float c = xr[j] - m;
      v += c * c;
    }
    v /= (float)d;
    float rs = 1.0f / sqrtf(v + eps);
    for (int j = 0; j < d; j++) o[j] = (xr[j] - m) * rs * w[j] + b[j];
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = rs;
  }
}

NL_VEC_CLONES void nl_softmax_rows(float *x, size_t rows, int n, float scale) {
  for (size_t r = 0; r < rows; r++) {
    float *xr = x + r * (size_t)n;
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
      xr[j] *= scale;
      mx = xr[j] > mx ? xr[j] : mx;
    }
    float s = 0.0f;
    for (int j = 0; j < n; j++) {
      xr[j] = exp_core(xr[j] - mx);
      s += xr[j];
    }
    float inv = 1.0f / s;
    for (int j = 0; j < n; j++) xr[j] *= inv;
  }
}
