/* Replacement of the norm slots (nl_vit_replace) and adapted checkpoints:
 * LayerNorm again gives timm's logits, DyT alpha is a listed parameter that
 * survives save/load, expression sets reload bit for bit, bad sets and
 * malformed "norms" metadata are clear NL_EINPUT errors. */
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

#include "base/mem.h"
#include "expr/expr.h"
#include "model/replace.h"
#include "model/safetensors.h"
#include "model/vit.h"

static char fx_path[4096];

static const char *fixture(const char *name) {
  const char *dir = getenv("NL_FIXTURES");
  snprintf(fx_path, sizeof fx_path, "%s/%s", dir ? dir : "../shared/fixtures/timm", name);
  return fx_path;
}

static void load_small(nl_vit *m) {
  nl_error err;
  if (nl_vit_load(m, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err)) fail_msg("%s", err.msg);
}

static float *ref_inputs(float *logits80) {
  nl_error err;
  nl_st_file r;
  if (nl_st_open(&r, fixture("vit_small_p7_fmnist_ref.safetensors"), &err)) fail_msg("%s", err.msg);
  float *in = nl_st_read_f32(&r, "inputs", NULL, &err);
  assert_non_null(in);
  if (logits80) {
    size_t n;
    float *l = nl_st_read_f32(&r, "logits", &n, &err);
    assert_non_null(l);
    assert_int_equal(n, 80);
    memcpy(logits80, l, sizeof(float) * 80);
    free(l);
  }
  nl_st_close(&r);
  return in;
}

/* Logits of the 8 reference images. */
static void logits_of(const nl_vit *m, const float *in, float *out) {
  nl_error err;
  nl_vit_acts a;
  assert_int_equal(nl_vit_acts_init(&a, &m->cfg, 8, 0, &err), 0);
  if (nl_vit_forward(m, &a, in, 8, NULL, NULL, &err)) fail_msg("%s", err.msg);
  memcpy(out, a.logits, sizeof(float) * 80);
  nl_vit_acts_free(&a);
}

static double maxdiff(const float *a, const float *b, int n) {
  double w = 0;
  for (int i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= w)) w = d;
  }
  return w;
}

static void tmpname(char *buf, size_t cap, const char *tag) {
  snprintf(buf, cap, "/tmp/nl_replace_%s_%ld.safetensors", tag, (long)getpid());
}

static int find_tensor(const nl_vit *m, const char *name) {
  for (int i = 0; i < m->ntensors; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return i;
  return -1;
}

/* DyT then LayerNorm again: timm's logits, and the tensor list of the
 * original model; saved and reloaded, the same. */
static void test_layernorm_again(void **state) {
  (void)state;
  nl_error err;
  nl_vit m;
  load_small(&m);
  float ref[80], l[80];
  float *in = ref_inputs(ref);
  int n0 = m.ntensors;
  size_t p0 = nl_vit_param_count(&m);
  nl_replace_spec dyt = {.mode = NL_REPLACE_DYT, .alpha = 0.5f};
  assert_int_equal(nl_vit_replace(&m, &dyt, NULL, &err), 0);
  logits_of(&m, in, l);
  assert_true(maxdiff(l, ref, 80) > 0.1); /* DyT changes the logits */
  nl_replace_spec ln = {.mode = NL_REPLACE_LAYERNORM};
  int kept[25];
  assert_int_equal(nl_vit_replace(&m, &ln, kept, &err), 0);
  for (int i = 0; i < 25; i++) assert_int_equal(kept[i], 0);
  assert_int_equal(m.ntensors, n0);
  assert_int_equal(nl_vit_param_count(&m), p0);
  logits_of(&m, in, l);
  printf("# LayerNorm again: max |logit - timm| = %.3g\n", maxdiff(l, ref, 80));
  assert_true(maxdiff(l, ref, 80) <= 1e-4);
  char path[128];
  tmpname(path, sizeof path, "ln");
  assert_int_equal(nl_vit_save(&m, path, &err), 0);
  nl_vit m2;
  if (nl_vit_load(&m2, path, NULL, &err)) fail_msg("%s", err.msg);
  assert_int_equal(m2.ntensors, n0);
  for (int i = 0; i < m2.nnorms; i++) assert_int_equal(m2.norms[i].kind, NL_NORM_LAYERNORM);
  float l2[80];
  logits_of(&m2, in, l2);
  assert_memory_equal(l, l2, sizeof l);
  nl_vit_free(&m2);
  unlink(path);
  free(in);
  nl_vit_free(&m);
}

/* DyT alpha: a listed tensor "<slot>.alpha" [1] right after the slot's bias,
 * a view into params that the forward reads, kept through save/load. */
static void test_dyt_alpha_param(void **state) {
  (void)state;
  nl_error err;
  nl_vit m;
  load_small(&m);
  float *in = ref_inputs(NULL);
  int n0 = m.ntensors;
  size_t p0 = nl_vit_param_count(&m);
  float *w0 = m.norms[0].w;
  nl_replace_spec dyt = {.mode = NL_REPLACE_DYT, .alpha = 0.5f};
  assert_int_equal(nl_vit_replace(&m, &dyt, NULL, &err), 0);
  assert_ptr_equal(m.norms[0].w, w0); /* the buffer never moves */
  assert_int_equal(m.ntensors, n0 + 25);
  assert_int_equal(nl_vit_param_count(&m), p0 + 25);
  for (int i = 0; i < m.nnorms; i++) {
    const nl_norm *n = &m.norms[i];
    char nm[96];
    snprintf(nm, sizeof nm, "%s.alpha", n->name);
    int k = find_tensor(&m, nm);
    assert_true(k > 0);
    snprintf(nm, sizeof nm, "%s.bias", n->name);
    assert_int_equal(find_tensor(&m, nm), k - 1);
    assert_int_equal(m.tensors[k].ndim, 1);
    assert_int_equal(m.tensors[k].shape[0], 1);
    assert_int_equal(m.tensors[k].numel, 1);
    assert_ptr_equal(m.params + m.tensors[k].offset, n->alpha);
    assert_true(*n->alpha == 0.5f);
    assert_true(m.tensors[k].offset + 1 <= m.nparams);
  }
  float a[80], b[80];
  logits_of(&m, in, a);
  /* an optimiser step on the buffer is what the forward sees */
  int k = find_tensor(&m, "blocks.3.norm2.alpha");
  m.params[m.tensors[k].offset] = 1.25f;
  assert_true(*m.norms[7].alpha == 1.25f);
  logits_of(&m, in, b);
  assert_true(maxdiff(a, b, 80) > 1e-3);
  /* distinct alphas survive save and load; so does a mix of kinds */
  for (int i = 0; i < m.nnorms; i++) *m.norms[i].alpha = 0.25f + 0.125f * (float)i;
  nl_prog p;
  nl_prog_init(&p);
  assert_int_equal(nl_parse("0.7*clip(2.3*x) - 0.01", 1, &p, &err), 0);
  assert_int_equal(nl_norm_set_expr(&m, &m.norms[5], &p, &err), 0);
  nl_prog_free(&p);
  nl_norm_set_layernorm(&m, &m.norms[6]);
  assert_int_equal(m.ntensors, n0 + 23);
  assert_int_equal(find_tensor(&m, "blocks.2.norm2.alpha"), -1);
  logits_of(&m, in, a);
  char path[128];
  tmpname(path, sizeof path, "dyt");
  assert_int_equal(nl_vit_save(&m, path, &err), 0);
  nl_vit m2;
  if (nl_vit_load(&m2, path, NULL, &err)) fail_msg("%s", err.msg);
  assert_int_equal(m2.ntensors, m.ntensors);
  for (int i = 0; i < m.ntensors; i++) assert_string_equal(m2.tensors[i].name, m.tensors[i].name);
  for (int i = 0; i < m2.nnorms; i++) {
    nl_norm_kind want = i == 5 ? NL_NORM_EXPR : i == 6 ? NL_NORM_LAYERNORM : NL_NORM_DYT;
    assert_int_equal(m2.norms[i].kind, want);
    if (want == NL_NORM_DYT) assert_true(*m2.norms[i].alpha == 0.25f + 0.125f * (float)i);
  }
  logits_of(&m2, in, b);
  assert_memory_equal(a, b, sizeof a);
  nl_vit_free(&m2);
  unlink(path);
  free(in);
  nl_vit_free(&m);
}

static const char *SET_TEXT =
    "# a set over some layers\n"
    "blocks.0.norm1 = 0.698*clip(2.31*x)\n"
    "blocks.0.norm2 = 2.5*tanh(clip(x)) + 0.135   # tanh of a clip\n"
    "blocks.1.norm1 = (x + 0.0719)*(-0.307*x*tanh(2.99*x) + 2.46)\n"
    "blocks.1.norm2 = 1.06*x*sigmoid(1.8*x) - 0.093\n"
    "blocks.2.norm1 = 0.97*clip(x, -3.2, 4.1)\n"
    "blocks.2.norm2 = 1.35*tanh(0.71*x)*(1 + 0.12*x^2)\n"
    "blocks.3.norm1 = 0.1*x - 1e-7/(1 + exp(-x)) + abs(0.333333343*x)\n"
    "blocks.4.norm2 = -(-0.5*x) / 3\n"
    "norm = 0.88*clip(1.62*x) - 0.034\n";

/* An expression set: named slots become expressions, the rest stay
 * LayerNorm and are reported; the reloaded model's forward equals the
 * in-memory one bit for bit. */
static void test_set_roundtrip(void **state) {
  (void)state;
  nl_error err;
  nl_exprset set;
  nl_exprset_init(&set);
  if (nl_exprset_parse(SET_TEXT, "t.exprs", &set, &err)) fail_msg("%s", err.msg);
  nl_vit m;
  load_small(&m);
  float *in = ref_inputs(NULL);
  nl_replace_spec s = {.mode = NL_REPLACE_SET, .set = &set, .source = "t.exprs"};
  int kept[25];
  assert_int_equal(nl_vit_replace(&m, &s, kept, &err), 0);
  int nkept = 0;
  for (int i = 0; i < 25; i++) nkept += kept[i];
  assert_int_equal(nkept, 25 - set.n);
  assert_int_equal(kept[6], 0);  /* blocks.3.norm1 */
  assert_int_equal(kept[7], 1);  /* blocks.3.norm2 */
  assert_int_equal(m.norms[7].kind, NL_NORM_LAYERNORM);
  assert_int_equal(m.norms[24].kind, NL_NORM_EXPR);
  assert_non_null(m.norms[0].expr);
  /* the expression is the set's function */
  const nl_exprset_entry *e = nl_exprset_find(&set, "blocks.1.norm1");
  for (double x = -4; x <= 4; x += 0.37)
    assert_true(fabs(nl_eval1(m.norms[2].prog, x) - nl_eval1(&e->prog, x)) <= 1e-6 * (1 + fabs(x)));
  float a[80], b[80];
  logits_of(&m, in, a);
  char path[128];
  tmpname(path, sizeof path, "set");
  assert_int_equal(nl_vit_save(&m, path, &err), 0);
  nl_vit m2;
  if (nl_vit_load(&m2, path, NULL, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < 25; i++) {
    assert_int_equal(m2.norms[i].kind, m.norms[i].kind);
    if (m.norms[i].kind != NL_NORM_EXPR) continue;
    assert_string_equal(m2.norms[i].expr, m.norms[i].expr);
    assert_int_equal(m2.norms[i].prog->len, m.norms[i].prog->len);
    assert_memory_equal(m2.norms[i].prog->nodes, m.norms[i].prog->nodes,
                        sizeof(nl_node) * (size_t)m.norms[i].prog->len);
  }
  logits_of(&m2, in, b);
  assert_memory_equal(a, b, sizeof a);
  printf("# set of %d expressions: reloaded logits equal bit for bit; %d layers kept LayerNorm\n",
         set.n, nkept);
  nl_vit_free(&m2);
  unlink(path);
  free(in);
  nl_vit_free(&m);
  nl_exprset_free(&set);
}

/* Bad sets and alphas: errors name the layer (and file:line), and the
 * model is left as it was. */
static void test_bad_sets(void **state) {
  (void)state;
  nl_error err;
  nl_vit m;
  load_small(&m);
  nl_norm_set_dyt(&m, &m.norms[1], 0.75f);
  int n0 = m.ntensors;
  nl_exprset set;
  nl_exprset_init(&set);
  assert_int_equal(nl_exprset_parse("# c\nblocks.0.norm1 = tanh(x)\n\nblocks.12.norm1 = x\n",
                                    "u.exprs", &set, &err), 0);
  nl_replace_spec s = {.mode = NL_REPLACE_SET, .set = &set, .source = "u.exprs"};
  assert_int_equal(nl_vit_replace(&m, &s, NULL, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "u.exprs:4: unknown layer 'blocks.12.norm1'"));
  assert_int_equal(m.norms[0].kind, NL_NORM_LAYERNORM); /* unchanged */
  assert_int_equal(m.norms[1].kind, NL_NORM_DYT);
  assert_int_equal(m.ntensors, n0);
  nl_exprset_free(&set);
  /* a constant that is not finite (only reachable through the API) */
  nl_exprset_init(&set);
  nl_prog p;
  nl_prog_init(&p);
  nl_prog_push(&p, NL_OP_X, 0, 0);
  nl_prog_push(&p, NL_OP_CONST, NAN, 0);
  nl_prog_push(&p, NL_OP_MUL, 0, 0);
  nl_exprset_set(&set, "blocks.5.norm2", &p, NULL);
  s.set = &set;
  assert_int_equal(nl_vit_replace(&m, &s, NULL, &err), -1);
  assert_non_null(strstr(err.msg, "layer 'blocks.5.norm2': constant nan is not a finite number"));
  assert_int_equal(nl_norm_set_expr(&m, &m.norms[11], &p, &err), -1);
  assert_non_null(strstr(err.msg, "blocks.5.norm2: the expression has a constant that is not finite"));
  assert_int_equal(m.norms[11].kind, NL_NORM_LAYERNORM);
  /* not a tree */
  nl_prog_free(&p);
  nl_prog_init(&p);
  nl_prog_push(&p, NL_OP_X, 0, 0);
  nl_prog_push(&p, NL_OP_X, 0, 0);
  nl_exprset_set(&set, "blocks.5.norm2", &p, NULL);
  assert_int_equal(nl_vit_replace(&m, &s, NULL, &err), -1);
  assert_non_null(strstr(err.msg, "layer 'blocks.5.norm2': not a well-formed expression"));
  nl_prog_free(&p);
  nl_exprset_free(&set);
  /* parse errors keep their line:col */
  nl_exprset_init(&set);
  assert_int_equal(nl_exprset_parse("blocks.0.norm1 = x\nblocks.0.norm2 = tanh(x\n", "p.exprs",
                                    &set, &err), -1);
  assert_non_null(strstr(err.msg, "p.exprs:2:"));
  nl_exprset_free(&set);
  /* per-layer alphas: an unknown layer, a NaN */
  char *names[2] = {"blocks.0.norm1", "fc_norm"};
  float al[2] = {0.5f, 0.5f};
  nl_dyt_alphas A = {2, names, al};
  nl_replace_spec d = {.mode = NL_REPLACE_DYT, .alphas = &A, .source = "a.json"};
  assert_int_equal(nl_vit_replace(&m, &d, NULL, &err), -1);
  assert_non_null(strstr(err.msg, "a.json: unknown layer 'fc_norm'"));
  names[1] = "norm";
  al[1] = NAN;
  assert_int_equal(nl_vit_replace(&m, &d, NULL, &err), -1);
  assert_non_null(strstr(err.msg, "layer 'norm': alpha nan is not a finite number"));
  al[1] = 2.0f;
  int kept[25];
  assert_int_equal(nl_vit_replace(&m, &d, kept, &err), 0);
  assert_int_equal(m.norms[24].kind, NL_NORM_DYT);
  assert_true(*m.norms[24].alpha == 2.0f);
  assert_int_equal(kept[24], 0);
  assert_int_equal(kept[1], 1);
  assert_int_equal(m.norms[1].kind, NL_NORM_DYT); /* not in the table: as it was */
  assert_true(*m.norms[1].alpha == 0.75f);
  assert_int_equal(m.norms[2].kind, NL_NORM_LAYERNORM);
  assert_int_equal(m.ntensors, n0 + 2);
  nl_replace_spec bad = {.mode = NL_REPLACE_DYT, .alpha = INFINITY};
  assert_int_equal(nl_vit_replace(&m, &bad, NULL, &err), -1);
  assert_non_null(strstr(err.msg, "not a finite number"));
  nl_vit_free(&m);
}

/* A checkpoint with its "norms" metadata and alpha tensors edited. */
static void write_edit(const char *src, const char *out, const char *norms, const char *drop,
                       const char *add, float addval) {
  nl_error err;
  nl_st_file f;
  if (nl_st_open(&f, src, &err)) fail_msg("%s", err.msg);
  nl_st_writer *w = nl_st_writer_new();
  for (int i = 0; i < f.n; i++) {
    if (drop && strcmp(f.t[i].name, drop) == 0) continue;
    float *v = nl_xmalloc(sizeof(float) * f.t[i].numel + 4);
    nl_st_to_f32(&f.t[i], v);
    assert_int_equal(nl_st_writer_add(w, f.t[i].name, v, f.t[i].ndim, f.t[i].shape, &err), 0);
    free(v);
  }
  if (add) {
    int64_t s[1] = {1};
    assert_int_equal(nl_st_writer_add(w, add, &addval, 1, s, &err), 0);
  }
  for (int i = 0; i < f.nmeta; i++)
    if (strcmp(f.meta[i].key, "norms") != 0) nl_st_writer_meta(w, f.meta[i].key, f.meta[i].value);
  if (norms) nl_st_writer_meta(w, "norms", norms);
  assert_int_equal(nl_st_writer_save(w, out, &err), 0);
  nl_st_writer_free(w);
  nl_st_close(&f);
}

static void expect_load_error(const char *path, const char *want) {
  nl_error err;
  nl_vit m;
  int rc = nl_vit_load(&m, path, NULL, &err);
  if (rc == 0) {
    nl_vit_free(&m);
    fail_msg("loaded, wanted an error with '%s'", want);
  }
  assert_int_equal(err.code, NL_EINPUT);
  if (!strstr(err.msg, want)) fail_msg("error '%s' lacks '%s'", err.msg, want);
}

static void test_bad_metadata(void **state) {
  (void)state;
  nl_error err;
  nl_vit m;
  load_small(&m);
  nl_norm_set_dyt(&m, &m.norms[0], 0.5f);
  char base[128], path[128];
  tmpname(base, sizeof base, "base");
  tmpname(path, sizeof path, "edit");
  assert_int_equal(nl_vit_save(&m, base, &err), 0);
  nl_vit_free(&m);
  write_edit(base, path, "{\"blocks.0.norm1\": {\"kind\": \"dyt\"", NULL, NULL, 0);
  expect_load_error(path, "__metadata__ norms is not a JSON object");
  write_edit(base, path, "[1, 2]", NULL, NULL, 0);
  expect_load_error(path, "__metadata__ norms is not a JSON object");
  write_edit(base, path, "{\"blocks.0.norm1\": {\"kind\": \"dyt\"}, \"blocks.0.norm3\": {\"kind\": \"dyt\"}}",
             NULL, NULL, 0);
  expect_load_error(path, "'blocks.0.norm3' is not a norm layer of this model");
  write_edit(base, path, "{\"blocks.0.norm1\": {\"kind\": \"dyt\"}, \"blocks.1.norm1\": {\"kind\": \"rms\"}}",
             NULL, NULL, 0);
  expect_load_error(path, "layer 'blocks.1.norm1': want {\"kind\"");
  write_edit(base, path, "{\"blocks.0.norm1\": {\"kind\": \"dyt\"}, \"blocks.1.norm1\": 7}", NULL, NULL, 0);
  expect_load_error(path, "layer 'blocks.1.norm1': want {\"kind\"");
  write_edit(base, path, "{\"blocks.0.norm1\": {\"kind\": \"dyt\"}, \"norm\": {\"kind\": \"expr\"}}",
             NULL, NULL, 0);
  expect_load_error(path, "layer 'norm': kind expr needs an \"expr\" string");
  write_edit(base, path,
             "{\"blocks.0.norm1\": {\"kind\": \"dyt\"}, \"norm\": {\"kind\": \"expr\", \"expr\": \"tanh(2*x\"}}",
             NULL, NULL, 0);
  expect_load_error(path, "layer 'norm': 1:");
  write_edit(base, path,
             "{\"blocks.0.norm1\": {\"kind\": \"dyt\"}, \"norm\": {\"kind\": \"expr\", \"expr\": \"nan*x\"}}",
             NULL, NULL, 0);
  expect_load_error(path, "constants must be finite");
  write_edit(base, path, "{\"blocks.0.norm1\": {\"kind\": \"dyt\"}, \"norm\": {\"kind\": \"dyt\"}}", NULL,
             NULL, 0);
  expect_load_error(path, "layer 'norm' is DyT but tensor 'norm.alpha' is missing");
  write_edit(base, path, "{\"blocks.0.norm1\": {\"kind\": \"layernorm\"}}", NULL, NULL, 0);
  expect_load_error(path, "tensor 'blocks.0.norm1.alpha' but __metadata__ norms says layer 'blocks.0.norm1' is layernorm");
  write_edit(base, path, NULL, "blocks.0.norm1.alpha", "blocks.0.norm1.alpha", NAN);
  expect_load_error(path, "tensor 'blocks.0.norm1.alpha' is nan, not a finite number");
  write_edit(base, path, NULL, NULL, "blocks.0.norm1.beta", 1);
  expect_load_error(path, "not understood by the ViT loader: blocks.0.norm1.beta");
  /* no "norms" at all (a DyT reference checkpoint): alpha tensors mean DyT */
  write_edit(base, path, NULL, NULL, "norm.alpha", 0.875f);
  if (nl_vit_load(&m, path, NULL, &err)) fail_msg("%s", err.msg);
  assert_int_equal(m.norms[0].kind, NL_NORM_DYT);
  assert_int_equal(m.norms[24].kind, NL_NORM_DYT);
  assert_true(*m.norms[24].alpha == 0.875f);
  assert_int_equal(m.norms[1].kind, NL_NORM_LAYERNORM);
  nl_vit_free(&m);
  unlink(base);
  unlink(path);
}

/* Saving is atomic: a failed save leaves no file, an existing one intact. */
static void test_save_atomic(void **state) {
  (void)state;
  nl_error err;
  nl_vit m;
  load_small(&m);
  assert_int_equal(nl_vit_save(&m, "/nonexistent-dir/x.safetensors", &err), -1);
  assert_true(access("/nonexistent-dir/x.safetensors", F_OK) != 0);
  nl_vit_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layernorm_again), cmocka_unit_test(test_dyt_alpha_param),
      cmocka_unit_test(test_set_roundtrip),   cmocka_unit_test(test_bad_sets),
      cmocka_unit_test(test_bad_metadata),    cmocka_unit_test(test_save_atomic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
