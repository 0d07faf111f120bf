/* Unit tests for output-aware calibration (src/train/calibrate.c).
 *
 * Gradient check: the timm fixture vit_small_p7_fmnist with four norm slots
 * made expressions (smooth ones and one with clip); the distillation loss
 * tau^2 KL(teacher || model), teacher = the fixture itself, is recomputed
 * here from the logits of the inference pass (nl_vit_forward) in double,
 * and its central differences with respect to every constant of every
 * expression slot, through the whole model, are compared with
 * nl_calib_const_grad. The model runs in float32: a step of 1e-2 relative
 * (at least 1e-2 absolute) keeps the loss differences far above its rounding (~1e-7 relative) and
 * the truncation error at O(h^2) (~1e-4 relative); the bound
 * |a - n| <= 2e-2 |n| + 2e-3 max|n| is far above both and far below the
 * error of a missing factor (w, dout) or a wrong term. At tau 4 and tau 1.
 *
 * Calibration on 64 Fashion-MNIST training images lowers the KL (recomputed
 * here, not the library's figure), keeps every tree's form (operators,
 * exponents) and changes its constants; the checkpoint written and read
 * back gives the calibrated model's logits exactly. Bad input (a teacher of
 * another architecture, nothing to tune, NaN weights, a bogus option) is
 * NL_EINPUT. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "expr/expr.h"
#include "model/safetensors.h"
#include "model/vit.h"
#include "train/calibrate.h"

static const char *fixture(const char *name) {
  static char buf[512];
  const char *dir = getenv("NL_FIXTURES");
  snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "../shared/fixtures/timm", name);
  return buf;
}

static int have_fixture(void) {
  return access(fixture("vit_small_p7_fmnist.safetensors"), R_OK) == 0;
}

static int have_data(void) {
  const char *dir = getenv("NL_FMNIST_DIR");
  char p[512];
  snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir ? dir : NL_FMNIST_DIR_DEFAULT);
  return have_fixture() && access(p, R_OK) == 0;
}

static const char *slots[][2] = {
    {"blocks.0.norm1", "0.7*tanh(2.3*x + 0.1) + 0.05"},
    {"blocks.5.norm2", "1.1*x*sigmoid(1.6*x) - 0.03"},
    {"blocks.11.norm1", "0.9*clip(1.4*x) + 0.2*tanh(0.5*x)"},
    {"norm", "1.2*tanh(0.7*x) + 0.01"},
};
#define NSLOTS 4

static void load_adapted(nl_vit *m) {
  nl_error err;
  if (nl_vit_load(m, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err))
    fail_msg("%s", err.msg);
  for (int s = 0; s < NSLOTS; s++) {
    nl_prog p;
    nl_prog_init(&p);
    if (nl_parse(slots[s][1], 1, &p, &err)) fail_msg("%s", err.msg);
    nl_norm *n = nl_vit_norm_find(m, slots[s][0]);
    assert_non_null(n);
    if (nl_norm_set_expr(m, n, &p, &err)) fail_msg("%s", err.msg);
    nl_prog_free(&p);
  }
}

/* The 8 reference test images of the fixture, normalised. */
static float *ref_inputs(void) {
  nl_st_file f;
  nl_error err;
  if (nl_st_open(&f, fixture("vit_small_p7_fmnist_ref.safetensors"), &err))
    fail_msg("%s", err.msg);
  size_t n;
  float *x = nl_st_read_f32(&f, "inputs", &n, &err);
  if (!x) fail_msg("%s", err.msg);
  assert_int_equal(n, 8 * 784);
  nl_st_close(&f);
  return x;
}

static float *logits_of(const nl_vit *m, const float *x, int n) {
  nl_vit_acts a;
  nl_error err;
  if (nl_vit_acts_init(&a, &m->cfg, n, 0, &err)) fail_msg("%s", err.msg);
  if (nl_vit_forward(m, &a, x, n, NULL, NULL, &err)) fail_msg("%s", err.msg);
  size_t nb = sizeof(float) * (size_t)n * m->cfg.classes;
  float *l = malloc(nb);
  memcpy(l, a.logits, nb);
  nl_vit_acts_free(&a);
  return l;
}

/* tau^2 mean_b KL(softmax(t/tau) || softmax(s/tau)), in double. */
static double kd(const float *s, const float *t, int n, int K, double tau) {
  double sum = 0;
  for (int b = 0; b < n; b++) {
    const float *sb = s + (size_t)b * K, *tb = t + (size_t)b * K;
    double ms = -1e300, mt = -1e300, zs = 0, zt = 0;
    for (int k = 0; k < K; k++) {
      if (sb[k] / tau > ms) ms = sb[k] / tau;
      if (tb[k] / tau > mt) mt = tb[k] / tau;
    }
    for (int k = 0; k < K; k++) zs += exp(sb[k] / tau - ms), zt += exp(tb[k] / tau - mt);
    for (int k = 0; k < K; k++) {
      double lpt = tb[k] / tau - mt - log(zt), lps = sb[k] / tau - ms - log(zs);
      sum += exp(lpt) * (lpt - lps);
    }
  }
  return tau * tau * sum / n;
}

static double loss_of(const nl_vit *m, const float *x, const float *tl, int n, double tau) {
  float *l = logits_of(m, x, n);
  double v = kd(l, tl, n, m->cfg.classes, tau);
  free(l);
  return v;
}

static void grad_check(float tau) {
  nl_vit m, t;
  nl_error err;
  load_adapted(&m);
  if (nl_vit_load(&t, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err))
    fail_msg("%s", err.msg);
  float *x = ref_inputs();
  const int n = 8;
  float *tl = logits_of(&t, x, n);
  int total = 0;
  for (int i = 0; i < m.nnorms; i++)
    if (m.norms[i].kind == NL_NORM_EXPR) total += nl_prog_nconst(m.norms[i].prog);
  assert_true(total >= 12);
  float *g = calloc((size_t)total, sizeof(float));
  double loss;
  if (nl_calib_const_grad(&m, &t, x, n, tau, &loss, g, &err)) fail_msg("%s", err.msg);
  double ref = loss_of(&m, x, tl, n, tau);
  assert_true(fabs(loss - ref) <= 1e-4 * fabs(ref) + 1e-7);
  double *num = calloc((size_t)total, sizeof(double));
  double maxn = 0;
  int o = 0;
  for (int i = 0; i < m.nnorms; i++) {
    nl_norm *s = &m.norms[i];
    if (s->kind != NL_NORM_EXPR) continue;
    int K = nl_prog_nconst(s->prog);
    float c[64];
    assert_true(K <= 64);
    nl_prog_get_consts(s->prog, c);
    for (int k = 0; k < K; k++) {
      float c0 = c[k];
      float h = 1e-2f * (fabsf(c0) > 1.0f ? fabsf(c0) : 1.0f);
      c[k] = c0 + h;
      nl_prog_set_consts(s->prog, c);
      double lp = loss_of(&m, x, tl, n, tau);
      c[k] = c0 - h;
      nl_prog_set_consts(s->prog, c);
      double lm = loss_of(&m, x, tl, n, tau);
      c[k] = c0;
      nl_prog_set_consts(s->prog, c);
      /* the step actually taken, in float */
      double hp = (double)(c0 + h) - c0, hm = c0 - (double)(c0 - h);
      num[o + k] = (lp - lm) / (hp + hm);
      if (fabs(num[o + k]) > maxn) maxn = fabs(num[o + k]);
    }
    o += K;
  }
  o = 0;
  for (int i = 0; i < m.nnorms; i++) {
    nl_norm *s = &m.norms[i];
    if (s->kind != NL_NORM_EXPR) continue;
    int K = nl_prog_nconst(s->prog);
    for (int k = 0; k < K; k++) {
      double a = g[o + k], nu = num[o + k];
      int good = fabs(a - nu) <= 2e-2 * fabs(nu) + 2e-3 * maxn;
      print_message("tau %g %s c%d: analytic %.6e numeric %.6e%s\n", (double)tau, s->name, k, a,
                    nu, good ? "" : "  <-- off");
      assert_true(good);
    }
    o += K;
  }
  assert_true(maxn > 1e-4); /* the check has something to see */
  free(num);
  free(g);
  free(tl);
  free(x);
  nl_vit_free(&t);
  nl_vit_free(&m);
}

static void test_grad_tau4(void **st) {
  (void)st;
  if (!have_fixture()) skip();
  grad_check(4.0f);
}

static void test_grad_tau1(void **st) {
  (void)st;
  if (!have_fixture()) skip();
  grad_check(1.0f);
}

/* Mean KD over images [0, n) of d, recomputed here. */
static double data_loss(const nl_vit *m, const nl_vit *t, const nl_dataset *d, double tau) {
  float *x = malloc(sizeof(float) * 784 * (size_t)d->n);
  nl_dataset_normalize(d, 0, d->n, 1, m->cfg.nmean, m->cfg.mean, m->cfg.std, x);
  float *tl = logits_of(t, x, d->n);
  double v = loss_of(m, x, tl, d->n, tau);
  free(tl);
  free(x);
  return v;
}

static void test_calibrate_lowers_kl(void **st) {
  (void)st;
  if (!have_data()) skip();
  nl_vit m, t;
  nl_error err;
  load_adapted(&m);
  if (nl_vit_load(&t, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err))
    fail_msg("%s", err.msg);
  nl_dataset d;
  if (nl_dataset_load(&d, "fmnist:train", 0, 64, &err)) fail_msg("%s", err.msg);
  nl_prog before[NSLOTS];
  for (int s = 0; s < NSLOTS; s++) {
    nl_prog_init(&before[s]);
    nl_prog_copy(&before[s], nl_vit_norm_find(&m, slots[s][0])->prog);
  }
  double l0 = data_loss(&m, &t, &d, 4.0);
  nl_calib_opts o;
  nl_calib_opts_default(&o);
  o.epochs = 3;
  o.batch = 32;
  o.lr = 1e-2f;
  o.tau = 4.0f;
  o.threads = 2;
  nl_calib_result r;
  if (nl_vit_calibrate(&m, &t, &d, &o, &r, &err)) fail_msg("%s", err.msg);
  double l1 = data_loss(&m, &t, &d, 4.0);
  print_message("KD on 64 images %.5f -> %.5f (library: KL %.5f -> %.5f)\n", l0, l1, r.kl_before,
                r.kl_after);
  assert_true(l1 < 0.9 * l0);
  assert_int_equal(r.epochs_done, 3);
  assert_true(fabs(16.0 * r.kl_before - l0) <= 1e-3 * l0);
  int changed = 0;
  for (int s = 0; s < NSLOTS; s++) {
    const nl_prog *p = nl_vit_norm_find(&m, slots[s][0])->prog;
    assert_int_equal(p->len, before[s].len);
    for (int k = 0; k < p->len; k++) {
      assert_int_equal(p->nodes[k].op, before[s].nodes[k].op);
      assert_int_equal(p->nodes[k].ival, before[s].nodes[k].ival);
      if (p->nodes[k].op == NL_OP_CONST && p->nodes[k].val != before[s].nodes[k].val) changed++;
    }
    nl_prog_free(&before[s]);
  }
  assert_true(changed > 0);
  /* written and read back: the same numbers */
  char path[] = "/tmp/nl-calib-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  if (nl_vit_save(&m, path, &err)) fail_msg("%s", err.msg);
  nl_vit b;
  if (nl_vit_load(&b, path, NULL, &err)) fail_msg("%s", err.msg);
  unlink(path);
  float *x = malloc(sizeof(float) * 784 * 8);
  nl_dataset_normalize(&d, 0, 8, 1, m.cfg.nmean, m.cfg.mean, m.cfg.std, x);
  float *la = logits_of(&m, x, 8), *lb = logits_of(&b, x, 8);
  assert_memory_equal(la, lb, sizeof(float) * 8 * 10);
  free(la), free(lb), free(x);
  nl_vit_free(&b);
  nl_calib_result_free(&r);
  nl_dataset_free(&d);
  nl_vit_free(&t);
  nl_vit_free(&m);
}

static void test_bad_input(void **st) {
  (void)st;
  if (!have_data()) skip();
  nl_vit m, t;
  nl_error err;
  load_adapted(&m);
  if (nl_vit_load(&t, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err))
    fail_msg("%s", err.msg);
  nl_dataset d;
  if (nl_dataset_load(&d, "fmnist:train", 0, 8, &err)) fail_msg("%s", err.msg);
  nl_calib_opts o;
  nl_calib_opts_default(&o);
  o.epochs = 1;
  nl_calib_result r;
  /* what */
  o.what = 8;
  assert_int_equal(nl_vit_calibrate(&m, &t, &d, &o, &r, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  o.what = NL_CALIB_CONSTS;
  o.lr = NAN;
  assert_int_equal(nl_vit_calibrate(&m, &t, &d, &o, &r, &err), -1);
  assert_non_null(strstr(err.msg, "learning rate"));
  o.lr = 1e-3f;
  /* a teacher of another architecture */
  nl_vit tiny;
  if (access(fixture("vit_tiny_p4_fmnist.safetensors"), R_OK) == 0) {
    if (nl_vit_load(&tiny, fixture("vit_tiny_p4_fmnist.safetensors"), NULL, &err))
      fail_msg("%s", err.msg);
    assert_int_equal(nl_vit_calibrate(&m, &tiny, &d, &o, &r, &err), -1);
    assert_int_equal(err.code, NL_EINPUT);
    assert_non_null(strstr(err.msg, "different model"));
    nl_vit_free(&tiny);
  }
  /* nothing to tune: the teacher itself has no expression */
  assert_int_equal(nl_vit_calibrate(&t, &t, &d, &o, &r, &err), -1);
  assert_non_null(strstr(err.msg, "no expression constants"));
  /* NaN weight */
  float keep = m.blocks[3].fc1_w[7];
  m.blocks[3].fc1_w[7] = NAN;
  assert_int_equal(nl_vit_calibrate(&m, &t, &d, &o, &r, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "blocks.3.mlp.fc1.weight"));
  m.blocks[3].fc1_w[7] = keep;
  nl_dataset_free(&d);
  nl_vit_free(&t);
  nl_vit_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grad_tau4),
      cmocka_unit_test(test_grad_tau1),
      cmocka_unit_test(test_calibrate_lowers_kl),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
