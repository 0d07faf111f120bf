/* Unit tests for src/train: every layer's backward against central finite
 * differences of an independent double-precision reference forward written
 * here; a tiny ViT chain end to end; losses, AdamW and the cosine schedule
 * against hand-computed values; augmentation properties.
 *
 * Gradient checks: the float forward/backward run at float inputs; the
 * scalar loss is L = sum(out * R) for a fixed random R (so dout = R), and
 * dL/dx_i is estimated in double as (L(x+h) - L(x-h)) / 2h with h = 1e-5
 * on the double reference. Truncation error is O(h^2) ~ 1e-10 and rounding
 * ~1e-16/h ~ 1e-11, so the estimate is exact to ~1e-9; the analytical float
 * gradient carries float rounding, ~1e-7 relative over the short sums here
 * (observed: at most 3e-7 of the tensor's largest gradient). The bound is
 * max|a - n| <= TOL * max(max|n|, 1e-2) per tensor, TOL = 1e-5 for single
 * layers and 1e-4 for the chain: ~30x above the rounding, far below the
 * error of any wrong or missing term (O(max|n|)). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/threads.h"
#include "expr/expr.h"
#include "model/norm.h"
#include "train/augment.h"
#include "train/layers.h"
#include "train/loss.h"
#include "train/optim.h"

#define H_FD 1e-5
#define M_PI_REF 3.14159265358979323846
#define TOL_LAYER 1e-5
#define TOL_CHAIN 1e-4

/* ---------------- helpers ---------------- */

static void fill(float *x, size_t n, nl_rng *r, float lo, float hi) {
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)nl_rng_uniform(r);
}

static double *to_d(const float *x, size_t n) {
  double *d = malloc(n * sizeof *d);
  for (size_t i = 0; i < n; i++) d[i] = x[i];
  return d;
}

static float *fz(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
static double *dz(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

static double ddot(const double *a, const float *b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

typedef double (*loss_fn)(void *ctx);

/* Max error of `analytic` against central differences of f over x[0..n),
 * relative to max(max|numeric|, 1e-2). Fails the test above tol. */
static double grad_check(const char *what, const float *analytic, double *x, size_t n,
                         loss_fn f, void *ctx, double tol) {
  double maxerr = 0.0, maxnum = 0.0;
  size_t worst = 0;
  double worst_a = 0, worst_n = 0;
  for (size_t i = 0; i < n; i++) {
    double xi = x[i];
    x[i] = xi + H_FD;
    double lp = f(ctx);
    x[i] = xi - H_FD;
    double lm = f(ctx);
    x[i] = xi;
    double num = (lp - lm) / (2 * H_FD);
    double e = fabs(num - analytic[i]);
    if (fabs(num) > maxnum) maxnum = fabs(num);
    if (!(e <= maxerr)) { /* NaN in the analytic gradient counts as the worst */
      maxerr = e;
      worst = i;
      worst_a = analytic[i];
      worst_n = num;
    }
  }
  double rel = maxerr / (maxnum > 1e-2 ? maxnum : 1e-2);
  if (!(rel <= tol))
    print_message("%s: rel err %.3g at [%zu]: analytic %.9g numeric %.9g (max|num| %.3g)\n",
                  what, rel, worst, worst_a, worst_n, maxnum);
  assert_true(rel <= tol);
  assert_true(maxnum > 1e-3); /* the check must have something to compare */
  return rel;
}

/* Max |a - b| / max(max|b|, 1): forward values against the reference. */
static void value_check(const char *what, const float *a, const double *b, size_t n,
                        double tol) {
  double me = 0.0, mb = 0.0;
  for (size_t i = 0; i < n; i++) {
    me = fmax(me, fabs(a[i] - b[i]));
    mb = fmax(mb, fabs(b[i]));
  }
  double rel = me / (mb > 1.0 ? mb : 1.0);
  if (!(rel <= tol)) print_message("%s: forward rel err %.3g\n", what, rel);
  assert_true(rel <= tol);
}

/* ---------------- double-precision reference layers ---------------- */

static void r_linear(double *out, const double *x, const double *w, const double *b, int N,
                     int IC, int OC) {
  for (int i = 0; i < N; i++)
    for (int o = 0; o < OC; o++) {
      double s = b ? b[o] : 0.0;
      for (int k = 0; k < IC; k++) s += x[(size_t)i * IC + k] * w[(size_t)o * IC + k];
      out[(size_t)i * OC + o] = s;
    }
}

static void r_layernorm(double *out, const double *x, const double *w, const double *b, int N,
                        int C, double eps) {
  for (int i = 0; i < N; i++) {
    const double *r = x + (size_t)i * C;
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += r[c];
    m /= C;
    for (int c = 0; c < C; c++) v += (r[c] - m) * (r[c] - m);
    v /= C;
    for (int c = 0; c < C; c++)
      out[(size_t)i * C + c] = (r[c] - m) / sqrt(v + eps) * w[c] + b[c];
  }
}

static void r_dyt(double *out, const double *x, double alpha, const double *w, const double *b,
                  int N, int C) {
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++)
      out[(size_t)i * C + c] = tanh(alpha * x[(size_t)i * C + c]) * w[c] + b[c];
}

static double r_gelu1(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

/* qkv [B*T, 3C] -> out [B*T, C] */
static void r_attention(double *out, const double *qkv, int B, int T, int C, int NH) {
  const int hd = C / NH;
  double *p = malloc((size_t)T * sizeof *p);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < T; i++) {
        const double *q = qkv + ((size_t)b * T + i) * 3 * C + h * hd;
        double m = -1e300, s = 0;
        for (int j = 0; j < T; j++) {
          const double *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * hd;
          double d = 0;
          for (int e = 0; e < hd; e++) d += q[e] * k[e];
          p[j] = d / sqrt((double)hd);
          m = fmax(m, p[j]);
        }
        for (int j = 0; j < T; j++) s += (p[j] = exp(p[j] - m));
        for (int e = 0; e < hd; e++) {
          double o = 0;
          for (int j = 0; j < T; j++) o += p[j] / s * qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * hd + e];
          out[((size_t)b * T + i) * C + h * hd + e] = o;
        }
      }
  free(p);
}

/* Conv2d with kernel = stride = P, written as the convolution sum:
 * out [B*NP, D] in patch order py*GW + px. */
static void r_patch_conv(double *out, const double *img, const double *w, const double *bias,
                         int B, int CI, int H, int W, int P, int D) {
  const int GH = H / P, GW = W / P;
  for (int b = 0; b < B; b++)
    for (int py = 0; py < GH; py++)
      for (int px = 0; px < GW; px++)
        for (int d = 0; d < D; d++) {
          double s = bias[d];
          for (int c = 0; c < CI; c++)
            for (int ky = 0; ky < P; ky++)
              for (int kx = 0; kx < P; kx++)
                s += img[(((size_t)b * CI + c) * H + py * P + ky) * W + px * P + kx] *
                     w[(((size_t)d * CI + c) * P + ky) * P + kx];
          out[(((size_t)b * GH + py) * GW + px) * D + d] = s;
        }
}

static double r_ce(const double *s, const int32_t *y, int B, int K) {
  double L = 0;
  for (int b = 0; b < B; b++) {
    double z = 0;
    for (int k = 0; k < K; k++) z += exp(s[b * K + k]);
    L += log(z) - s[b * K + y[b]];
  }
  return L / B;
}

/* ---------------- linear ---------------- */

typedef struct {
  int N, IC, OC;
  double *x, *w, *b, *out;
  const float *R;
} lin_ctx;

static double lin_loss(void *p) {
  lin_ctx *c = p;
  r_linear(c->out, c->x, c->w, c->b, c->N, c->IC, c->OC);
  return ddot(c->out, c->R, (size_t)c->N * c->OC);
}

static void test_linear_grad(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 1);
  const int N = 6, IC = 7, OC = 5;
  float *x = fz(N * IC), *w = fz(OC * IC), *b = fz(OC), *R = fz(N * OC), *out = fz(N * OC);
  float *dx = fz(N * IC), *dw = fz(OC * IC), *db = fz(OC);
  fill(x, N * IC, &r, -1, 1);
  fill(w, OC * IC, &r, -1, 1);
  fill(b, OC, &r, -1, 1);
  fill(R, N * OC, &r, -1, 1);
  nl_linear_forward(out, x, w, b, N, IC, OC);
  nl_tr_linear_backward(dx, dw, db, R, x, w, N, IC, OC);
  lin_ctx c = {N, IC, OC, to_d(x, N * IC), to_d(w, OC * IC), to_d(b, OC), dz(N * OC), R};
  lin_loss(&c);
  value_check("linear", out, c.out, N * OC, 1e-6);
  grad_check("linear dx", dx, c.x, N * IC, lin_loss, &c, TOL_LAYER);
  grad_check("linear dw", dw, c.w, OC * IC, lin_loss, &c, TOL_LAYER);
  grad_check("linear db", db, c.b, OC, lin_loss, &c, TOL_LAYER);
  /* the overwriting form: dx over NaN, db added to a non-zero start */
  float *dx2 = fz(N * IC), *db2 = fz(OC);
  for (int i = 0; i < N * IC; i++) dx2[i] = NAN;
  for (int i = 0; i < OC; i++) db2[i] = 1.0f;
  nl_tr_linear_backward_set(dx2, NULL, db2, R, x, w, N, IC, OC);
  grad_check("linear dx (set)", dx2, c.x, N * IC, lin_loss, &c, TOL_LAYER);
  for (int i = 0; i < OC; i++) db2[i] -= 1.0f;
  grad_check("linear db (set)", db2, c.b, OC, lin_loss, &c, TOL_LAYER);
  free(dx2), free(db2);
  /* accumulation: a second backward adds the same amount again */
  float dw0 = dw[3];
  nl_tr_linear_backward(NULL, dw, NULL, R, x, w, N, IC, OC);
  assert_true(fabsf(dw[3] - 2 * dw0) <= 1e-5f * (1 + fabsf(dw0)));
  /* no bias */
  nl_linear_forward(out, x, w, NULL, N, IC, OC);
  r_linear(c.out, c.x, c.w, NULL, N, IC, OC);
  value_check("linear no bias", out, c.out, N * OC, 1e-6);
  free(c.x), free(c.w), free(c.b), free(c.out);
  free(x), free(w), free(b), free(R), free(out), free(dx), free(dw), free(db);
}

/* ---------------- LayerNorm ---------------- */

typedef struct {
  int N, C;
  double *x, *w, *b, *out;
  const float *R;
} ln_ctx;

static double ln_loss(void *p) {
  ln_ctx *c = p;
  r_layernorm(c->out, c->x, c->w, c->b, c->N, c->C, 1e-6);
  return ddot(c->out, c->R, (size_t)c->N * c->C);
}

static void test_layernorm_grad(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 2);
  const int N = 5, C = 9;
  float *x = fz(N * C), *w = fz(C), *b = fz(C), *R = fz(N * C), *out = fz(N * C);
  float *mean = fz(N), *rstd = fz(N), *dx = fz(N * C), *dw = fz(C), *db = fz(C);
  fill(x, N * C, &r, -2, 3);
  fill(w, C, &r, 0.5f, 1.5f);
  fill(b, C, &r, -1, 1);
  fill(R, N * C, &r, -1, 1);
  nl_layernorm_forward(out, mean, rstd, x, w, b, N, C, 1e-6f);
  nl_tr_layernorm_backward(dx, dw, db, R, x, w, mean, rstd, N, C);
  ln_ctx c = {N, C, to_d(x, N * C), to_d(w, C), to_d(b, C), dz(N * C), R};
  ln_loss(&c);
  value_check("layernorm", out, c.out, N * C, 1e-5);
  /* saved statistics against their definition */
  for (int i = 0; i < N; i++) {
    double m = 0, v = 0;
    for (int k = 0; k < C; k++) m += c.x[i * C + k];
    m /= C;
    for (int k = 0; k < C; k++) v += (c.x[i * C + k] - m) * (c.x[i * C + k] - m);
    assert_true(fabs(mean[i] - m) < 1e-6);
    assert_true(fabs(rstd[i] - 1 / sqrt(v / C + 1e-6)) < 1e-5 * rstd[i]);
  }
  grad_check("layernorm dx", dx, c.x, N * C, ln_loss, &c, TOL_LAYER);
  grad_check("layernorm dw", dw, c.w, C, ln_loss, &c, TOL_LAYER);
  grad_check("layernorm db", db, c.b, C, ln_loss, &c, TOL_LAYER);
  free(c.x), free(c.w), free(c.b), free(c.out);
  free(x), free(w), free(b), free(R), free(out), free(mean), free(rstd), free(dx), free(dw),
      free(db);
}

/* ---------------- DyT ---------------- */

typedef struct {
  int N, C;
  double *x, *alpha, *w, *b, *out;
  const float *R;
} dyt_ctx;

static double dyt_loss(void *p) {
  dyt_ctx *c = p;
  r_dyt(c->out, c->x, c->alpha[0], c->w, c->b, c->N, c->C);
  return ddot(c->out, c->R, (size_t)c->N * c->C);
}

static void test_dyt_grad(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 3);
  const int N = 5, C = 8;
  float alpha = 0.7f;
  float *x = fz(N * C), *w = fz(C), *b = fz(C), *R = fz(N * C), *out = fz(N * C);
  float *dx = fz(N * C), *dw = fz(C), *db = fz(C), da = 0.0f;
  fill(x, N * C, &r, -3, 3);
  fill(w, C, &r, 0.5f, 1.5f);
  fill(b, C, &r, -1, 1);
  fill(R, N * C, &r, -1, 1);
  nl_dyt_forward(out, x, alpha, w, b, N, C);
  nl_tr_dyt_backward(dx, &da, dw, db, R, x, alpha, w, N, C);
  dyt_ctx c = {N, C, to_d(x, N * C), to_d(&alpha, 1), to_d(w, C), to_d(b, C), dz(N * C), R};
  dyt_loss(&c);
  value_check("dyt", out, c.out, N * C, 1e-6);
  grad_check("dyt dx", dx, c.x, N * C, dyt_loss, &c, TOL_LAYER);
  grad_check("dyt dalpha", &da, c.alpha, 1, dyt_loss, &c, TOL_LAYER);
  grad_check("dyt dw", dw, c.w, C, dyt_loss, &c, TOL_LAYER);
  grad_check("dyt db", db, c.b, C, dyt_loss, &c, TOL_LAYER);
  free(c.x), free(c.alpha), free(c.w), free(c.b), free(c.out);
  free(x), free(w), free(b), free(R), free(out), free(dx), free(dw), free(db);
}

/* ---------------- point-wise norm affine, f(x) = x / (1 + x^2) ---------------- */

typedef struct {
  int N, C;
  double *x, *w, *b, *out;
  const float *R;
} pw_ctx;

static double pw_loss(void *p) {
  pw_ctx *c = p;
  for (int i = 0; i < c->N; i++)
    for (int k = 0; k < c->C; k++) {
      double x = c->x[i * c->C + k];
      c->out[i * c->C + k] = x / (1 + x * x) * c->w[k] + c->b[k];
    }
  return ddot(c->out, c->R, (size_t)c->N * c->C);
}

static void test_pwnorm_grad(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 4);
  const int N = 4, C = 6;
  float *x = fz(N * C), *w = fz(C), *b = fz(C), *R = fz(N * C), *out = fz(N * C);
  float *fx = fz(N * C), *dfx = fz(N * C), *dx = fz(N * C), *dw = fz(C), *db = fz(C);
  fill(x, N * C, &r, -3, 3);
  fill(w, C, &r, 0.5f, 1.5f);
  fill(b, C, &r, -1, 1);
  fill(R, N * C, &r, -1, 1);
  for (int i = 0; i < N * C; i++) {
    float u = 1 + x[i] * x[i];
    fx[i] = x[i] / u;
    dfx[i] = (1 - x[i] * x[i]) / (u * u);
  }
  nl_pwnorm_forward(out, fx, w, b, N, C);
  nl_tr_pwnorm_backward(dx, dw, db, R, fx, dfx, w, N, C);
  pw_ctx c = {N, C, to_d(x, N * C), to_d(w, C), to_d(b, C), dz(N * C), R};
  pw_loss(&c);
  value_check("pwnorm", out, c.out, N * C, 1e-6);
  grad_check("pwnorm dx", dx, c.x, N * C, pw_loss, &c, TOL_LAYER);
  grad_check("pwnorm dw", dw, c.w, C, pw_loss, &c, TOL_LAYER);
  grad_check("pwnorm db", db, c.b, C, pw_loss, &c, TOL_LAYER);
  free(c.x), free(c.w), free(c.b), free(c.out);
  free(x), free(w), free(b), free(R), free(out), free(fx), free(dfx), free(dx), free(dw),
      free(db);
}

/* ---------------- expression norm: f from the expression engine ---------------- */

static double ex_f(double x) { return 0.5 * tanh(0.8 * x) + 0.3 * x / (1.0 + exp(-x)); }

static double ex_loss(void *p) {
  pw_ctx *c = p;
  for (int i = 0; i < c->N; i++)
    for (int k = 0; k < c->C; k++)
      c->out[i * c->C + k] = ex_f(c->x[i * c->C + k]) * c->w[k] + c->b[k];
  return ddot(c->out, c->R, (size_t)c->N * c->C);
}

static void test_exprnorm_grad(void **state) {
  (void)state;
  nl_prog prog;
  nl_prog_init(&prog);
  nl_error err;
  nl_error_clear(&err);
  assert_int_equal(nl_parse("0.5 * tanh(0.8 * x) + 0.3 * x * sigmoid(x)", 1, &prog, &err), 0);
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, prog.len);
  nl_rng r;
  nl_rng_seed(&r, 14);
  const int N = 5, C = 7;
  float *x = fz(N * C), *w = fz(C), *b = fz(C), *R = fz(N * C), *out = fz(N * C);
  float *out2 = fz(N * C), *fx = fz(N * C), *dfx = fz(N * C), *dx = fz(N * C), *dw = fz(C);
  float *db = fz(C);
  fill(x, N * C, &r, -4, 4);
  fill(w, C, &r, 0.5f, 1.5f);
  fill(b, C, &r, -1, 1);
  fill(R, N * C, &r, -1, 1);
  nl_exprnorm_forward(out, fx, dfx, x, &prog, w, b, N, C, &ws);
  nl_exprnorm_forward(out2, NULL, NULL, x, &prog, w, b, N, C, &ws);
  nl_tr_pwnorm_backward(dx, dw, db, R, fx, dfx, w, N, C);
  pw_ctx c = {N, C, to_d(x, N * C), to_d(w, C), to_d(b, C), dz(N * C), R};
  ex_loss(&c);
  value_check("exprnorm", out, c.out, N * C, 1e-6);
  value_check("exprnorm inference", out2, c.out, N * C, 1e-6);
  grad_check("exprnorm dx", dx, c.x, N * C, ex_loss, &c, TOL_LAYER);
  grad_check("exprnorm dw", dw, c.w, C, ex_loss, &c, TOL_LAYER);
  grad_check("exprnorm db", db, c.b, C, ex_loss, &c, TOL_LAYER);
  free(c.x), free(c.w), free(c.b), free(c.out);
  free(x), free(w), free(b), free(R), free(out), free(out2), free(fx), free(dfx), free(dx),
      free(dw), free(db);
  /* large input: chunked over 3 threads, same values as one thread */
  const int NL = 1000, CL = 80;
  float *xl = fz((size_t)NL * CL), *wl = fz(CL), *bl = fz(CL), *o1 = fz((size_t)NL * CL);
  float *o3 = fz((size_t)NL * CL), *f1 = fz((size_t)NL * CL), *d1 = fz((size_t)NL * CL);
  float *f3 = fz((size_t)NL * CL), *d3 = fz((size_t)NL * CL);
  fill(xl, (size_t)NL * CL, &r, -4, 4);
  fill(wl, CL, &r, 0.5f, 1.5f);
  int outer = nl_threads_enter(1);
  nl_exprnorm_forward(o1, f1, d1, xl, &prog, wl, bl, NL, CL, &ws);
  nl_threads_leave(outer);
  outer = nl_threads_enter(3);
  nl_exprnorm_forward(o3, f3, d3, xl, &prog, wl, bl, NL, CL, &ws);
  nl_threads_leave(outer);
  assert_memory_equal(o1, o3, sizeof(float) * NL * CL);
  assert_memory_equal(d1, d3, sizeof(float) * NL * CL);
  for (size_t i = 0; i < (size_t)NL * CL; i += 101)
    assert_true(fabs(f3[i] - ex_f(xl[i])) < 1e-6);
  free(xl), free(wl), free(bl), free(o1), free(o3), free(f1), free(d1), free(f3), free(d3);
  nl_eval_ws_free(&ws);
  nl_prog_free(&prog);
}

/* ---------------- GELU ---------------- */

typedef struct {
  size_t n;
  double *x, *out;
  const float *R;
} gelu_ctx;

static double gelu_loss(void *p) {
  gelu_ctx *c = p;
  for (size_t i = 0; i < c->n; i++) c->out[i] = r_gelu1(c->x[i]);
  return ddot(c->out, c->R, c->n);
}

static void test_gelu(void **state) {
  (void)state;
  /* exact erf GELU: gelu(1) = Phi(1) = 0.841344746..., gelu(-0.5) = -0.5 Phi(-0.5) */
  float v[3] = {1.0f, -0.5f, 0.0f}, o[3];
  nl_gelu_forward(o, v, 3);
  assert_true(fabs(o[0] - 0.8413447460685429) < 1e-6);
  assert_true(fabs(o[1] - -0.15426876936299344) < 1e-6);
  assert_true(o[2] == 0.0f);
  nl_rng r;
  nl_rng_seed(&r, 5);
  const size_t n = 64;
  float *x = fz(n), *R = fz(n), *out = fz(n), *dx = fz(n);
  fill(x, n, &r, -4, 4);
  fill(R, n, &r, -1, 1);
  nl_gelu_forward(out, x, n);
  nl_tr_gelu_backward(dx, R, x, n);
  gelu_ctx c = {n, to_d(x, n), dz(n), R};
  gelu_loss(&c);
  value_check("gelu", out, c.out, n, 1e-6);
  grad_check("gelu dx", dx, c.x, n, gelu_loss, &c, TOL_LAYER);
  for (size_t i = 0; i < n; i++) dx[i] = NAN;
  nl_tr_gelu_backward_set(dx, R, x, out, n);
  grad_check("gelu dx (set)", dx, c.x, n, gelu_loss, &c, TOL_LAYER);
  /* the overwriting form's Phi = out / x, against libm's erf: at 0, at
   * tiny |x|, and where the output underflows or saturates */
  {
    enum { NE = 2001 };
    float xe[NE], oe[NE], de[NE], one[NE];
    for (int i = 0; i < NE; i++) xe[i] = (float)(-20.0 + 40.0 * i / (NE - 1)), one[i] = 1.0f;
    xe[0] = 0.0f, xe[1] = 1e-30f, xe[2] = -1e-30f, xe[3] = 1e-7f, xe[4] = -40.0f, xe[5] = 40.0f;
    nl_gelu_forward(oe, xe, NE);
    nl_tr_gelu_backward_set(de, one, xe, oe, NE);
    double worst = 0;
    for (int i = 0; i < NE; i++) {
      const double xd = xe[i];
      const double ref = 0.5 * (1.0 + erf(xd / sqrt(2.0))) + xd * exp(-0.5 * xd * xd) / sqrt(2 * M_PI_REF);
      worst = fmax(worst, fabs(de[i] - ref));
    }
    printf("# gelu' (set form) against libm: max abs error %.3g\n", worst);
    assert_true(worst < 1e-6);
  }
  free(c.x), free(c.out), free(x), free(R), free(out), free(dx);
}

/* ---------------- attention ---------------- */

typedef struct {
  int B, T, C, NH;
  double *qkv, *out;
  const float *R;
} att_ctx;

static double att_loss(void *p) {
  att_ctx *c = p;
  r_attention(c->out, c->qkv, c->B, c->T, c->C, c->NH);
  return ddot(c->out, c->R, (size_t)c->B * c->T * c->C);
}

static void test_attention_grad(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 6);
  const int B = 2, T = 5, C = 8, NH = 2;
  const size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
  float *qkv = fz(nq), *R = fz(no), *out = fz(no), *att = fz((size_t)B * NH * T * T);
  float *dqkv = fz(nq);
  fill(qkv, nq, &r, -1.5f, 1.5f);
  fill(R, no, &r, -1, 1);
  nl_attention_forward(out, att, qkv, B, T, C, NH);
  for (int i = 0; i < B * NH * T; i++) {
    double s = 0;
    for (int j = 0; j < T; j++) s += att[i * T + j];
    assert_true(fabs(s - 1.0) < 1e-5);
  }
  nl_tr_attention_backward(dqkv, R, qkv, att, B, T, C, NH);
  att_ctx c = {B, T, C, NH, to_d(qkv, nq), dz(no), R};
  att_loss(&c);
  value_check("attention", out, c.out, no, 1e-5);
  grad_check("attention dqkv", dqkv, c.qkv, nq, att_loss, &c, TOL_LAYER);
  for (size_t i = 0; i < nq; i++) dqkv[i] = NAN;
  nl_tr_attention_backward_set(dqkv, R, qkv, att, B, T, C, NH);
  grad_check("attention dqkv (set)", dqkv, c.qkv, nq, att_loss, &c, TOL_LAYER);
  free(c.qkv), free(c.out), free(qkv), free(R), free(out), free(att), free(dqkv);
}

/* ---------------- layer scale, residual, drop path ---------------- */

typedef struct {
  int N, C;
  double *x, *g, *out;
  const float *R;
} ls_ctx;

static double ls_loss(void *p) {
  ls_ctx *c = p;
  for (int i = 0; i < c->N * c->C; i++) c->out[i] = c->x[i] * c->g[i % c->C];
  return ddot(c->out, c->R, (size_t)c->N * c->C);
}

static void test_layerscale_residual_grad(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 7);
  const int N = 4, C = 6;
  float *x = fz(N * C), *g = fz(C), *R = fz(N * C), *out = fz(N * C), *dx = fz(N * C),
        *dg = fz(C);
  fill(x, N * C, &r, -2, 2);
  fill(g, C, &r, -1, 1);
  fill(R, N * C, &r, -1, 1);
  nl_layerscale_forward(out, x, g, N, C);
  nl_tr_layerscale_backward(dx, dg, R, x, g, N, C);
  ls_ctx c = {N, C, to_d(x, N * C), to_d(g, C), dz(N * C), R};
  ls_loss(&c);
  value_check("layerscale", out, c.out, N * C, 1e-6);
  grad_check("layerscale dx", dx, c.x, N * C, ls_loss, &c, TOL_LAYER);
  grad_check("layerscale dgamma", dg, c.g, C, ls_loss, &c, TOL_LAYER);
  /* residual: d(a+b)/da = d(a+b)/db = identity, accumulated */
  float a[3] = {1, 2, 3}, bb[3] = {10, 20, 30}, s[3], da[3] = {1, 1, 1}, db[3] = {0};
  float dd[3] = {0.5f, -1, 2};
  nl_residual_forward(s, a, bb, 3);
  assert_true(s[0] == 11 && s[1] == 22 && s[2] == 33);
  nl_tr_residual_backward(da, db, dd, 3);
  assert_true(da[0] == 1.5f && da[1] == 0 && da[2] == 3);
  assert_true(db[0] == 0.5f && db[1] == -1 && db[2] == 2);
  free(c.x), free(c.g), free(c.out), free(x), free(g), free(R), free(out), free(dx), free(dg);
}

static void test_droppath(void **state) {
  (void)state;
  const int B = 20000;
  float *s = fz(B), *s2 = fz(B);
  nl_rng r;
  /* eval mode and p = 0: identity */
  nl_rng_seed(&r, 8);
  nl_tr_droppath_mask(s, B, 0.3f, 0, &r);
  for (int b = 0; b < B; b++) assert_true(s[b] == 1.0f);
  nl_tr_droppath_mask(s, B, 0.0f, 1, &r);
  for (int b = 0; b < B; b++) assert_true(s[b] == 1.0f);
  /* training: values in {0, 1/(1-p)}, kept fraction ~ 1-p (sd 0.0032),
   * expectation of the scale 1; same seed, same mask */
  nl_rng_seed(&r, 9);
  nl_tr_droppath_mask(s, B, 0.3f, 1, &r);
  nl_rng_seed(&r, 9);
  nl_tr_droppath_mask(s2, B, 0.3f, 1, &r);
  int kept = 0;
  double mean = 0;
  for (int b = 0; b < B; b++) {
    assert_true(s[b] == 0.0f || fabsf(s[b] - 1.0f / 0.7f) < 1e-6f);
    assert_true(s[b] == s2[b]);
    kept += s[b] != 0.0f;
    mean += s[b];
  }
  assert_true(fabs(kept / (double)B - 0.7) < 0.02);
  assert_true(fabs(mean / B - 1.0) < 0.03);
  /* timm's linear rule over depth */
  assert_true(nl_tr_drop_path_rate(0.1f, 0, 12) == 0.0f);
  assert_true(fabsf(nl_tr_drop_path_rate(0.1f, 11, 12) - 0.1f) < 1e-7f);
  assert_true(fabsf(nl_tr_drop_path_rate(0.1f, 5, 11) - 0.05f) < 1e-7f);
  /* apply and backward on 3 samples of 2 elements */
  float sc[3] = {0.0f, 2.0f, 1.0f}, in[6] = {1, 2, 3, 4, 5, 6}, o[6], d[6] = {0};
  float g[6] = {1, 1, 1, 1, 1, 1};
  nl_tr_droppath_forward(o, in, sc, 3, 2);
  assert_true(o[0] == 0 && o[1] == 0 && o[2] == 6 && o[3] == 8 && o[4] == 5 && o[5] == 6);
  nl_tr_droppath_backward(d, g, sc, 3, 2);
  assert_true(d[0] == 0 && d[1] == 0 && d[2] == 2 && d[3] == 2 && d[4] == 1 && d[5] == 1);
  /* overwriting form: the same values over NaN (dropped samples get 0) */
  for (int i = 0; i < 6; i++) d[i] = NAN;
  nl_tr_droppath_backward_set(d, g, sc, 3, 2);
  assert_true(d[0] == 0 && d[1] == 0 && d[2] == 2 && d[3] == 2 && d[4] == 1 && d[5] == 1);
  free(s), free(s2);
}

/* ---------------- patch embedding (im2col + linear) vs convolution ---------------- */

typedef struct {
  int B, CI, H, W, P, D;
  double *img, *w, *b, *out;
  const float *R;
} pe_ctx;

static double pe_loss(void *p) {
  pe_ctx *c = p;
  r_patch_conv(c->out, c->img, c->w, c->b, c->B, c->CI, c->H, c->W, c->P, c->D);
  int NP = (c->H / c->P) * (c->W / c->P);
  return ddot(c->out, c->R, (size_t)c->B * NP * c->D);
}

static void test_patch_embed_grad(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 10);
  const int B = 2, CI = 2, H = 6, W = 9, P = 3, D = 4;
  const int NP = (H / P) * (W / P), K = CI * P * P;
  float *img = fz(B * CI * H * W), *w = fz(D * K), *b = fz(D), *R = fz(B * NP * D);
  float *patches = fz(B * NP * K), *out = fz(B * NP * D), *dw = fz(D * K), *db = fz(D);
  fill(img, B * CI * H * W, &r, -1, 1);
  fill(w, D * K, &r, -1, 1);
  fill(b, D, &r, -1, 1);
  fill(R, B * NP * D, &r, -1, 1);
  nl_im2col(patches, img, B, CI, H, W, P);
  nl_linear_forward(out, patches, w, b, B * NP, K, D);
  nl_tr_linear_backward(NULL, dw, db, R, patches, w, B * NP, K, D);
  pe_ctx c = {B, CI, H, W, P, D, to_d(img, B * CI * H * W), to_d(w, D * K), to_d(b, D),
              dz(B * NP * D), R};
  pe_loss(&c);
  value_check("patch embed", out, c.out, B * NP * D, 1e-6);
  grad_check("patch embed dW", dw, c.w, D * K, pe_loss, &c, TOL_LAYER);
  grad_check("patch embed dB", db, c.b, D, pe_loss, &c, TOL_LAYER);
  free(c.img), free(c.w), free(c.b), free(c.out);
  free(img), free(w), free(b), free(R), free(patches), free(out), free(dw), free(db);
}

/* ---------------- tokens + pooling ---------------- */

typedef struct {
  int B, NP, D, pool;
  double *patch, *cls, *pos, *out;
  const float *R;
} tp_ctx;

static double tp_loss(void *p) {
  tp_ctx *c = p;
  const int T = c->NP + 1, D = c->D;
  for (int b = 0; b < c->B; b++)
    for (int d = 0; d < D; d++) {
      double v;
      if (c->pool == NL_POOL_TOKEN) {
        v = c->cls[d] + c->pos[d];
      } else {
        v = 0;
        for (int t = 1; t < T; t++) v += c->patch[((size_t)b * c->NP + t - 1) * D + d] + c->pos[t * D + d];
        v /= (T - 1);
      }
      c->out[b * D + d] = v;
    }
  return ddot(c->out, c->R, (size_t)c->B * D);
}

static void test_tokens_pool_grad(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 11);
  const int B = 3, NP = 4, D = 5, T = NP + 1;
  for (int pool = 0; pool < 2; pool++) {
    float *patch = fz(B * NP * D), *cls = fz(D), *pos = fz(T * D), *R = fz(B * D);
    float *x = fz(B * T * D), *out = fz(B * D), *dx = fz(B * T * D);
    float *dpatch = fz(B * NP * D), *dcls = fz(D), *dpos = fz(T * D);
    fill(patch, B * NP * D, &r, -1, 1);
    fill(cls, D, &r, -1, 1);
    fill(pos, T * D, &r, -1, 1);
    fill(R, B * D, &r, -1, 1);
    nl_tokens_forward(x, patch, cls, pos, B, NP, D);
    nl_pool_forward(out, x, (nl_pool)pool, 1, B, T, D);
    nl_tr_pool_backward(dx, R, (nl_pool)pool, 1, B, T, D);
    nl_tr_tokens_backward(dpatch, dcls, dpos, dx, cls, B, NP, D);
    tp_ctx c = {B, NP, D, pool, to_d(patch, B * NP * D), to_d(cls, D), to_d(pos, T * D),
                dz(B * D), R};
    tp_loss(&c);
    value_check("tokens+pool", out, c.out, B * D, 1e-6);
    grad_check("pos", dpos, c.pos, T * D, tp_loss, &c, TOL_LAYER);
    if (pool == NL_POOL_TOKEN) {
      grad_check("cls", dcls, c.cls, D, tp_loss, &c, TOL_LAYER);
      for (int i = 0; i < B * NP * D; i++) assert_true(dpatch[i] == 0.0f);
    } else {
      grad_check("patch", dpatch, c.patch, B * NP * D, tp_loss, &c, TOL_LAYER);
      for (int i = 0; i < D; i++) assert_true(dcls[i] == 0.0f);
    }
    free(c.patch), free(c.cls), free(c.pos), free(c.out);
    free(patch), free(cls), free(pos), free(R), free(x), free(out), free(dx), free(dpatch),
        free(dcls), free(dpos);
  }
}

/* no class token: pos has NP rows, avg pooling over all tokens (prefix 0) */
static void test_tokens_no_cls(void **state) {
  (void)state;
  /* B = 2, NP = 2, D = 2 */
  const float patch[8] = {1, 2, 3, 4, 5, 6, 7, 8}, pos[4] = {10, 20, 30, 40};
  float x[8], out[4], dx[8] = {0}, dpatch[8] = {0}, dpos[4] = {0};
  nl_tokens_forward(x, patch, NULL, pos, 2, 2, 2);
  const float want[8] = {11, 22, 33, 44, 15, 26, 37, 48};
  assert_memory_equal(x, want, sizeof want);
  nl_pool_forward(out, x, NL_POOL_AVG, 0, 2, 2, 2);
  assert_true(out[0] == 22 && out[1] == 33 && out[2] == 26 && out[3] == 37);
  const float dout[4] = {1, 2, 3, 4};
  nl_tr_pool_backward(dx, dout, NL_POOL_AVG, 0, 2, 2, 2);
  const float wdx[8] = {0.5f, 1, 0.5f, 1, 1.5f, 2, 1.5f, 2};
  assert_memory_equal(dx, wdx, sizeof wdx);
  nl_tr_tokens_backward(dpatch, NULL, dpos, dx, NULL, 2, 2, 2);
  assert_memory_equal(dpatch, wdx, sizeof wdx);
  assert_true(dpos[0] == 2 && dpos[1] == 3 && dpos[2] == 2 && dpos[3] == 3);
}

/* ---------------- losses ---------------- */

typedef struct {
  int B, K;
  double *s, *t;
  const int32_t *y;
  double tau, lambda;
} loss_ctx;

static double ce_ref(void *p) {
  loss_ctx *c = p;
  return r_ce(c->s, c->y, c->B, c->K);
}

static double ls_ref(void *p) {
  loss_ctx *c = p;
  double L = 0;
  for (int b = 0; b < c->B; b++) {
    double z = 0, mean = 0;
    for (int k = 0; k < c->K; k++) z += exp(c->s[b * c->K + k]);
    for (int k = 0; k < c->K; k++) mean += log(z) - c->s[b * c->K + k];
    L += (1 - c->lambda) * (log(z) - c->s[b * c->K + c->y[b]]) + c->lambda * mean / c->K;
  }
  return L / c->B;
}

static double kd_ref(void *p) {
  loss_ctx *c = p;
  double kl = 0;
  for (int b = 0; b < c->B; b++) {
    double zs = 0, zt = 0;
    for (int k = 0; k < c->K; k++) {
      zs += exp(c->s[b * c->K + k] / c->tau);
      zt += exp(c->t[b * c->K + k] / c->tau);
    }
    for (int k = 0; k < c->K; k++) {
      double pt = exp(c->t[b * c->K + k] / c->tau) / zt;
      double ps = exp(c->s[b * c->K + k] / c->tau) / zs;
      kl += pt * log(pt / ps);
    }
  }
  kl /= c->B;
  return (1 - c->lambda) * r_ce(c->s, c->y, c->B, c->K) + c->lambda * c->tau * c->tau * kl;
}

static void test_losses(void **state) {
  (void)state;
  /* hand values: CE([0,0,0], 0) = ln 3; CE([1,2,3], 2) = ln(1 + e^-1 + e^-2) */
  float s1[6] = {0, 0, 0, 1, 2, 3};
  int32_t y1[2] = {0, 2};
  double ce = nl_tr_ce_loss(NULL, s1, y1, 2, 3);
  assert_true(fabs(ce - 0.5 * (log(3.0) + 0.4076059644443804)) < 1e-7);
  /* KD: s = [0,0] (p_s = 1/2, 1/2), t = [tau ln 3, 0] (p_t = 3/4, 1/4), label 0:
   * CE = ln 2, KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812035941137,
   * loss = 0.5 ln 2 + 0.5 * 16 * KL = 1.3930698778090684 at tau 4, lambda 0.5. */
  float s2[2] = {0, 0}, t2[2] = {(float)(4.0 * log(3.0)), 0};
  int32_t y2[1] = {0};
  double cek, klk;
  double kd = nl_tr_kd_loss(NULL, s2, t2, y2, 1, 2, NL_TR_KD_TAU, NL_TR_KD_LAMBDA, &cek, &klk);
  assert_true(fabs(kd - 1.3930698778090684) < 1e-6);
  assert_true(fabs(cek - log(2.0)) < 1e-7);
  assert_true(fabs(klk - 0.13081203594113697) < 1e-6);
  /* lambda 0 is CE */
  assert_true(fabs(nl_tr_kd_loss(NULL, s1, s1, y1, 2, 3, 4.0f, 0.0f, NULL, NULL) - ce) < 1e-9);
  /* gradients against finite differences */
  nl_rng r;
  nl_rng_seed(&r, 12);
  const int B = 4, K = 7;
  float *s = fz(B * K), *t = fz(B * K), *ds = fz(B * K);
  int32_t y[4] = {0, 6, 3, 3};
  fill(s, B * K, &r, -3, 3);
  fill(t, B * K, &r, -3, 3);
  loss_ctx c = {B, K, to_d(s, B * K), to_d(t, B * K), y, 4.0, 0.5};
  double Lce = nl_tr_ce_loss(ds, s, y, B, K);
  assert_true(fabs(Lce - ce_ref(&c)) < 1e-6);
  grad_check("ce dlogits", ds, c.s, B * K, ce_ref, &c, TOL_LAYER);
  /* label smoothing 0.1 (lambda holds eps for ls_ref); hand value: logits
   * [0,0,0], label 0: every -log p = ln 3, so the loss is ln 3 for any eps */
  memset(ds, 0, sizeof(float) * B * K);
  c.lambda = 0.1;
  double Lls = nl_tr_ce_smooth_loss(ds, s, y, B, K, 0.1f);
  assert_true(fabs(Lls - ls_ref(&c)) < 1e-6);
  grad_check("smoothed ce dlogits", ds, c.s, B * K, ls_ref, &c, TOL_LAYER);
  assert_true(fabs(nl_tr_ce_smooth_loss(NULL, s1, y1, 1, 3, 0.1f) - log(3.0)) < 1e-7);
  assert_true(fabs(nl_tr_ce_smooth_loss(NULL, s1, y1, 2, 3, 0.0f) - ce) < 1e-9);
  const double taus[2] = {4.0, 1.5}, lams[2] = {0.5, 0.8};
  for (int v = 0; v < 2; v++) {
    memset(ds, 0, sizeof(float) * B * K);
    c.tau = taus[v];
    c.lambda = lams[v];
    double L = nl_tr_kd_loss(ds, s, t, y, B, K, (float)c.tau, (float)c.lambda, NULL, NULL);
    assert_true(fabs(L - kd_ref(&c)) < 1e-6);
    grad_check("kd dlogits", ds, c.s, B * K, kd_ref, &c, TOL_LAYER);
  }
  /* top-k */
  float lg[6] = {0.1f, 0.9f, 0.5f, 3, 1, 2};
  int32_t ly[2] = {2, 2};
  assert_int_equal(nl_tr_topk_correct(lg, ly, 2, 3, 1), 0);
  assert_int_equal(nl_tr_topk_correct(lg, ly, 2, 3, 2), 2);
  free(c.s), free(c.t), free(s), free(t), free(ds);
}

/* ---------------- AdamW ---------------- */

static void test_adamw_two_steps(void **state) {
  (void)state;
  /* Hand computation, b1 = 0.9, b2 = 0.999, eps = 1e-8:
   * a: w0 = 1, lr 0.1, wd 0.1 (decays), g = 0.5 then -0.25.
   *   t=1: w = 1 * (1 - 0.01) = 0.99; m = 0.05, v = 0.00025; mhat = 0.5,
   *        vhat = 0.25; w -= 0.1 * 0.5 / (0.5 + 1e-8)  ->  0.890000002
   *   t=2: w = 0.890000002 * 0.99 = 0.88110000198; m = 0.045 - 0.025 = 0.02,
   *        v = 0.00024975 + 0.0000625 = 0.00031225; mhat = 0.02 / 0.19,
   *        vhat = 0.00031225 / 0.001999; w -= 0.1 * mhat / (sqrt(vhat) + eps)
   *        -> 0.85446629869
   * b: same without decay (bias): 0.900000002, then 0.87336629871
   * c: group ALPHA with lr 0.01, w0 = -2, g = 1 then 3, no decay:
   *   t=1: -2 - 0.01 = -2.0099999999; t=2: m = 0.39, v = 0.009999,
   *        mhat = 2.0526315789, vhat = 5.0020010005 -> -2.0191778110
   * d: group BACKBONE frozen: unchanged. */
  float wa = 1, wb = 1, wc = -2, wd = 5;
  float ga = 0, gb = 0, gc = 0, gd = 0;
  nl_tr_adamw o;
  nl_tr_adamw_init(&o, 0.1f, 0.1f);
  o.lr[NL_TR_GROUP_ALPHA] = 0.01f;
  nl_tr_adamw_add(&o, "blocks.0.norm1.weight", &wa, &ga, 1, NL_TR_GROUP_AFFINE, 1);
  nl_tr_adamw_add(&o, "blocks.0.norm1.bias", &wb, &gb, 1, NL_TR_GROUP_AFFINE, 0);
  nl_tr_adamw_add(&o, "blocks.0.norm1.alpha", &wc, &gc, 1, NL_TR_GROUP_ALPHA, 0);
  nl_tr_adamw_add(&o, "blocks.0.attn.qkv.weight", &wd, &gd, 1, NL_TR_GROUP_BACKBONE, 1);
  o.train_groups = NL_TR_GROUP_BIT(NL_TR_GROUP_AFFINE) | NL_TR_GROUP_BIT(NL_TR_GROUP_ALPHA);
  ga = gb = 0.5f;
  gc = 1.0f;
  gd = 7.0f;
  nl_tr_adamw_step(&o, 1.0f);
  assert_true(fabs(wa - 0.890000002) < 1e-6);
  assert_true(fabs(wb - 0.900000002) < 1e-6);
  assert_true(fabs(wc - -2.0099999999) < 1e-6);
  ga = gb = -0.25f;
  gc = 3.0f;
  nl_tr_adamw_step(&o, 1.0f);
  assert_true(fabs(wa - 0.85446629869) < 2e-6);
  assert_true(fabs(wb - 0.87336629871) < 2e-6);
  assert_true(fabs(wc - -2.0191778110) < 2e-6);
  assert_true(wd == 5.0f);
  /* lr multiplier scales the step: a zero multiplier changes nothing */
  float before = wa;
  nl_tr_adamw_step(&o, 0.0f);
  assert_true(wa == before);
  /* zero_grad and clipping */
  gd = 3;
  ga = 4;
  nl_tr_adamw_zero_grad(&o);
  assert_true(ga == 0 && gd == 0);
  ga = 3;
  gb = 4;
  double n = nl_tr_clip_grad_norm(&o, 1.0);
  assert_true(fabs(n - 5.0) < 1e-9);
  assert_true(fabs(ga - 0.6) < 1e-5 && fabs(gb - 0.8) < 1e-5);
  nl_tr_adamw_free(&o);
}

static void test_schedule(void **state) {
  (void)state;
  nl_tr_sched s = {NL_TR_SCHED_WARMUP_COSINE, 4, 12};
  /* warm-up (step+1)/4: 0.25 0.5 0.75 1; cosine over 8 steps:
   * step 4 -> 1, step 6 -> (1 + cos(pi/4))/2 = 0.853553, step 8 -> 0.5,
   * step 10 -> (1 + cos(3pi/4))/2 = 0.146447, step 12 and later -> 0 */
  assert_true(fabs(nl_tr_lr_mult(&s, 0) - 0.25) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&s, 2) - 0.75) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&s, 3) - 1.0) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&s, 4) - 1.0) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&s, 6) - 0.8535533905932737) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&s, 8) - 0.5) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&s, 10) - 0.14644660940672627) < 1e-12);
  assert_true(nl_tr_lr_mult(&s, 12) == 0.0);
  assert_true(nl_tr_lr_mult(&s, 100) == 0.0);
  for (long k = 4; k < 12; k++) assert_true(nl_tr_lr_mult(&s, k + 1) < nl_tr_lr_mult(&s, k));
  nl_tr_sched c = {NL_TR_SCHED_CONSTANT, 0, 0};
  assert_true(nl_tr_lr_mult(&c, 0) == 1.0 && nl_tr_lr_mult(&c, 12345) == 1.0);
  nl_tr_sched nw = {NL_TR_SCHED_WARMUP_COSINE, 0, 10};
  assert_true(fabs(nl_tr_lr_mult(&nw, 0) - 1.0) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&nw, 5) - 0.5) < 1e-12);
}

static void test_decay_and_groups(void **state) {
  (void)state;
  assert_int_equal(nl_tr_default_decay("blocks.0.attn.qkv.weight", 2), 1);
  assert_int_equal(nl_tr_default_decay("blocks.0.attn.qkv.bias", 1), 0);
  assert_int_equal(nl_tr_default_decay("patch_embed.proj.weight", 4), 1);
  assert_int_equal(nl_tr_default_decay("blocks.3.norm1.weight", 1), 0);
  assert_int_equal(nl_tr_default_decay("blocks.3.ls1.gamma", 1), 0);
  assert_int_equal(nl_tr_default_decay("blocks.3.norm1.alpha", 0), 0);
  assert_int_equal(nl_tr_default_decay("pos_embed", 3), 0);
  assert_int_equal(nl_tr_default_decay("cls_token", 3), 0);
  assert_int_equal(nl_tr_default_group("blocks.3.norm1.alpha"), NL_TR_GROUP_ALPHA);
  assert_int_equal(nl_tr_default_group("blocks.3.norm2.weight"), NL_TR_GROUP_AFFINE);
  assert_int_equal(nl_tr_default_group("norm.bias"), NL_TR_GROUP_AFFINE);
  assert_int_equal(nl_tr_default_group("fc_norm.weight"), NL_TR_GROUP_AFFINE);
  assert_int_equal(nl_tr_default_group("blocks.3.mlp.fc1.weight"), NL_TR_GROUP_BACKBONE);
  assert_int_equal(nl_tr_default_group("head.weight"), NL_TR_GROUP_BACKBONE);
  assert_int_equal(nl_tr_default_group("pos_embed"), NL_TR_GROUP_BACKBONE);
}

/* ---------------- augmentation ---------------- */

static void test_augment(void **state) {
  (void)state;
  const int B = 2, CH = 1, H = 28, W = 28, pad = 2;
  const float pv = nl_tr_pad_value(0.2860f, 0.3530f);
  assert_true(fabsf(pv - -0.810198f) < 1e-5f); /* a black pixel: (0 - 0.2860)/0.3530 */
  float *in = fz(B * H * W), *o1 = fz(B * H * W), *o2 = fz(B * H * W);
  for (int i = 0; i < B * H * W; i++) in[i] = (float)i;
  /* centred crop (dy = dx = pad) with flip, flipped again: identity */
  nl_tr_aug fl[2] = {{pad, pad, 1}, {pad, pad, 1}}, id[2] = {{pad, pad, 0}, {pad, pad, 0}};
  nl_tr_augment_apply(o1, in, id, B, CH, H, W, pad, pv);
  assert_memory_equal(o1, in, sizeof(float) * B * H * W);
  nl_tr_augment_apply(o1, in, fl, B, CH, H, W, pad, pv);
  assert_true(o1[0] == in[W - 1] && o1[W - 1] == in[0]);
  nl_tr_augment_apply(o2, o1, fl, B, CH, H, W, pad, pv);
  assert_memory_equal(o2, in, sizeof(float) * B * H * W);
  /* offset (0, 0): the top-left `pad` rows and columns are padding and the
   * image shifts down-right by pad; offset (4, 4): shifted up-left. */
  nl_tr_aug tl[2] = {{0, 0, 0}, {2 * pad, 2 * pad, 0}};
  nl_tr_augment_apply(o1, in, tl, B, CH, H, W, pad, pv);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      float a = o1[y * W + x];
      if (y < pad || x < pad)
        assert_true(a == pv);
      else
        assert_true(a == in[(y - pad) * W + x - pad]);
      float b = o1[H * W + y * W + x];
      if (y >= H - pad || x >= W - pad)
        assert_true(b == pv);
      else
        assert_true(b == in[H * W + (y + pad) * W + x + pad]);
    }
  /* draws: offsets in [0, 2 pad], all 25 combinations occur, flips ~ 1/2,
   * same seed same draws */
  const int N = 5000;
  nl_tr_aug *a = calloc(N, sizeof *a), *a2 = calloc(N, sizeof *a2);
  nl_rng r;
  nl_rng_stream(&r, 42, 3);
  nl_tr_augment_draw(a, N, pad, 0.5f, &r);
  nl_rng_stream(&r, 42, 3);
  nl_tr_augment_draw(a2, N, pad, 0.5f, &r);
  int seen[5][5] = {{0}}, flips = 0;
  for (int i = 0; i < N; i++) {
    assert_true(a[i].dy >= 0 && a[i].dy <= 2 * pad && a[i].dx >= 0 && a[i].dx <= 2 * pad);
    assert_true(a[i].dy == a2[i].dy && a[i].dx == a2[i].dx && a[i].flip == a2[i].flip);
    seen[a[i].dy][a[i].dx] = 1;
    flips += a[i].flip;
  }
  for (int y = 0; y < 5; y++)
    for (int x = 0; x < 5; x++) assert_true(seen[y][x]);
  assert_true(abs(flips - N / 2) < 5 * 36); /* sd sqrt(N/4) ~ 35 */
  free(a), free(a2), free(in), free(o1), free(o2);
}

/* ---------------- large sizes: chunked parallel path ----------------
 * Above 64K elements the element-wise layers run in row chunks over the
 * thread pool. Same results bit for bit with 1 and 3 threads, and the
 * chunked column reductions agree with double-precision sums. */

typedef struct {
  float *dx, *dw, *db, *dg, *da, *lindb, *gd, *att, *dqkv;
} big_out;

static void big_run(big_out *o, const float *x, const float *w, const float *R, const float *qkv,
                    const float *Ra, int N, int C, int B, int T, int CA, int NH) {
  float *mean = fz(N), *rstd = fz(N), *y = fz((size_t)N * C), *ao = fz((size_t)B * T * CA);
  nl_layernorm_forward(y, mean, rstd, x, w, w, N, C, 1e-6f);
  nl_tr_layernorm_backward(o->dx, o->dw, o->db, R, x, w, mean, rstd, N, C);
  nl_tr_dyt_backward(o->dx, o->da, o->dw, o->db, R, x, 0.6f, w, N, C);
  nl_tr_layerscale_backward(o->dx, o->dg, R, x, w, N, C);
  nl_tr_linear_backward(NULL, NULL, o->lindb, R, x, w, N, C, C);
  nl_tr_gelu_backward(o->gd, R, x, (size_t)N * C);
  nl_attention_forward(ao, o->att, qkv, B, T, CA, NH);
  nl_tr_attention_backward(o->dqkv, Ra, qkv, o->att, B, T, CA, NH);
  free(mean), free(rstd), free(y), free(ao);
}

static void big_alloc(big_out *o, int N, int C, int B, int T, int CA, int NH) {
  o->dx = fz((size_t)N * C), o->dw = fz(C), o->db = fz(C), o->dg = fz(C), o->da = fz(1);
  o->lindb = fz(C), o->gd = fz((size_t)N * C), o->att = fz((size_t)B * NH * T * T);
  o->dqkv = fz((size_t)B * T * 3 * CA);
}

static void big_free(big_out *o) {
  free(o->dx), free(o->dw), free(o->db), free(o->dg), free(o->da), free(o->lindb), free(o->gd),
      free(o->att), free(o->dqkv);
}

static void test_parallel_chunks(void **state) {
  (void)state;
  const int N = 700, C = 96, B = 6, T = 17, CA = 32, NH = 2;
  nl_rng r;
  nl_rng_seed(&r, 15);
  float *x = fz((size_t)N * C), *w = fz(C), *R = fz((size_t)N * C);
  float *qkv = fz((size_t)B * T * 3 * CA), *Ra = fz((size_t)B * T * CA);
  fill(x, (size_t)N * C, &r, -2, 2);
  fill(w, C, &r, 0.5f, 1.5f);
  fill(R, (size_t)N * C, &r, -1, 1);
  fill(qkv, (size_t)B * T * 3 * CA, &r, -1, 1);
  fill(Ra, (size_t)B * T * CA, &r, -1, 1);
  big_out a, b;
  big_alloc(&a, N, C, B, T, CA, NH);
  big_alloc(&b, N, C, B, T, CA, NH);
  int outer = nl_threads_enter(1);
  big_run(&a, x, w, R, qkv, Ra, N, C, B, T, CA, NH);
  nl_threads_leave(outer);
  outer = nl_threads_enter(3);
  big_run(&b, x, w, R, qkv, Ra, N, C, B, T, CA, NH);
  nl_threads_leave(outer);
  assert_memory_equal(a.dx, b.dx, sizeof(float) * N * C);
  assert_memory_equal(a.dw, b.dw, sizeof(float) * C);
  assert_memory_equal(a.db, b.db, sizeof(float) * C);
  assert_memory_equal(a.dg, b.dg, sizeof(float) * C);
  assert_memory_equal(a.da, b.da, sizeof(float));
  assert_memory_equal(a.lindb, b.lindb, sizeof(float) * C);
  assert_memory_equal(a.gd, b.gd, sizeof(float) * N * C);
  assert_memory_equal(a.att, b.att, sizeof(float) * B * NH * T * T);
  assert_memory_equal(a.dqkv, b.dqkv, sizeof(float) * B * T * 3 * CA);
  /* column reductions against double sums: db = 2 * colsum(R) (LayerNorm +
   * DyT), linear db = colsum(R), dgamma = colsum(R * x) */
  for (int c = 0; c < C; c++) {
    double sr = 0, srx = 0, sa = 0;
    for (int i = 0; i < N; i++) {
      sr += R[(size_t)i * C + c];
      srx += (double)R[(size_t)i * C + c] * x[(size_t)i * C + c];
      sa += fabs(R[(size_t)i * C + c] * x[(size_t)i * C + c]);
    }
    assert_true(fabs(a.db[c] - 2 * sr) < 1e-6 * 2 * N);
    assert_true(fabs(a.lindb[c] - sr) < 1e-6 * N);
    assert_true(fabs(a.dg[c] - srx) < 1e-6 * sa + 1e-6);
  }
  /* GELU derivative element by element against the double formula */
  for (size_t i = 0; i < (size_t)N * C; i += 97) {
    double xv = x[i];
    double d = 0.5 * (1 + erf(xv / sqrt(2.0))) + xv * exp(-0.5 * xv * xv) / sqrt(2 * M_PI_REF);
    assert_true(fabs(a.gd[i] - R[i] * d) < 1e-6);
  }
  big_free(&a), big_free(&b);
  free(x), free(w), free(R), free(qkv), free(Ra);
}

/* ---------------- a tiny ViT end to end ----------------
 * patch embed -> tokens (cls, pos) -> block [x + dp(ls1 * proj(attn(qkv(LN1 x))));
 * x + dp(ls2 * fc2(gelu(fc1(DyT x))))] -> LN -> class-token pool -> head -> CE.
 * Drop path with a fixed mask (sample 0 dropped in the attention branch,
 * sample 1 scaled by 1/(1-p)) to show the mask composes. */

enum { P_PW, P_PB, P_CLS, P_POS, P_N1W, P_N1B, P_QKVW, P_QKVB, P_PROJW, P_PROJB, P_LS1,
       P_ALPHA, P_N2W, P_N2B, P_FC1W, P_FC1B, P_FC2W, P_FC2B, P_LS2, P_NW, P_NB, P_HW, P_HB,
       NPAR };

enum { CB = 2, CCI = 1, CH = 8, CW = 8, CP = 4, CD = 8, CNH = 2, CHID = 16, CK = 3,
       CNP = (CH / CP) * (CW / CP), CT = CNP + 1, CKK = CCI * CP * CP };

static const size_t psize[NPAR] = {
    CD * CKK, CD, CD, CT * CD, CD, CD, 3 * CD * CD, 3 * CD, CD * CD, CD, CD,
    1, CD, CD, CHID * CD, CHID, CD * CHID, CD, CD, CD, CD, CK * CD, CK};

typedef struct {
  double *p[NPAR];
  double *img;
  const int32_t *y;
  const float *dp1, *dp2;
} chain_ctx;

static double chain_loss(void *v) {
  chain_ctx *c = v;
  double **p = c->p;
  const int N = CB * CT;
  double *pe = dz(CB * CNP * CD), *x = dz(N * CD), *h = dz(N * CD), *qkv = dz(N * 3 * CD);
  double *a = dz(N * CD), *pr = dz(N * CD), *f1 = dz(N * CHID), *f2 = dz(N * CD);
  double *cls = dz(CB * CD), *lg = dz(CB * CK);
  r_patch_conv(pe, c->img, p[P_PW], p[P_PB], CB, CCI, CH, CW, CP, CD);
  for (int b = 0; b < CB; b++)
    for (int t = 0; t < CT; t++)
      for (int d = 0; d < CD; d++)
        x[(b * CT + t) * CD + d] =
            (t == 0 ? p[P_CLS][d] : pe[(b * CNP + t - 1) * CD + d]) + p[P_POS][t * CD + d];
  r_layernorm(h, x, p[P_N1W], p[P_N1B], N, CD, 1e-6);
  r_linear(qkv, h, p[P_QKVW], p[P_QKVB], N, CD, 3 * CD);
  r_attention(a, qkv, CB, CT, CD, CNH);
  r_linear(pr, a, p[P_PROJW], p[P_PROJB], N, CD, CD);
  for (int i = 0; i < N * CD; i++) x[i] += c->dp1[i / (CT * CD)] * p[P_LS1][i % CD] * pr[i];
  r_dyt(h, x, p[P_ALPHA][0], p[P_N2W], p[P_N2B], N, CD);
  r_linear(f1, h, p[P_FC1W], p[P_FC1B], N, CD, CHID);
  for (int i = 0; i < N * CHID; i++) f1[i] = r_gelu1(f1[i]);
  r_linear(f2, f1, p[P_FC2W], p[P_FC2B], N, CHID, CD);
  for (int i = 0; i < N * CD; i++) x[i] += c->dp2[i / (CT * CD)] * p[P_LS2][i % CD] * f2[i];
  r_layernorm(h, x, p[P_NW], p[P_NB], N, CD, 1e-6);
  for (int b = 0; b < CB; b++)
    for (int d = 0; d < CD; d++) cls[b * CD + d] = h[(b * CT) * CD + d];
  r_linear(lg, cls, p[P_HW], p[P_HB], CB, CD, CK);
  double L = r_ce(lg, c->y, CB, CK);
  free(pe), free(x), free(h), free(qkv), free(a), free(pr), free(f1), free(f2), free(cls),
      free(lg);
  return L;
}

static void test_chain_grad(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 13);
  const int N = CB * CT;
  float *P[NPAR], *G[NPAR];
  for (int k = 0; k < NPAR; k++) {
    P[k] = fz(psize[k]);
    G[k] = fz(psize[k]);
    fill(P[k], psize[k], &r, -0.6f, 0.6f);
  }
  for (int k = 0; k < CD; k++) {
    P[P_N1W][k] += 1.0f, P[P_N2W][k] += 1.0f, P[P_NW][k] += 1.0f;
  }
  P[P_ALPHA][0] = 0.8f;
  float *img = fz(CB * CCI * CH * CW);
  fill(img, CB * CCI * CH * CW, &r, -1, 2);
  int32_t y[CB] = {2, 0};
  const float dp1[CB] = {0.0f, 1.0f / 0.75f}, dp2[CB] = {1.0f, 1.0f / 0.75f};

  /* forward, saving what each backward needs */
  float *patches = fz(CB * CNP * CKK), *pe = fz(CB * CNP * CD), *x0 = fz(N * CD);
  float *ln1 = fz(N * CD), *m1 = fz(N), *r1 = fz(N), *qkv = fz(N * 3 * CD);
  float *att = fz(CB * CNH * CT * CT), *ao = fz(N * CD), *pr = fz(N * CD), *lsa = fz(N * CD);
  float *br1 = fz(N * CD), *x1 = fz(N * CD), *n2 = fz(N * CD), *f1 = fz(N * CHID);
  float *g1 = fz(N * CHID), *f2 = fz(N * CD), *lsb = fz(N * CD), *br2 = fz(N * CD);
  float *x2 = fz(N * CD), *ln3 = fz(N * CD), *m3 = fz(N), *r3 = fz(N), *pool = fz(CB * CD);
  float *lg = fz(CB * CK);
  nl_im2col(patches, img, CB, CCI, CH, CW, CP);
  nl_linear_forward(pe, patches, P[P_PW], P[P_PB], CB * CNP, CKK, CD);
  nl_tokens_forward(x0, pe, P[P_CLS], P[P_POS], CB, CNP, CD);
  nl_layernorm_forward(ln1, m1, r1, x0, P[P_N1W], P[P_N1B], N, CD, 1e-6f);
  nl_linear_forward(qkv, ln1, P[P_QKVW], P[P_QKVB], N, CD, 3 * CD);
  nl_attention_forward(ao, att, qkv, CB, CT, CD, CNH);
  nl_linear_forward(pr, ao, P[P_PROJW], P[P_PROJB], N, CD, CD);
  nl_layerscale_forward(lsa, pr, P[P_LS1], N, CD);
  nl_tr_droppath_forward(br1, lsa, dp1, CB, CT * CD);
  nl_residual_forward(x1, x0, br1, N * CD);
  nl_dyt_forward(n2, x1, P[P_ALPHA][0], P[P_N2W], P[P_N2B], N, CD);
  nl_linear_forward(f1, n2, P[P_FC1W], P[P_FC1B], N, CD, CHID);
  nl_gelu_forward(g1, f1, N * CHID);
  nl_linear_forward(f2, g1, P[P_FC2W], P[P_FC2B], N, CHID, CD);
  nl_layerscale_forward(lsb, f2, P[P_LS2], N, CD);
  nl_tr_droppath_forward(br2, lsb, dp2, CB, CT * CD);
  nl_residual_forward(x2, x1, br2, N * CD);
  nl_layernorm_forward(ln3, m3, r3, x2, P[P_NW], P[P_NB], N, CD, 1e-6f);
  nl_pool_forward(pool, ln3, NL_POOL_TOKEN, 1, CB, CT, CD);
  nl_linear_forward(lg, pool, P[P_HW], P[P_HB], CB, CD, CK);
  float *dlg = fz(CB * CK);
  double L = nl_tr_ce_loss(dlg, lg, y, CB, CK);

  /* backward: the residual stream gradient dx accumulates through the block */
  float *dpool = fz(CB * CD), *dln3 = fz(N * CD), *dx = fz(N * CD), *dbr = fz(N * CD);
  float *dls = fz(N * CD), *dg1 = fz(N * CHID), *df1 = fz(N * CHID), *dn2 = fz(N * CD);
  float *dao = fz(N * CD), *dqkv = fz(N * 3 * CD), *dln1 = fz(N * CD), *dpe = fz(CB * CNP * CD);
  nl_tr_linear_backward(dpool, G[P_HW], G[P_HB], dlg, pool, P[P_HW], CB, CD, CK);
  nl_tr_pool_backward(dln3, dpool, NL_POOL_TOKEN, 1, CB, CT, CD);
  nl_tr_layernorm_backward(dx, G[P_NW], G[P_NB], dln3, x2, P[P_NW], m3, r3, N, CD);
  /* x2 = x1 + br2: dx (now dL/dx2) passes to x1 unchanged; branch 2 */
  nl_tr_residual_backward(NULL, dbr, dx, N * CD);
  nl_tr_droppath_backward(dls, dbr, dp2, CB, CT * CD);
  memset(dbr, 0, sizeof(float) * N * CD);
  nl_tr_layerscale_backward(dbr, G[P_LS2], dls, f2, P[P_LS2], N, CD);
  nl_tr_linear_backward(dg1, G[P_FC2W], G[P_FC2B], dbr, g1, P[P_FC2W], N, CHID, CD);
  nl_tr_gelu_backward(df1, dg1, f1, N * CHID);
  nl_tr_linear_backward(dn2, G[P_FC1W], G[P_FC1B], df1, n2, P[P_FC1W], N, CD, CHID);
  nl_tr_dyt_backward(dx, G[P_ALPHA], G[P_N2W], G[P_N2B], dn2, x1, P[P_ALPHA][0], P[P_N2W], N,
                     CD);
  /* branch 1 */
  memset(dbr, 0, sizeof(float) * N * CD);
  memset(dls, 0, sizeof(float) * N * CD);
  nl_tr_residual_backward(NULL, dbr, dx, N * CD);
  nl_tr_droppath_backward(dls, dbr, dp1, CB, CT * CD);
  memset(dbr, 0, sizeof(float) * N * CD);
  nl_tr_layerscale_backward(dbr, G[P_LS1], dls, pr, P[P_LS1], N, CD);
  nl_tr_linear_backward(dao, G[P_PROJW], G[P_PROJB], dbr, ao, P[P_PROJW], N, CD, CD);
  nl_tr_attention_backward(dqkv, dao, qkv, att, CB, CT, CD, CNH);
  nl_tr_linear_backward(dln1, G[P_QKVW], G[P_QKVB], dqkv, ln1, P[P_QKVW], N, CD, 3 * CD);
  nl_tr_layernorm_backward(dx, G[P_N1W], G[P_N1B], dln1, x0, P[P_N1W], m1, r1, N, CD);
  nl_tr_tokens_backward(dpe, G[P_CLS], G[P_POS], dx, P[P_CLS], CB, CNP, CD);
  nl_tr_linear_backward(NULL, G[P_PW], G[P_PB], dpe, patches, P[P_PW], CB * CNP, CKK, CD);

  chain_ctx c = {.img = to_d(img, CB * CCI * CH * CW), .y = y, .dp1 = dp1, .dp2 = dp2};
  for (int k = 0; k < NPAR; k++) c.p[k] = to_d(P[k], psize[k]);
  double Lref = chain_loss(&c);
  assert_true(fabs(L - Lref) < 1e-5 * fmax(1.0, fabs(Lref)));
  static const char *const names[NPAR] = {
      "patch.w", "patch.b", "cls", "pos", "norm1.w", "norm1.b", "qkv.w", "qkv.b", "proj.w",
      "proj.b", "ls1", "alpha", "norm2.w", "norm2.b", "fc1.w", "fc1.b", "fc2.w", "fc2.b",
      "ls2", "norm.w", "norm.b", "head.w", "head.b"};
  for (int k = 0; k < NPAR; k++)
    grad_check(names[k], G[k], c.p[k], psize[k], chain_loss, &c, TOL_CHAIN);
  for (int k = 0; k < NPAR; k++) free(P[k]), free(G[k]), free(c.p[k]);
  free(c.img), free(img);
  float *bufs[] = {patches, pe, x0, ln1, m1, r1, qkv, att, ao, pr, lsa, br1, x1, n2, f1, g1,
                   f2, lsb, br2, x2, ln3, m3, r3, pool, lg, dlg, dpool, dln3, dx, dbr, dls,
                   dg1, df1, dn2, dao, dqkv, dln1, dpe};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linear_grad),
      cmocka_unit_test(test_layernorm_grad),
      cmocka_unit_test(test_dyt_grad),
      cmocka_unit_test(test_pwnorm_grad),
      cmocka_unit_test(test_exprnorm_grad),
      cmocka_unit_test(test_gelu),
      cmocka_unit_test(test_attention_grad),
      cmocka_unit_test(test_layerscale_residual_grad),
      cmocka_unit_test(test_droppath),
      cmocka_unit_test(test_patch_embed_grad),
      cmocka_unit_test(test_tokens_pool_grad),
      cmocka_unit_test(test_tokens_no_cls),
      cmocka_unit_test(test_losses),
      cmocka_unit_test(test_adamw_two_steps),
      cmocka_unit_test(test_schedule),
      cmocka_unit_test(test_decay_and_groups),
      cmocka_unit_test(test_augment),
      cmocka_unit_test(test_parallel_chunks),
      cmocka_unit_test(test_chain_grad),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
