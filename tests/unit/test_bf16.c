/* BF16 products: the rounding against an independent round-to-nearest-even
 * (frexp / nearbyint in double), the oneDNN bf16 x bf16 -> f32 product
 * against a long-double reference computed here from inputs rounded here,
 * bitwise the same for 1 and 2 threads, and the timm fixtures' forward
 * pass in BF16 against their reference logits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fenv.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "model/quant.h"
#include "model/safetensors.h"
#include "model/vit.h"
#include "tensor/bf16.h"
#include "tensor/qlinear.h"

static char fx_path[4096];

static const char *fixture(const char *name) {
  const char *dir = getenv("NL_FIXTURES");
  snprintf(fx_path, sizeof fx_path, "%s/%s", dir ? dir : "../shared/fixtures/timm", name);
  return fx_path;
}

/* The BF16 instructions are there (else the products are refused: skip). */
static int have_bf16(void) {
  char why[300];
  if (nl_bf16_check_cpu(why, sizeof why) == 0) return 1;
  printf("# %s\n", why);
  return 0;
}

/* Round x to 8 significant bits, nearest even, in double: the test's own
 * rounding (no bit tricks). x = f 2^e with 0.5 <= |f| < 1: the kept bits
 * are those of f 2^8, rounded by nearbyint (ties to even in the default
 * mode). Below the smallest normal float the step is 2^-133 (BF16 has
 * FP32's exponent range and subnormals). */
static double ref_round(double x) {
  if (x == 0 || !isfinite(x)) return x;
  int e;
  frexp(x, &e);
  if (e < -125) e = -125;
  double step = ldexp(1.0, e - 8);
  double r = nearbyint(x / step) * step;
  if (fabs(r) > FLT_MAX) r = copysign(INFINITY, r);
  return r;
}

static float bits_f(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static void test_round(void **state) {
  (void)state;
  assert_int_equal(fegetround(), FE_TONEAREST);
  /* worked by hand: bits of the float -> bits of the bfloat16 */
  static const uint32_t in[] = {0x3f800000u, 0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f80ffffu,
                                0x80000000u, 0x7f800000u, 0xff800000u, 0x7f7fffffu, 0x00000001u,
                                0x00008000u, 0x00018000u, 0xc0490fdbu};
  static const uint16_t want[] = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x3f81, 0x8000, 0x7f80,
                                  0xff80, 0x7f80, 0x0000, 0x0000, 0x0002, 0xc049};
  /* 1; 1 + 2^-8 ties to even (down); 1 + 3 2^-8 ties to even (up); just
   * above the tie; -0; +-inf; FLT_MAX overflows to inf; subnormals (the
   * tie 0x8000 to even 0, 0x18000 to 2); -pi -> -3.140625 */
  for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
    float x = bits_f(in[i]);
    uint16_t h = nl_bf16_round(x);
    if (h != want[i]) fail_msg("round(0x%08x) = 0x%04x, want 0x%04x", in[i], h, want[i]);
    assert_true(nl_bf16_to_f32(h) == (float)ref_round(x));
  }
  /* NaN stays NaN, its sign kept */
  assert_true(isnan(nl_bf16_to_f32(nl_bf16_round(NAN))));
  assert_true(isnan(nl_bf16_to_f32(nl_bf16_round(bits_f(0x7f800001u)))));
  assert_true(signbit(nl_bf16_to_f32(nl_bf16_round(-NAN))));
  /* random values over the whole range, the vectorized loop and the inline
   * one against the reference */
  nl_rng r;
  nl_rng_seed(&r, 11);
  const size_t n = 100003;
  float *x = nl_xmalloc(sizeof(float) * n);
  uint16_t *h = nl_xmalloc(sizeof(uint16_t) * n);
  for (size_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)nl_rng_u64(&r);
    if (i % 3 == 0) u &= 0xffff8000u | (u & 1u ? 0x0000u : 0x8000u); /* many exact ties */
    x[i] = bits_f(u);
    if (!isfinite(x[i])) x[i] = (float)i;
  }
  nl_bf16_from_f32(h, x, n);
  for (size_t i = 0; i < n; i++) {
    if (h[i] != nl_bf16_round(x[i])) fail_msg("vector and scalar rounding differ at %zu", i);
    if (nl_bf16_to_f32(h[i]) != (float)ref_round(x[i]))
      fail_msg("round(%a) = %a, reference %a", (double)x[i], (double)nl_bf16_to_f32(h[i]),
               ref_round(x[i]));
  }
  free(x);
  free(h);
}

/* out = bf16(a) bf16(w)^T + b against the long-double sum of the inputs
 * rounded by the test. FP32 accumulation of K exact products: error at
 * most about K 2^-24 sum |a w| (a bound, with a factor 2 of margin); the
 * unrounded inputs would be off by ~2^-9 |a w| per term. */
static void check_product(int M, int N, int K, int bias, int threads, float *keep) {
  nl_rng r;
  nl_rng_seed(&r, (uint64_t)M * 1000003u + (uint64_t)N * 1009u + (uint64_t)K);
  float *a = nl_xmalloc(sizeof(float) * (size_t)M * K), *w = nl_xmalloc(sizeof(float) * (size_t)N * K);
  float *b = nl_xmalloc(sizeof(float) * (size_t)N), *c = nl_xmalloc(sizeof(float) * (size_t)M * N);
  uint16_t *wb = nl_xmalloc(sizeof(uint16_t) * (size_t)N * K);
  for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)nl_rng_normal(&r);
  for (size_t i = 0; i < (size_t)N * K; i++) w[i] = (float)(0.2 * nl_rng_normal(&r));
  for (int i = 0; i < N; i++) b[i] = (float)nl_rng_normal(&r);
  nl_bf16_from_f32(wb, w, (size_t)N * K);
  char eb[200] = "";
  int outer = nl_threads_enter(threads);
  int rc = nl_linear_forward_bf16(c, a, wb, bias ? b : NULL, M, K, N, eb, sizeof eb);
  nl_threads_leave(outer);
  if (rc) fail_msg("%s", eb);
  double worst = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      long double s = bias ? b[j] : 0, mag = 0;
      for (int k = 0; k < K; k++) {
        long double p = (long double)ref_round(a[(size_t)i * K + k]) *
                        (long double)ref_round(w[(size_t)j * K + k]);
        s += p;
        mag += fabsl(p);
      }
      double d = fabs((double)(c[(size_t)i * N + j] - s));
      double tol = 2.0 * K * ldexp(1.0, -24) * (double)mag + ldexp(1.0, -24) * fabs((double)s);
      if (!(d <= tol))
        fail_msg("%dx%dx%d: c[%d,%d] = %.9g, reference %.9Lg (|d| %.3g > %.3g)", M, N, K, i, j,
                 c[(size_t)i * N + j], s, d, tol);
      if (d / (mag + 1e-30) > worst) worst = d / (double)(mag + 1e-30);
    }
  printf("# %dx%dx%d%s, %d threads: max |c - ref| / sum |a w| = %.3g\n", M, N, K,
         bias ? " + bias" : "", threads, worst);
  if (keep) memcpy(keep, c, sizeof(float) * (size_t)M * N);
  free(a);
  free(w);
  free(b);
  free(c);
  free(wb);
}

static void test_product(void **state) {
  (void)state;
  if (!have_bf16()) skip();
  check_product(37, 45, 70, 1, 1, NULL);
  check_product(1, 10, 192, 1, 2, NULL);
  check_product(50, 576, 192, 0, 2, NULL); /* one row tile: split in column tiles */
  check_product(700, 64, 256, 1, 2, NULL); /* three row tiles */
  /* the primitives are reused */
  int cached = nl_qgemm_cache_size();
  check_product(37, 45, 70, 1, 1, NULL);
  assert_int_equal(nl_qgemm_cache_size(), cached);
}

/* Bitwise the same for 1 and 2 threads (tiles fixed by the shapes). */
static void test_threads(void **state) {
  (void)state;
  if (!have_bf16()) skip();
  const int shapes[3][3] = {{600, 192, 192}, {50, 768, 192}, {3200, 10, 64}};
  for (int s = 0; s < 3; s++) {
    size_t n = (size_t)shapes[s][0] * shapes[s][1];
    float *c1 = nl_xmalloc(sizeof(float) * n), *c2 = nl_xmalloc(sizeof(float) * n);
    check_product(shapes[s][0], shapes[s][1], shapes[s][2], 1, 1, c1);
    check_product(shapes[s][0], shapes[s][1], shapes[s][2], 1, 2, c2);
    assert_memory_equal(c1, c2, sizeof(float) * n);
    free(c1);
    free(c2);
  }
}

/* ---- the ViT forward pass in BF16 ---- */

static void forward_ref(const char *model, const char *ref, double tol) {
  nl_error err;
  nl_vit m, f;
  nl_vit_load_opts lo = {.precision = NL_PREC_BF16};
  if (nl_vit_load(&m, fixture(model), &lo, &err)) fail_msg("%s", err.msg);
  if (nl_vit_load(&f, fixture(model), NULL, &err)) fail_msg("%s", err.msg);
  assert_non_null(m.bf16);
  assert_null(f.bf16);
  char prec[160];
  nl_vit_precision(&m, prec, sizeof prec);
  assert_true(strncmp(prec, "bf16", 4) == 0);
  nl_st_file r;
  if (nl_st_open(&r, fixture(ref), &err)) fail_msg("%s", err.msg);
  size_t n;
  float *in = nl_st_read_f32(&r, "inputs", &n, &err), *lg = nl_st_read_f32(&r, "logits", &n, &err);
  assert_non_null(in);
  assert_non_null(lg);
  assert_int_equal(n, 80);
  nl_vit_acts a;
  assert_int_equal(nl_vit_acts_init(&a, &m.cfg, 8, 0, &err), 0);
  float bf[80], fp[80];
  a.threads = 1;
  assert_int_equal(nl_vit_forward(&m, &a, in, 8, NULL, NULL, &err), 0);
  memcpy(bf, a.logits, sizeof bf);
  a.threads = 2;
  assert_int_equal(nl_vit_forward(&m, &a, in, 8, NULL, NULL, &err), 0);
  assert_memory_equal(bf, a.logits, sizeof bf); /* any thread count: the same bits */
  assert_int_equal(nl_vit_forward(&f, &a, in, 8, NULL, NULL, &err), 0);
  memcpy(fp, a.logits, sizeof fp);
  double d_ref = 0, d_fp = 0, scale = 0;
  int agree = 0;
  for (int i = 0; i < 8; i++) {
    int ab = 0, ar = 0;
    for (int k = 0; k < 10; k++) {
      d_ref = fmax(d_ref, fabs(bf[i * 10 + k] - lg[i * 10 + k]));
      d_fp = fmax(d_fp, fabs(bf[i * 10 + k] - fp[i * 10 + k]));
      scale = fmax(scale, fabs(lg[i * 10 + k]));
      if (bf[i * 10 + k] > bf[i * 10 + ab]) ab = k;
      if (lg[i * 10 + k] > lg[i * 10 + ar]) ar = k;
    }
    agree += ab == ar;
  }
  printf("# %s bf16: max |logit - timm| %.3g (logits up to %.3g), vs normlab fp32 %.3g; "
         "argmax agrees on %d/8\n",
         model, d_ref, scale, d_fp, agree);
  assert_int_equal(agree, 8);
  assert_true(d_ref <= tol);
  /* BF16 differs from FP32 (the products did run in BF16) */
  assert_true(d_fp > 1e-5);
  /* back to fp32: exactly the FP32 model's logits */
  assert_int_equal(nl_vit_set_precision(&m, NL_PREC_FP32, &err), 0);
  assert_null(m.bf16);
  assert_int_equal(nl_vit_forward(&m, &a, in, 8, NULL, NULL, &err), 0);
  assert_memory_equal(fp, a.logits, sizeof fp);
  nl_vit_acts_free(&a);
  free(in);
  free(lg);
  nl_st_close(&r);
  nl_vit_free(&m);
  nl_vit_free(&f);
}

static void test_small_forward(void **state) {
  (void)state;
  if (!have_bf16()) skip();
  forward_ref("vit_small_p7_fmnist.safetensors", "vit_small_p7_fmnist_ref.safetensors", 0.1);
}

static void test_tiny_forward(void **state) {
  (void)state;
  if (!have_bf16()) skip();
  forward_ref("vit_tiny_p4_fmnist.safetensors", "vit_tiny_p4_fmnist_ref.safetensors", 0.1);
}

/* A quantized model keeps its integer products: bf16 is refused, naming it. */
static void test_quantized_refused(void **state) {
  (void)state;
  nl_error err;
  nl_vit m;
  if (nl_vit_load(&m, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err)) fail_msg("%s", err.msg);
  nl_st_file r;
  if (nl_st_open(&r, fixture("vit_small_p7_fmnist_ref.safetensors"), &err)) fail_msg("%s", err.msg);
  size_t n;
  float *in = nl_st_read_f32(&r, "inputs", &n, &err);
  nl_quant_opts o = {.bits = 8};
  assert_int_equal(nl_vit_quantize(&m, in, 8, &o, 1, NULL, &err), 0);
  assert_int_equal(nl_vit_set_precision(&m, NL_PREC_BF16, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  printf("# %s\n", err.msg);
  assert_non_null(strstr(err.msg, "quantized"));
  assert_null(m.bf16);
  nl_precision p;
  assert_int_equal(nl_precision_parse("bf16", &p, &err), 0);
  assert_int_equal(p, NL_PREC_BF16);
  assert_int_equal(nl_precision_parse("fp16", &p, &err), -1);
  assert_non_null(strstr(err.msg, "fp16"));
  free(in);
  nl_st_close(&r);
  nl_vit_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round),          cmocka_unit_test(test_product),
      cmocka_unit_test(test_threads),        cmocka_unit_test(test_small_forward),
      cmocka_unit_test(test_tiny_forward),   cmocka_unit_test(test_quantized_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
