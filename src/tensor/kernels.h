/* Float kernels of the ViT forward pass: BLAS-backed linear layers and
 * element-wise/row-wise kernels (LayerNorm, DyT, GELU, softmax).
 * Row kernels process rows independently, so results do not depend on how
 * rows are split over threads. NaN inputs propagate to the outputs. */
#ifndef NL_TENSOR_KERNELS_H
#define NL_TENSOR_KERNELS_H

#include <stddef.h>

/* out[m, n] = sum_k x[m, k] * w[n, k] + b[n] (a linear layer; w is
 * [out, in] as in PyTorch; b may be NULL). One cblas_sgemm call. */
void nl_linear(float *out, const float *x, const float *w, const float *b, int m, int k, int n);

/* LayerNorm over rows of length d: out = (x - mean) / sqrt(var + eps) * w + b
 * (biased variance). mean/rstd (may be NULL) receive per-row statistics. */
void nl_layernorm_rows(float *out, float *mean, float *rstd, const float *x, const float *w,
                       const float *b, size_t rows, int d, float eps);

/* DyT: out = tanh(alpha * x) * w + b over rows of length d. */
void nl_dyt_rows(float *out, const float *x, float alpha, const float *w, const float *b,
                 size_t rows, int d);

/* Exact GELU 0.5 x (1 + erf(x / sqrt 2)), n elements (may be in place). */
void nl_gelu(float *out, const float *x, size_t n);

/* In-place softmax of each row of length n (scaled by `scale` first). */
void nl_softmax_rows(float *x, size_t rows, int n, float scale);

/* Vectorisable element-wise functions (about 1 ulp for exp, 2e-7 absolute
 * for erf and tanh). */
void nl_vexp(float *out, const float *x, size_t n);
void nl_verf(float *out, const float *x, size_t n);
void nl_vtanh(float *out, const float *x, size_t n);

#endif
