/* normlab's own INT8 product for the W8A8 Linear layers on CPUs with
 * AVX512-VNNI: c[M, N] = (a[M, K] w[N, K]^T) * sa[m] * sw[n] + bias[n],
 * a the per-row quantized activations, w the int8 weights (timm layout).
 *
 * VNNI multiplies unsigned by signed bytes (vpdpbusd: four u8 x s8
 * products added into each int32 lane), so the activations are stored
 * shifted, u = a + 128 in [1, 255], and each output channel carries the
 * correction -128 sum_k w[n, k], which starts its accumulator:
 *   acc[m, n] = -128 sum_k w[n, k] + sum_k u[m, k] w[n, k] = sum_k a[m, k] w[n, k]
 * exactly (the sums stay below 2^31 for K <= 65,000). The epilogue is the layer's
 * formula in this order: out = (float)acc * (sa[m] * sw[n]) + bias[n]
 * (one rounding per operation, no fused multiply-add), the bits of the
 * oneDNN path it replaces (tensor/qlinear.c).
 *
 * Packed weights: panels of NL_IGEMM_NR output channels; within a panel,
 * for each group of 4 input channels k4, the 4 bytes of channel 0, then
 * channel 1, ... (NL_IGEMM_NR x 4 bytes per k4: one 512-bit load for 16
 * channels); K padded to a multiple of 4 and N to a multiple of
 * NL_IGEMM_NR with zero weights. Activations: rows of nl_igemm_lda(K)
 * bytes, padding 128 (a zero activation). */
#ifndef NL_TENSOR_IGEMM_H
#define NL_TENSOR_IGEMM_H

#include <stddef.h>
#include <stdint.h>

#define NL_IGEMM_NR 32     /* output channels per packed panel */
#define NL_IGEMM_MAX_K 65000 /* widest input whose sums stay exact in int32 */

/* 1 when the CPU has AVX-512 F/BW and VNNI (checked once); 0 with
 * NORMLAB_IGEMM=dnnl in the environment (to compare against oneDNN). */
int nl_igemm_available(void);

/* Bytes of a packed activation row: K rounded up to a multiple of 4. */
int nl_igemm_lda(int K);
/* Bytes of the packed copy of a [N, K] int8 weight. */
size_t nl_igemm_pack_bytes(int N, int K);
/* Pack w [N, K] into dst (nl_igemm_pack_bytes bytes, 64-byte aligned) and
 * the corrections comp[N rounded up to NL_IGEMM_NR] = -128 sum_k w[n, k]
 * (0 past N). */
void nl_igemm_pack(int8_t *dst, int32_t *comp, const int8_t *w, int N, int K);

/* Quantize rows [r0, r1) of x [., K] per row into u (rows of
 * nl_igemm_lda(K) bytes) and sa: x' = x * in_scale (in_scale may be NULL),
 * s = act_scale when > 0, else max_k |x'_k| / 127 (1 for an all-zero row);
 * u = clamp(rint(x' / s), -127, 127) + 128, rint rounding half to even
 * (NaN lands at 127 + 128). The integers of nl_quantize_rows_s8. */
void nl_igemm_quantize(uint8_t *u, float *sa, const float *x, int K, const float *in_scale,
                       float act_scale, int r0, int r1);

/* Rows [m0, m1) and column panels [p0, p1) of c on the calling thread:
 * c[m, n] = (float)(sum_k a[m, k] w[n, k]) * (sa[m] * sw[n]) + bias[n];
 * u from nl_igemm_quantize (lda = nl_igemm_lda(K)), wp and comp from
 * nl_igemm_pack, sw [N], bias [N] or NULL; ldc in floats. Only with
 * nl_igemm_available(). */
void nl_igemm_packed(float *c, int ldc, const uint8_t *u, const float *sa, const int8_t *wp,
                     const int32_t *comp, const float *sw, const float *bias, int N, int K,
                     int m0, int m1, int p0, int p1);

#endif
