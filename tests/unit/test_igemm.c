/* The AVX512-VNNI INT8 product (tensor/igemm.h) against exact references:
 * int64 sums of the same integers on shapes that leave every remainder
 * (rows, panels, K not a multiple of 4), the extremes of both ranges; its
 * quantizer against nl_quantize_rows_s8's integers; the W8A8 layer on it
 * against oneDNN's product of the same integers with the same epilogue,
 * bit for bit; the fused GELU and residual against the separate layers;
 * weights held only packed read and written back unchanged. Skipped on a
 * CPU without AVX512-VNNI. */
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
#include "tensor/igemm.h"
#include "tensor/layers.h"
#include "tensor/qlinear.h"

static int32_t rnd(nl_rng *r, int lo, int hi) { return lo + (int32_t)(nl_rng_u64(r) % (uint64_t)(hi - lo + 1)); }

/* c = (float)acc * (sa * sw) + b, acc = sum_k a w (int64): the kernel's
 * result bit for bit (one rounding per operation in this order) */
static void check_product(int M, int N, int K, int extremes, nl_rng *r) {
  const int lda = nl_igemm_lda(K);
  int8_t *w = nl_xmalloc((size_t)N * K);
  int32_t *a = nl_xmalloc(sizeof(int32_t) * (size_t)M * K);
  uint8_t *u = nl_aalloc((size_t)M * lda);
  for (int i = 0; i < N * K; i++) w[i] = (int8_t)(extremes ? (i % 3 ? -128 : 127) : rnd(r, -128, 127));
  for (int m = 0; m < M; m++)
    for (int k = 0; k < lda; k++) {
      const int32_t v = k >= K ? 0 : extremes ? ((m + k) % 2 ? 127 : -127) : rnd(r, -127, 127);
      if (k < K) a[(size_t)m * K + k] = v;
      u[(size_t)m * lda + k] = (uint8_t)(v + 128);
    }
  const int np = (N + NL_IGEMM_NR - 1) / NL_IGEMM_NR;
  int8_t *wp = nl_aalloc(nl_igemm_pack_bytes(N, K));
  int32_t *comp = nl_aalloc(sizeof(int32_t) * (size_t)np * NL_IGEMM_NR);
  nl_igemm_pack(wp, comp, w, N, K);
  float *sa = nl_xmalloc(sizeof(float) * M), *sw = nl_xmalloc(sizeof(float) * N);
  float *bias = nl_xmalloc(sizeof(float) * N);
  for (int m = 0; m < M; m++) sa[m] = 0.001f * (float)(1 + m % 7);
  for (int n = 0; n < N; n++) sw[n] = 0.01f * (float)(1 + n % 5), bias[n] = 0.25f * (float)(n % 9) - 1;
  const int ldc = N + 3; /* a wider output row: only N columns are written */
  float *c = nl_xmalloc(sizeof(float) * (size_t)M * ldc);
  for (int pass = 0; pass < 2; pass++) {
    const float *b = pass ? bias : NULL;
    for (size_t i = 0; i < (size_t)M * ldc; i++) c[i] = -7.0f;
    /* two calls: rows split unevenly, panels split in two */
    const int mh = M / 3, ph = np / 2;
    nl_igemm_packed(c, ldc, u, sa, wp, comp, sw, b, N, K, 0, mh, 0, np);
    nl_igemm_packed(c, ldc, u, sa, wp, comp, sw, b, N, K, mh, M, 0, ph);
    nl_igemm_packed(c, ldc, u, sa, wp, comp, sw, b, N, K, mh, M, ph, np);
    for (int m = 0; m < M; m++) {
      for (int n = 0; n < N; n++) {
        int64_t s = 0;
        for (int k = 0; k < K; k++) s += (int64_t)a[(size_t)m * K + k] * w[(size_t)n * K + k];
        float want = (float)s * (sa[m] * sw[n]);
        if (b) want = want + b[n];
        const float got = c[(size_t)m * ldc + n];
        if (memcmp(&got, &want, sizeof got))
          fail_msg("%dx%dx%d%s: c[%d,%d] = %.9g, want %.9g (acc %lld)", M, N, K,
                   b ? " +bias" : "", m, n, (double)got, (double)want, (long long)s);
      }
      for (int n = N; n < ldc; n++)
        if (c[(size_t)m * ldc + n] != -7.0f) fail_msg("%dx%dx%d: column %d written", M, N, K, n);
    }
  }
  free(w);
  free(a);
  nl_afree(u);
  nl_afree(wp);
  nl_afree(comp);
  free(sa);
  free(sw);
  free(bias);
  free(c);
}

static void test_product_exact(void **state) {
  (void)state;
  if (!nl_igemm_available()) skip();
  nl_rng r;
  nl_rng_seed(&r, 11);
  const int shapes[][3] = {{1, 1, 1},   {7, 17, 3},   {8, 32, 4},    {9, 33, 70},
                           {37, 45, 129}, {64, 192, 768}, {23, 576, 192}, {300, 70, 130}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    check_product(shapes[i][0], shapes[i][1], shapes[i][2], 0, &r);
  /* every product at the ends of both ranges: |acc| up to 127 * 128 * K */
  check_product(10, 40, 768, 1, &r);
}

/* the quantizer's integers are nl_quantize_rows_s8's, plus 128; padding 128 */
static void test_quantize_matches(void **state) {
  (void)state;
  if (!nl_igemm_available()) skip();
  nl_rng r;
  nl_rng_seed(&r, 5);
  const int rows = 6, K = 45, lda = nl_igemm_lda(K);
  float *x = nl_xmalloc(sizeof(float) * rows * K), *is = nl_xmalloc(sizeof(float) * K);
  for (int i = 0; i < rows * K; i++) x[i] = (float)rnd(&r, -100000, 100000) * 1e-4f;
  for (int k = 0; k < K; k++) is[k] = 0.5f + 0.05f * (float)k;
  for (int k = 0; k < K; k++) x[K + k] = 0.0f;    /* an all-zero row: scale 1 */
  x[2 * K + 3] = NAN;                              /* NaN: passed over by the max, 127 */
  x[3 * K + 1] = 2.5f * (x[3 * K + 2] = 2.0f);      /* ties and the row's maximum */
  for (int k = 0; k < K; k++) x[4 * K + k] = (float)(k - 22) * 0.5f; /* exact halves */
  int8_t *q8 = nl_xmalloc((size_t)rows * K);
  uint8_t *u = nl_xmalloc((size_t)rows * lda);
  float *s8 = nl_xmalloc(sizeof(float) * rows), *su = nl_xmalloc(sizeof(float) * rows);
  for (int variant = 0; variant < 4; variant++) {
    const float *ins = variant & 1 ? is : NULL;
    const float act = variant & 2 ? 0.37f : 0.0f; /* static per-tensor scale: clamps */
    memset(u, 0, (size_t)rows * lda);
    nl_quantize_rows_s8(x, rows, K, ins, act, q8, s8);
    nl_igemm_quantize(u, su, x, K, ins, act, 0, rows);
    for (int i = 0; i < rows; i++) {
      assert_memory_equal(&s8[i], &su[i], sizeof(float));
      for (int k = 0; k < lda; k++) {
        const int want = k < K ? q8[(size_t)i * K + k] + 128 : 128;
        if (u[(size_t)i * lda + k] != want)
          fail_msg("variant %d row %d col %d: %d, want %d", variant, i, k, u[(size_t)i * lda + k], want);
      }
    }
  }
  free(x);
  free(is);
  free(q8);
  free(u);
  free(s8);
  free(su);
}

static void make_layer(nl_qlinear *q, int OC, int IC, nl_rng *r, int in_scale) {
  nl_qlinear_alloc(q, OC, IC, 8, 1, 1);
  q->acts = 8;
  for (int o = 0; o < OC; o++) {
    q->scale[o] = 0.002f * (float)(1 + o % 11);
    for (int k = 0; k < IC; k++) nl_qlinear_set(q, o, k, rnd(r, -127, 127));
  }
  if (in_scale) {
    q->in_scale = nl_xmalloc(sizeof(float) * IC);
    for (int k = 0; k < IC; k++) q->in_scale[k] = 0.8f + 0.01f * (float)(k % 40);
  }
}

/* The layer on the kernel (fused GELU / residual too) against oneDNN's
 * integer product of nl_quantize_rows_s8's integers and the epilogue
 * formula, then the separate layers: the same bits. */
static void test_layer_matches_dnnl(void **state) {
  (void)state;
  if (!nl_igemm_available()) skip();
  nl_rng r;
  nl_rng_seed(&r, 9);
  const int N = 150, IC = 96, OC = 200;
  for (int with_scale = 0; with_scale < 2; with_scale++) {
    nl_qlinear q;
    make_layer(&q, OC, IC, &r, with_scale);
    float *x = nl_xmalloc(sizeof(float) * N * IC), *b = nl_xmalloc(sizeof(float) * OC);
    float *res = nl_xmalloc(sizeof(float) * N * OC);
    for (int i = 0; i < N * IC; i++) x[i] = (float)rnd(&r, -30000, 30000) * 1e-4f;
    for (int o = 0; o < OC; o++) b[o] = 0.1f * (float)(o % 13) - 0.6f;
    for (int i = 0; i < N * OC; i++) res[i] = (float)rnd(&r, -1000, 1000) * 1e-3f;
    /* the reference */
    int8_t *xq = nl_xmalloc((size_t)N * IC);
    float *sa = nl_xmalloc(sizeof(float) * N);
    int32_t *acc = nl_xmalloc(sizeof(int32_t) * N * OC);
    nl_quantize_rows_s8(x, N, IC, q.in_scale, 0.0f, xq, sa);
    char eb[200] = "";
    assert_int_equal(nl_qgemm_s8(N, OC, IC, xq, (const int8_t *)q.q, acc, eb, sizeof eb), 0);
    float *want = nl_xmalloc(sizeof(float) * N * OC), *wg = nl_xmalloc(sizeof(float) * N * OC);
    float *wr = nl_xmalloc(sizeof(float) * N * OC);
    for (int i = 0; i < N; i++)
      for (int o = 0; o < OC; o++)
        want[i * OC + o] = (float)acc[i * OC + o] * (sa[i] * q.scale[o]) + b[o];
    nl_gelu_forward(wg, want, (size_t)N * OC);
    nl_residual_forward(wr, res, want, (size_t)N * OC);
    /* plain, packed per call, then packed once and the plain copy dropped */
    float *out = nl_xmalloc(sizeof(float) * N * OC), *o2 = nl_xmalloc(sizeof(float) * N * OC);
    for (int packed = 0; packed < 2; packed++) {
      if (packed) assert_int_equal(nl_qlinear_pack(&q, 1), 1);
      assert_int_equal(nl_qlinear_forward(out, x, &q, b, N, eb, sizeof eb), 0);
      assert_memory_equal(out, want, sizeof(float) * N * OC);
      nl_lin_epilogue g = {NL_LIN_GELU, o2, NULL};
      assert_int_equal(nl_qlinear_forward_ex(out, x, &q, b, N, &g, eb, sizeof eb), 0);
      assert_memory_equal(out, want, sizeof(float) * N * OC);
      assert_memory_equal(o2, wg, sizeof(float) * N * OC);
      memcpy(o2, res, sizeof(float) * N * OC); /* out2 aliasing res, as the forward does */
      nl_lin_epilogue add = {NL_LIN_ADD, o2, o2};
      assert_int_equal(nl_qlinear_forward_ex(out, x, &q, b, N, &add, eb, sizeof eb), 0);
      assert_memory_equal(o2, wr, sizeof(float) * N * OC);
    }
    /* a batch of 3 rows (tasks split over panels) gives the first 3 rows */
    assert_int_equal(nl_qlinear_forward(out, x, &q, b, 3, eb, sizeof eb), 0);
    assert_memory_equal(out, want, sizeof(float) * 3 * OC);
    nl_qlinear_free(&q);
    free(x);
    free(b);
    free(res);
    free(xq);
    free(sa);
    free(acc);
    free(want);
    free(wg);
    free(wr);
    free(out);
    free(o2);
  }
}

/* Held only packed: get and raw give back the integers set; set changes
 * one weight and the product follows (its correction too). */
static void test_packed_only(void **state) {
  (void)state;
  if (!nl_igemm_available()) skip();
  nl_rng r;
  nl_rng_seed(&r, 2);
  const int OC = 37, IC = 10, N = 4;
  nl_qlinear q, ref;
  make_layer(&q, OC, IC, &r, 0);
  nl_rng_seed(&r, 2);
  make_layer(&ref, OC, IC, &r, 0);
  assert_int_equal(nl_qlinear_pack(&q, 1), 1);
  assert_null(q.q);
  uint8_t *raw = nl_xmalloc((size_t)OC * IC);
  nl_qlinear_raw(&q, raw);
  assert_memory_equal(raw, ref.q, (size_t)OC * IC);
  for (int o = 0; o < OC; o++)
    for (int k = 0; k < IC; k++) assert_int_equal(nl_qlinear_get(&q, o, k), nl_qlinear_get(&ref, o, k));
  nl_qlinear_set(&q, 33, 9, -128);
  nl_qlinear_set(&ref, 33, 9, -128);
  nl_qlinear_set(&q, 0, 0, 127);
  nl_qlinear_set(&ref, 0, 0, 127);
  float x[N * IC], a[N * OC], b[N * OC];
  for (int i = 0; i < N * IC; i++) x[i] = (float)rnd(&r, -500, 500) * 0.01f;
  char eb[200] = "";
  assert_int_equal(nl_qlinear_forward(a, x, &q, NULL, N, eb, sizeof eb), 0);
  assert_int_equal(nl_qlinear_forward(b, x, &ref, NULL, N, eb, sizeof eb), 0);
  assert_memory_equal(a, b, sizeof a);
  float wq[OC * IC], wr[OC * IC];
  nl_qlinear_dequantize(&q, wq);
  nl_qlinear_dequantize(&ref, wr);
  assert_memory_equal(wq, wr, sizeof wq);
  free(raw);
  nl_qlinear_free(&q);
  nl_qlinear_free(&ref);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_product_exact),
      cmocka_unit_test(test_quantize_matches),
      cmocka_unit_test(test_layer_matches_dnnl),
      cmocka_unit_test(test_packed_only),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
