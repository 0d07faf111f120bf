/* The AVX-512 FP32 product of the Linear layers (see gemm.h).
 *
 * Micro-kernel: up to 8 rows of a times one panel of 32 output channels,
 * 16 accumulators (8 rows x 2 vectors of 16); per k two vector loads of the
 * panel and one broadcast of a[m, k] per row. The panel is walked over all
 * row blocks of the call before the next one, so it stays in L1/L2. */
#include "tensor/gemm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/text.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define NL_GEMM_X86 1
#include <immintrin.h>
#endif

#define NR NL_GEMM_NR
#define MR 8

static int g_avail = 0;
static pthread_once_t g_avail_once = PTHREAD_ONCE_INIT;

static void avail_init(void) {
  int ok = 0;
#ifdef NL_GEMM_X86
  __builtin_cpu_init();
  ok = __builtin_cpu_supports("avx512f");
#endif
  const char *env = nl_getenv("NORMLAB_GEMM", NULL);
  if (env && strcmp(env, "blas") == 0) ok = 0;
  g_avail = ok;
}

int nl_gemm_available(void) {
  pthread_once(&g_avail_once, avail_init);
  return g_avail;
}

size_t nl_gemm_pack_floats(int N, int K) {
  return (size_t)((N + NR - 1) / NR) * NR * (size_t)K;
}

void nl_gemm_pack(float *dst, const float *w, int N, int K, int p0, int p1) {
  for (int p = p0; p < p1; p++) {
    float *d = dst + (size_t)p * NR * K;
    for (int j = 0; j < NR; j++) {
      const int n = p * NR + j;
      if (n < N) {
        const float *src = w + (size_t)n * K;
        for (int k = 0; k < K; k++) d[(size_t)k * NR + j] = src[k];
      } else {
        for (int k = 0; k < K; k++) d[(size_t)k * NR + j] = 0.0f;
      }
    }
  }
}

#ifdef NL_GEMM_X86

#define KERNEL_TARGET __attribute__((target("avx512f")))

/* rows x 32 tile: c = bias + a w^T over the k chain; mask lo/hi: columns
 * of the panel that exist */
KERNEL_TARGET static inline __attribute__((always_inline)) void ukernel(
    const int rows, const int K, const float *a, const int lda, const float *wp,
    const float *bias, float *c, const int ldc, const __mmask16 lo, const __mmask16 hi) {
  __m512 acc0[MR], acc1[MR];
  const __m512 b0 = bias ? _mm512_maskz_loadu_ps(lo, bias) : _mm512_setzero_ps();
  const __m512 b1 = bias ? _mm512_maskz_loadu_ps(hi, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int i = 0; i < rows; i++) acc0[i] = b0, acc1[i] = b1;
  for (int k = 0; k < K; k++) {
    const __m512 w0 = _mm512_load_ps(wp + (size_t)k * NR);
    const __m512 w1 = _mm512_load_ps(wp + (size_t)k * NR + 16);
#pragma GCC unroll 8
    for (int i = 0; i < rows; i++) {
      const __m512 x = _mm512_set1_ps(a[(size_t)i * lda + k]);
      acc0[i] = _mm512_fmadd_ps(x, w0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(x, w1, acc1[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < rows; i++) {
    _mm512_mask_storeu_ps(c + (size_t)i * ldc, lo, acc0[i]);
    _mm512_mask_storeu_ps(c + (size_t)i * ldc + 16, hi, acc1[i]);
  }
}

KERNEL_TARGET void nl_gemm_packed(float *c, int ldc, const float *a, int lda, const float *wp,
                                  const float *bias, int N, int K, int m0, int m1, int p0,
                                  int p1) {
  for (int p = p0; p < p1; p++) {
    const int n0 = p * NR, left = N - n0;
    const __mmask16 lo = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    const __mmask16 hi = left >= 32   ? (__mmask16)0xffff
                         : left <= 16 ? (__mmask16)0
                                      : (__mmask16)((1u << (left - 16)) - 1);
    const float *w = wp + (size_t)p * NR * K;
    const float *bb = bias ? bias + n0 : NULL;
    int m = m0;
    for (; m + MR <= m1; m += MR)
      ukernel(MR, K, a + (size_t)m * lda, lda, w, bb, c + (size_t)m * ldc + n0, ldc, lo, hi);
    const float *am = a + (size_t)m * lda;
    float *cm = c + (size_t)m * ldc + n0;
    switch (m1 - m) { /* one specialised kernel per remainder */
      case 7: ukernel(7, K, am, lda, w, bb, cm, ldc, lo, hi); break;
      case 6: ukernel(6, K, am, lda, w, bb, cm, ldc, lo, hi); break;
      case 5: ukernel(5, K, am, lda, w, bb, cm, ldc, lo, hi); break;
      case 4: ukernel(4, K, am, lda, w, bb, cm, ldc, lo, hi); break;
      case 3: ukernel(3, K, am, lda, w, bb, cm, ldc, lo, hi); break;
      case 2: ukernel(2, K, am, lda, w, bb, cm, ldc, lo, hi); break;
      case 1: ukernel(1, K, am, lda, w, bb, cm, ldc, lo, hi); break;
      default: break;
    }
  }
}

#else

void nl_gemm_packed(float *c, int ldc, const float *a, int lda, const float *wp,
                    const float *bias, int N, int K, int m0, int m1, int p0, int p1) {
  (void)c, (void)ldc, (void)a, (void)lda, (void)wp, (void)bias, (void)N, (void)K;
  (void)m0, (void)m1, (void)p0, (void)p1;
  abort(); /* nl_gemm_available() is 0 here */
}

#endif
