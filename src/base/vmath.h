/* The one home of normlab's fast float exp, tanh, sigmoid and erf: plain
 * arithmetic on scalars (no libm calls, no branches the compiler cannot turn
 * into selects) so that loops calling them vectorise. Relative error about
 * 2e-7 (exp), 3e-7 (tanh, sigmoid) over the float range, absolute error
 * below 4e-7 (erf, largest near 0, where it is 1 - erfc); exp results
 * below about 1e-45 flush to zero. NaN in,
 * NaN out; infinities saturate. Used by the expression evaluator
 * (expr/kern.c), the layer kernels of the forward pass and the training
 * backward (tensor/, train/), and the fused reference loops of `bench expr`. */
#ifndef NL_BASE_VMATH_H
#define NL_BASE_VMATH_H

#include <stdint.h>
#include <string.h>

/* Vector kernels: -O3 and, on x86-64 with GCC, one clone per instruction
 * set chosen at load time. -fno-trapping-math lets the compiler evaluate
 * both arms of a select (if-conversion) so that loops with selects
 * vectorise on AVX2 too; it changes no result (NaN and infinities behave as
 * before), only the assumption that floating-point exceptions are
 * observed. The approximations are always inlined so that they are
 * compiled with the kernel's options. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(NL_NO_CLONES)
#define NL_VKERNEL                                  \
  __attribute__((optimize("O3", "no-trapping-math"), \
                 target_clones("avx512f", "avx2", "default")))
#elif defined(__GNUC__) && !defined(__clang__)
#define NL_VKERNEL __attribute__((optimize("O3", "no-trapping-math")))
#else
#define NL_VKERNEL
#endif
#define NL_VMATH_INLINE static inline __attribute__((always_inline))

NL_VMATH_INLINE float nl_vm_bits2f(int32_t i) {
  float f;
  memcpy(&f, &i, sizeof f);
  return f;
}

/* exp(x): x = n ln2 + r, |r| <= ln2/2 (Cody-Waite split of ln2), degree-7
 * Taylor polynomial for exp(r), scale by 2^n in two halves so that results
 * down to the subnormal range stay exact in the exponent. */
NL_VMATH_INLINE float nl_vm_exp(float x) {
  float xc = x < 89.0f ? x : 89.0f; /* NaN becomes 89 here, restored below */
  xc = xc > -104.0f ? xc : -104.0f;
  float nf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = (xc - nf * 0.693359375f) + nf * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t n = (int32_t)nf;
  int32_t n1 = n >> 1, n2 = n - n1;
  float s1 = nl_vm_bits2f((n1 + 127) << 23), s2 = nl_vm_bits2f((n2 + 127) << 23);
  float res = (p * s1) * s2;
  return x != x ? x : res;
}

/* tanh(x): odd Taylor polynomial to x^15 for |x| < 0.55, else
 * (1 - e)/(1 + e) with e = exp(-2|x|) and the sign of x. */
NL_VMATH_INLINE float nl_vm_tanh(float x) {
  float z = x * x;
  float q = -929569.0f / 638512875.0f;
  q = q * z + 21844.0f / 6081075.0f;
  q = q * z - 1382.0f / 155925.0f;
  q = q * z + 62.0f / 2835.0f;
  q = q * z - 17.0f / 315.0f;
  q = q * z + 2.0f / 15.0f;
  q = q * z - 1.0f / 3.0f;
  float small = x + x * z * q;
  float ax = x < 0.0f ? -x : x;
  float e = nl_vm_exp(-2.0f * ax);
  float big = (1.0f - e) / (1.0f + e);
  big = x < 0.0f ? -big : big;
  return ax < 0.55f ? small : big;
}

NL_VMATH_INLINE float nl_vm_sigmoid(float x) { return 1.0f / (1.0f + nl_vm_exp(-x)); }

/* erf(x) = 1 - erfc(|x|) with the sign of x; erfc from the Chebyshev fit
 * t exp(-z^2 + P(t)), t = 1 / (1 + z/2) (Numerical Recipes' erfcc,
 * fractional error below 1.2e-7 on erfc). */
NL_VMATH_INLINE float nl_vm_erf(float x) {
  float z = x < 0.0f ? -x : x;
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
  float r = 1.0f - t * nl_vm_exp(-z * z + p);
  return x < 0.0f ? -r : r;
}

/* clamp with NaN passing through */
NL_VMATH_INLINE float nl_vm_clip(float a, float lo, float hi) {
  float v = a < lo ? lo : a;
  return v > hi ? hi : v;
}

#endif
