/* Branch-free float exp, erf and tanh for the element-wise training kernels,
 * written so that loops over them vectorise (no calls into libm, no
 * float-to-int conversions). NaN in gives NaN out.
 *
 *  nl_tr_expf:  Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, degree-7
 *               Taylor polynomial, 2^k from exponent bits; relative error
 *               below 3e-7 on [-87, 88]; inputs are clamped to that range
 *               (so tiny results bottom out near 1.6e-38, huge ones at 1.7e38).
 *  nl_tr_erff:  Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7 (absolute).
 *  nl_tr_tanhf: 1 - 2 / (exp(2x) + 1) with odd symmetry, |error| <= 3e-7.
 */
#ifndef NL_TRAIN_FASTMATH_H
#define NL_TRAIN_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline float nl_tr_expf(float x) {
  x = x < -87.0f ? -87.0f : x; /* comparisons are false for NaN: NaN passes */
  x = x > 88.0f ? 88.0f : x;
  const float shifter = 12582912.0f; /* 1.5 * 2^23: rounds to an integer in the low bits */
  float kf = x * 1.44269504088896341f + shifter;
  uint32_t kb;
  memcpy(&kb, &kf, sizeof kb);
  kf -= shifter;
  float r = x - kf * 0.693145751953125f;  /* ln2 high part, exact in float */
  r = r - kf * 1.428606765330187e-06f;     /* ln2 low part */
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  uint32_t sb = (kb - 0x4B400000u + 127u) << 23; /* 2^k, k in [-126, 127] */
  float s;
  memcpy(&s, &sb, sizeof s);
  return p * s;
}

/* erf(z) given z and e = exp(-z*z) (callers often have e already). The
 * polynomial's coefficients alternate in sign, so it is evaluated in double
 * (still vectorised) to keep the float result within the formula's bound. */
static inline float nl_tr_erff_e(float z, float e) {
  double a = z < 0.0f ? -(double)z : (double)z;
  double t = 1.0 / (1.0 + 0.3275911 * a);
  double q = 1.061405429;
  q = q * t - 1.453152027;
  q = q * t + 1.421413741;
  q = q * t - 0.284496736;
  q = q * t + 0.254829592;
  float y = (float)(1.0 - q * t * (double)e);
  return z < 0.0f ? -y : y;
}

static inline float nl_tr_erff(float z) { return nl_tr_erff_e(z, nl_tr_expf(-z * z)); }

static inline float nl_tr_tanhf(float x) {
  float a = x < 0.0f ? -x : x;
  float y = 1.0f - 2.0f / (nl_tr_expf(2.0f * a) + 1.0f);
  return x < 0.0f ? -y : y;
}

#endif
