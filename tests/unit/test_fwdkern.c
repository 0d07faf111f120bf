/* The forward pass's own kernels against references computed here: the
 * Linear product (tensor/gemm.h: one fused multiply-add chain per output,
 * in k order; also against long double), the GELU against libm's erf over
 * a fine sweep, the products with GELU / residual fused in against the
 * separate layers, attention against a naive long double computation, and
 * every one of them bitwise the same for 1, 2 and 3 threads and for any
 * batch split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "tensor/gemm.h"
#include "tensor/kernels.h"
#include "tensor/layers.h"

static float *randn(nl_rng *r, size_t n, double scale) {
  float *x = nl_xmalloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) x[i] = (float)(scale * nl_rng_normal(r));
  return x;
}

/* out = inp w^T + b with the kernel, 1, 2 and 3 threads: all bitwise equal;
 * returns the 1-thread result (caller frees) */
static float *linear_threads(const float *inp, const float *w, const float *b, int M, int K,
                             int N) {
  float *ref = NULL;
  for (int t = 1; t <= 3; t++) {
    float *o = nl_xmalloc(sizeof(float) * (size_t)M * N);
    int outer = nl_threads_enter(t);
    nl_linear_forward(o, inp, w, b, M, K, N);
    nl_threads_leave(outer);
    if (!ref) {
      ref = o;
      continue;
    }
    if (memcmp(o, ref, sizeof(float) * (size_t)M * N) != 0)
      fail_msg("linear %dx%dx%d: %d threads differ from 1", M, N, K, t);
    free(o);
  }
  return ref;
}

static void test_linear(void **state) {
  (void)state;
  static const int shapes[][3] = {/* M, N, K */
                                  {1, 10, 192},  {7, 32, 16},   {8, 50, 64},   {50, 576, 192},
                                  {50, 192, 768}, {130, 33, 49}, {3200, 192, 192}, {9, 1, 5}};
  nl_rng r;
  nl_rng_seed(&r, 7);
  const int own = nl_gemm_available();
  printf("# AVX-512 kernel %s\n", own ? "in use" : "not available: OpenBLAS");
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    float *a = randn(&r, (size_t)M * K, 1.0), *w = randn(&r, (size_t)N * K, 0.1);
    float *b = randn(&r, (size_t)N, 0.5);
    float *o = linear_threads(a, w, b, M, K, N);
    double worst = 0;
    size_t chain_diff = 0;
    for (int m = 0; m < M; m++)
      for (int n = 0; n < N; n++) {
        long double e = b[n], mag = fabsf(b[n]);
        float c = b[n];
        for (int k = 0; k < K; k++) {
          const long double t = (long double)a[(size_t)m * K + k] * w[(size_t)n * K + k];
          e += t;
          mag += fabsl(t);
          c = fmaf(a[(size_t)m * K + k], w[(size_t)n * K + k], c);
        }
        const float got = o[(size_t)m * N + n];
        /* error relative to the float summation bound K u sum |terms| */
        worst = fmax(worst, (double)(fabsl(got - e) / (K * 0x1p-24L * mag + 1e-30L)));
        chain_diff += got != c;
      }
    printf("# linear %dx%dx%d: max error against long double %.3g of the bound K u sum|a w|; "
           "%zu outputs differ from the fma chain\n",
           M, N, K, worst, chain_diff);
    assert_true(worst <= 1.0);
    if (own) assert_int_equal(chain_diff, 0); /* the documented arithmetic, bitwise */
    /* rows computed alone (batch 1) or over a packed copy: the same bits */
    float *row = nl_xmalloc(sizeof(float) * (size_t)N);
    for (int m = 0; m < M; m += M > 8 ? M / 5 + 1 : 1) {
      nl_linear_forward(row, a + (size_t)m * K, w, b, 1, K, N);
      assert_memory_equal(row, o + (size_t)m * N, sizeof(float) * (size_t)N);
    }
    if (own) {
      float *wp = nl_aalloc(sizeof(float) * nl_gemm_pack_floats(N, K));
      nl_gemm_pack(wp, w, N, K, 0, (N + NL_GEMM_NR - 1) / NL_GEMM_NR);
      float *o2 = nl_xmalloc(sizeof(float) * (size_t)M * N);
      nl_linear_forward_ex(o2, a, w, wp, b, M, K, N, NULL);
      assert_memory_equal(o2, o, sizeof(float) * (size_t)M * N);
      free(o2);
      nl_afree(wp);
    }
    free(row);
    free(o);
    free(a);
    free(w);
    free(b);
  }
}

/* GELU against 0.5 x (1 + erf(x / sqrt 2)) in double, libm's erf, over
 * [-12, 12] in steps of 2^-12 and around 0 finely; specials */
static void test_gelu(void **state) {
  (void)state;
  const int n = 24 * 4096 + 1;
  float *x = nl_xmalloc(sizeof(float) * (size_t)n + 64), *y = nl_xmalloc(sizeof(float) * n);
  for (int i = 0; i < n; i++) x[i] = -12.0f + (float)i / 4096.0f;
  nl_gelu(y, x, (size_t)n);
  double worst = 0, where = 0;
  for (int i = 0; i < n; i++) {
    const double v = x[i], e = 0.5 * v * (1 + erf(v / sqrt(2.0)));
    if (fabs(y[i] - e) > worst) worst = fabs(y[i] - e), where = v;
  }
  /* near 0: GELU(x) ~ x/2, relative error */
  double rel = 0;
  for (int i = 1; i < 2000; i++) {
    const float v = (float)ldexp(1.0 + i / 2000.0, -(i % 60) - 1) * (i % 2 ? 1 : -1);
    float g;
    nl_gelu(&g, &v, 1);
    const double e = 0.5 * v * (1 + erf(v / sqrt(2.0)));
    rel = fmax(rel, fabs(g - e) / fabs(e));
  }
  printf("# gelu: max absolute error %.3g (at %.4f) over [-12, 12], relative %.3g near 0\n",
         worst, where, rel);
  assert_true(worst < 1e-6);
  assert_true(rel < 2e-6);
  /* each element's result independent of the call's length and offset */
  for (int off = 1; off < 17; off += 5) {
    float *z = nl_xmalloc(sizeof(float) * 37);
    nl_gelu(z, x + 1000 + off, 37);
    assert_memory_equal(z, y + 1000 + off, sizeof(float) * 37);
    free(z);
  }
  float s[4] = {NAN, INFINITY, 0.0f, -0.0f}, o[4];
  nl_gelu(o, s, 4);
  assert_true(isnan(o[0]));
  assert_true(isinf(o[1]) && o[1] > 0);
  assert_true(o[2] == 0.0f && o[3] == 0.0f);
  free(x);
  free(y);
}

/* product + GELU / + residual in one call: the bits of the separate layers */
static void test_fused_epilogue(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 11);
  static const int shapes[][3] = {{50, 768, 192}, {3200, 256, 64}, {17, 64, 256}};
  for (size_t s = 0; s < 3; s++) {
    const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    const size_t MN = (size_t)M * N;
    float *a = randn(&r, (size_t)M * K, 1.0), *w = randn(&r, (size_t)N * K, 0.1);
    float *b = randn(&r, (size_t)N, 0.5), *res = randn(&r, MN, 1.0);
    float *o1 = nl_xmalloc(sizeof(float) * MN), *g1 = nl_xmalloc(sizeof(float) * MN);
    float *o2 = nl_xmalloc(sizeof(float) * MN), *g2 = nl_xmalloc(sizeof(float) * MN);
    for (int t = 1; t <= 2; t++) {
      int outer = nl_threads_enter(t);
      nl_linear_forward(o1, a, w, b, M, K, N);
      nl_gelu_forward(g1, o1, MN);
      const nl_lin_epilogue eg = {NL_LIN_GELU, g2, NULL};
      nl_linear_forward_ex(o2, a, w, NULL, b, M, K, N, &eg);
      assert_memory_equal(o1, o2, sizeof(float) * MN);
      assert_memory_equal(g1, g2, sizeof(float) * MN);
      nl_residual_forward(g1, res, o1, MN);
      const nl_lin_epilogue ea = {NL_LIN_ADD, g2, res};
      nl_linear_forward_ex(o2, a, w, NULL, b, M, K, N, &ea);
      assert_memory_equal(g1, g2, sizeof(float) * MN);
      nl_threads_leave(outer);
    }
    free(a), free(w), free(b), free(res), free(o1), free(o2), free(g1), free(g2);
  }
}

/* attention against the definition in long double: S = q k^T / sqrt(hd),
 * P = softmax(S) per row, O = P v, per (image, head) */
static void check_attention(int B, int T, int C, int NH) {
  nl_rng r;
  nl_rng_seed(&r, (uint64_t)(B * 1000 + T * 10 + NH));
  const int hd = C / NH;
  const size_t nqkv = (size_t)B * T * 3 * C;
  float *qkv = randn(&r, nqkv, 1.5);
  float *out[3], *att[3];
  for (int t = 0; t < 3; t++) {
    out[t] = nl_xmalloc(sizeof(float) * (size_t)B * T * C);
    att[t] = nl_xmalloc(sizeof(float) * (size_t)B * NH * T * T);
    int outer = nl_threads_enter(t + 1);
    nl_attention_forward(out[t], att[t], qkv, B, T, C, NH);
    nl_threads_leave(outer);
  }
  for (int t = 1; t < 3; t++) {
    assert_memory_equal(out[t], out[0], sizeof(float) * (size_t)B * T * C);
    assert_memory_equal(att[t], att[0], sizeof(float) * (size_t)B * NH * T * T);
  }
  double wo = 0, wp = 0;
  long double *p = malloc(sizeof(long double) * (size_t)T);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < T; i++) {
        const float *q = qkv + ((size_t)b * T + i) * 3 * C + (size_t)h * hd;
        long double mx = -INFINITY, sum = 0;
        for (int j = 0; j < T; j++) {
          const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + (size_t)h * hd;
          long double s = 0;
          for (int d = 0; d < hd; d++) s += (long double)q[d] * k[d];
          p[j] = s / sqrtl((long double)hd);
          if (p[j] > mx) mx = p[j];
        }
        for (int j = 0; j < T; j++) sum += p[j] = expl(p[j] - mx);
        for (int j = 0; j < T; j++) {
          p[j] /= sum;
          const float got = att[0][(((size_t)b * NH + h) * T + i) * T + j];
          wp = fmax(wp, (double)fabsl(got - p[j]));
        }
        for (int d = 0; d < hd; d++) {
          long double o = 0;
          for (int j = 0; j < T; j++)
            o += p[j] * qkv[((size_t)b * T + j) * 3 * C + 2 * C + (size_t)h * hd + d];
          const float got = out[0][((size_t)b * T + i) * C + (size_t)h * hd + d];
          wo = fmax(wo, (double)fabsl(got - o));
        }
      }
  printf("# attention B %d T %d C %d heads %d: max error probabilities %.3g, output %.3g; "
         "1, 2, 3 threads bitwise equal\n",
         B, T, C, NH, wp, wo);
  assert_true(wp < 2e-6);
  assert_true(wo < 5e-6);
  free(p);
  free(qkv);
  for (int t = 0; t < 3; t++) free(out[t]), free(att[t]);
}

static void test_attention(void **state) {
  (void)state;
  check_attention(3, 50, 192, 3); /* vit_tiny_p4 */
  check_attention(5, 17, 64, 2);  /* vit_small_p7 */
  check_attention(2, 33, 40, 1);  /* head width not a multiple of 16 */
  check_attention(2, 70, 64, 2); /* rows longer than the registers hold */
  check_attention(1, 1, 8, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linear),
      cmocka_unit_test(test_gelu),
      cmocka_unit_test(test_fused_epilogue),
      cmocka_unit_test(test_attention),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
