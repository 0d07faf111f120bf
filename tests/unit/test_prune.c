/* Profile and prune against outside references: the profile's statistics of
 * one block against the timm fixture's recorded LayerNorm input/output (and
 * GELU(fc1) worked out here in double precision); pruning with ratio 0 keeps
 * the logits bit for bit; a channel with a constant activation removed with
 * bias compensation leaves the logits as they were (and not without it);
 * per-block widths load and run as a full-width model with the removed fc2
 * columns zeroed; the budget rule fits its budget; random scores follow the
 * seed. Attention heads: a head with constant output removed with bias
 * compensation leaves the logits (and not without it), the pruned block's
 * cost-table figures follow the hand formula, head counts survive save and
 * load bit for bit, and the plan rules reject bad ratios and counts. */
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
#include "model/blockcost.h"
#include "model/export.h"
#include "model/profile.h"
#include "model/prune.h"
#include "model/reuse_plan.h"
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

/* The fixture's 8 normalised test images [8, 1, 28, 28] and its logits. */
static float *ref_tensor(const char *name, size_t *n) {
  nl_error err;
  nl_st_file r;
  if (nl_st_open(&r, fixture("vit_small_p7_fmnist_ref.safetensors"), &err)) fail_msg("%s", err.msg);
  float *v = nl_st_read_f32(&r, name, n, &err);
  if (!v) fail_msg("%s", err.msg);
  nl_st_close(&r);
  return v;
}

static int fill_ref(int first, int n, float *dst, void *user, nl_error *err) {
  (void)err;
  const float *in = user;
  memcpy(dst, in + (size_t)first * 784, (size_t)n * 784 * sizeof(float));
  return 0;
}

/* Logits [n, classes] of m on images (caller frees). */
static float *logits_of(const nl_vit *m, const float *images, int n) {
  nl_vit_acts a;
  nl_error err;
  if (nl_vit_acts_init(&a, &m->cfg, n, 0, &err)) fail_msg("%s", err.msg);
  if (nl_vit_forward(m, &a, images, n, NULL, NULL, &err)) fail_msg("%s", err.msg);
  size_t k = (size_t)n * m->cfg.classes;
  float *l = nl_xmalloc(k * sizeof(float));
  memcpy(l, a.logits, k * sizeof(float));
  nl_vit_acts_free(&a);
  return l;
}

static double max_diff(const float *a, const float *b, size_t n) {
  double d = 0;
  for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
  return d;
}

static double gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

/* Per-channel mean, var, mean |x|, max |x| of rows x [rows, w], in double. */
static void direct_stats(const double *x, int rows, int w, double *mean, double *var,
                         double *absmean, double *absmax) {
  for (int j = 0; j < w; j++) {
    double s = 0, a = 0, mx = 0;
    for (int r = 0; r < rows; r++) {
      double v = x[(size_t)r * w + j];
      s += v;
      a += fabs(v);
      mx = fmax(mx, fabs(v));
    }
    mean[j] = s / rows;
    absmean[j] = a / rows;
    absmax[j] = mx;
    double q = 0;
    for (int r = 0; r < rows; r++) q += (x[(size_t)r * w + j] - mean[j]) * (x[(size_t)r * w + j] - mean[j]);
    var[j] = q / rows;
  }
}

static void check_layer(const nl_profile_layer *L, const double *x, int rows, int w) {
  assert_non_null(L);
  assert_int_equal(L->width, w);
  assert_true(L->rows == rows);
  double *st = nl_xmalloc(4 * (size_t)w * sizeof(double));
  direct_stats(x, rows, w, st, st + w, st + 2 * w, st + 3 * w);
  for (int j = 0; j < w; j++) {
    double tol = 2e-4 * (1 + fabs(st[3 * w + j]));
    if (fabs(L->mean[j] - st[j]) > tol || fabs(L->var[j] - st[w + j]) > tol * (1 + st[w + j]) ||
        fabs(L->absmean[j] - st[2 * w + j]) > tol || fabs(L->absmax[j] - st[3 * w + j]) > tol)
      fail_msg("%s channel %d: profile mean %g var %g absmean %g absmax %g; direct %g %g %g %g",
               L->name, j, L->mean[j], L->var[j], L->absmean[j], L->absmax[j], st[j], st[w + j],
               st[2 * w + j], st[3 * w + j]);
  }
  free(st);
}

/* Block 5 of the small model over the fixture's first 2 images: norm2's
 * input and output are in the fixture (timm, float64); fc2's input is
 * GELU(fc1(norm2 output)) computed here. */
static void test_profile_against_fixture(void **state) {
  (void)state;
  nl_vit m;
  load_small(&m);
  float *in = ref_tensor("inputs", NULL);
  nl_profile p;
  nl_error err;
  nl_profile_opts o = {.batch = 1};
  if (nl_profile_run(&m, 2, fill_ref, in, &o, &p, &err)) fail_msg("%s", err.msg);
  const int T = m.cfg.tokens, D = m.cfg.dim, H = m.cfg.mlp_hidden, rows = 2 * T;
  size_t n;
  float *x = ref_tensor("ln_in.blocks.5.norm2", &n);
  float *y = ref_tensor("ln_out.blocks.5.norm2", NULL);
  assert_int_equal(n, (size_t)rows * D);
  double *xd = nl_xmalloc((size_t)rows * H * sizeof(double));
  for (size_t i = 0; i < n; i++) xd[i] = x[i];
  check_layer(nl_profile_find(&p, "blocks.5.norm2.in"), xd, rows, D);
  for (size_t i = 0; i < n; i++) xd[i] = y[i];
  check_layer(nl_profile_find(&p, "blocks.5.mlp.fc1.in"), xd, rows, D);
  const nl_vit_block *B = &m.blocks[5];
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < H; j++) {
      double s = B->fc1_b[j];
      for (int i = 0; i < D; i++) s += (double)y[(size_t)r * D + i] * B->fc1_w[(size_t)j * D + i];
      xd[(size_t)r * H + j] = gelu(s);
    }
  check_layer(nl_profile_hidden(&p, 5), xd, rows, H);
  /* every layer named as documented, times recorded */
  assert_int_equal(p.nlayers, 12 * 6 + 2);
  assert_non_null(nl_profile_find(&p, "blocks.11.attn.proj.in"));
  assert_non_null(nl_profile_find(&p, "norm.in"));
  assert_non_null(nl_profile_find(&p, "head.in"));
  double t = 0;
  for (int i = 0; i < 12 * NL_PROFILE_PARTS; i++) t += p.part_ms[i];
  assert_true(t > 0);
  /* save and load give the same figures */
  char path[] = "/tmp/nl_test_profile_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  const char *meta[] = {"model", "small"};
  if (nl_profile_save(&p, path, meta, 1, &err)) fail_msg("%s", err.msg);
  nl_profile q;
  if (nl_profile_load(&q, path, &err)) fail_msg("%s", err.msg);
  assert_int_equal(q.nlayers, p.nlayers);
  const nl_profile_layer *a = nl_profile_hidden(&p, 5), *b = nl_profile_hidden(&q, 5);
  assert_non_null(b);
  assert_memory_equal(a->var, b->var, (size_t)H * sizeof(float));
  assert_int_equal(nl_profile_check(&q, &m, "q", &err), 0);
  unlink(path);
  nl_profile_free(&q);
  free(xd);
  free(x);
  free(y);
  free(in);
  nl_profile_free(&p);
  nl_vit_free(&m);
}

/* The observer changes nothing: same logits with and without it. */
static int count_act(int block, nl_vit_site site, const float *x, int rows, int width, void *u) {
  (void)block, (void)site, (void)x, (void)rows, (void)width;
  ++*(int *)u;
  return 0;
}

static void test_observer_neutral(void **state) {
  (void)state;
  nl_vit m;
  load_small(&m);
  float *in = ref_tensor("inputs", NULL);
  float *l0 = logits_of(&m, in, 8);
  nl_vit_acts a;
  nl_error err;
  assert_int_equal(nl_vit_acts_init(&a, &m.cfg, 8, 0, &err), 0);
  int calls = 0;
  double part_s[nl_vit_part_slots(12)];
  memset(part_s, 0, sizeof part_s);
  a.part_s = part_s;
  nl_vit_observer o = {count_act, &calls};
  assert_int_equal(nl_vit_forward_observed(&m, &a, in, 8, NULL, NULL, &o, &err), 0);
  assert_memory_equal(a.logits, l0, 80 * sizeof(float));
  assert_int_equal(calls, 12 * 6 + 2);
  nl_vit_acts_free(&a);
  free(l0);
  free(in);
  nl_vit_free(&m);
}

/* Ratio 0 removes nothing: the logits stay bit for bit (and match timm's). */
static void test_ratio_zero_identical(void **state) {
  (void)state;
  nl_vit m, pm;
  load_small(&m);
  float *in = ref_tensor("inputs", NULL);
  nl_profile p;
  nl_error err;
  nl_profile_opts po = {.batch = 4};
  if (nl_profile_run(&m, 8, fill_ref, in, &po, &p, &err)) fail_msg("%s", err.msg);
  nl_prune_opts o = {.score = NL_PRUNE_VARIANCE, .ratio = 0, .compensate = 1};
  if (nl_prune(&m, &p, &o, &pm, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nl_vit_param_bytes(&pm), nl_vit_param_bytes(&m));
  float *a = logits_of(&m, in, 8), *b = logits_of(&pm, in, 8);
  assert_memory_equal(a, b, 80 * sizeof(float));
  float *ref = ref_tensor("logits", NULL);
  assert_true(max_diff(b, ref, 80) < 1e-3);
  free(ref);
  free(a);
  free(b);
  nl_vit_free(&pm);
  nl_profile_free(&p);
  free(in);
  nl_vit_free(&m);
}

/* Block 3, channel 5 made constant: fc1 row 0, bias 1.25, so its activation
 * is GELU(1.25) for every token; fc2 column 5 set to 0.5 sin(i) so it
 * matters. */
static void test_constant_channel_compensation(void **state) {
  (void)state;
  nl_vit m, with, without;
  load_small(&m);
  const int D = m.cfg.dim, H = m.cfg.mlp_hidden, L = 3, J = 5;
  nl_vit_block *B = &m.blocks[L];
  memset(B->fc1_w + (size_t)J * D, 0, (size_t)D * sizeof(float));
  B->fc1_b[J] = 1.25f;
  /* not the same for every channel: LayerNorm would take a uniform shift out */
  for (int i = 0; i < D; i++) B->fc2_w[(size_t)i * H + J] = (float)(0.5 * sin(i));
  float *in = ref_tensor("inputs", NULL);
  float *l0 = logits_of(&m, in, 8);
  /* the profile sees a constant: mean GELU(1.25), variance 0 */
  nl_profile p;
  nl_error err;
  nl_profile_opts po = {.batch = 8};
  if (nl_profile_run(&m, 8, fill_ref, in, &po, &p, &err)) fail_msg("%s", err.msg);
  const nl_profile_layer *hl = nl_profile_hidden(&p, L);
  assert_true(fabs(hl->mean[J] - gelu(1.25)) < 1e-5);
  assert_true(hl->var[J] < 1e-9);
  /* remove exactly that channel */
  unsigned char **keep = nl_xcalloc((size_t)m.cfg.depth, sizeof(unsigned char *));
  float **mu = nl_xcalloc((size_t)m.cfg.depth, sizeof(float *));
  for (int l = 0; l < m.cfg.depth; l++) {
    keep[l] = nl_xmalloc((size_t)H);
    memset(keep[l], 1, (size_t)H);
    mu[l] = nl_xcalloc((size_t)H, sizeof(float));
  }
  keep[L][J] = 0;
  mu[L][J] = (float)gelu(1.25);
  if (nl_prune_apply(&m, keep, (const float *const *)mu, &with, &err)) fail_msg("%s", err.msg);
  if (nl_prune_apply(&m, keep, NULL, &without, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nl_vit_mlp_width(&with.cfg, L), H - 1);
  assert_int_equal(nl_vit_mlp_width(&with.cfg, L + 1), H);
  float *lw = logits_of(&with, in, 8), *ln = logits_of(&without, in, 8);
  double dw = max_diff(l0, lw, 80), dn = max_diff(l0, ln, 80);
  if (!(dw < 1e-4)) fail_msg("with compensation the logits moved by %g", dw);
  if (!(dn > 1e-2)) fail_msg("without compensation the logits moved by only %g", dn);
  /* the variance rule removes that channel first (one channel per block) */
  float **sc;
  unsigned char **kv;
  nl_prune_opts o = {.score = NL_PRUNE_VARIANCE, .ratio = 1.0 / H};
  if (nl_prune_scores(&m, &p, o.score, 0, &sc, &err)) fail_msg("%s", err.msg);
  if (nl_prune_plan(&m, sc, &o, &kv, &err)) fail_msg("%s", err.msg);
  int removed = 0;
  for (int j = 0; j < H; j++) removed += !kv[L][j];
  assert_int_equal(removed, 1);
  assert_int_equal(kv[L][J], 0);
  nl_prune_keep_free(kv, m.cfg.depth);
  nl_prune_scores_free(sc, m.cfg.depth);
  nl_prune_keep_free(keep, m.cfg.depth);
  nl_prune_scores_free(mu, m.cfg.depth);
  free(lw);
  free(ln);
  free(l0);
  free(in);
  nl_profile_free(&p);
  nl_vit_free(&with);
  nl_vit_free(&without);
  nl_vit_free(&m);
}

/* Random scores follow the seed and only it. */
static void test_random_seeded(void **state) {
  (void)state;
  nl_vit m;
  load_small(&m);
  nl_error err;
  float **a, **b, **c;
  assert_int_equal(nl_prune_scores(&m, NULL, NL_PRUNE_RANDOM, 7, &a, &err), 0);
  assert_int_equal(nl_prune_scores(&m, NULL, NL_PRUNE_RANDOM, 7, &b, &err), 0);
  assert_int_equal(nl_prune_scores(&m, NULL, NL_PRUNE_RANDOM, 8, &c, &err), 0);
  const size_t H = (size_t)m.cfg.mlp_hidden;
  for (int l = 0; l < m.cfg.depth; l++) {
    assert_memory_equal(a[l], b[l], H * sizeof(float));
    assert_memory_not_equal(a[l], c[l], H * sizeof(float));
  }
  /* a score the profile must give is an error without one */
  float **d = NULL;
  assert_int_equal(nl_prune_scores(&m, NULL, NL_PRUNE_VARIANCE, 7, &d, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  nl_prune_scores_free(a, m.cfg.depth);
  nl_prune_scores_free(b, m.cfg.depth);
  nl_prune_scores_free(c, m.cfg.depth);
  nl_vit_free(&m);
}

/* Writes m's tensors with block 2's MLP cut to its first `keep` channels
 * (fc1 rows, fc2 columns), metadata from `meta` pairs. */
static void write_cut(const nl_vit *m, const char *path, int keep, const char *const *meta,
                      int nmeta) {
  nl_error err;
  nl_st_writer *w = nl_st_writer_new();
  const int D = m->cfg.dim, H = m->cfg.mlp_hidden;
  float *tmp = nl_xmalloc((size_t)D * H * sizeof(float));
  for (int i = 0; i < m->ntensors; i++) {
    const nl_param *p = &m->tensors[i];
    const float *v = m->params + p->offset;
    int64_t shape[4];
    memcpy(shape, p->shape, sizeof shape);
    if (strcmp(p->name, "blocks.2.mlp.fc1.weight") == 0 || strcmp(p->name, "blocks.2.mlp.fc1.bias") == 0) {
      shape[0] = keep;
    } else if (strcmp(p->name, "blocks.2.mlp.fc2.weight") == 0) {
      for (int r = 0; r < D; r++) memcpy(tmp + (size_t)r * keep, v + (size_t)r * H, (size_t)keep * sizeof(float));
      v = tmp;
      shape[1] = keep;
    }
    assert_int_equal(nl_st_writer_add(w, p->name, v, p->ndim, shape, &err), 0);
  }
  for (int i = 0; i < nmeta; i++) nl_st_writer_meta(w, meta[2 * i], meta[2 * i + 1]);
  assert_int_equal(nl_st_writer_save(w, path, &err), 0);
  nl_st_writer_free(w);
  free(tmp);
}

/* A file whose block 2 has 100 hidden channels (written here, not by the
 * pruner) loads and gives the logits of the full model with fc2's columns
 * 100.. of block 2 zeroed; metadata that disagrees is an error. */
static void test_per_block_widths_load(void **state) {
  (void)state;
  nl_vit m, cut;
  load_small(&m);
  nl_error err;
  char path[] = "/tmp/nl_test_widths_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  const char *heads[] = {"model_args", "{\"num_heads\": 2}"};
  write_cut(&m, path, 100, heads, 1);
  if (nl_vit_load(&cut, path, NULL, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nl_vit_mlp_width(&cut.cfg, 2), 100);
  assert_int_equal(nl_vit_mlp_width(&cut.cfg, 3), 256);
  assert_int_equal(nl_vit_mlp_uniform(&cut.cfg), 0);
  float *in = ref_tensor("inputs", NULL);
  float *lc = logits_of(&cut, in, 8);
  const int D = m.cfg.dim, H = m.cfg.mlp_hidden;
  for (int r = 0; r < D; r++)
    for (int j = 100; j < H; j++) m.blocks[2].fc2_w[(size_t)r * H + j] = 0;
  float *lz = logits_of(&m, in, 8);
  if (max_diff(lc, lz, 80) > 1e-5) fail_msg("cut model differs by %g", max_diff(lc, lz, 80));
  /* saved again: mlp_widths metadata, no mlp_ratio; reloads the same */
  if (nl_vit_save(&cut, path, &err)) fail_msg("%s", err.msg);
  nl_st_file f;
  assert_int_equal(nl_st_open(&f, path, &err), 0);
  assert_string_equal(nl_st_meta_get(&f, "mlp_widths"),
                      "[256,256,100,256,256,256,256,256,256,256,256,256]");
  assert_null(strstr(nl_st_meta_get(&f, "model_args"), "mlp_ratio"));
  nl_st_close(&f);
  nl_vit again;
  if (nl_vit_load(&again, path, NULL, &err)) fail_msg("%s", err.msg);
  float *la = logits_of(&again, in, 8);
  assert_memory_equal(la, lc, 80 * sizeof(float));
  nl_vit_free(&again);
  /* an mlp_ratio that block 2 contradicts; mlp_widths that the shapes contradict */
  const char *bad1[] = {"model_args", "{\"num_heads\": 2, \"mlp_ratio\": 4.0}"};
  write_cut(&m, path, 100, bad1, 1);
  assert_int_equal(nl_vit_load(&again, path, NULL, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "blocks.2.mlp.fc1.weight has 100 rows"));
  const char *bad2[] = {"model_args", "{\"num_heads\": 2}", "mlp_widths",
                        "[256, 256, 99, 256, 256, 256, 256, 256, 256, 256, 256, 256]"};
  write_cut(&m, path, 100, bad2, 2);
  assert_int_equal(nl_vit_load(&again, path, NULL, &err), -1);
  assert_non_null(strstr(err.msg, "mlp_widths"));
  unlink(path);
  free(la);
  free(lc);
  free(lz);
  free(in);
  nl_vit_free(&cut);
  nl_vit_free(&m);
}

/* The budget rule: the result fits, every block keeps a channel, widths
 * differ per block, it saves and loads; a budget below the floor is an
 * error giving the floor. */
static void test_budget(void **state) {
  (void)state;
  nl_vit m, pm;
  load_small(&m);
  nl_error err;
  const double budget = 1.8e6;
  nl_prune_opts o = {.score = NL_PRUNE_MAGNITUDE, .budget_bytes = budget};
  if (nl_prune(&m, NULL, &o, &pm, &err)) fail_msg("%s", err.msg);
  size_t bytes = nl_vit_param_bytes(&pm);
  assert_true(bytes <= budget);
  /* not more removed than needed: one channel more would fit too */
  assert_true(bytes + 4 * (2 * 64 + 1) > budget);
  assert_int_equal(nl_vit_mlp_uniform(&pm.cfg), 0);
  char path[] = "/tmp/nl_test_budget_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  if (nl_vit_save(&pm, path, &err)) fail_msg("%s", err.msg);
  nl_vit back;
  if (nl_vit_load(&back, path, NULL, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nl_vit_param_bytes(&back), bytes);
  for (int l = 0; l < m.cfg.depth; l++)
    assert_int_equal(nl_vit_mlp_width(&back.cfg, l), nl_vit_mlp_width(&pm.cfg, l));
  nl_vit_free(&back);
  unlink(path);
  nl_vit_free(&pm);
  o.budget_bytes = 0.5e6;
  assert_int_equal(nl_prune(&m, NULL, &o, &pm, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "below"));
  o.budget_bytes = 0;
  o.ratio = 1.0;
  assert_int_equal(nl_prune(&m, NULL, &o, &pm, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  nl_vit_free(&m);
}

/* Uniform ratio: round(R * 256) channels go in every block, mlp_ratio
 * reads back as timm computes it (int(dim * mlp_ratio)). */
static void test_ratio_uniform(void **state) {
  (void)state;
  nl_vit m, pm;
  load_small(&m);
  nl_error err;
  nl_prune_opts o = {.score = NL_PRUNE_MAGNITUDE, .ratio = 0.3};
  if (nl_prune(&m, NULL, &o, &pm, &err)) fail_msg("%s", err.msg);
  for (int l = 0; l < m.cfg.depth; l++) assert_int_equal(nl_vit_mlp_width(&pm.cfg, l), 256 - 77);
  char path[] = "/tmp/nl_test_ratio_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  if (nl_vit_save(&pm, path, &err)) fail_msg("%s", err.msg);
  nl_st_file f;
  assert_int_equal(nl_st_open(&f, path, &err), 0);
  const char *ma = strstr(nl_st_meta_get(&f, "model_args"), "\"mlp_ratio\": ");
  assert_non_null(ma);
  double r = strtod(ma + 13, NULL);
  assert_int_equal((long)(64 * r), 179);
  assert_null(nl_st_meta_get(&f, "mlp_widths"));
  nl_st_close(&f);
  unlink(path);
  nl_vit_free(&pm);
  nl_vit_free(&m);
}

/* The hidden channels' covariance, the contribution score and the fc2
 * refit on block 5 of the small model over the fixture's first 2 images:
 * the hidden activations are GELU(fc1(norm2 output as timm recorded it)),
 * worked out here in double. The refit must satisfy the ridge problem's
 * optimality conditions on those rows: mean residual 0 and
 * (1/N) sum r h_K^T = lambda W2' (r: the unpruned fc2 output minus the
 * refitted one), and reconstruct them better than bias compensation. */
static void test_refit_least_squares(void **state) {
  (void)state;
  nl_vit m, pm;
  load_small(&m);
  float *in = ref_tensor("inputs", NULL);
  nl_profile p;
  nl_error err;
  nl_profile_opts o = {.batch = 1, .cov = 1};
  if (nl_profile_run(&m, 2, fill_ref, in, &o, &p, &err)) fail_msg("%s", err.msg);
  const int T = m.cfg.tokens, D = m.cfg.dim, H = m.cfg.mlp_hidden, N = 2 * T, L = 5;
  float *y = ref_tensor("ln_out.blocks.5.norm2", NULL);
  const nl_vit_block *B = &m.blocks[L];
  double *h = nl_xmalloc((size_t)N * H * sizeof(double)), *mu = nl_xcalloc((size_t)H, sizeof(double));
  for (int r = 0; r < N; r++)
    for (int j = 0; j < H; j++) {
      double s = B->fc1_b[j];
      for (int i = 0; i < D; i++) s += (double)y[(size_t)r * D + i] * B->fc1_w[(size_t)j * D + i];
      h[(size_t)r * H + j] = gelu(s);
      mu[j] += gelu(s) / N;
    }
  /* covariance against the direct one */
  const nl_profile_layer *hl = nl_profile_hidden(&p, L);
  assert_non_null(hl->cov);
  assert_null(nl_profile_find(&p, "blocks.5.mlp.fc1.in")->cov);
  double worst = 0, cmax = 0;
  for (int a = 0; a < H; a++)
    for (int b = 0; b < H; b++) {
      double c = 0;
      for (int r = 0; r < N; r++) c += (h[(size_t)r * H + a] - mu[a]) * (h[(size_t)r * H + b] - mu[b]);
      c /= N;
      worst = fmax(worst, fabs(c - hl->cov[(size_t)a * H + b]));
      cmax = fmax(cmax, fabs(c));
    }
  if (!(worst < 1e-4 * (1 + cmax))) fail_msg("covariance off by %g (largest entry %g)", worst, cmax);
  /* contribution = Var[h_j] ||W2[:, j]||^2 */
  float **sc;
  if (nl_prune_scores(&m, &p, NL_PRUNE_CONTRIBUTION, 0, &sc, &err)) fail_msg("%s", err.msg);
  for (int j = 0; j < H; j++) {
    double w2 = 0;
    for (int i = 0; i < D; i++) w2 += (double)B->fc2_w[(size_t)i * H + j] * B->fc2_w[(size_t)i * H + j];
    double v = 0;
    for (int r = 0; r < N; r++) v += (h[(size_t)r * H + j] - mu[j]) * (h[(size_t)r * H + j] - mu[j]);
    double want = w2 * v / N;
    if (fabs(sc[L][j] - want) > 1e-4 * (want + 1e-6)) fail_msg("channel %d: contribution %g, want %g", j, sc[L][j], want);
  }
  /* refit of a 60 % plan by that score */
  unsigned char **keep;
  nl_prune_opts po = {.score = NL_PRUNE_CONTRIBUTION, .ratio = 0.6};
  if (nl_prune_plan(&m, sc, &po, &keep, &err)) fail_msg("%s", err.msg);
  const double damp = 0.01;
  if (nl_prune_apply(&m, keep, NULL, &pm, &err)) fail_msg("%s", err.msg);
  if (nl_prune_refit(&m, keep, &p, damp, &pm, &err)) fail_msg("%s", err.msg);
  const int W = nl_vit_mlp_width(&pm.cfg, L);
  int *K = nl_xmalloc((size_t)W * sizeof(int)), k = 0;
  double tr = 0;
  for (int j = 0; j < H; j++)
    if (keep[L][j]) {
      K[k++] = j;
      for (int r = 0; r < N; r++) tr += (h[(size_t)r * H + j] - mu[j]) * (h[(size_t)r * H + j] - mu[j]) / N;
    }
  assert_int_equal(k, W);
  const double lambda = damp * tr / W;
  const nl_vit_block *P = &pm.blocks[L];
  double *g = nl_xcalloc((size_t)D * W, sizeof(double)), *gy = nl_xcalloc((size_t)D * W, sizeof(double));
  double rmean_worst = 0, ymax = 0, err_refit = 0, err_comp = 0;
  for (int i = 0; i < D; i++) {
    double rsum = 0;
    for (int r = 0; r < N; r++) {
      const double *hr = h + (size_t)r * H;
      double yo = B->fc2_b[i], yr = P->fc2_b[i], yc = B->fc2_b[i];
      for (int j = 0; j < H; j++) {
        yo += (double)B->fc2_w[(size_t)i * H + j] * hr[j];
        yc += (double)B->fc2_w[(size_t)i * H + j] * (keep[L][j] ? hr[j] : mu[j]);
      }
      for (int a = 0; a < W; a++) yr += (double)P->fc2_w[(size_t)i * W + a] * hr[K[a]];
      double res = yo - yr;
      rsum += res;
      err_refit += res * res;
      err_comp += (yo - yc) * (yo - yc);
      ymax = fmax(ymax, fabs(yo));
      for (int a = 0; a < W; a++) {
        g[(size_t)i * W + a] += res * hr[K[a]] / N;
        gy[(size_t)i * W + a] += (yo - B->fc2_b[i]) * (hr[K[a]] - mu[K[a]]) / N;
      }
    }
    rmean_worst = fmax(rmean_worst, fabs(rsum / N));
  }
  double gn = 0, yn = 0, ln = 0;
  for (int i = 0; i < D; i++)
    for (int a = 0; a < W; a++) {
      double d = g[(size_t)i * W + a] - lambda * P->fc2_w[(size_t)i * W + a];
      gn += d * d;
      yn += gy[(size_t)i * W + a] * gy[(size_t)i * W + a];
      ln += lambda * lambda * P->fc2_w[(size_t)i * W + a] * P->fc2_w[(size_t)i * W + a];
    }
  if (!(rmean_worst < 1e-4 * (1 + ymax))) fail_msg("mean residual %g", rmean_worst);
  /* the ridge term is ~1e-3 of the data term here: both must hold to 1e-2 of it */
  if (!(sqrt(ln) > 1e-5 * sqrt(yn) && sqrt(gn) < 1e-2 * sqrt(ln)))
    fail_msg("normal equations off: |(1/N) sum r h_K^T - lambda W2'| = %g against |lambda W2'| "
             "%g (data term %g)", sqrt(gn), sqrt(ln), sqrt(yn));
  if (!(err_refit < err_comp)) fail_msg("refit error %g not below compensation's %g", err_refit, err_comp);
  /* a profile without the covariance: an input error naming the layer */
  nl_profile q;
  nl_profile_opts qo = {.batch = 1};
  if (nl_profile_run(&m, 1, fill_ref, in, &qo, &q, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nl_prune_refit(&m, keep, &q, damp, &pm, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "blocks.0.mlp.fc2.in"));
  /* save and load keep the covariance */
  char path[] = "/tmp/nl_test_profcov_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  if (nl_profile_save(&p, path, NULL, 0, &err)) fail_msg("%s", err.msg);
  nl_profile r2;
  if (nl_profile_load(&r2, path, &err)) fail_msg("%s", err.msg);
  assert_non_null(nl_profile_hidden(&r2, L)->cov);
  assert_memory_equal(nl_profile_hidden(&r2, L)->cov, hl->cov, (size_t)H * H * sizeof(float));
  unlink(path);
  nl_profile_free(&r2);
  nl_profile_free(&q);
  free(g);
  free(gy);
  free(K);
  nl_prune_keep_free(keep, m.cfg.depth);
  nl_prune_scores_free(sc, m.cfg.depth);
  free(h);
  free(mu);
  free(y);
  free(in);
  nl_profile_free(&p);
  nl_vit_free(&pm);
  nl_vit_free(&m);
}

/* ---- attention heads ---- */

/* keep[l][h] = 1 for every head of m but (L, H) (free with nl_prune_keep_free). */
static unsigned char **all_but_head(const nl_vit *m, int L, int H) {
  unsigned char **keep = nl_xcalloc((size_t)m->cfg.depth, sizeof(unsigned char *));
  for (int l = 0; l < m->cfg.depth; l++) {
    keep[l] = nl_xmalloc((size_t)nl_vit_heads(&m->cfg, l));
    memset(keep[l], 1, (size_t)nl_vit_heads(&m->cfg, l));
  }
  keep[L][H] = 0;
  return keep;
}

/* A head whose values are constant (its v weights zeroed: every output row is
 * the v bias, the probabilities summing to 1) removed with bias
 * compensation leaves the logits as they were (and not without it); the
 * contribution score removes it first; the pruned block has the shapes
 * and cost-table figures of one head (hand formulas). */
static void test_head_constant_compensation(void **state) {
  (void)state;
  nl_vit m, with, without;
  load_small(&m);
  const int D = m.cfg.dim, NH = m.cfg.heads, hd = D / NH, L = 4, Hh = 1, T = m.cfg.tokens;
  assert_int_equal(NH, 2);
  nl_vit_block *B = &m.blocks[L];
  memset(B->qkv_w + ((size_t)2 * D + (size_t)Hh * hd) * D, 0, (size_t)hd * D * sizeof(float));
  /* not the same for every channel: LayerNorm would take a uniform shift out */
  for (int j = 0; j < hd; j++) B->qkv_b[2 * D + Hh * hd + j] = (float)(0.8 * sin(3.0 * j + 1));
  float *in = ref_tensor("inputs", NULL);
  float *l0 = logits_of(&m, in, 8);
  nl_profile p;
  nl_error err;
  nl_profile_opts po = {.batch = 8};
  if (nl_profile_run(&m, 8, fill_ref, in, &po, &p, &err)) fail_msg("%s", err.msg);
  const nl_profile_layer *al = nl_profile_attn(&p, L);
  assert_non_null(al);
  assert_int_equal(al->width, D);
  for (int j = 0; j < hd; j++) {
    assert_true(fabs(al->mean[Hh * hd + j] - B->qkv_b[2 * D + Hh * hd + j]) < 1e-5);
    assert_true(al->var[Hh * hd + j] < 1e-9);
  }
  unsigned char **keep = all_but_head(&m, L, Hh);
  float **mu = nl_xcalloc((size_t)m.cfg.depth, sizeof(float *));
  for (int l = 0; l < m.cfg.depth; l++) mu[l] = nl_profile_attn(&p, l)->mean;
  if (nl_prune_heads_apply(&m, keep, (const float *const *)mu, &with, &err)) fail_msg("%s", err.msg);
  if (nl_prune_heads_apply(&m, keep, NULL, &without, &err)) fail_msg("%s", err.msg);
  free(mu);
  assert_int_equal(nl_vit_heads(&with.cfg, L), 1);
  assert_int_equal(nl_vit_heads(&with.cfg, L + 1), 2);
  /* head 0 stays: its q, k, v rows and proj columns as they were */
  const nl_vit_block *W = &with.blocks[L];
  for (int g = 0; g < 3; g++)
    assert_memory_equal(W->qkv_w + (size_t)g * hd * D, B->qkv_w + (size_t)g * D * D,
                        (size_t)hd * D * sizeof(float));
  for (int i = 0; i < D; i++)
    assert_memory_equal(W->proj_w + (size_t)i * hd, B->proj_w + (size_t)i * D, (size_t)hd * sizeof(float));
  float *lw = logits_of(&with, in, 8), *ln = logits_of(&without, in, 8);
  double dw = max_diff(l0, lw, 80), dn = max_diff(l0, ln, 80);
  if (!(dw < 1e-4)) fail_msg("with compensation the logits moved by %g", dw);
  if (!(dn > 1e-2)) fail_msg("without compensation the logits moved by only %g", dn);
  /* contribution: Var 0 -> score 0, removed first */
  float **sc;
  unsigned char **kv;
  nl_prune_head_opts ho = {.score = NL_PRUNE_CONTRIBUTION, .ratio = 0.5};
  if (nl_prune_head_scores(&m, &p, ho.score, 0, &sc, &err)) fail_msg("%s", err.msg);
  assert_true(sc[L][Hh] < 1e-9f && sc[L][0] > 1e-6f);
  if (nl_prune_head_plan(&m, sc, &ho, &kv, &err)) fail_msg("%s", err.msg);
  assert_int_equal(kv[L][Hh], 0);
  assert_int_equal(kv[L][0], 1);
  nl_prune_keep_free(kv, m.cfg.depth);
  nl_prune_scores_free(sc, m.cfg.depth);
  /* cost table of the pruned block (A = 1 head x 32) against the hand formula */
  nl_part_cost *rows;
  int nr;
  if (nl_vit_cost_rows(&with, NULL, 1, &rows, &nr, &err)) fail_msg("%s", err.msg);
  const double A = hd, Td = T, Dd = D;
  for (int l = L; l <= L + 1; l++) {
    const double a = l == L ? A : Dd, h = l == L ? 1 : 2;
    const nl_part_cost *x = &rows[1 + 9 * l];
    assert_int_equal(x[1].part, NL_PART_QKV);
    assert_int_equal(x[1].block, l);
    assert_true(x[1].flops == 2 * Td * Dd * 3 * a);
    assert_true(x[1].params == 3 * a * Dd + 3 * a);
    assert_true(x[2].flops == 4 * Td * Td * a + h * Td * (24 * Td + 1));
    assert_true(x[2].act_bytes == 4 * (3 * Td * a + h * Td * Td));
    assert_true(x[3].flops == 2 * Td * a * Dd);
    assert_true(x[3].params == a * Dd + Dd);
    assert_true(x[3].act_bytes == 4 * Td * a);
  }
  /* pruned block: 2*17*64*96 = 208896 qkv FLOPs, 3*32*64+96 = 6240 parameters */
  assert_true(rows[1 + 9 * L + 1].flops == 208896.0);
  assert_true(rows[1 + 9 * L + 1].params == 6240.0);
  free(rows);
  nl_prune_keep_free(keep, m.cfg.depth);
  free(lw);
  free(ln);
  free(l0);
  free(in);
  nl_profile_free(&p);
  nl_vit_free(&with);
  nl_vit_free(&without);
  nl_vit_free(&m);
}

/* Save -> load keeps per-block head counts (metadata head_counts, checked
 * against the shapes) and the logits bit for bit; a head-pruned model runs
 * as the full one with the removed heads' proj columns zeroed. */
static void test_head_round_trip(void **state) {
  (void)state;
  nl_vit m, pm, back, zero;
  nl_error err;
  load_small(&m);
  const int D = m.cfg.dim, hd = D / m.cfg.heads, L = 7;
  unsigned char **keep = all_but_head(&m, L, 0);
  if (nl_prune_heads_apply(&m, keep, NULL, &pm, &err)) fail_msg("%s", err.msg);
  nl_prune_keep_free(keep, m.cfg.depth);
  assert_false(nl_vit_heads_full(&pm.cfg));
  char path[] = "/tmp/nl_headprune_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  if (nl_vit_save(&pm, path, &err)) fail_msg("%s", err.msg);
  if (nl_vit_load(&back, path, NULL, &err)) fail_msg("%s", err.msg);
  for (int l = 0; l < m.cfg.depth; l++) assert_int_equal(nl_vit_heads(&back.cfg, l), l == L ? 1 : 2);
  nl_st_file f;
  if (nl_st_open(&f, path, &err)) fail_msg("%s", err.msg);
  const char *hc = nl_st_meta_get(&f, "head_counts");
  assert_non_null(hc);
  assert_string_equal(hc, "[2,2,2,2,2,2,2,1,2,2,2,2]");
  nl_st_close(&f);
  float *in = ref_tensor("inputs", NULL);
  float *a = logits_of(&pm, in, 8), *b = logits_of(&back, in, 8);
  assert_memory_equal(a, b, 80 * sizeof(float));
  /* the full model with head 0 of block L silenced (proj columns zero) */
  load_small(&zero);
  for (int i = 0; i < D; i++) memset(zero.blocks[L].proj_w + (size_t)i * D, 0, (size_t)hd * sizeof(float));
  float *z = logits_of(&zero, in, 8);
  double d = max_diff(a, z, 80);
  if (!(d < 1e-4)) fail_msg("head-pruned vs silenced head: logits differ by %g", d);
  /* block 8 (2 heads) cannot apply block 7's probabilities (1 head): an error naming both */
  pm.reuse = nl_reuse_plan_new(m.cfg.depth, D);
  if (nl_reuse_plan_set(pm.reuse, 8, 7, NL_TB_NONE, 0, &err)) fail_msg("%s", err.msg);
  nl_vit_acts acts;
  if (nl_vit_acts_init(&acts, &pm.cfg, 2, 0, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nl_vit_forward(&pm, &acts, in, 2, NULL, NULL, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "block 8 (2 heads) cannot apply the attention probabilities of "
                                  "block 7 (1 heads)"));
  nl_vit_acts_free(&acts);
  /* block 7 reusing block 6 has the same problem; 9 reusing 8 does not */
  assert_int_equal(nl_reuse_plan_set(pm.reuse, 8, -1, NL_TB_NONE, 0, &err), 0);
  assert_int_equal(nl_reuse_plan_set(pm.reuse, 9, 8, NL_TB_NONE, 0, &err), 0);
  assert_int_equal(nl_reuse_plan_check_heads(pm.reuse, &pm.cfg, &err), 0);
  assert_int_equal(nl_reuse_plan_set(pm.reuse, 7, 6, NL_TB_NONE, 0, &err), 0);
  assert_int_equal(nl_reuse_plan_check_heads(pm.reuse, &pm.cfg, &err), -1);
  assert_non_null(strstr(err.msg, "block 7 (1 heads)"));
  nl_reuse_plan_free(pm.reuse);
  pm.reuse = NULL;
  /* timm's layout needs equal heads: export refuses, naming the block */
  char dir[] = "/tmp/nl_headprune_exp_XXXXXX";
  assert_non_null(mkdtemp(dir));
  rmdir(dir);
  assert_int_equal(nl_export_pytorch(&pm, dir, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "blocks.7 has 1 of 2 attention heads"));
  assert_int_equal(access(dir, F_OK), -1);
  free(a);
  free(b);
  free(z);
  free(in);
  unlink(path);
  nl_vit_free(&zero);
  nl_vit_free(&back);
  nl_vit_free(&pm);
  nl_vit_free(&m);
}

/* Head plans: ratio rounds per block and keeps one head; keep out of range
 * and a ratio outside [0, 1) are errors; random follows the seed. */
static void test_head_plan_rules(void **state) {
  (void)state;
  nl_vit m;
  nl_error err;
  load_small(&m);
  float **a, **b;
  unsigned char **k;
  assert_int_equal(nl_prune_head_scores(&m, NULL, NL_PRUNE_RANDOM, 3, &a, &err), 0);
  assert_int_equal(nl_prune_head_scores(&m, NULL, NL_PRUNE_RANDOM, 3, &b, &err), 0);
  for (int l = 0; l < m.cfg.depth; l++) assert_memory_equal(a[l], b[l], 2 * sizeof(float));
  nl_prune_scores_free(b, m.cfg.depth);
  nl_prune_head_opts o = {.score = NL_PRUNE_RANDOM, .ratio = 0.99};
  assert_int_equal(nl_prune_head_plan(&m, a, &o, &k, &err), 0);
  for (int l = 0; l < m.cfg.depth; l++) assert_int_equal(k[l][0] + k[l][1], 1);
  nl_prune_keep_free(k, m.cfg.depth);
  o.ratio = 1;
  assert_int_equal(nl_prune_head_plan(&m, a, &o, &k, &err), -1);
  assert_non_null(strstr(err.msg, "[0, 1)"));
  o.ratio = 0, o.keep = 3;
  assert_int_equal(nl_prune_head_plan(&m, a, &o, &k, &err), -1);
  assert_non_null(strstr(err.msg, "[1, 2]"));
  o.keep = 2;
  assert_int_equal(nl_prune_head_plan(&m, a, &o, &k, &err), 0);
  for (int l = 0; l < m.cfg.depth; l++) assert_int_equal(k[l][0] + k[l][1], 2);
  nl_prune_keep_free(k, m.cfg.depth);
  /* contribution needs the profile; other scores are for channels */
  assert_int_equal(nl_prune_head_scores(&m, NULL, NL_PRUNE_CONTRIBUTION, 0, &b, &err), -1);
  assert_non_null(strstr(err.msg, "attn.proj.in"));
  assert_int_equal(nl_prune_head_scores(&m, NULL, NL_PRUNE_VARIANCE, 0, &b, &err), -1);
  nl_prune_scores_free(a, m.cfg.depth);
  nl_vit_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_profile_against_fixture),
      cmocka_unit_test(test_observer_neutral),
      cmocka_unit_test(test_ratio_zero_identical),
      cmocka_unit_test(test_constant_channel_compensation),
      cmocka_unit_test(test_random_seeded),
      cmocka_unit_test(test_per_block_widths_load),
      cmocka_unit_test(test_budget),
      cmocka_unit_test(test_ratio_uniform),
      cmocka_unit_test(test_refit_least_squares),
      cmocka_unit_test(test_head_constant_compensation),
      cmocka_unit_test(test_head_round_trip),
      cmocka_unit_test(test_head_plan_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
