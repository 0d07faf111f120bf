/* Element-wise kernels are branch-free loops the compiler vectorises
 * (NL_VKERNEL: O3, no-trapping-math so that selects become blends, NaNs
 * still propagate; one clone per instruction set). */
#include "tensor/kernels.h"

#include <math.h>

#include "base/vmath.h"

/* Partial sums for the row reductions: lane k sums elements k, k+16, ...;
 * the lanes are then added in order. */
#define LANES 16

NL_VMATH_INLINE float row_sum(const float *x, int d) {
  float acc[LANES] = {0};
  int j = 0;
  for (; j + LANES <= d; j += LANES)
    for (int k = 0; k < LANES; k++) acc[k] += x[j + k];
  for (int k = 0; j < d; j++, k++) acc[k] += x[j];
  float s = 0.0f;
  for (int k = 0; k < LANES; k++) s += acc[k];
  return s;
}

NL_VMATH_INLINE float row_sumsq(const float *x, float m, int d) {
  float acc[LANES] = {0};
  int j = 0;
  for (; j + LANES <= d; j += LANES)
    for (int k = 0; k < LANES; k++) {
      float c = x[j + k] - m;
      acc[k] += c * c;
    }
  for (int k = 0; j < d; j++, k++) {
    float c = x[j] - m;
    acc[k] += c * c;
  }
  float s = 0.0f;
  for (int k = 0; k < LANES; k++) s += acc[k];
  return s;
}

NL_VKERNEL void nl_layernorm_rows(float *out, float *mean, float *rstd, const float *x,
                                  const float *w, const float *b, size_t rows, int d,
                                  float eps) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * (size_t)d;
    float *o = out + r * (size_t)d;
    const float m = row_sum(xr, d) / (float)d;
    const float v = row_sumsq(xr, m, d) / (float)d;
    const float rs = 1.0f / sqrtf(v + eps);
    for (int j = 0; j < d; j++) o[j] = (xr[j] - m) * rs * w[j] + b[j];
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = rs;
  }
}

NL_VKERNEL void nl_dyt_rows(float *out, const float *x, float alpha, const float *w,
                            const float *b, size_t rows, int d) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * (size_t)d;
    float *o = out + r * (size_t)d;
    for (int j = 0; j < d; j++) o[j] = nl_vm_tanh(alpha * xr[j]) * w[j] + b[j];
  }
}

NL_VKERNEL void nl_affine_rows(float *out, const float *fx, const float *w, const float *b,
                               size_t rows, int d) {
  for (size_t r = 0; r < rows; r++) {
    const float *f = fx + r * (size_t)d;
    float *o = out + r * (size_t)d;
    for (int j = 0; j < d; j++) o[j] = f[j] * w[j] + b[j];
  }
}

NL_VKERNEL void nl_gelu(float *out, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    out[i] = 0.5f * v * (1.0f + nl_vm_erf(v * 0.70710678118654752f));
  }
}

NL_VKERNEL void nl_softmax_rows(float *x, size_t rows, int n, float scale) {
  for (size_t r = 0; r < rows; r++) {
    float *xr = x + r * (size_t)n;
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
      xr[j] *= scale;
      mx = xr[j] > mx ? xr[j] : mx;
    }
    float s = 0.0f;
    for (int j = 0; j < n; j++) {
      xr[j] = nl_vm_exp(xr[j] - mx);
      s += xr[j];
    }
    float inv = 1.0f / s;
    for (int j = 0; j < n; j++) xr[j] *= inv;
  }
}

NL_VKERNEL void nl_vexp(float *out, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = nl_vm_exp(x[i]);
}

NL_VKERNEL void nl_verf(float *out, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = nl_vm_erf(x[i]);
}

NL_VKERNEL void nl_vtanh(float *out, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = nl_vm_tanh(x[i]);
}

int nl_cholesky_solve(double *A, double *B, int k, int nrhs) {
  for (int j = 0; j < k; j++) {
    double s = A[(size_t)j * k + j];
    for (int m = 0; m < j; m++) s -= A[(size_t)j * k + m] * A[(size_t)j * k + m];
    if (!(s > 0)) return -1;
    double l = sqrt(s);
    A[(size_t)j * k + j] = l;
    for (int i = j + 1; i < k; i++) {
      double t = A[(size_t)i * k + j];
      for (int m = 0; m < j; m++) t -= A[(size_t)i * k + m] * A[(size_t)j * k + m];
      A[(size_t)i * k + j] = t / l;
    }
  }
  for (int r = 0; r < nrhs; r++) {
    for (int i = 0; i < k; i++) { /* L u = b */
      double t = B[(size_t)i * nrhs + r];
      for (int m = 0; m < i; m++) t -= A[(size_t)i * k + m] * B[(size_t)m * nrhs + r];
      B[(size_t)i * nrhs + r] = t / A[(size_t)i * k + i];
    }
    for (int i = k - 1; i >= 0; i--) { /* L^T z = u */
      double t = B[(size_t)i * nrhs + r];
      for (int m = i + 1; m < k; m++) t -= A[(size_t)m * k + i] * B[(size_t)m * nrhs + r];
      B[(size_t)i * nrhs + r] = t / A[(size_t)i * k + i];
    }
  }
  return 0;
}
