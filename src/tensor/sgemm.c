/* normlab's float matrix product: an AVX-512 register-blocked kernel with
 * Goto-style blocking (see gemm.h), cblas_sgemm elsewhere; and its BF16
 * counterpart (nl_sgemm_bf16: the same blocking on AVX512-BF16). */
#include "tensor/sgemm.h"

#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define NL_GEMM_X86 1
#include <immintrin.h>
#define NL_AVX512 __attribute__((target("avx512f")))
#endif

#define MR 12  /* rows of c per kernel call */
#define NR 32  /* columns of c per kernel call: two zmm */
#define KC 256 /* k per block (the summation blocks) */
#define MC 144 /* rows of a packed per block */
#define NC 512 /* columns of b packed per block */

static int g_native = 0, g_bf16 = 0;
static pthread_once_t g_detect = PTHREAD_ONCE_INIT;

static void detect(void) {
  int ok = 0;
#ifdef NL_GEMM_X86
  __builtin_cpu_init();
  ok = __builtin_cpu_supports("avx512f") != 0;
  g_bf16 = ok && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
#endif
  const char *e = getenv("NORMLAB_GEMM");
  if (e && strcmp(e, "blas") == 0) ok = 0, g_bf16 = 0;
  g_native = ok;
}

int nl_sgemm_bf16_native(void) {
  pthread_once(&g_detect, detect);
  return g_bf16;
}

int nl_sgemm_native(void) {
  pthread_once(&g_detect, detect);
  return g_native;
}

#ifdef NL_GEMM_X86

/* ---- per-thread packing buffer: kept for the thread's life, freed when
 * the thread ends (the key's destructor) ---- */

#define WS_FLOATS ((size_t)MC * KC + (size_t)KC * NC)

static _Thread_local float *t_ws;
static pthread_key_t g_ws_key;
static pthread_once_t g_ws_once = PTHREAD_ONCE_INIT;

static void ws_free(void *p) { nl_afree(p); }
static void ws_key(void) { (void)pthread_key_create(&g_ws_key, ws_free); }

static float *workspace(void) {
  if (!t_ws) {
    pthread_once(&g_ws_once, ws_key);
    t_ws = nl_aalloc(WS_FLOATS * sizeof(float));
    (void)pthread_setspecific(g_ws_key, t_ws);
  }
  return t_ws;
}

/* ---- packing: a panels [k][MR], b panels [k][NR], zero beyond the edge ---- */

/* d[k*W + r] = s[r*ld + k] for r < rows, k < kc, and 0 for rows <= r < W
 * (W a multiple of 4): rows of s become the columns of a panel, by 4x4
 * transposes. Packs a not transposed (W = MR) and b transposed (W = NR). */
NL_AVX512 static void pack_t(const float *s, long ld, int rows, int kc, int W, float *d) {
  int r0 = 0;
  for (; r0 + 4 <= rows; r0 += 4) {
    const float *s0 = s + (long)r0 * ld, *s1 = s0 + ld, *s2 = s1 + ld, *s3 = s2 + ld;
    float *o = d + r0;
    int k = 0;
    for (; k + 4 <= kc; k += 4) {
      __m128 x0 = _mm_loadu_ps(s0 + k), x1 = _mm_loadu_ps(s1 + k);
      __m128 x2 = _mm_loadu_ps(s2 + k), x3 = _mm_loadu_ps(s3 + k);
      _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
      _mm_storeu_ps(o + (size_t)k * W, x0);
      _mm_storeu_ps(o + (size_t)(k + 1) * W, x1);
      _mm_storeu_ps(o + (size_t)(k + 2) * W, x2);
      _mm_storeu_ps(o + (size_t)(k + 3) * W, x3);
    }
    for (; k < kc; k++) {
      float *q = o + (size_t)k * W;
      q[0] = s0[k], q[1] = s1[k], q[2] = s2[k], q[3] = s3[k];
    }
  }
  for (; r0 < rows; r0++)
    for (int k = 0; k < kc; k++) d[(size_t)k * W + r0] = s[(long)r0 * ld + k];
  for (int r = rows; r < W; r++)
    for (int k = 0; k < kc; k++) d[(size_t)k * W + r] = 0.0f;
}

/* d[k*W + c] = s[k*ld + c] for c < cols, 0 for cols <= c < W (W <= 32):
 * runs of s copied into a panel. Packs a transposed (W = MR) and b not
 * transposed (W = NR). */
NL_AVX512 static void pack_n(const float *s, long ld, int cols, int kc, int W, float *d) {
  const __mmask16 m0 = cols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1u);
  const __mmask16 m1 = cols >= 32 ? (__mmask16)0xFFFF
                       : cols <= 16 ? (__mmask16)0
                                    : (__mmask16)((1u << (cols - 16)) - 1u);
  const __mmask16 w0 = W >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << W) - 1u);
  const __mmask16 w1 = W >= 32 ? (__mmask16)0xFFFF
                       : W <= 16 ? (__mmask16)0
                                 : (__mmask16)((1u << (W - 16)) - 1u);
  for (int k = 0; k < kc; k++, s += ld, d += W) {
    _mm512_mask_storeu_ps(d, w0, _mm512_maskz_loadu_ps(m0, s));
    if (w1) _mm512_mask_storeu_ps(d + 16, w1, _mm512_maskz_loadu_ps(m1, s + 16));
  }
}

/* ---- kernel: c[m, n] (m <= MR, n <= NR) = alpha * sum_k a_k b_k + beta c
 * (+ bias[j] in place of beta c when bias is given),
 * A(r, k) = a[k*kas + r] for r < MR (rows from m on are computed, not
 * stored), B(k, j) = b[k*kbs + j], read for j < n only ---- */

#define ACC(r) __m512 r##a = _mm512_setzero_ps(), r##b = _mm512_setzero_ps()
#define FMA(r, i)                                  \
  do {                                             \
    const __m512 x = _mm512_set1_ps(a[i]);         \
    r##a = _mm512_fmadd_ps(x, b0, r##a);           \
    r##b = _mm512_fmadd_ps(x, b1, r##b);           \
  } while (0)
#define STEP                                                                        \
  do {                                                                              \
    FMA(c0, 0); FMA(c1, 1); FMA(c2, 2); FMA(c3, 3); FMA(c4, 4); FMA(c5, 5);         \
    FMA(c6, 6); FMA(c7, 7); FMA(c8, 8); FMA(c9, 9); FMA(c10, 10); FMA(c11, 11);     \
  } while (0)
#define STORE(r, i)                                                                 \
  do {                                                                              \
    if (i < m) {                                                                    \
      float *cr = c + (long)(i) * ldc;                                              \
      __m512 x0 = _mm512_mul_ps(va, r##a), x1 = _mm512_mul_ps(va, r##b);            \
      if (bias) {                                                                   \
        x0 = _mm512_add_ps(x0, bv0);                                                \
        x1 = _mm512_add_ps(x1, bv1);                                                \
      } else if (beta != 0.0f) {                                                    \
        x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(ma, cr), x0);                \
        x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mb, cr + 16), x1);           \
      }                                                                             \
      _mm512_mask_storeu_ps(cr, ma, x0);                                            \
      _mm512_mask_storeu_ps(cr + 16, mb, x1);                                       \
    }                                                                               \
  } while (0)

#define KERN_MASKS                                                                  \
  const __mmask16 ma = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);   \
  const __mmask16 mb = n >= 32 ? (__mmask16)0xFFFF                                  \
                       : n <= 16 ? (__mmask16)0                                     \
                                 : (__mmask16)((1u << (n - 16)) - 1u)
#define KERN_STORE                                                                  \
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);               \
  __m512 bv0 = va, bv1 = va;                                                        \
  if (bias) bv0 = _mm512_maskz_loadu_ps(ma, bias), bv1 = _mm512_maskz_loadu_ps(mb, bias + 16); \
  STORE(c0, 0); STORE(c1, 1); STORE(c2, 2); STORE(c3, 3); STORE(c4, 4); STORE(c5, 5);  \
  STORE(c6, 6); STORE(c7, 7); STORE(c8, 8); STORE(c9, 9); STORE(c10, 10); STORE(c11, 11)

NL_AVX512 static void kern(int kc, const float *a, long kas, const float *b, long kbs, float *c,
                           long ldc, float alpha, float beta, const float *bias, int m, int n) {
  ACC(c0); ACC(c1); ACC(c2); ACC(c3); ACC(c4); ACC(c5);
  ACC(c6); ACC(c7); ACC(c8); ACC(c9); ACC(c10); ACC(c11);
  KERN_MASKS;
  if (n == NR) {
    for (int k = 0; k < kc; k++, a += kas, b += kbs) {
      const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
      STEP;
    }
  } else {
    for (int k = 0; k < kc; k++, a += kas, b += kbs) {
      const __m512 b0 = _mm512_maskz_loadu_ps(ma, b), b1 = _mm512_maskz_loadu_ps(mb, b + 16);
      STEP;
    }
  }
  KERN_STORE;
}

/* The same for a full panel of MR rows read in place from a row-major
 * (not transposed) a: A(r, k) = a[r*lda + k]; the same arithmetic in the
 * same order as kern on the packed panel. */
#define FMAR(r, p, off)                            \
  do {                                             \
    const __m512 x = _mm512_set1_ps(p[off]);       \
    r##a = _mm512_fmadd_ps(x, b0, r##a);           \
    r##b = _mm512_fmadd_ps(x, b1, r##b);           \
  } while (0)
#define STEP_ROWS                                                                   \
  do {                                                                              \
    FMAR(c0, p0, 0); FMAR(c1, p0, l1); FMAR(c2, p0, 2 * l1); FMAR(c3, p0, l3);      \
    FMAR(c4, p4, 0); FMAR(c5, p4, l1); FMAR(c6, p4, 2 * l1); FMAR(c7, p4, l3);      \
    FMAR(c8, p8, 0); FMAR(c9, p8, l1); FMAR(c10, p8, 2 * l1); FMAR(c11, p8, l3);    \
  } while (0)

NL_AVX512 static void kern_rows(int kc, const float *a, long lda, const float *b, long kbs,
                                float *c, long ldc, float alpha, float beta, const float *bias,
                                int n) {
  ACC(c0); ACC(c1); ACC(c2); ACC(c3); ACC(c4); ACC(c5);
  ACC(c6); ACC(c7); ACC(c8); ACC(c9); ACC(c10); ACC(c11);
  KERN_MASKS;
  const int m = MR;
  const long l1 = lda, l3 = 3 * lda;
  const float *p0 = a, *p4 = a + 4 * lda, *p8 = a + 8 * lda;
  if (n == NR) {
    for (int k = 0; k < kc; k++, p0++, p4++, p8++, b += kbs) {
      const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
      STEP_ROWS;
    }
  } else {
    for (int k = 0; k < kc; k++, p0++, p4++, p8++, b += kbs) {
      const __m512 b0 = _mm512_maskz_loadu_ps(ma, b), b1 = _mm512_maskz_loadu_ps(mb, b + 16);
      STEP_ROWS;
    }
  }
  KERN_STORE;
}

/* Loops: columns in blocks of NC, k in blocks of KC (beta applies to the
 * first), rows in blocks of MC; b packed per block into panels the
 * kernel reads contiguously (by copies, or 4x4 transposes when b is
 * transposed), a transposed likewise by copies; a not transposed is read
 * in place (kern_rows), only a last panel of fewer than MR rows packed. */
NL_AVX512 static void native(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                             long lda, const float *B, long ldb, float beta, const float *bias,
                             float *C, long ldc) {
  float *ws = workspace(), *pa = ws, *pb = ws + (size_t)MC * KC;
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = N - jc < NC ? N - jc : NC;
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = K - pc < KC ? K - pc : KC;
      const float be = pc == 0 ? beta : 1.0f;
      for (int j0 = 0; j0 < nc; j0 += NR) {
        const int n = nc - j0 < NR ? nc - j0 : NR;
        float *d = pb + (size_t)(j0 / NR) * kc * NR;
        if (tb)
          pack_t(B + (long)(jc + j0) * ldb + pc, ldb, n, kc, NR, d);
        else
          pack_n(B + (long)pc * ldb + jc + j0, ldb, n, kc, NR, d);
      }
      for (int ic = 0; ic < M; ic += MC) {
        const int mc = M - ic < MC ? M - ic : MC;
        /* a transposed: panels copied; not transposed: full panels read in
         * place by kern_rows, a last partial one packed */
        for (int i0 = 0; i0 < mc; i0 += MR) {
          const int m = mc - i0 < MR ? mc - i0 : MR;
          float *d = pa + (size_t)(i0 / MR) * kc * MR;
          if (ta)
            pack_n(A + (long)pc * lda + ic + i0, lda, m, kc, MR, d);
          else if (m < MR)
            pack_t(A + (long)(ic + i0) * lda + pc, lda, m, kc, MR, d);
        }
        for (int jr = 0; jr < nc; jr += NR) {
          const int n = nc - jr < NR ? nc - jr : NR;
          const float *bp = pb + (size_t)(jr / NR) * kc * NR;
          const float *bi = pc == 0 && bias ? bias + jc + jr : NULL;
          for (int ir = 0; ir < mc; ir += MR) {
            const int m = mc - ir < MR ? mc - ir : MR;
            float *cp = C + (long)(ic + ir) * ldc + jc + jr;
            if (!ta && m == MR)
              kern_rows(kc, A + (long)(ic + ir) * lda + pc, lda, bp, NR, cp, ldc, alpha, be, bi, n);
            else
              kern(kc, pa + (size_t)(ir / MR) * kc * MR, MR, bp, NR, cp, ldc, alpha, be, bi, m, n);
          }
        }
      }
    }
  }
}


/* ---- BF16 operands (nl_sgemm_bf16): panels of K pairs, FP32 rounded to
 * bfloat16 while packed, products summed by vdpbf16ps ---- */

#define NL_BF16K __attribute__((target("avx512f,avx512bw,avx512bf16")))

static __mmask16 lanes(int n) { /* the first n (0..16) of 16 lanes */
  return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* The rounding is vcvtne2ps2bf16's: nearest-even, NaN a quiet NaN, and a
 * subnormal input (|x| < 2^-126) taken as a zero of its sign. */

/* d[p*W + i] = bf16(S(i, 2p)) | bf16(S(i, 2p+1)) << 16 for p < (kc+1)/2,
 * S(i, k) = s[k*ld + i] (i contiguous), 0 for i >= cnt and k >= kc;
 * W <= 32: two rows of S rounded into one vector of 32 bf16, then
 * interleaved into pairs. Packs a transposed (W = MR) and b not
 * transposed (W = NR). */
NL_BF16K static void packb_k(const float *s, long ld, int cnt, int kc, int W, uint32_t *d) {
  const __mmask16 m0 = lanes(cnt), m1 = lanes(cnt - 16), w0 = lanes(W), w1 = lanes(W - 16);
  __m512i idx; /* word 2j: word j (row k, column j), 2j + 1: word 16 + j (row k + 1) */
  {
    short a[32];
    for (int t = 0; t < 32; t++) a[t] = (short)((t & 1 ? 16 : 0) + t / 2);
    idx = _mm512_loadu_si512(a);
  }
  for (int k = 0; k < kc; k += 2, d += W) {
    const float *s0 = s + (long)k * ld, *s1 = s0 + ld;
    const int two = k + 1 < kc;
    for (int h = 0; h < 2; h++) {
      const __mmask16 m = h ? m1 : m0, w = h ? w1 : w0;
      if (!w) break;
      const __m512 x0 = _mm512_maskz_loadu_ps(m, s0 + 16 * h);
      const __m512 x1 = two ? _mm512_maskz_loadu_ps(m, s1 + 16 * h) : _mm512_setzero_ps();
      /* words 0..15: row k, 16..31: row k + 1; then pairs (k, k + 1) per column */
      const __m512i r = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
      _mm512_mask_storeu_epi32(d + 16 * h, w, _mm512_permutexvar_epi16(idx, r));
    }
  }
}

/* The same for S(i, k) = s[i*ld + k] (k contiguous): 32 k of a row
 * rounded at once are 16 pairs in order, written as a row of pairs; then
 * the [cnt, kp] pairs transposed into the panel by pack_t's 4x4
 * transposes (32-bit moves). Packs a not transposed (W = MR) and b
 * transposed (W = NR). */
NL_BF16K static void packb_i(const float *s, long ld, int cnt, int kc, int W, uint32_t *d) {
  const int kp = (kc + 1) / 2;
  uint32_t rows[NR * (KC / 2)];
  for (int i = 0; i < cnt; i++) {
    const float *row = s + (long)i * ld;
    uint32_t *o = rows + (size_t)i * kp;
    for (int k0 = 0; k0 < kc; k0 += 32) {
      const int left = kc - k0;
      const __m512 x0 = _mm512_maskz_loadu_ps(lanes(left), row + k0);
      const __m512 x1 = _mm512_maskz_loadu_ps(lanes(left - 16), row + k0 + 16);
      _mm512_mask_storeu_epi32(o + k0 / 2, lanes(kp - k0 / 2), (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
    }
  }
  pack_t((const float *)(const void *)rows, kp, cnt, kp, W, (float *)(void *)d);
}

#define DPB(r, i)                                                      \
  do {                                                                 \
    const __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[i]);         \
    r##a = _mm512_dpbf16_ps(r##a, b0, x);                              \
    r##b = _mm512_dpbf16_ps(r##b, b1, x);                              \
  } while (0)
#define STEPB                                                                       \
  do {                                                                              \
    DPB(c0, 0); DPB(c1, 1); DPB(c2, 2); DPB(c3, 3); DPB(c4, 4); DPB(c5, 5);         \
    DPB(c6, 6); DPB(c7, 7); DPB(c8, 8); DPB(c9, 9); DPB(c10, 10); DPB(c11, 11);     \
  } while (0)

/* kern's counterpart: kp pairs of k, a panel [kp][MR], b panel [kp][NR]
 * (zero past the edges, so every load is whole). */
NL_BF16K static void kernb(int kp, const uint32_t *a, const uint32_t *b, float *c, long ldc,
                           float alpha, float beta, const float *bias, int m, int n) {
  ACC(c0); ACC(c1); ACC(c2); ACC(c3); ACC(c4); ACC(c5);
  ACC(c6); ACC(c7); ACC(c8); ACC(c9); ACC(c10); ACC(c11);
  KERN_MASKS;
  for (int p = 0; p < kp; p++, a += MR, b += NR) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 16);
    STEPB;
  }
  KERN_STORE;
}

/* native's loops with both operands packed (and rounded) per block. */
NL_BF16K static void native_bf16(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                                 long lda, const float *B, long ldb, float beta,
                                 const float *bias, float *C, long ldc) {
  uint32_t *ws = (uint32_t *)(void *)workspace(), *pa = ws, *pb = ws + (size_t)MC * KC / 2;
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = N - jc < NC ? N - jc : NC;
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = K - pc < KC ? K - pc : KC, kp = (kc + 1) / 2;
      const float be = pc == 0 ? beta : 1.0f;
      for (int j0 = 0; j0 < nc; j0 += NR) {
        const int n = nc - j0 < NR ? nc - j0 : NR;
        uint32_t *d = pb + (size_t)(j0 / NR) * kp * NR;
        if (tb)
          packb_i(B + (long)(jc + j0) * ldb + pc, ldb, n, kc, NR, d);
        else
          packb_k(B + (long)pc * ldb + jc + j0, ldb, n, kc, NR, d);
      }
      for (int ic = 0; ic < M; ic += MC) {
        const int mc = M - ic < MC ? M - ic : MC;
        for (int i0 = 0; i0 < mc; i0 += MR) {
          const int m = mc - i0 < MR ? mc - i0 : MR;
          uint32_t *d = pa + (size_t)(i0 / MR) * kp * MR;
          if (ta)
            packb_k(A + (long)pc * lda + ic + i0, lda, m, kc, MR, d);
          else
            packb_i(A + (long)(ic + i0) * lda + pc, lda, m, kc, MR, d);
        }
        for (int jr = 0; jr < nc; jr += NR) {
          const int n = nc - jr < NR ? nc - jr : NR;
          const uint32_t *bp = pb + (size_t)(jr / NR) * kp * NR;
          const float *bi = pc == 0 && bias ? bias + jc + jr : NULL;
          for (int ir = 0; ir < mc; ir += MR) {
            const int m = mc - ir < MR ? mc - ir : MR;
            kernb(kp, pa + (size_t)(ir / MR) * kp * MR, bp, C + (long)(ic + ir) * ldc + jc + jr,
                  ldc, alpha, be, bi, m, n);
          }
        }
      }
    }
  }
}

#endif

static void product(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, const float *bias, float *c, int ldc) {
  if (M < 1 || N < 1) return;
#ifdef NL_GEMM_X86
  if (nl_sgemm_native() && K >= 1 && alpha != 0.0f) {
    native(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, bias, c, ldc);
    return;
  }
#endif
  if (bias) { /* every row starts as bias */
    for (int i = 0; i < M; i++) memcpy(c + (long)i * ldc, bias, (size_t)N * sizeof(float));
    beta = 1.0f;
  }
  if (K < 1 || alpha == 0.0f) { /* c = beta c */
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        float *p = c + (long)i * ldc + j;
        *p = beta == 0.0f ? 0.0f : beta * *p;
      }
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
              N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

void nl_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
  product(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, NULL, c, ldc);
}

void nl_sgemm_bias(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
                   const float *b, int ldb, const float *bias, float *c, int ldc) {
  product(ta, tb, M, N, K, alpha, a, lda, b, ldb, 1.0f, bias, c, ldc);
}

/* Without the instructions: the operands rounded into copies (op(a) as
 * [M, K], op(b) as [K, N]), then the FP32 product of those (a product of
 * two bfloat16 values is exact in FP32; the sums run in another order). */
static void bf16_copy(int t, int rows, int cols, const float *s, int ld, float *d) {
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) {
      const float x = t ? s[(long)j * ld + i] : s[(long)i * ld + j];
      uint32_t u;
      memcpy(&u, &x, sizeof u);
      if ((u & 0x7fffffffu) > 0x7f800000u)
        u = (u | 0x400000u) & 0xffff0000u; /* a quiet NaN */
      else if ((u & 0x7f800000u) == 0)
        u &= 0x80000000u; /* subnormal: zero, as the instruction takes it */
      else
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
      memcpy(&d[(size_t)i * cols + j], &u, sizeof u);
    }
}

static void product_bf16(int ta, int tb, int M, int N, int K, float alpha, const float *a,
                         int lda, const float *b, int ldb, float beta, const float *bias, float *c,
                         int ldc) {
  if (M < 1 || N < 1) return;
#ifdef NL_GEMM_X86
  if (nl_sgemm_bf16_native() && K >= 1 && alpha != 0.0f) {
    native_bf16(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, bias, c, ldc);
    return;
  }
#endif
  if (K < 1 || alpha == 0.0f) {
    product(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, bias, c, ldc);
    return;
  }
  float *ar = nl_xmalloc(sizeof(float) * (size_t)M * K), *br = nl_xmalloc(sizeof(float) * (size_t)K * N);
  bf16_copy(ta, M, K, a, lda, ar);
  bf16_copy(tb, K, N, b, ldb, br);
  product(0, 0, M, N, K, alpha, ar, K, br, N, beta, bias, c, ldc);
  free(ar);
  free(br);
}

void nl_sgemm_bf16(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc) {
  product_bf16(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, NULL, c, ldc);
}

void nl_sgemm_bf16_bias(int ta, int tb, int M, int N, int K, float alpha, const float *a,
                        int lda, const float *b, int ldb, const float *bias, float *c, int ldc) {
  product_bf16(ta, tb, M, N, K, alpha, a, lda, b, ldb, 1.0f, bias, c, ldc);
}
