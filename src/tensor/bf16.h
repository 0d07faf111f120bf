/* BF16 products: FP32 values rounded to bfloat16 (the upper 16 bits of an
 * IEEE-754 float, rounded to nearest, ties to even; NaN stays NaN), the
 * products bf16 x bf16 accumulated in FP32 by oneDNN's matmul
 * (nl_gemm_bf16 in tensor/qlinear.h, the primitive cache of the INT8
 * products), the result and the bias FP32.
 *
 * A product of two bf16 values (8-bit significands) is exact in FP32; the
 * error of a dot product over K terms against the exact one of the
 * rounded inputs is that of FP32 summation, and the rounding of the inputs
 * (relative 2^-9 each) is what BF16 costs against FP32.
 *
 * The instructions: oneDNN runs bf16 matmul on AVX512-BF16 (or AMX); on a
 * CPU without them it emulates them or has no kernel. nl_bf16_check_cpu
 * says which, and normlab refuses BF16 there instead of running slowly. */
#ifndef NL_TENSOR_BF16_H
#define NL_TENSOR_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* x rounded to bfloat16, nearest-even (NaN: a quiet NaN of the same sign). */
static inline uint16_t nl_bf16_round(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
/* The float a bfloat16 stands for (exact). */
static inline float nl_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}
/* dst[i] = nl_bf16_round(src[i]) for n values (vectorized loop). */
void nl_bf16_from_f32(uint16_t *dst, const float *src, size_t n);

/* 0 when oneDNN runs bf16 products on this CPU with BF16 instructions
 * (AVX512-BF16 or AMX; the environment variable DNNL_MAX_CPU_ISA may lower
 * what it uses). Otherwise -1 with a message in why naming the
 * instruction set oneDNN would use. */
int nl_bf16_check_cpu(char *why, size_t cap);

/* out [N, OC] = bf16(inp) [N, IC] @ w [OC, IC]^T + b [OC] (b may be NULL):
 * inp rounded to BF16 here, w already BF16 (nl_bf16_from_f32). Row tiles
 * of 256 (and column tiles when there are fewer than 4 row tiles), each
 * one single-threaded oneDNN call over nl_parallel_for: the tiles depend on
 * the shapes only, so the result is bitwise the same for any thread count.
 * 0, or -1 with oneDNN's failure in errbuf. */
int nl_linear_forward_bf16(float *out, const float *inp, const uint16_t *w, const float *b, int N,
                           int IC, int OC, char *errbuf, size_t errcap);

#endif
