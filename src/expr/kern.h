/* Batched per-operator kernels (kern.c), referenced by the registry. */
#ifndef NL_EXPR_KERN_H
#define NL_EXPR_KERN_H

#include <stdint.h>

#define NL_KF(name) void name(float *o, const float *const *a, int n, int32_t iv)
#define NL_KD(name) \
  void name(float *d, int j, const float *const *a, const float *f, int n, int32_t iv)

NL_KF(nl_k_add); NL_KF(nl_k_sub); NL_KF(nl_k_mul); NL_KF(nl_k_div); NL_KF(nl_k_neg);
NL_KF(nl_k_pow); NL_KF(nl_k_tanh); NL_KF(nl_k_sigmoid); NL_KF(nl_k_exp); NL_KF(nl_k_abs);
NL_KF(nl_k_clip); NL_KF(nl_k_clip3);
NL_KD(nl_kd_add); NL_KD(nl_kd_sub); NL_KD(nl_kd_mul); NL_KD(nl_kd_div); NL_KD(nl_kd_neg);
NL_KD(nl_kd_pow); NL_KD(nl_kd_tanh); NL_KD(nl_kd_sigmoid); NL_KD(nl_kd_exp); NL_KD(nl_kd_abs);
NL_KD(nl_kd_clip); NL_KD(nl_kd_clip3);

/* o = a*b and o += a*b elementwise (no aliasing between o and a, b). */
void nl_k_vmul(float *o, const float *a, const float *b, int n);
void nl_k_vmuladd(float *o, const float *a, const float *b, int n);

/* Sum of v[0..n) (float lanes, added in double). */
double nl_k_sum(const float *v, int n);
/* r = f - y, adj = scale*r; returns the sum of r^2. */
double nl_k_sqerr(const float *f, const float *y, float *adj, float scale, int n);

#endif
