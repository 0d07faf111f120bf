/* normlab's own single-threaded float matrix product for the layer
 * kernels (nl_gemm_tiles, attention): on x86-64 processors with AVX-512 a
 * register-blocked kernel (12 rows x 32 columns of c per call, 24 zmm
 * accumulators), else cblas_sgemm.
 *
 * Why: the OpenBLAS of the distribution (0.3.21) does not know recent AMD
 * processors and runs its AVX2 (Haswell) kernel on them, at most half of
 * the AVX-512 FMA rate. b is packed per block (256 k by 512 columns), and
 * a when transposed (256 k by 144 rows), into panels the kernel reads
 * contiguously, in a buffer each thread keeps for its life (no allocation
 * per call once made); a not transposed is read in place.
 *
 * Results: each element of c is a sum over k in blocks of 256 (k order
 * inside a block, blocks in order), the same for any thread count and any
 * split of c into tiles; they differ from cblas_sgemm's in the last bits
 * (another summation order). */
#ifndef NL_TENSOR_SGEMM_H
#define NL_TENSOR_SGEMM_H

/* c[M, N] = alpha op(a) op(b) + beta c, row-major, op(a) [M, K], op(b)
 * [K, N]; ta, tb: 1 = transposed; leading dimensions as cblas_sgemm's.
 * beta == 0: c is not read (may hold NaN). */
void nl_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);

/* c[M, N] = bias + alpha op(a) op(b), bias [N] added to every row (c is
 * not read); the same, bitwise, as copying bias into every row of c and
 * calling nl_sgemm with beta 1, in one pass. */
void nl_sgemm_bias(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
                   const float *b, int ldb, const float *bias, float *c, int ldc);

/* The same products with BF16 operands: every element of op(a) and op(b)
 * rounded to bfloat16 (nearest-even, as nl_bf16_round in tensor/bf16.h,
 * except that a subnormal value, |x| < 2^-126, becomes a zero of its sign
 * as vcvtne2ps2bf16 makes it), the products summed in FP32. With AVX512-BF16 a kernel of the same
 * blocking as nl_sgemm's (12 x 32 tiles of c, k in blocks of 256), the
 * operands rounded while packed into panels of k pairs and summed by
 * vdpbf16ps: each element of c is the same sum, pair by pair in k order
 * inside a block and blocks in order, for any split of c into tiles and
 * any thread count. Without it (or with NORMLAB_GEMM=blas) the rounded
 * operands are copied and multiplied by nl_sgemm (other last bits). */
void nl_sgemm_bf16(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc);
void nl_sgemm_bf16_bias(int ta, int tb, int M, int N, int K, float alpha, const float *a,
                        int lda, const float *b, int ldb, const float *bias, float *c, int ldc);
/* 1 when nl_sgemm_bf16 runs the AVX512-BF16 kernel. */
int nl_sgemm_bf16_native(void);

/* 1 when nl_sgemm runs normlab's AVX-512 kernel, 0 when it calls
 * cblas_sgemm. NORMLAB_GEMM=blas in the environment forces cblas_sgemm
 * (read once). */
int nl_sgemm_native(void);

#endif
