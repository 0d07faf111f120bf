/* The AVX512-VNNI INT8 product of the W8A8 Linear layers (see igemm.h).
 *
 * Micro-kernel: up to 8 rows of u times one panel of 32 output channels,
 * 16 int32 accumulators (8 rows x 2 vectors of 16); per group of 4 input
 * channels two 512-bit loads of the panel, one 4-byte broadcast of the row
 * per row and two vpdpbusd per row (64 multiply-adds each). The panel
 * (32 x K bytes: 24 KB at K = 768) stays in L1 while the row blocks of the
 * call walk past it. */
#include "tensor/igemm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/text.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define NL_IGEMM_X86 1
#include <immintrin.h>
#endif

#define NR NL_IGEMM_NR
#define MR 8

static int g_avail = 0;
static pthread_once_t g_avail_once = PTHREAD_ONCE_INIT;

static void avail_init(void) {
  int ok = 0;
#ifdef NL_IGEMM_X86
  __builtin_cpu_init();
  ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
       __builtin_cpu_supports("avx512vnni");
#endif
  const char *env = nl_getenv("NORMLAB_IGEMM", NULL);
  if (env && strcmp(env, "dnnl") == 0) ok = 0;
  g_avail = ok;
}

int nl_igemm_available(void) {
  pthread_once(&g_avail_once, avail_init);
  return g_avail;
}

int nl_igemm_lda(int K) { return (K + 3) / 4 * 4; }

size_t nl_igemm_pack_bytes(int N, int K) {
  return (size_t)((N + NR - 1) / NR) * NR * (size_t)nl_igemm_lda(K);
}

void nl_igemm_pack(int8_t *dst, int32_t *comp, const int8_t *w, int N, int K) {
  const int Kp = nl_igemm_lda(K), np = (N + NR - 1) / NR;
  for (int p = 0; p < np; p++) {
    int8_t *d = dst + (size_t)p * NR * Kp;
    for (int j = 0; j < NR; j++) {
      const int n = p * NR + j;
      int32_t s = 0;
      for (int k = 0; k < Kp; k++) {
        const int8_t v = n < N && k < K ? w[(size_t)n * K + k] : 0;
        d[(size_t)(k / 4) * NR * 4 + (size_t)j * 4 + (size_t)(k % 4)] = v;
        s += v;
      }
      comp[n] = -128 * s;
    }
  }
}

#ifdef NL_IGEMM_X86

#define KERNEL_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))

KERNEL_TARGET void nl_igemm_quantize(uint8_t *u, float *sa, const float *x, int K,
                                     const float *in_scale, float act_scale, int r0, int r1) {
  const int Kp = nl_igemm_lda(K);
  const __m512 hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
  const __m512i off = _mm512_set1_epi32(128);
  for (int r = r0; r < r1; r++) {
    const float *xr = x + (size_t)r * K;
    uint8_t *ur = u + (size_t)r * Kp;
    float s = act_scale;
    if (!(s > 0)) {
      __m512 m = _mm512_setzero_ps();
      for (int k = 0; k < K; k += 16) {
        const __mmask16 mk = K - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(mk, xr + k);
        if (in_scale) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mk, in_scale + k));
        m = _mm512_max_ps(_mm512_abs_ps(v), m); /* NaN is passed over */
      }
      const float mx = _mm512_reduce_max_ps(m);
      s = mx > 0 ? mx / 127.0f : 1.0f;
    }
    const __m512 inv = _mm512_set1_ps(1.0f / s);
    for (int k = 0; k < Kp; k += 16) {
      const __mmask16 mk = K - k >= 16 ? (__mmask16)0xffff
                           : K - k > 0 ? (__mmask16)((1u << (K - k)) - 1)
                                       : (__mmask16)0;
      const __mmask16 mp = Kp - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (Kp - k)) - 1);
      __m512 v = _mm512_maskz_loadu_ps(mk, xr + k);
      if (in_scale) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mk, in_scale + k));
      v = _mm512_mul_ps(v, inv);
      v = _mm512_max_ps(_mm512_min_ps(v, hi), lo); /* NaN: min gives 127 */
      const __m512i q = _mm512_add_epi32(
          _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), off);
      _mm512_mask_cvtepi32_storeu_epi8(ur + k, mp, q);
    }
    sa[r] = s;
  }
}

/* acc += u8 x s8 products of x and w, in place: GCC 12 copies the
 * accumulators around the intrinsic (vpdpbusd has only the destructive
 * form), which halves the kernel's rate */
#define DPBUSD(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

/* rows x 32 tile; lo/hi: the panel's columns that exist */
KERNEL_TARGET static inline __attribute__((always_inline)) void ikernel(
    const int rows, const int K4, const uint8_t *u, const int lda, const int8_t *wp,
    const __m512i c0, const __m512i c1, const float *sa, const __m512 s0, const __m512 s1,
    const float *bias, float *c, const int ldc, const __mmask16 lo, const __mmask16 hi) {
  __m512i acc0[MR], acc1[MR];
#pragma GCC unroll 8
  for (int i = 0; i < rows; i++) acc0[i] = c0, acc1[i] = c1;
  for (int k = 0; k < K4; k++) {
    const __m512i w0 = _mm512_load_si512((const void *)(wp + (size_t)k * NR * 4));
    const __m512i w1 = _mm512_load_si512((const void *)(wp + (size_t)k * NR * 4 + 64));
#pragma GCC unroll 8
    for (int i = 0; i < rows; i++) {
      int32_t four;
      memcpy(&four, u + (size_t)i * lda + (size_t)k * 4, 4);
      const __m512i x = _mm512_set1_epi32(four);
      DPBUSD(acc0[i], x, w0);
      DPBUSD(acc1[i], x, w1);
    }
  }
  const __m512 b0 = bias ? _mm512_maskz_loadu_ps(lo, bias) : _mm512_setzero_ps();
  const __m512 b1 = bias ? _mm512_maskz_loadu_ps(hi, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int i = 0; i < rows; i++) {
    const __m512 si = _mm512_set1_ps(sa[i]);
    __m512 o0 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc0[i]), _mm512_mul_ps(si, s0));
    __m512 o1 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc1[i]), _mm512_mul_ps(si, s1));
    if (bias) o0 = _mm512_add_ps(o0, b0), o1 = _mm512_add_ps(o1, b1);
    _mm512_mask_storeu_ps(c + (size_t)i * ldc, lo, o0);
    _mm512_mask_storeu_ps(c + (size_t)i * ldc + 16, hi, o1);
  }
}

KERNEL_TARGET void nl_igemm_packed(float *c, int ldc, const uint8_t *u, const float *sa,
                                   const int8_t *wp, const int32_t *comp, const float *sw,
                                   const float *bias, int N, int K, int m0, int m1, int p0,
                                   int p1) {
  const int lda = nl_igemm_lda(K), K4 = lda / 4;
  for (int p = p0; p < p1; p++) {
    const int n0 = p * NR, left = N - n0;
    const __mmask16 lo = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    const __mmask16 hi = left >= 32   ? (__mmask16)0xffff
                         : left <= 16 ? (__mmask16)0
                                      : (__mmask16)((1u << (left - 16)) - 1);
    const int8_t *w = wp + (size_t)p * NR * lda;
    const __m512i c0 = _mm512_loadu_si512((const void *)(comp + n0));
    const __m512i c1 = _mm512_loadu_si512((const void *)(comp + n0 + 16));
    const __m512 s0 = _mm512_maskz_loadu_ps(lo, sw + n0), s1 = _mm512_maskz_loadu_ps(hi, sw + n0 + 16);
    const float *bb = bias ? bias + n0 : NULL;
    int m = m0;
    for (; m + MR <= m1; m += MR)
      ikernel(MR, K4, u + (size_t)m * lda, lda, w, c0, c1, sa + m, s0, s1, bb,
              c + (size_t)m * ldc + n0, ldc, lo, hi);
    const uint8_t *um = u + (size_t)m * lda;
    float *cm = c + (size_t)m * ldc + n0;
    switch (m1 - m) { /* one specialised kernel per remainder */
      case 7: ikernel(7, K4, um, lda, w, c0, c1, sa + m, s0, s1, bb, cm, ldc, lo, hi); break;
      case 6: ikernel(6, K4, um, lda, w, c0, c1, sa + m, s0, s1, bb, cm, ldc, lo, hi); break;
      case 5: ikernel(5, K4, um, lda, w, c0, c1, sa + m, s0, s1, bb, cm, ldc, lo, hi); break;
      case 4: ikernel(4, K4, um, lda, w, c0, c1, sa + m, s0, s1, bb, cm, ldc, lo, hi); break;
      case 3: ikernel(3, K4, um, lda, w, c0, c1, sa + m, s0, s1, bb, cm, ldc, lo, hi); break;
      case 2: ikernel(2, K4, um, lda, w, c0, c1, sa + m, s0, s1, bb, cm, ldc, lo, hi); break;
      case 1: ikernel(1, K4, um, lda, w, c0, c1, sa + m, s0, s1, bb, cm, ldc, lo, hi); break;
      default: break;
    }
  }
}

#else

void nl_igemm_quantize(uint8_t *u, float *sa, const float *x, int K, const float *in_scale,
                       float act_scale, int r0, int r1) {
  (void)u, (void)sa, (void)x, (void)K, (void)in_scale, (void)act_scale, (void)r0, (void)r1;
  abort(); /* nl_igemm_available() is 0 here */
}

void nl_igemm_packed(float *c, int ldc, const uint8_t *u, const float *sa, const int8_t *wp,
                     const int32_t *comp, const float *sw, const float *bias, int N, int K,
                     int m0, int m1, int p0, int p1) {
  (void)c, (void)ldc, (void)u, (void)sa, (void)wp, (void)comp, (void)sw, (void)bias, (void)N;
  (void)K, (void)m0, (void)m1, (void)p0, (void)p1;
  abort(); /* nl_igemm_available() is 0 here */
}

#endif
