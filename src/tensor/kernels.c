/* Element-wise kernels are branch-free loops the compiler vectorises
 * (NL_VKERNEL: O3, no-trapping-math so that selects become blends, NaNs
 * still propagate; one clone per instruction set). */
#include "tensor/kernels.h"

#include <math.h>

#include "base/vmath.h"
#include "tensor/gemm.h"
#include "tensor/vec512.h"

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

NL_VKERNEL static void gelu_loop(float *out, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    out[i] = 0.5f * v * (1.0f + nl_vm_erf(v * 0.70710678118654752f));
  }
}

#ifdef NL_VEC512
/* The same formula (base/vmath.h's erf and exp) on 16 lanes with fused
 * multiply-adds: about 3x the loop above, whose clones do without FMA. */
NL_VEC512_INLINE __m512 gelu16(const __m512 v) {
  const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
  const __m512 xe = _mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f));
  const __m512 z = _mm512_abs_ps(xe);
  const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(half, z, one));
  __m512 p = _mm512_set1_ps(0.17087277f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
  const __m512 e = nl_exp512(_mm512_fnmadd_ps(z, z, p));
  /* erf = sign(xe) (1 - t e); NaN stays NaN through v */
  __m512 erf = _mm512_fnmadd_ps(t, e, one);
  erf = _mm512_castsi512_ps(_mm512_xor_si512(
      _mm512_castps_si512(erf),
      _mm512_and_si512(_mm512_castps_si512(xe), _mm512_set1_epi32((int)0x80000000u))));
  return _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, erf));
}

NL_VEC512_TARGET static void gelu_avx512(float *out, const float *x, size_t n) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32) { /* two independent chains */
    const __m512 g0 = gelu16(_mm512_loadu_ps(x + i)), g1 = gelu16(_mm512_loadu_ps(x + i + 16));
    _mm512_storeu_ps(out + i, g0);
    _mm512_storeu_ps(out + i + 16, g1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = nl_mask512(n - i);
    _mm512_mask_storeu_ps(out + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}
#endif

void nl_gelu(float *out, const float *x, size_t n) {
#ifdef NL_VEC512
  if (nl_gemm_available()) {
    gelu_avx512(out, x, n);
    return;
  }
#endif
  gelu_loop(out, x, n);
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
