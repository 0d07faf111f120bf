/* normlab's own FP32 matrix product for the Linear layers on CPUs with
 * AVX-512: c[M, N] = a[M, K] w[N, K]^T + bias, w in timm layout, over a
 * packed copy of w (column panels of NL_GEMM_NR output channels, k-major).
 *
 * Every output element is one fused multiply-add chain in k order,
 *   acc = bias[n] (0 without bias); for k = 0 .. K-1: acc = fma(a[m,k], w[n,k], acc),
 * whatever the tile it falls in, so results do not depend on how the
 * product is split (rows, column panels, threads, batch size) and a
 * product over a packed copy made once gives the very bits of one packed
 * per call. nl_gemm_available() says whether the kernel can run here;
 * without AVX-512 the callers use OpenBLAS (tensor/layers.c). */
#ifndef NL_TENSOR_GEMM_H
#define NL_TENSOR_GEMM_H

#include <stddef.h>

#define NL_GEMM_NR 32 /* output channels per packed panel */

/* 1 when the CPU runs the AVX-512 kernel (checked once); 0 with
 * NORMLAB_GEMM=blas in the environment (to compare against OpenBLAS). */
int nl_gemm_available(void);

/* Floats of the packed copy of a [N, K] weight (N rounded up to NL_GEMM_NR). */
size_t nl_gemm_pack_floats(int N, int K);
/* Pack panels [p0, p1) of w [N, K] into dst (nl_gemm_pack_floats floats,
 * 64-byte aligned): panel p holds, for k = 0 .. K-1, w[p*NR + j, k] for
 * j = 0 .. NR-1 (0 past N). */
void nl_gemm_pack(float *dst, const float *w, int N, int K, int p0, int p1);

/* Rows [m0, m1) and column panels [p0, p1) of c = a w^T + bias on the
 * calling thread, wp packed by nl_gemm_pack; lda, ldc in floats; bias may
 * be NULL. Only with nl_gemm_available(). */
void nl_gemm_packed(float *c, int ldc, const float *a, int lda, const float *wp,
                    const float *bias, int N, int K, int m0, int m1, int p0, int p1);

#endif
