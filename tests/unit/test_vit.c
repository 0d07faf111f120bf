/* The ViT forward pass against timm references (tests/.. /shared/fixtures/timm):
 * logits and every LayerNorm input/output of the reference images, whole
 * test-set predictions and accuracies, DyT swaps, loader errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/threads.h"
#include "data/dataset.h"
#include "model/safetensors.h"
#include "model/quant.h"
#include "model/vit.h"
#include "expr/expr.h"
#include "tensor/gemm.h"
#include "train/evaluate.h"

static char fx_path[4096];

static const char *fixture(const char *name) {
  const char *dir = getenv("NL_FIXTURES");
  snprintf(fx_path, sizeof fx_path, "%s/%s", dir ? dir : "../shared/fixtures/timm", name);
  return fx_path;
}

static int quick(void) {
  const char *q = getenv("NL_TEST_QUICK");
  return q && *q && strcmp(q, "0") != 0;
}

typedef struct tapcheck {
  const nl_st_file *ref;
  double worst_in, worst_out;
  int seen;
} tapcheck;

static double maxdiff_ref(const nl_st_file *ref, const char *name, const float *x, size_t n) {
  const nl_st_tensor *t = nl_st_find(ref, name);
  if (!t) {
    print_error("reference tensor %s missing\n", name);
    return INFINITY;
  }
  if (t->numel != n) {
    print_error("%s: %zu values, reference has %zu\n", name, n, t->numel);
    return INFINITY;
  }
  float *r = nl_xmalloc(sizeof(float) * n);
  nl_st_to_f32(t, r);
  double w = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)x[i] - r[i]);
    if (!(d <= w)) w = d;
  }
  free(r);
  return w;
}

static int tap(const char *layer, int index, const float *x, const float *y, int batch, int tokens,
               int dim, void *user) {
  (void)index;
  tapcheck *tc = user;
  char name[96];
  size_t n = (size_t)2 * tokens * dim; /* reference holds the first 2 images */
  assert_true(batch >= 2);
  snprintf(name, sizeof name, "ln_in.%s", layer);
  double a = maxdiff_ref(tc->ref, name, x, n);
  snprintf(name, sizeof name, "ln_out.%s", layer);
  double b = maxdiff_ref(tc->ref, name, y, n);
  if (!(a <= tc->worst_in)) tc->worst_in = a;
  if (!(b <= tc->worst_out)) tc->worst_out = b;
  tc->seen++;
  return 0;
}

static void check_reference(const char *model, const char *ref, double tol) {
  nl_error err;
  nl_vit m;
  if (nl_vit_load(&m, fixture(model), NULL, &err)) fail_msg("%s", err.msg);
  nl_st_file r;
  if (nl_st_open(&r, fixture(ref), &err)) fail_msg("%s", err.msg);
  size_t n;
  float *in = nl_st_read_f32(&r, "inputs", &n, &err);
  assert_non_null(in);
  assert_int_equal(n, 8 * 28 * 28);
  nl_vit_acts a;
  assert_int_equal(nl_vit_acts_init(&a, &m.cfg, 8, 0, &err), 0);
  tapcheck tc = {&r, 0, 0, 0};
  assert_int_equal(nl_vit_forward(&m, &a, in, 8, tap, &tc, &err), 0);
  double dl = maxdiff_ref(&r, "logits", a.logits, 80);
  printf("# %s: max |logit - timm| = %.3g, ln_in %.3g, ln_out %.3g over %d layers (tolerance %g)\n",
         model, dl, tc.worst_in, tc.worst_out, tc.seen, tol);
  assert_int_equal(tc.seen, 25);
  assert_true(dl <= tol);
  assert_true(tc.worst_in <= tol);
  assert_true(tc.worst_out <= tol);
  /* the same logits, bitwise, with the other thread count: every product
   * runs on tiles fixed by the shapes */
  int t0 = nl_threads_count(a.threads);
  a.threads = t0 == 1 ? 2 : 1;
  float first[80];
  memcpy(first, a.logits, sizeof first);
  assert_int_equal(nl_vit_forward(&m, &a, in, 8, NULL, NULL, &err), 0);
  double dt = 0;
  for (int i = 0; i < 80; i++) dt = fmax(dt, fabs(first[i] - a.logits[i]));
  printf("# threads %d vs %d: max logit difference %.3g\n", t0, a.threads, dt);
  assert_memory_equal(first, a.logits, sizeof first);
  nl_vit_acts_free(&a);
  /* loaded for inference with the Linear weights held only packed: the
   * same logits, bitwise; the FP32 views gone where the kernel runs */
  nl_vit p;
  nl_vit_load_opts lo = {.int_only = 1, .packed = 1};
  if (nl_vit_load(&p, fixture(model), &lo, &err)) fail_msg("%s", err.msg);
  const int kernel = !!nl_gemm_available();
  assert_int_equal(p.wpack != NULL, kernel);
  int absent = 0;
  for (int i = 0; i < p.ntensors; i++) absent += nl_vit_tensor_fp32_absent(&p, i);
  assert_int_equal(absent, kernel ? 4 * p.cfg.depth : 0);
  assert_int_equal(p.blocks[0].fc2_w == NULL, kernel);
  assert_int_equal(nl_vit_check_finite(&p, model, &err), 0);
  assert_int_equal(nl_vit_acts_init(&a, &p.cfg, 8, 0, &err), 0);
  assert_int_equal(nl_vit_acts_pack(&a, &p, &err), 0);
  assert_int_equal(nl_vit_forward(&p, &a, in, 8, NULL, NULL, &err), 0);
  assert_memory_equal(first, a.logits, sizeof first);
  nl_vit_acts_free(&a);
  nl_vit_free(&p);
  free(in);
  nl_st_close(&r);
  nl_vit_free(&m);
}

/* A Linear weight with a NaN stays unpacked under nl_vit_load_opts.packed,
 * so the evaluation's finiteness check still names it. */
static void test_packed_nonfinite(void **state) {
  (void)state;
  nl_error err;
  nl_vit m;
  if (nl_vit_load(&m, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err)) fail_msg("%s", err.msg);
  m.blocks[1].fc1_w[5] = NAN;
  char path[] = "/tmp/nl_packed_nan_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(nl_vit_save(&m, path, &err), 0);
  nl_vit_free(&m);
  nl_vit_load_opts lo = {.int_only = 1, .packed = 1};
  if (nl_vit_load(&m, path, &lo, &err)) fail_msg("%s", err.msg);
  assert_non_null(m.blocks[1].fc1_w);
  assert_true(isnan(m.blocks[1].fc1_w[5]));
  assert_int_equal(nl_vit_check_finite(&m, path, &err), -1);
  assert_non_null(strstr(err.msg, "blocks.1.mlp.fc1.weight"));
  nl_vit_free(&m);
  unlink(path);
}

static void test_small_reference(void **state) {
  (void)state;
  check_reference("vit_small_p7_fmnist.safetensors", "vit_small_p7_fmnist_ref.safetensors", 1e-4);
}

static void test_tiny_reference(void **state) {
  (void)state;
  check_reference("vit_tiny_p4_fmnist.safetensors", "vit_tiny_p4_fmnist_ref.safetensors", 2e-4);
}

static void test_config(void **state) {
  (void)state;
  nl_error err;
  nl_vit m;
  if (nl_vit_load(&m, fixture("vit_tiny_p4_fmnist.safetensors"), NULL, &err)) fail_msg("%s", err.msg);
  assert_int_equal(m.cfg.img_size, 28);
  assert_int_equal(m.cfg.patch, 4);
  assert_int_equal(m.cfg.dim, 192);
  assert_int_equal(m.cfg.heads, 3);
  assert_int_equal(m.cfg.depth, 12);
  assert_int_equal(m.cfg.tokens, 50);
  assert_int_equal(m.cfg.classes, 10);
  assert_int_equal(m.cfg.class_token, 1);
  assert_int_equal(m.cfg.avg_pool, 0);
  assert_int_equal(m.nnorms, 25);
  assert_string_equal(m.norms[0].name, "blocks.0.norm1");
  assert_string_equal(m.norms[24].name, "norm");
  assert_float_equal(m.cfg.mean[0], 0.286f, 1e-7);
  assert_float_equal(m.cfg.std[0], 0.353f, 1e-7);
  assert_string_equal(m.cfg.source, "__metadata__ model_args");
  nl_vit_free(&m);
}

/* Whole-test-set sweep: argmax against timm's predictions, top-1, and the
 * DyT swaps of the fixture table. */
typedef struct sweep {
  int agree, correct, n;
} sweep;

static void run_sweep(nl_vit *m, const nl_dataset *d, const uint8_t *pred, sweep *s) {
  nl_error err;
  nl_vit_acts a;
  int B = 100;
  assert_int_equal(nl_vit_acts_init(&a, &m->cfg, B, 0, &err), 0);
  float *x = nl_xmalloc(sizeof(float) * B * 28 * 28);
  memset(s, 0, sizeof *s);
  for (int i = 0; i < d->n; i += B) {
    int n = d->n - i < B ? d->n - i : B;
    nl_dataset_normalize(d, i, n, 1, m->cfg.nmean, m->cfg.mean, m->cfg.std, x);
    assert_int_equal(nl_vit_forward(m, &a, x, n, NULL, NULL, &err), 0);
    for (int b = 0; b < n; b++) {
      const float *l = a.logits + b * 10;
      int arg = 0;
      for (int k = 1; k < 10; k++)
        if (l[k] > l[arg]) arg = k;
      if (pred && arg == pred[i + b]) s->agree++;
      if (arg == d->labels[i + b]) s->correct++;
    }
    s->n += n;
  }
  free(x);
  nl_vit_acts_free(&a);
}

static void sweep_model(const char *model, const char *ref, const char *json, double top1,
                        double dyt05, double dytlsq, int with_dyt) {
  if (quick()) {
    printf("# %s: whole-test-set sweep skipped (NL_TEST_QUICK)\n", model);
    return;
  }
  nl_error err;
  nl_dataset d;
  if (nl_dataset_load(&d, "fmnist:test", 0, 0, &err)) fail_msg("%s", err.msg);
  nl_vit m;
  if (nl_vit_load(&m, fixture(model), NULL, &err)) fail_msg("%s", err.msg);
  nl_st_file r;
  if (nl_st_open(&r, fixture(ref), &err)) fail_msg("%s", err.msg);
  const nl_st_tensor *tp = nl_st_find(&r, "test_predictions");
  assert_non_null(tp);
  assert_int_equal(tp->numel, 10000);
  sweep s;
  run_sweep(&m, &d, tp->raw, &s);
  printf("# %s: argmax equals timm's for %d of %d; top-1 %.2f %% (timm %.2f %%)\n", model, s.agree,
         s.n, 100.0 * s.correct / s.n, 100 * top1);
  assert_true(s.agree >= 9997);
  assert_true(fabs((double)s.correct / s.n - top1) <= 3.5e-4);
  if (!with_dyt) goto done;
  /* DyT swaps, no fine-tuning: alpha = 0.5 everywhere, then the fitted alphas */
  for (int i = 0; i < m.nnorms; i++) nl_norm_set_dyt(&m, &m.norms[i], 0.5f);
  run_sweep(&m, &d, NULL, &s);
  printf("# %s with DyT alpha=0.5: top-1 %.2f %% (reference %.1f %%)\n", model,
         100.0 * s.correct / s.n, 100 * dyt05);
  assert_true(fabs((double)s.correct / s.n - dyt05) <= 0.006);
  json_error_t je;
  json_t *j = json_load_file(fixture(json), 0, &je);
  assert_non_null(j);
  json_t *tab = json_object_get(j, "dyt_table");
  assert_int_equal(json_array_size(tab), 25);
  for (size_t i = 0; i < 25; i++) {
    json_t *e = json_array_get(tab, i);
    nl_norm *n = nl_vit_norm_find(&m, json_string_value(json_object_get(e, "layer")));
    assert_non_null(n);
    nl_norm_set_dyt(&m, n, (float)json_number_value(json_object_get(e, "dyt_alpha")));
  }
  json_decref(j);
  run_sweep(&m, &d, NULL, &s);
  printf("# %s with least-squares DyT alphas: top-1 %.2f %% (reference %.1f %%)\n", model,
         100.0 * s.correct / s.n, 100 * dytlsq);
  assert_true(fabs((double)s.correct / s.n - dytlsq) <= 0.006);
done:
  nl_st_close(&r);
  nl_vit_free(&m);
  nl_dataset_free(&d);
}

static void test_small_test_set(void **state) {
  (void)state;
  sweep_model("vit_small_p7_fmnist.safetensors", "vit_small_p7_fmnist_ref.safetensors",
              "vit_small_p7_fmnist.json", 0.8740, 0.100, 0.4339, 1);
}

static void test_tiny_test_set(void **state) {
  (void)state;
  sweep_model("vit_tiny_p4_fmnist.safetensors", "vit_tiny_p4_fmnist_ref.safetensors",
              "vit_tiny_p4_fmnist.json", 0.9011, 0.103, 0.353, 0);
}

/* Files derived from the small fixture: a tensor dropped or an extra one. */
static void write_variant(const char *out, const char *drop, const char *extra) {
  nl_error err;
  nl_st_file f;
  if (nl_st_open(&f, fixture("vit_small_p7_fmnist.safetensors"), &err)) fail_msg("%s", err.msg);
  nl_st_writer *w = nl_st_writer_new();
  for (int i = 0; i < f.n; i++) {
    if (drop && strcmp(f.t[i].name, drop) == 0) continue;
    float *v = nl_xmalloc(sizeof(float) * f.t[i].numel + 4);
    nl_st_to_f32(&f.t[i], v);
    assert_int_equal(nl_st_writer_add(w, f.t[i].name, v, f.t[i].ndim, f.t[i].shape, &err), 0);
    free(v);
  }
  if (extra) {
    float z[4] = {0};
    int64_t s[1] = {4};
    assert_int_equal(nl_st_writer_add(w, extra, z, 1, s, &err), 0);
  }
  for (int i = 0; i < f.nmeta; i++) nl_st_writer_meta(w, f.meta[i].key, f.meta[i].value);
  assert_int_equal(nl_st_writer_save(w, out, &err), 0);
  nl_st_writer_free(w);
  nl_st_close(&f);
}

static void test_loader_errors(void **state) {
  (void)state;
  char path[] = "/tmp/nl_vit_test_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  nl_error err;
  nl_vit m;
  write_variant(path, "blocks.3.mlp.fc2.bias", NULL);
  assert_int_equal(nl_vit_load(&m, path, NULL, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "missing: blocks.3.mlp.fc2.bias"));
  write_variant(path, NULL, "blocks.3.attn.q_norm.weight");
  assert_int_equal(nl_vit_load(&m, path, NULL, &err), -1);
  assert_non_null(strstr(err.msg, "not understood"));
  assert_non_null(strstr(err.msg, "blocks.3.attn.q_norm.weight"));
  /* a round trip through the writer keeps the model */
  write_variant(path, NULL, NULL);
  assert_int_equal(nl_vit_load(&m, path, NULL, &err), 0);
  assert_int_equal(m.cfg.heads, 2);
  nl_vit_free(&m);
  unlink(path);
}

/* Config inferred from shapes (no metadata): heads default to width / 64. */
static void test_inferred_config(void **state) {
  (void)state;
  nl_error err;
  nl_vit m;
  if (nl_vit_load(&m, fixture("vit_tiny_p4_fmnist.safetensors"), NULL, &err)) fail_msg("%s", err.msg);
  char path[] = "/tmp/nl_vit_inf_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  nl_st_writer *w = nl_st_writer_new();
  for (int i = 0; i < m.ntensors; i++)
    assert_int_equal(nl_st_writer_add(w, m.tensors[i].name, m.params + m.tensors[i].offset,
                                      m.tensors[i].ndim, m.tensors[i].shape, &err), 0);
  assert_int_equal(nl_st_writer_save(w, path, &err), 0);
  nl_st_writer_free(w);
  nl_vit m2;
  assert_int_equal(nl_vit_load(&m2, path, NULL, &err), 0);
  assert_string_equal(m2.cfg.source, "inferred from tensor shapes");
  assert_int_equal(m2.cfg.heads, 3);
  assert_int_equal(m2.cfg.img_size, 28);
  assert_int_equal(m2.cfg.patch, 4);
  assert_int_equal(m2.cfg.depth, 12);
  assert_float_equal(m2.cfg.mean[0], 0.2860f, 1e-7);
  nl_vit_free(&m2);
  nl_vit_load_opts o = {.heads = 5};
  assert_int_equal(nl_vit_load(&m2, path, &o, &err), -1);
  assert_non_null(strstr(err.msg, "not divisible by 5 heads"));
  unlink(path);
  nl_vit_free(&m);
}

/* Expression norms: f(x) * w + b with f = tanh(0.7 * x) is DyT with alpha 0.7
 * (checked against the fixture's DyT accuracies above), bitwise: the
 * expression engine and the DyT kernel share the one tanh of base/vmath.h;
 * a LayerNorm slot keeps its reference output. */
static void test_expr_norm(void **state) {
  (void)state;
  nl_error err;
  nl_vit m;
  if (nl_vit_load(&m, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err)) fail_msg("%s", err.msg);
  nl_st_file r;
  if (nl_st_open(&r, fixture("vit_small_p7_fmnist_ref.safetensors"), &err)) fail_msg("%s", err.msg);
  float *in = nl_st_read_f32(&r, "inputs", NULL, &err);
  nl_vit_acts a;
  assert_int_equal(nl_vit_acts_init(&a, &m.cfg, 8, 0, &err), 0);
  for (int i = 0; i < m.nnorms; i++) nl_norm_set_dyt(&m, &m.norms[i], 0.7f);
  assert_int_equal(nl_vit_forward(&m, &a, in, 8, NULL, NULL, &err), 0);
  float dyt[80];
  memcpy(dyt, a.logits, sizeof dyt);
  nl_prog p;
  nl_prog_init(&p);
  assert_int_equal(nl_parse("tanh(0.7 * x)", 1, &p, &err), 0);
  for (int i = 0; i < m.nnorms; i++) assert_int_equal(nl_norm_set_expr(&m, &m.norms[i], &p, &err), 0);
  nl_prog_free(&p);
  assert_int_equal(m.norms[3].kind, NL_NORM_EXPR);
  assert_int_equal(nl_vit_forward(&m, &a, in, 8, NULL, NULL, &err), 0);
  double w = 0;
  for (int i = 0; i < 80; i++) w = fmax(w, fabs(dyt[i] - a.logits[i]));
  printf("# expression tanh(0.7*x) vs DyT alpha=0.7: max logit difference %.3g\n", w);
  assert_memory_equal(dyt, a.logits, sizeof dyt);
  /* back to LayerNorm: the timm logits again */
  for (int i = 0; i < m.nnorms; i++) nl_norm_set_layernorm(&m, &m.norms[i]);
  assert_null(m.norms[3].prog);
  assert_int_equal(nl_vit_forward(&m, &a, in, 8, NULL, NULL, &err), 0);
  assert_true(maxdiff_ref(&r, "logits", a.logits, 80) <= 1e-4);
  nl_vit_acts_free(&a);
  free(in);
  nl_st_close(&r);
  nl_vit_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config),
      cmocka_unit_test(test_small_reference),
      cmocka_unit_test(test_tiny_reference),
      cmocka_unit_test(test_loader_errors),
      cmocka_unit_test(test_expr_norm),
      cmocka_unit_test(test_inferred_config),
      cmocka_unit_test(test_packed_nonfinite),
      cmocka_unit_test(test_small_test_set),
      cmocka_unit_test(test_tiny_test_set),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
