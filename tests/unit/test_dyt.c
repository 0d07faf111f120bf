/* The DyT fit and the bound estimate on synthetic mappings whose answers
 * are known in closed form (true alpha, true noise variance). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "search/dyt.h"

typedef struct {
  float *x, *y;
  size_t n;
} data;

static data make(size_t n) {
  data d = {calloc(n, sizeof(float)), calloc(n, sizeof(float)), n};
  assert_non_null(d.x);
  assert_non_null(d.y);
  return d;
}

static void drop(data *d) {
  free(d->x);
  free(d->y);
}

/* y = tanh(a x) exactly: alpha comes back to rounding, R^2 to 1. */
static void test_fit_exact(void **state) {
  (void)state;
  const double as[] = {0.01, 0.3, 2.5, 7.0, 150.0};
  data d = make(20000);
  nl_rng r;
  nl_rng_seed(&r, 1);
  for (size_t k = 0; k < sizeof as / sizeof as[0]; k++) {
    double scale = 1.0 / as[k] < 1.0 ? 1.0 : 1.0 / as[k]; /* x spans tanh's bend */
    for (size_t i = 0; i < d.n; i++) {
      d.x[i] = (float)(scale * nl_rng_normal(&r));
      d.y[i] = (float)tanh(as[k] * d.x[i]);
    }
    double alpha, mse, r2;
    assert_int_equal(nl_dyt_fit(d.x, d.y, d.n, &alpha, &mse, &r2), 0);
    /* y is rounded to float: relative error ~1e-7 in alpha at most. */
    assert_true(fabs(alpha / as[k] - 1.0) < 1e-5);
    assert_true(mse < 1e-12);
    assert_true(r2 > 1.0 - 1e-10);
  }
  drop(&d);
}

/* With noise: alpha within 5 standard errors of the truth, where the
 * asymptotic SE of nonlinear least squares is sigma / sqrt(sum J^2),
 * J = d tanh(a x)/da = x sech^2(a x); and no point of a dense scan of
 * alpha has a lower MSE than the fit. */
static void test_fit_noisy_is_least_squares(void **state) {
  (void)state;
  const double a = 3.2, sigma = 0.4;
  data d = make(50000);
  nl_rng r;
  nl_rng_seed(&r, 2);
  double sj2 = 0.0;
  for (size_t i = 0; i < d.n; i++) {
    double x = 1.3 * nl_rng_normal(&r);
    d.x[i] = (float)x;
    d.y[i] = (float)(tanh(a * x) + sigma * nl_rng_normal(&r));
    double s = 1.0 / cosh(a * d.x[i]);
    sj2 += d.x[i] * d.x[i] * s * s * s * s;
  }
  double alpha, mse, r2;
  assert_int_equal(nl_dyt_fit(d.x, d.y, d.n, &alpha, &mse, &r2), 0);
  double se = sigma / sqrt(sj2);
  assert_true(fabs(alpha - a) < 5 * se);
  /* MSE ~ sigma^2 (within 5 SE of a mean of n squared normals). */
  assert_true(fabs(mse - sigma * sigma) < 5 * sigma * sigma * sqrt(2.0 / d.n));
  assert_true(fabs(nl_dyt_mse(d.x, d.y, d.n, alpha) - mse) < 1e-15);
  double var = nl_variance(d.y, d.n);
  assert_true(fabs(r2 - (1.0 - mse / var)) < 1e-12);
  for (int k = 0; k <= 400; k++) {
    double al = a * (0.9 + 0.2 * k / 400.0);
    assert_true(nl_dyt_mse(d.x, d.y, d.n, al) >= mse - 1e-15);
  }
  drop(&d);
}

/* y = -tanh(x): the best alpha > 0 is the limit alpha -> 0 (tanh ~ 0),
 * whose MSE is mean(y^2). y = sign(x): alpha -> infinity (MSE -> 0). */
static void test_fit_edges(void **state) {
  (void)state;
  data d = make(5000);
  nl_rng r;
  nl_rng_seed(&r, 3);
  double sy2 = 0.0;
  for (size_t i = 0; i < d.n; i++) {
    d.x[i] = (float)nl_rng_normal(&r);
    d.y[i] = (float)-tanh(d.x[i]);
    sy2 += (double)d.y[i] * d.y[i];
  }
  double alpha, mse, r2;
  assert_int_equal(nl_dyt_fit(d.x, d.y, d.n, &alpha, &mse, &r2), 0);
  assert_true(alpha < 1e-9);
  assert_true(fabs(mse - sy2 / d.n) < 1e-6);
  assert_true(r2 < 0.01);
  for (size_t i = 0; i < d.n; i++) d.y[i] = d.x[i] > 0 ? 1.0f : -1.0f;
  assert_int_equal(nl_dyt_fit(d.x, d.y, d.n, &alpha, &mse, &r2), 0);
  /* MSE reaches 0 in double once alpha |x| > ~19 for every x. */
  assert_true(alpha > 1e3);
  assert_true(mse < 1e-6);
  drop(&d);
}

static void test_fit_rejects(void **state) {
  (void)state;
  float x[4] = {0.1f, 0.2f, 0.3f, 0.4f}, y[4] = {1, 1, 1, 1};
  double alpha;
  assert_int_equal(nl_dyt_fit(x, y, 4, &alpha, NULL, NULL), -1); /* constant y */
  assert_int_equal(nl_dyt_fit(x, y, 1, &alpha, NULL, NULL), -1);
  y[1] = 2;
  assert_int_equal(nl_dyt_fit(x, y, 4, &alpha, NULL, NULL), 0);
  y[2] = NAN;
  assert_int_equal(nl_dyt_fit(x, y, 4, &alpha, NULL, NULL), -1);
  y[2] = 3;
  x[3] = INFINITY;
  assert_int_equal(nl_dyt_fit(x, y, 4, &alpha, NULL, NULL), -1);
  assert_true(isnan(nl_bound_r2(x, y, 4, 1)));
  x[3] = 0.4f;
  assert_false(isnan(nl_bound_r2(x, y, 4, 2)));
  assert_true(isnan(nl_bound_r2(x, y, 4, 3))); /* fewer than 2 points per bin */
  assert_true(isnan(nl_bound_r2(x, y, 4, 0)));
}

/* y = sin(2x) + sigma e, x ~ U(-2, 2): the best f is sin(2x), whose R^2 is
 * 1 - sigma^2 / Var(y) with Var(y) = 1/2 - sin(8)/16 + sigma^2. The estimate
 * agrees with the oracle R^2 of the true f on the same sample to well
 * within the overfit term B/n (1 - R^2) ~ 1e-3 it corrects, and with the
 * closed form within sampling error (~1e-3). */
static void test_bound_known_noise(void **state) {
  (void)state;
  const double sigma = 0.35;
  data d = make(50000);
  nl_rng r;
  nl_rng_seed(&r, 4);
  double sres = 0.0;
  for (size_t i = 0; i < d.n; i++) {
    d.x[i] = (float)(4.0 * nl_rng_uniform(&r) - 2.0);
    d.y[i] = (float)(sin(2.0 * d.x[i]) + sigma * nl_rng_normal(&r));
    double e = d.y[i] - sin(2.0 * d.x[i]);
    sres += e * e;
  }
  double var = nl_variance(d.y, d.n);
  double oracle = 1.0 - (sres / d.n) / var;
  double closed = 1.0 - sigma * sigma / (0.5 - sin(8.0) / 16.0 + sigma * sigma);
  double b = nl_bound_r2(d.x, d.y, d.n, NL_BOUND_BINS);
  assert_true(fabs(b - oracle) < 4e-4);
  assert_true(fabs(b - closed) < 5e-3);
  /* Four times the bins: same answer within the same margin (no B/n drift). */
  double b4 = nl_bound_r2(d.x, d.y, d.n, 4 * NL_BOUND_BINS);
  assert_true(fabs(b4 - oracle) < 6e-4);
  drop(&d);
}

/* When tanh(a x) is the true E[y|x], the bound meets the DyT R^2. */
static void test_bound_meets_dyt(void **state) {
  (void)state;
  data d = make(50000);
  nl_rng r;
  nl_rng_seed(&r, 5);
  for (size_t i = 0; i < d.n; i++) {
    d.x[i] = (float)(0.8 * nl_rng_normal(&r));
    d.y[i] = (float)(tanh(4.0 * d.x[i]) + 0.3 * nl_rng_normal(&r));
  }
  double r2;
  assert_int_equal(nl_dyt_fit(d.x, d.y, d.n, NULL, NULL, &r2), 0);
  double b = nl_bound_r2(d.x, d.y, d.n, NL_BOUND_BINS);
  assert_true(fabs(b - r2) < 2e-3);
  drop(&d);
}

/* x with five distinct values: each value is one bin whatever the bin
 * count, and the estimate is the one-way ANOVA adjusted R^2 by value. */
static void test_bound_ties(void **state) {
  (void)state;
  data d = make(10000);
  nl_rng r;
  nl_rng_seed(&r, 6);
  const float lv[5] = {-2.0f, -0.5f, 0.0f, 1.0f, 3.0f};
  double s[5] = {0}, s2[5] = {0}, cnt[5] = {0};
  for (size_t i = 0; i < d.n; i++) {
    int k = (int)nl_rng_below(&r, 5);
    d.x[i] = lv[k];
    d.y[i] = (float)(k * k * 0.3 + nl_rng_normal(&r));
    s[k] += d.y[i];
    s2[k] += (double)d.y[i] * d.y[i];
    cnt[k] += 1;
  }
  double ssw = 0.0;
  for (int k = 0; k < 5; k++) ssw += s2[k] - s[k] * s[k] / cnt[k];
  double want = 1.0 - (ssw / (d.n - 5.0)) / (nl_variance(d.y, d.n) * d.n / (d.n - 1.0));
  for (int bins = 2; bins <= 64; bins *= 2)
    if (bins >= 5) assert_true(fabs(nl_bound_r2(d.x, d.y, d.n, bins) - want) < 1e-9);
  drop(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fit_exact),
      cmocka_unit_test(test_fit_noisy_is_least_squares),
      cmocka_unit_test(test_fit_edges),
      cmocka_unit_test(test_fit_rejects),
      cmocka_unit_test(test_bound_known_noise),
      cmocka_unit_test(test_bound_meets_dyt),
      cmocka_unit_test(test_bound_ties),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
