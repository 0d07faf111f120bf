/* Batched kernels over one chunk (n <= NL_EVAL_CHUNK floats): the values
 * and partial derivatives of every operator, referenced from the registry
 * in ops.c. Each loop is written to vectorise (no calls, no branches that
 * the compiler cannot turn into selects). */
#include "expr/kern.h"

#include "base/vmath.h"

#define A0 const float *restrict a0 = a[0]
#define A1 const float *restrict a1 = a[1]
#define A2 const float *restrict a2 = a[2]

NL_VKERNEL void nl_k_add(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0; A1;
  for (int i = 0; i < n; i++) o[i] = a0[i] + a1[i];
}
NL_VKERNEL void nl_k_sub(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0; A1;
  for (int i = 0; i < n; i++) o[i] = a0[i] - a1[i];
}
NL_VKERNEL void nl_k_mul(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0; A1;
  for (int i = 0; i < n; i++) o[i] = a0[i] * a1[i];
}
NL_VKERNEL void nl_k_div(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0; A1;
  for (int i = 0; i < n; i++) o[i] = a0[i] / a1[i];
}
NL_VKERNEL void nl_k_neg(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0;
  for (int i = 0; i < n; i++) o[i] = -a0[i];
}
NL_VKERNEL void nl_k_pow(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0;
  if (iv <= 0) {
    for (int i = 0; i < n; i++) o[i] = 1.0f;
    return;
  }
  for (int i = 0; i < n; i++) o[i] = a0[i];
  for (int k = 1; k < iv; k++)
    for (int i = 0; i < n; i++) o[i] = o[i] * a0[i];
}
NL_VKERNEL void nl_k_tanh(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0;
  for (int i = 0; i < n; i++) o[i] = nl_vm_tanh(a0[i]);
}
NL_VKERNEL void nl_k_sigmoid(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0;
  for (int i = 0; i < n; i++) o[i] = nl_vm_sigmoid(a0[i]);
}
NL_VKERNEL void nl_k_exp(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0;
  for (int i = 0; i < n; i++) o[i] = nl_vm_exp(a0[i]);
}
NL_VKERNEL void nl_k_abs(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0;
  for (int i = 0; i < n; i++) o[i] = a0[i] < 0.0f ? -a0[i] : a0[i];
}
NL_VKERNEL void nl_k_clip(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0;
  for (int i = 0; i < n; i++) o[i] = nl_vm_clip(a0[i], -5.0f, 5.0f);
}
NL_VKERNEL void nl_k_clip3(float *restrict o, const float *const *a, int n, int32_t iv) {
  A0; A1; A2;
  for (int i = 0; i < n; i++) o[i] = nl_vm_clip(a0[i], a1[i], a2[i]);
}

/* ---- partial derivatives d = d f / d a_j ---- */

static void fill(float *restrict d, int n, float v) {
  for (int i = 0; i < n; i++) d[i] = v;
}

void nl_kd_add(float *restrict d, int j, const float *const *a, const float *f, int n,
               int32_t iv) {
  fill(d, n, 1.0f);
}
void nl_kd_sub(float *restrict d, int j, const float *const *a, const float *f, int n,
               int32_t iv) {
  fill(d, n, j == 0 ? 1.0f : -1.0f);
}
NL_VKERNEL void nl_kd_mul(float *restrict d, int j, const float *const *a, const float *f,
                          int n, int32_t iv) {
  const float *restrict other = a[1 - j];
  for (int i = 0; i < n; i++) d[i] = other[i];
}
NL_VKERNEL void nl_kd_div(float *restrict d, int j, const float *const *a, const float *f,
                          int n, int32_t iv) {
  A1;
  if (j == 0) {
    for (int i = 0; i < n; i++) d[i] = 1.0f / a1[i];
  } else {
    A0;
    for (int i = 0; i < n; i++) d[i] = -(a0[i] / a1[i]) / a1[i];
  }
}
void nl_kd_neg(float *restrict d, int j, const float *const *a, const float *f, int n,
               int32_t iv) {
  fill(d, n, -1.0f);
}
NL_VKERNEL void nl_kd_pow(float *restrict d, int j, const float *const *a, const float *f,
                          int n, int32_t iv) {
  A0;
  if (iv <= 0) {
    for (int i = 0; i < n; i++) d[i] = 0.0f;
    return;
  }
  float c = (float)iv;
  for (int i = 0; i < n; i++) d[i] = c;
  for (int k = 1; k < iv; k++)
    for (int i = 0; i < n; i++) d[i] = d[i] * a0[i];
}
NL_VKERNEL void nl_kd_tanh(float *restrict d, int j, const float *const *a, const float *f,
                           int n, int32_t iv) {
  for (int i = 0; i < n; i++) d[i] = 1.0f - f[i] * f[i];
}
NL_VKERNEL void nl_kd_sigmoid(float *restrict d, int j, const float *const *a, const float *f,
                              int n, int32_t iv) {
  for (int i = 0; i < n; i++) d[i] = f[i] * (1.0f - f[i]);
}
NL_VKERNEL void nl_kd_exp(float *restrict d, int j, const float *const *a, const float *f,
                          int n, int32_t iv) {
  for (int i = 0; i < n; i++) d[i] = f[i];
}
NL_VKERNEL void nl_kd_abs(float *restrict d, int j, const float *const *a, const float *f,
                          int n, int32_t iv) {
  A0;
  for (int i = 0; i < n; i++) d[i] = a0[i] > 0.0f ? 1.0f : (a0[i] < 0.0f ? -1.0f : 0.0f);
}
NL_VKERNEL void nl_kd_clip(float *restrict d, int j, const float *const *a, const float *f,
                           int n, int32_t iv) {
  A0;
  for (int i = 0; i < n; i++) d[i] = (a0[i] >= -5.0f && a0[i] <= 5.0f) ? 1.0f : 0.0f;
}
NL_VKERNEL void nl_kd_clip3(float *restrict d, int j, const float *const *a, const float *f,
                            int n, int32_t iv) {
  A0; A1; A2;
  if (j == 0) {
    for (int i = 0; i < n; i++) {
      float v = a0[i] < a1[i] ? a1[i] : a0[i];
      d[i] = (float)((a0[i] >= a1[i]) & (v <= a2[i]));
    }
  } else if (j == 1) {
    for (int i = 0; i < n; i++) d[i] = (float)((a0[i] < a1[i]) & (a1[i] <= a2[i]));
  } else {
    for (int i = 0; i < n; i++) {
      float v = a0[i] < a1[i] ? a1[i] : a0[i];
      d[i] = v > a2[i] ? 1.0f : 0.0f;
    }
  }
}

/* ---- helpers of the derivative sweeps ---- */
NL_VKERNEL void nl_k_vmul(float *restrict o, const float *restrict a, const float *restrict b,
                          int n) {
  for (int i = 0; i < n; i++) o[i] = a[i] * b[i];
}
NL_VKERNEL void nl_k_vmuladd(float *restrict o, const float *restrict a,
                             const float *restrict b, int n) {
  for (int i = 0; i < n; i++) o[i] += a[i] * b[i];
}

/* Sums over a chunk in 16 independent float lanes (so that the loop
 * vectorises without reassociation), the lanes added in double. */
NL_VKERNEL double nl_k_sum(const float *restrict v, int n) {
  float acc[16] = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; l++) acc[l] += v[i + l];
  double s = 0;
  for (; i < n; i++) s += v[i];
  for (int l = 0; l < 16; l++) s += acc[l];
  return s;
}

/* r = f - y; adj = scale*r; returns the sum of r^2. */
NL_VKERNEL double nl_k_sqerr(const float *restrict f, const float *restrict y,
                             float *restrict adj, float scale, int n) {
  float acc[16] = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; l++) {
      float r = f[i + l] - y[i + l];
      adj[i + l] = scale * r;
      acc[l] += r * r;
    }
  double s = 0;
  for (; i < n; i++) {
    float r = f[i] - y[i];
    adj[i] = scale * r;
    s += (double)r * r;
  }
  for (int l = 0; l < 16; l++) s += acc[l];
  return s;
}
