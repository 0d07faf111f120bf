/* Element-wise and row-wise float kernels: single-threaded, vectorised
 * loops (an AVX-512/AVX2 clone is chosen at run time) over the fast
 * approximations of base/vmath.h. The layer functions of tensor/layers.h
 * run them over fixed chunks of rows on the thread pool.
 * Rows are processed independently and each element's arithmetic does not
 * depend on where it sits in the array, so results do not depend on how
 * rows are split over threads. NaN inputs propagate to the outputs. */
#ifndef NL_TENSOR_KERNELS_H
#define NL_TENSOR_KERNELS_H

#include <stddef.h>

/* LayerNorm over rows of length d: out = (x - mean) * rstd * w + b,
 * rstd = 1 / sqrt(var + eps) (biased variance). The row sums are taken in
 * 16 interleaved partial sums added in a fixed order (vectorised, and
 * closer to the exact sum than one running float sum). mean and rstd (may
 * be NULL) receive the per-row statistics. */
void nl_layernorm_rows(float *out, float *mean, float *rstd, const float *x, const float *w,
                       const float *b, size_t rows, int d, float eps);

/* DyT: out = tanh(alpha * x) * w + b over rows of length d. */
void nl_dyt_rows(float *out, const float *x, float alpha, const float *w, const float *b,
                 size_t rows, int d);

/* Per-channel affine: out = fx * w + b over rows of length d (out may
 * alias fx). */
void nl_affine_rows(float *out, const float *fx, const float *w, const float *b, size_t rows,
                    int d);

/* Exact GELU 0.5 x (1 + erf(x / sqrt 2)), n elements (out may alias x). */
void nl_gelu(float *out, const float *x, size_t n);

/* In-place softmax of each row of length n (scaled by `scale` first). */
void nl_softmax_rows(float *x, size_t rows, int n, float scale);

/* base/vmath.h's exp, erf and tanh over arrays. */
void nl_vexp(float *out, const float *x, size_t n);
void nl_verf(float *out, const float *x, size_t n);
void nl_vtanh(float *out, const float *x, size_t n);

/* Solve A Z = B in place (A k x k symmetric positive definite, row-major,
 * overwritten by its Cholesky factor; B k x nrhs row-major, overwritten by
 * Z). Returns -1 when A is not positive definite. */
int nl_cholesky_solve(double *A, double *B, int k, int nrhs);

#endif
