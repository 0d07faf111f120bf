/* Unit tests for early exits (src/train/exits.c).
 *
 * References from outside the code under test:
 *  - the fixture's logits (timm, float64 port) for the 8 reference images:
 *    the exit after the last block (the model's own norm and head, copied)
 *    and the early-exit pass at tau = 1 give them (1e-4), and equal the
 *    plain forward pass (nl_vit_forward) bit for bit; for DyT and expression
 *    final norms too;
 *  - the packed early-exit pass against, per image, the plain forward pass
 *    of a model cut after that image's exit block, its final norm and head
 *    replaced by that exit's (nl_vit_forward on one image: no packing, no
 *    exits code), at several thresholds where images leave at three or more
 *    different blocks;
 *  - FLOPs worked out by hand for vit_small_p7 (T 17, D 64, MLP 256, 16
 *    patches of 49 pixels, 10 classes);
 *  - the rules and the oracle on a table written by hand;
 *  - with Fashion-MNIST: fitting is deterministic and lowers the early
 *    exits' cross-entropy (recomputed here from logits); the oracle never
 *    runs more blocks than the rule on an image where both give the
 *    full-depth prediction;
 *  - the file round trip, and heads of another model (shape, weights)
 *    refused with NL_EINPUT;
 *  - the complexity predictor: its rule on a table written by hand (start
 *    from the cumulative probabilities, q 0 is the threshold rule, tau 0
 *    stops at the start, q 1 is full depth); the packed pass with it
 *    against, per image, the predictor's softmax worked out here on the
 *    block-F class token of the image run alone and the cut model's plain
 *    pass; at q = 1 the plain pass bit for bit; its training lowers the
 *    cross-entropy and separates a planted linearly separable case; its
 *    targets are the oracle's blocks of the table; a predictor of the
 *    wrong shape or block is refused with NL_EINPUT;
 *  - the policy's prediction from the exit head of the last block run
 *    against the identity-block model with that exit's head; its start
 *    from the threshold rule at tau 1 and 0 (every block, block 0 alone). */
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
#include "model/norm.h"
#include "model/safetensors.h"
#include "model/vit.h"
#include "train/exits.h"

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

static void load(nl_vit *m, const char *name) {
  nl_error err;
  if (nl_vit_load(m, fixture(name), NULL, &err)) fail_msg("%s", err.msg);
}

static float *ref_tensor(const char *name, size_t want) {
  nl_st_file f;
  nl_error err;
  if (nl_st_open(&f, fixture("vit_small_p7_fmnist_ref.safetensors"), &err)) fail_msg("%s", err.msg);
  size_t n;
  float *x = nl_st_read_f32(&f, name, &n, &err);
  if (!x) fail_msg("%s", err.msg);
  assert_int_equal(n, want);
  nl_st_close(&f);
  return x;
}

static float *plain_logits(const nl_vit *m, const float *x, int n) {
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

/* The last exit and tau = 1 against the plain pass and the fixture. */
static void check_full_depth(nl_vit *m, const float *ref, double tol) {
  nl_error err;
  float *x = ref_tensor("inputs", 8 * 784);
  float *pl = plain_logits(m, x, 8);
  nl_exits e;
  if (nl_exits_init(&e, m, &err)) fail_msg("%s", err.msg);
  assert_int_equal(e.kind, m->final_norm->kind);
  nl_exits_ws w;
  if (nl_exits_ws_init(&w, m, 8, 2, &err)) fail_msg("%s", err.msg);
  float lg[80];
  int blocks[8];
  if (nl_exits_forward(m, &e, &w, x, 8, 1.0, lg, blocks, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < 8; i++) assert_int_equal(blocks[i], 12);
  assert_memory_equal(lg, pl, sizeof lg);
  if (ref)
    for (int i = 0; i < 80; i++)
      if (fabsf(lg[i] - ref[i]) > tol) fail_msg("logit %d: %g, fixture %g", i, lg[i], ref[i]);
  /* the exit after the last block on the pooled output of the stages */
  if (nl_vit_embed(m, &w.acts, x, 8, w.x, &err)) fail_msg("%s", err.msg);
  for (int k = 0; k < 12; k++)
    if (nl_vit_block_run(m, &w.acts, k, w.x, 8, &err)) fail_msg("%s", err.msg);
  float pooled[8 * 64], scratch[8 * 64], l2[80];
  for (int i = 0; i < 8; i++) memcpy(pooled + i * 64, w.x + (size_t)i * 17 * 64, sizeof(float) * 64);
  nl_exits_head(&e, 11, pooled, 8, l2, scratch);
  assert_memory_equal(l2, pl, sizeof l2);
  nl_exits_ws_free(&w);
  nl_exits_free(&e);
  free(pl);
  free(x);
}

static void test_full_depth(void **state) {
  (void)state;
  if (!have_fixture()) skip();
  nl_vit m;
  load(&m, "vit_small_p7_fmnist.safetensors");
  float *ref = ref_tensor("logits", 80);
  check_full_depth(&m, ref, 1e-4);
  /* DyT and expression final norms: exits of the same kind */
  nl_norm_set_dyt(&m, m.final_norm, 0.7f);
  check_full_depth(&m, NULL, 0);
  nl_prog p;
  nl_prog_init(&p);
  nl_error err;
  if (nl_parse("0.9*tanh(0.8*x) + 0.01*x", 1, &p, &err)) fail_msg("%s", err.msg);
  if (nl_norm_set_expr(&m, m.final_norm, &p, &err)) fail_msg("%s", err.msg);
  nl_prog_free(&p);
  check_full_depth(&m, NULL, 0);
  free(ref);
  nl_vit_free(&m);
}

/* Make the heads differ from the final one (so images leave early). */
static void perturb(nl_exits *e, unsigned seed) {
  srand(seed);
  for (int k = 0; k + 1 < e->depth; k++)
    for (int j = 0; j < e->classes * e->dim; j++)
      e->head_w[k][j] *= 1.0f + 2.0f * ((float)rand() / RAND_MAX - 0.5f) * (float)(e->depth - k) / e->depth;
}

/* The packed pass against one image run alone through a model cut after
 * its exit block, with that exit's norm and head as the model's own. */
static void test_packed_vs_alone(void **state) {
  (void)state;
  if (!have_fixture()) skip();
  nl_vit m, cut;
  load(&m, "vit_small_p7_fmnist.safetensors");
  load(&cut, "vit_small_p7_fmnist.safetensors");
  nl_error err;
  nl_exits e;
  if (nl_exits_init(&e, &m, &err)) fail_msg("%s", err.msg);
  perturb(&e, 7);
  float *x = ref_tensor("inputs", 8 * 784);
  nl_exits_ws w;
  if (nl_exits_ws_init(&w, &m, 8, 2, &err)) fail_msg("%s", err.msg);
  const double taus[] = {0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999};
  int spread_seen = 0;
  for (size_t t = 0; t < sizeof taus / sizeof *taus; t++) {
    float lg[80];
    int blocks[8], seen[13] = {0}, distinct = 0;
    if (nl_exits_forward(&m, &e, &w, x, 8, taus[t], lg, blocks, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < 8; i++) {
      int k = blocks[i];
      assert_true(k >= 1 && k <= 12);
      distinct += !seen[k];
      seen[k] = 1;
      cut.cfg.depth = k;
      memcpy(cut.final_norm->w, e.norms[k - 1].w, sizeof(float) * 64);
      memcpy(cut.final_norm->b, e.norms[k - 1].b, sizeof(float) * 64);
      memcpy(cut.head_w, e.head_w[k - 1], sizeof(float) * 640);
      memcpy(cut.head_b, e.head_b[k - 1], sizeof(float) * 10);
      float *one = plain_logits(&cut, x + i * 784, 1);
      double top = 0, sum = 0;
      int arg = 0;
      for (int j = 0; j < 10; j++) {
        if (fabsf(one[j] - lg[i * 10 + j]) > 1e-4f * (1 + fabsf(one[j])))
          fail_msg("tau %g image %d block %d logit %d: packed %.7g, alone %.7g", taus[t], i, k, j,
                   lg[i * 10 + j], one[j]);
        if (one[j] > one[arg]) arg = j;
      }
      /* the decision, recomputed: confident where it left, not before */
      for (int j = 0; j < 10; j++) sum += exp((double)one[j] - one[arg]);
      top = 1 / sum;
      if (k < 12) assert_true(top > taus[t] - 1e-5);
      free(one);
    }
    if (distinct >= 3) spread_seen++;
  }
  cut.cfg.depth = 12;
  assert_true(spread_seen >= 1); /* images left at three or more blocks */
  nl_exits_ws_free(&w);
  nl_exits_free(&e);
  free(x);
  nl_vit_free(&cut);
  nl_vit_free(&m);
}

static void test_flops_by_hand(void **state) {
  (void)state;
  if (!have_fixture()) skip();
  nl_vit_config c;
  nl_error err;
  if (nl_vit_read_config(&c, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err))
    fail_msg("%s", err.msg);
  /* embed 2*16*64*49; block 2*17*64*192 + 2*2*17*17*64 + 2*17*64*64 + 2*2*17*64*256; head 2*64*10 */
  const double embed = 100352, block = 417792 + 73984 + 139264 + 1114112, head = 1280;
  assert_true(fabs(nl_exits_flops(&c, 12, 1) - (embed + 12 * block + head)) < 0.5);
  assert_true(fabs(nl_exits_flops(&c, 12, 1) - 21043456) < 0.5);
  assert_true(fabs(nl_exits_flops(&c, 3, 3) - 5339648) < 0.5);
  assert_true(fabs(nl_exits_flops(&c, 2.5, 2.5) - (embed + 2.5 * block + 2.5 * head)) < 0.5);
}

/* A table by hand: 4 images, depth 3. */
static void test_rules_by_hand(void **state) {
  (void)state;
  int pred[12] = {1, 1, 1,   /* confident and right from block 1 */
                  2, 0, 0,   /* changes its mind: oracle block 2 */
                  3, 3, 4,   /* confident and wrong early, right at the end */
                  5, 6, 7};  /* oracle block 3 */
  float pmax[12] = {0.95f, 0.97f, 0.99f, 0.6f, 0.85f, 0.9f, 0.92f, 0.5f, 0.7f, 0.3f, 0.4f, 0.5f};
  int label[4] = {1, 0, 4, 9};
  nl_exits_table t = {4, 3, pred, pmax, label, NULL, 0};
  nl_exits_stats s;
  int b[4];
  nl_exits_rule(&t, 0.9, &s, b);
  /* image 0 leaves after block 1 (0.95 > 0.9), image 1 runs to 3 (0.85), image 2 leaves
   * after 1 with 3 (wrong), image 3 runs to 3 */
  assert_int_equal(b[0], 1);
  assert_int_equal(b[1], 3);
  assert_int_equal(b[2], 1);
  assert_int_equal(b[3], 3);
  assert_int_equal(s.top1, 2);
  assert_true(fabs(s.mean_blocks - 2.0) < 1e-12);
  nl_exits_rule(&t, 0.8, &s, b);
  assert_int_equal(b[1], 2);
  assert_int_equal(s.top1, 2);
  assert_true(fabs(s.mean_blocks - 7.0 / 4) < 1e-12);
  nl_exits_rule(&t, 0.95, &s, b); /* strictly above: 0.95 does not leave */
  assert_int_equal(b[0], 2);
  nl_exits_rule(&t, 1.0, &s, b);
  assert_int_equal(s.top1, 3);
  assert_true(fabs(s.mean_blocks - 3) < 1e-12);
  assert_true(fabs(s.mean_heads - 1) < 1e-12);
  nl_exits_oracle(&t, &s, b);
  assert_int_equal(b[0], 1);
  assert_int_equal(b[1], 2);
  assert_int_equal(b[2], 3);
  assert_int_equal(b[3], 3);
  assert_int_equal(s.top1, 3);
  assert_true(fabs(s.mean_blocks - 9.0 / 4) < 1e-12);
  /* max drop 0 points: nothing may be lost; 25 points: one image of four */
  nl_exits_pick_tau(&t, 0, &s);
  assert_int_equal(s.top1, 3);
  double tau = nl_exits_pick_tau(&t, 25, &s);
  assert_int_equal(s.top1, 2);
  assert_true(s.mean_blocks <= 7.0 / 4 + 1e-12);
  assert_true(tau < 1);
  double g[256];
  int ng = nl_exits_tau_grid(g, 256);
  assert_true(ng > 100 && ng <= 256);
  for (int i = 1; i < ng; i++) assert_true(g[i] > g[i - 1]);
  assert_true(g[ng - 1] == 1.0);
}

static void test_file_and_mismatch(void **state) {
  (void)state;
  if (!have_fixture()) skip();
  nl_vit m, tiny;
  load(&m, "vit_small_p7_fmnist.safetensors");
  load(&tiny, "vit_tiny_p4_fmnist.safetensors");
  nl_error err;
  nl_exits e, r;
  if (nl_exits_init(&e, &m, &err)) fail_msg("%s", err.msg);
  perturb(&e, 3);
  char path[] = "/tmp/nl_exits_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  if (nl_exits_save(&e, path, &err)) fail_msg("%s", err.msg);
  if (nl_exits_load(&r, path, &err)) fail_msg("%s", err.msg);
  assert_int_equal(r.depth, 12);
  for (int k = 0; k < 12; k++) {
    assert_memory_equal(r.head_w[k], e.head_w[k], sizeof(float) * 640);
    assert_memory_equal(r.norms[k].w, e.norms[k].w, sizeof(float) * 64);
  }
  assert_int_equal(nl_exits_check(&r, &m, path, 0, &err), 0);
  assert_int_equal(nl_exits_check(&r, &tiny, path, 0, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "another model"));
  /* same shape, other weights */
  m.blocks[2].fc1_w[5] += 0.25f;
  assert_int_equal(nl_exits_check(&r, &m, path, 0, &err), -1);
  assert_non_null(strstr(err.msg, "fitted on another model"));
  assert_int_equal(nl_exits_check(&r, &m, path, 1, &err), 0);
  /* another norm kind */
  nl_norm_set_dyt(&m, m.final_norm, 0.5f);
  assert_int_equal(nl_exits_check(&r, &m, path, 1, &err), -1);
  assert_non_null(strstr(err.msg, "dyt"));
  /* a model file is not an exits file */
  nl_exits_free(&r);
  assert_int_equal(nl_exits_load(&r, fixture("vit_small_p7_fmnist.safetensors"), &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  nl_exits_free(&r);
  unlink(path);
  nl_exits_free(&e);
  nl_vit_free(&tiny);
  nl_vit_free(&m);
}

static double ce_of(const nl_exits *e, int k, const float *feat, const int32_t *lab, int n) {
  float lg[10], sc[64];
  double sum = 0;
  for (int i = 0; i < n; i++) {
    nl_exits_head(e, k, feat + ((size_t)i * e->depth + k) * e->dim, 1, lg, sc);
    double mx = lg[0], z = 0;
    for (int j = 1; j < 10; j++) mx = lg[j] > mx ? lg[j] : mx;
    for (int j = 0; j < 10; j++) z += exp(lg[j] - mx);
    sum += -(lg[lab[i]] - mx - log(z));
  }
  return sum / n;
}

static void test_fit_and_oracle(void **state) {
  (void)state;
  if (!have_data()) skip();
  nl_vit m;
  load(&m, "vit_small_p7_fmnist.safetensors");
  nl_error err;
  nl_dataset d, t;
  if (nl_dataset_load(&d, "fmnist:train", 0, 600, &err)) fail_msg("%s", err.msg);
  if (nl_dataset_load(&t, "fmnist:test", 0, 500, &err)) fail_msg("%s", err.msg);
  float *feat;
  if (nl_exits_features(&m, &d, 64, 2, &feat, &err)) fail_msg("%s", err.msg);
  nl_exits a, b;
  nl_exits_init(&a, &m, &err);
  nl_exits_init(&b, &m, &err);
  double before0 = ce_of(&a, 0, feat, d.labels, d.n), before5 = ce_of(&a, 5, feat, d.labels, d.n);
  nl_exits_fit_opts o;
  nl_exits_fit_opts_default(&o);
  o.epochs = 3;
  o.seed = 11;
  o.threads = 1;
  if (nl_exits_fit(&a, feat, d.labels, d.n, &o, NULL, &err)) fail_msg("%s", err.msg);
  o.threads = 2;
  if (nl_exits_fit(&b, feat, d.labels, d.n, &o, NULL, &err)) fail_msg("%s", err.msg);
  assert_memory_equal(a.params, b.params, sizeof(float) * a.nparams);
  double after0 = ce_of(&a, 0, feat, d.labels, d.n), after5 = ce_of(&a, 5, feat, d.labels, d.n);
  assert_true(after0 < 0.8 * before0);
  assert_true(after5 < before5);
  /* the last exit stays the model's own */
  assert_memory_equal(a.head_w[11], m.head_w, sizeof(float) * 640);
  /* oracle against the rule on the test images */
  nl_exits_table tb;
  if (nl_exits_table_make(&m, &a, &t, 100, 2, &tb, &err)) fail_msg("%s", err.msg);
  int *ob = malloc(sizeof(int) * t.n), *rb = malloc(sizeof(int) * t.n);
  nl_exits_stats os, rs, fs;
  nl_exits_oracle(&tb, &os, ob);
  nl_exits_full(&tb, &fs);
  assert_int_equal(os.top1, fs.top1);
  double g[256];
  int ng = nl_exits_tau_grid(g, 256);
  for (int q = 0; q < ng; q++) {
    nl_exits_rule(&tb, g[q], &rs, rb);
    long all_agree = 1;
    for (int i = 0; i < t.n; i++) {
      int k = rb[i] - 1;
      if (tb.pred[(size_t)i * 12 + k] == tb.pred[(size_t)i * 12 + 11]) {
        if (rb[i] < ob[i]) fail_msg("tau %g image %d: rule %d blocks < oracle %d", g[q], i, rb[i], ob[i]);
      } else {
        all_agree = 0;
      }
    }
    if (all_agree) assert_true(os.mean_blocks <= rs.mean_blocks + 1e-12);
  }
  assert_true(os.mean_blocks < 12);
  /* the predictor's targets: the oracle's blocks, from the recorded features */
  {
    float *tf;
    if (nl_exits_features(&m, &t, 64, 2, &tf, &err)) fail_msg("%s", err.msg);
    int32_t *tg = malloc(sizeof(int32_t) * t.n);
    nl_exits_oracle_targets(&a, tf, t.n, tg);
    int same = 0;
    for (int i = 0; i < t.n; i++) same += tg[i] + 1 == ob[i];
    assert_true(same >= t.n - 2); /* batch-size rounding may flip a near tie */
    free(tg);
    free(tf);
  }
  free(ob);
  free(rb);
  nl_exits_table_free(&tb);
  nl_exits_free(&a);
  nl_exits_free(&b);
  free(feat);
  nl_dataset_free(&t);
  nl_dataset_free(&d);
  nl_vit_free(&m);
}

/* The policy's pass against, per image, the plain pass of a model whose
 * skipped blocks are made the identity (proj and fc2 zeroed: x + 0). */
static void test_policy_vs_identity_blocks(void **state) {
  (void)state;
  if (!have_fixture()) skip();
  nl_vit m, id;
  load(&m, "vit_small_p7_fmnist.safetensors");
  nl_error err;
  nl_exits e;
  if (nl_exits_init(&e, &m, &err)) fail_msg("%s", err.msg);
  const int K = 11, D = 64;
  e.policy = calloc((size_t)K * D + K + 2 * D, sizeof(float));
  float *W = e.policy, *b = W + K * D, *mu = b + K, *sd = mu + D;
  srand(5);
  for (int i = 0; i < K * D; i++) W[i] = 0.3f * ((float)rand() / RAND_MAX - 0.5f);
  for (int k = 0; k < K; k++) b[k] = (k % 3 == 0) ? -0.4f : 0.4f;
  for (int j = 0; j < D; j++) sd[j] = 1;
  float *x = ref_tensor("inputs", 8 * 784);
  nl_exits_ws w;
  if (nl_exits_ws_init(&w, &m, 8, 2, &err)) fail_msg("%s", err.msg);
  float lg[80];
  int blocks[8];
  if (nl_exits_policy_forward(&m, &e, &w, x, 8, lg, blocks, &err)) fail_msg("%s", err.msg);
  int distinct = 0;
  for (int i = 0; i < 8; i++) {
    load(&id, "vit_small_p7_fmnist.safetensors");
    int run = 1;
    for (int k = 1; k < 12; k++) {
      if (w.mask[(size_t)i * 12 + k]) {
        run++;
        continue;
      }
      memset(id.blocks[k].proj_w, 0, sizeof(float) * D * D);
      memset(id.blocks[k].proj_b, 0, sizeof(float) * D);
      memset(id.blocks[k].fc2_w, 0, sizeof(float) * D * 256);
      memset(id.blocks[k].fc2_b, 0, sizeof(float) * D);
    }
    assert_int_equal(run, blocks[i]);
    for (int j = 0; j < i; j++)
      if (memcmp(w.mask + (size_t)i * 12, w.mask + (size_t)j * 12, 12) != 0) {
        distinct++;
        break;
      }
    float *one = plain_logits(&id, x + i * 784, 1);
    for (int j = 0; j < 10; j++)
      if (fabsf(one[j] - lg[i * 10 + j]) > 1e-4f * (1 + fabsf(one[j])))
        fail_msg("image %d logit %d: policy pass %.7g, identity blocks %.7g", i, j, lg[i * 10 + j],
                 one[j]);
    free(one);
    nl_vit_free(&id);
  }
  assert_true(distinct >= 2); /* the images took different paths */
  /* the prediction from the exit head of the last block run: the same
   * identity-block model with that exit's norm and head as its own */
  perturb(&e, 9);
  e.policy_exit_head = 1;
  for (int k = 0; k < K; k++) b[k] = 1.2f - 0.22f * (float)k; /* later blocks mostly off */
  for (int i = 0; i < K * D; i++) W[i] *= 8; /* and the images' own say */
  if (nl_exits_policy_forward(&m, &e, &w, x, 8, lg, blocks, &err)) fail_msg("%s", err.msg);
  int lasts = 0, seen_last[12] = {0};
  for (int i = 0; i < 8; i++) {
    load(&id, "vit_small_p7_fmnist.safetensors");
    int last = 0;
    for (int k = 1; k < 12; k++) {
      if (w.mask[(size_t)i * 12 + k]) {
        last = k;
        continue;
      }
      memset(id.blocks[k].proj_w, 0, sizeof(float) * D * D);
      memset(id.blocks[k].proj_b, 0, sizeof(float) * D);
      memset(id.blocks[k].fc2_w, 0, sizeof(float) * D * 256);
      memset(id.blocks[k].fc2_b, 0, sizeof(float) * D);
    }
    lasts += !seen_last[last];
    seen_last[last] = 1;
    memcpy(id.final_norm->w, e.norms[last].w, sizeof(float) * D);
    memcpy(id.final_norm->b, e.norms[last].b, sizeof(float) * D);
    memcpy(id.head_w, e.head_w[last], sizeof(float) * 640);
    memcpy(id.head_b, e.head_b[last], sizeof(float) * 10);
    float *one = plain_logits(&id, x + i * 784, 1);
    for (int j = 0; j < 10; j++)
      if (fabsf(one[j] - lg[i * 10 + j]) > 1e-4f * (1 + fabsf(one[j])))
        fail_msg("image %d (last block %d) logit %d: policy pass %.7g, identity blocks %.7g", i,
                 last, j, lg[i * 10 + j], one[j]);
    free(one);
    nl_vit_free(&id);
  }
  assert_true(lasts >= 2);
  e.policy_exit_head = 0;
  /* every block on: the plain pass, bit for bit (with either head) */
  for (int k = 0; k < K; k++) b[k] = 1e6f;
  if (nl_exits_policy_forward(&m, &e, &w, x, 8, lg, blocks, &err)) fail_msg("%s", err.msg);
  float *pl = plain_logits(&m, x, 8);
  assert_memory_equal(lg, pl, sizeof lg);
  e.policy_exit_head = 1;
  if (nl_exits_policy_forward(&m, &e, &w, x, 8, lg, blocks, &err)) fail_msg("%s", err.msg);
  assert_memory_equal(lg, pl, sizeof lg);
  free(pl);
  nl_exits_ws_free(&w);
  nl_exits_free(&e);
  free(x);
  nl_vit_free(&m);
}

/* The predictor's rule on a table by hand: 3 images, depth 4, F = 0. */
static void test_pred_rules_by_hand(void **state) {
  (void)state;
  int pred[12] = {1, 1, 1, 1, /* right from block 0 */
                  2, 3, 4, 4,  /* oracle block 2 */
                  5, 6, 6, 7}; /* wrong early, oracle 3 */
  float pmax[12] = {0.95f, 0.96f, 0.97f, 0.98f, 0.91f, 0.5f, 0.92f, 0.6f, 0.95f, 0.4f, 0.3f, 0.2f};
  int label[3] = {1, 4, 7};
  float pprob[12] = {0.7f, 0.2f, 0.05f, 0.05f, /* cumulative 0.7 0.9 0.95 1 */
                     0.1f, 0.1f, 0.7f, 0.1f,    /* 0.1 0.2 0.9 1 */
                     0.05f, 0.05f, 0.1f, 0.8f}; /* 0.05 0.1 0.2 1 */
  nl_exits_table t = {3, 4, pred, pmax, label, pprob, 0};
  nl_exits_stats s, r;
  int b[3];
  /* q 0: the threshold rule */
  const double taus[] = {0, 0.5, 0.9, 0.95, 0.99, 1};
  for (size_t i = 0; i < sizeof taus / sizeof *taus; i++) {
    int rb[3];
    nl_exits_pred_rule(&t, 0, taus[i], &s, b);
    nl_exits_rule(&t, taus[i], &r, rb);
    assert_memory_equal(b, rb, sizeof b);
    assert_int_equal(s.top1, r.top1);
    assert_true(fabs(s.mean_heads - r.mean_heads) < 1e-12);
  }
  /* q 0.85, tau 0: starts 1, 2, 3 (first cumulative >= 0.85), stops there */
  nl_exits_pred_rule(&t, 0.85, 0, &s, b);
  assert_int_equal(b[0], 2);
  assert_int_equal(b[1], 3);
  assert_int_equal(b[2], 4);
  assert_int_equal(s.top1, 3); /* 1, 4, 7 */
  assert_true(fabs(s.mean_blocks - 3) < 1e-12);
  assert_true(fabs(s.mean_heads - 1) < 1e-12);
  /* q 0.75, tau 0.9: starts 1, 2, 3; image 0 at block 1: 0.96; image 1 at block 2:
   * 0.92 > 0.9 leaves with 4 */
  nl_exits_pred_rule(&t, 0.75, 0.9, &s, b);
  assert_int_equal(b[0], 2);
  assert_int_equal(b[1], 3);
  assert_int_equal(b[2], 4);
  assert_int_equal(s.top1, 3);
  /* q 0.15, tau 0.93: starts 0, 1, 2; image 0 leaves at 0 (0.95), image 1 checks
   * 1 (0.5), 2 (0.92), runs to 3 (2 heads + the last: 3 heads); image 2 checks 2, 3 */
  nl_exits_pred_rule(&t, 0.15, 0.93, &s, b);
  assert_int_equal(b[0], 1);
  assert_int_equal(b[1], 4);
  assert_int_equal(b[2], 4);
  assert_true(fabs(s.mean_heads - (1 + 3 + 2) / 3.0) < 1e-12);
  assert_int_equal(s.top1, 3);
  /* q 1: full depth */
  nl_exits_pred_rule(&t, 1, 0, &s, b);
  for (int i = 0; i < 3; i++) assert_int_equal(b[i], 4);
  /* block F = 2: nothing checked before it */
  t.pred_block = 2;
  nl_exits_pred_rule(&t, 0, 0, &s, b);
  for (int i = 0; i < 3; i++) assert_int_equal(b[i], 3);
  t.pred_block = 0;
  /* picks: 0 points lost keeps every right answer; the predictor alone at
   * q 0.85 loses none here and runs 3 blocks, the threshold rule's best
   * with nothing lost runs more */
  double q, tau;
  nl_exits_pick_pred(&t, 0, &q, &tau, &s);
  assert_int_equal(s.top1, 3);
  assert_true(s.mean_blocks <= 3 + 1e-12);
  nl_exits_pick_tau(&t, 0, &r);
  assert_true(s.mean_blocks <= r.mean_blocks + 1e-12);
  double g[64];
  int ng = nl_exits_q_grid(g, 64);
  assert_true(ng > 10 && g[0] == 0 && g[ng - 1] == 1);
  for (int i = 1; i < ng; i++) assert_true(g[i] > g[i - 1]);
}

/* A predictor with random weights on block F. */
static void random_predictor(nl_exits *e, int F, unsigned seed) {
  const int K = e->depth, D = e->dim;
  free(e->predictor);
  e->predictor = calloc((size_t)K * D + K + 2 * D, sizeof(float));
  e->pred_block = F;
  float *W = e->predictor, *b = W + (size_t)K * D, *mu = b + K, *sd = mu + D;
  srand(seed);
  for (int i = 0; i < K * D; i++) W[i] = 1.5f * ((float)rand() / RAND_MAX - 0.5f);
  for (int k = 0; k < K; k++) b[k] = 0.3f * (float)(k % 4);
  for (int j = 0; j < D; j++) {
    mu[j] = 0.1f * (float)(j % 5);
    sd[j] = 0.5f + 0.01f * (float)j;
  }
}

/* The packed pass with the predictor against, per image: the block-F class
 * token of the image run alone, the predictor's softmax and start worked
 * out here, then the cut model's plain pass at each block from the start
 * on until one is confident. */
static void test_pred_packed_vs_alone(void **state) {
  (void)state;
  if (!have_fixture()) skip();
  nl_vit m, cut;
  load(&m, "vit_small_p7_fmnist.safetensors");
  load(&cut, "vit_small_p7_fmnist.safetensors");
  nl_error err;
  nl_exits e;
  if (nl_exits_init(&e, &m, &err)) fail_msg("%s", err.msg);
  perturb(&e, 7);
  float *x = ref_tensor("inputs", 8 * 784);
  nl_exits_ws w, w1;
  if (nl_exits_ws_init(&w, &m, 8, 2, &err)) fail_msg("%s", err.msg);
  if (nl_exits_ws_init(&w1, &m, 1, 1, &err)) fail_msg("%s", err.msg);
  const int F[] = {0, 1, 3};
  const double qs[] = {0.2, 0.5, 0.8}, taus[] = {0, 0.7, 0.9};
  int spread_seen = 0;
  for (size_t fi = 0; fi < 3; fi++) {
    random_predictor(&e, F[fi], 3 + (unsigned)fi);
    const float *W = e.predictor, *bb = W + 12 * 64, *mu = bb + 12, *sd = mu + 64;
    for (size_t qi = 0; qi < 3; qi++)
      for (size_t ti = 0; ti < 3; ti++) {
        float lg[80];
        int blocks[8], heads[8], seen[13] = {0}, distinct = 0;
        if (nl_exits_pred_forward(&m, &e, &w, x, 8, qs[qi], taus[ti], lg, blocks, heads, &err))
          fail_msg("%s", err.msg);
        for (int i = 0; i < 8; i++) {
          /* the class token after block F, alone */
          if (nl_vit_embed(&m, &w1.acts, x + i * 784, 1, w1.x, &err)) fail_msg("%s", err.msg);
          for (int k = 0; k <= F[fi]; k++)
            if (nl_vit_block_run(&m, &w1.acts, k, w1.x, 1, &err)) fail_msg("%s", err.msg);
          double z[12], mx = -1e300, sum = 0, cum = 0;
          for (int k = 0; k < 12; k++) {
            z[k] = bb[k];
            for (int j = 0; j < 64; j++) z[k] += (double)W[k * 64 + j] * (w1.x[j] - mu[j]) / sd[j];
            mx = z[k] > mx ? z[k] : mx;
          }
          for (int k = 0; k < 12; k++) sum += exp(z[k] - mx);
          int start = 11;
          for (int k = 0; k < 11; k++) {
            cum += exp(z[k] - mx) / sum;
            if (cum >= qs[qi]) {
              start = k;
              break;
            }
          }
          if (start < F[fi]) start = F[fi];
          /* from the start on: the cut model's pass until confident */
          int stop = 12, nh = 0;
          float want[10];
          for (int k = start; k < 12; k++) {
            cut.cfg.depth = k + 1;
            memcpy(cut.final_norm->w, e.norms[k].w, sizeof(float) * 64);
            memcpy(cut.final_norm->b, e.norms[k].b, sizeof(float) * 64);
            memcpy(cut.head_w, e.head_w[k], sizeof(float) * 640);
            memcpy(cut.head_b, e.head_b[k], sizeof(float) * 10);
            float *one = plain_logits(&cut, x + i * 784, 1);
            int arg = 0;
            double s2 = 0;
            for (int j = 1; j < 10; j++)
              if (one[j] > one[arg]) arg = j;
            for (int j = 0; j < 10; j++) s2 += exp((double)one[j] - one[arg]);
            memcpy(want, one, sizeof want);
            free(one);
            nh++;
            if (k == 11 || 1 / s2 > taus[ti] + 1e-6) {
              stop = k + 1;
              break;
            }
          }
          if (blocks[i] != stop)
            fail_msg("F %d q %g tau %g image %d: packed %d blocks, alone %d", F[fi], qs[qi],
                     taus[ti], i, blocks[i], stop);
          assert_int_equal(heads[i], nh);
          for (int j = 0; j < 10; j++)
            if (fabsf(want[j] - lg[i * 10 + j]) > 1e-4f * (1 + fabsf(want[j])))
              fail_msg("image %d logit %d: packed %.7g, alone %.7g", i, j, lg[i * 10 + j], want[j]);
          distinct += !seen[stop];
          seen[stop] = 1;
        }
        if (distinct >= 3) spread_seen++;
      }
  }
  cut.cfg.depth = 12;
  memcpy(cut.final_norm->w, m.final_norm->w, sizeof(float) * 64);
  assert_true(spread_seen >= 1);
  /* q 1: never early, the plain pass bit for bit */
  float lg[80];
  int blocks[8], heads[8];
  if (nl_exits_pred_forward(&m, &e, &w, x, 8, 1, 0, lg, blocks, heads, &err)) fail_msg("%s", err.msg);
  float *pl = plain_logits(&m, x, 8);
  assert_memory_equal(lg, pl, sizeof lg);
  for (int i = 0; i < 8; i++) assert_int_equal(blocks[i], 12);
  free(pl);
  /* no predictor: refused */
  free(e.predictor);
  e.predictor = NULL;
  assert_int_equal(nl_exits_pred_forward(&m, &e, &w, x, 8, 0.5, 0, lg, blocks, heads, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  nl_exits_ws_free(&w);
  nl_exits_ws_free(&w1);
  nl_exits_free(&e);
  free(x);
  nl_vit_free(&cut);
  nl_vit_free(&m);
}

/* Training on a planted separable case: the target block is which of
 * three directions of block 2's feature is largest (blocks 0, 5, 11); the
 * other blocks' features are noise. */
static void test_pred_fit_separable(void **state) {
  (void)state;
  if (!have_fixture()) skip();
  nl_vit m;
  load(&m, "vit_small_p7_fmnist.safetensors");
  nl_error err;
  nl_exits e;
  if (nl_exits_init(&e, &m, &err)) fail_msg("%s", err.msg);
  const int n = 1200, K = 12, D = 64, F = 2;
  float *feat = malloc(sizeof(float) * (size_t)n * K * D);
  int32_t *tg = malloc(sizeof(int32_t) * n);
  srand(17);
  for (size_t i = 0; i < (size_t)n * K * D; i++) feat[i] = 2.0f * ((float)rand() / RAND_MAX - 0.5f) + 3.0f;
  const int to[3] = {0, 5, 11};
  int count[12] = {0};
  for (int i = 0; i < n; i++) {
    float *f = feat + ((size_t)i * K + F) * D;
    int a = 0;
    for (int j = 1; j < 3; j++)
      if (f[j] > f[a]) a = j;
    f[a] += 1.0f; /* a margin */
    tg[i] = to[a];
    count[to[a]]++;
  }
  nl_exits_pred_opts o;
  nl_exits_pred_opts_default(&o);
  o.block = F;
  o.epochs = 15;
  o.lr = 0.01f;
  o.threads = 1;
  double loss[15];
  if (nl_exits_pred_fit(&e, feat, tg, n, &o, loss, &err)) fail_msg("%s", err.msg);
  assert_int_equal(e.pred_block, F);
  /* the starting loss is the entropy of the targets' frequencies, about */
  double h = 0;
  for (int k = 0; k < 12; k++)
    if (count[k]) h -= (double)count[k] / n * log((double)count[k] / n);
  assert_true(loss[0] < h + 0.2);
  assert_true(loss[14] < 0.3 * h);
  for (int ep = 1; ep < 15; ep++) assert_true(loss[ep] < loss[0]);
  /* separated: the most probable block is the target's */
  float *prob = malloc(sizeof(float) * (size_t)n * K), *sc = malloc(sizeof(float) * (size_t)n * D);
  float *f2 = malloc(sizeof(float) * (size_t)n * D);
  for (int i = 0; i < n; i++) memcpy(f2 + (size_t)i * D, feat + ((size_t)i * K + F) * D, sizeof(float) * D);
  nl_exits_pred_probs(&e, f2, n, prob, sc);
  int right = 0;
  for (int i = 0; i < n; i++) {
    int a = 0;
    double s = 0;
    for (int k = 0; k < K; k++) {
      s += prob[(size_t)i * K + k];
      if (prob[(size_t)i * K + k] > prob[(size_t)i * K + a]) a = k;
    }
    assert_true(fabs(s - 1) < 1e-4);
    right += a == tg[i];
  }
  assert_true(right >= n * 97 / 100);
  /* bad input */
  tg[3] = 12;
  assert_int_equal(nl_exits_pred_fit(&e, feat, tg, n, &o, NULL, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  tg[3] = 0;
  o.block = 12;
  assert_int_equal(nl_exits_pred_fit(&e, feat, tg, n, &o, NULL, &err), -1);
  /* the file round trip; a predictor of another shape or block is refused */
  char path[] = "/tmp/nl_exits_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  if (nl_exits_save(&e, path, &err)) fail_msg("%s", err.msg);
  nl_exits r;
  if (nl_exits_load(&r, path, &err)) fail_msg("%s", err.msg);
  assert_int_equal(r.pred_block, F);
  assert_memory_equal(r.predictor, e.predictor, sizeof(float) * ((size_t)K * D + K + 2 * D));
  nl_exits_free(&r);
  nl_exits_free(&e);
  nl_vit tiny;
  load(&tiny, "vit_tiny_p4_fmnist.safetensors");
  /* tiny's predictor [12, 192] written under small's shape: a wrong tensor */
  nl_exits es;
  if (nl_exits_init(&es, &m, &err)) fail_msg("%s", err.msg);
  nl_st_writer *wr = nl_st_writer_new();
  nl_st_file sf;
  if (nl_exits_save(&es, path, &err)) fail_msg("%s", err.msg);
  if (nl_st_open(&sf, path, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < sf.n; i++) {
    const nl_st_tensor *t = &sf.t[i];
    float *v = malloc(sizeof(float) * t->numel);
    nl_st_to_f32(t, v);
    if (nl_st_writer_add(wr, t->name, v, t->ndim, t->shape, &err)) fail_msg("%s", err.msg);
    free(v);
  }
  const int Dt = tiny.cfg.dim;
  float *bad = calloc((size_t)12 * Dt, sizeof(float));
  int64_t sw[2] = {12, Dt}, sk[1] = {12}, sd[1] = {Dt};
  if (nl_st_writer_add(wr, "predictor.weight", bad, 2, sw, &err) ||
      nl_st_writer_add(wr, "predictor.bias", bad, 1, sk, &err) ||
      nl_st_writer_add(wr, "predictor.mean", bad, 1, sd, &err) ||
      nl_st_writer_add(wr, "predictor.std", bad, 1, sd, &err))
    fail_msg("%s", err.msg);
  char meta[4096];
  snprintf(meta, sizeof meta, "%s", nl_st_meta_get(&sf, "normlab_exits"));
  char *end = strrchr(meta, '}');
  snprintf(end, sizeof meta - (size_t)(end - meta), ",\"predictor_block\":0}");
  nl_st_writer_meta(wr, "normlab_exits", meta);
  nl_st_close(&sf);
  if (nl_st_writer_save(wr, path, &err)) fail_msg("%s", err.msg);
  nl_st_writer_free(wr);
  assert_int_equal(nl_exits_load(&r, path, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "predictor.weight"));
  free(bad);
  /* a predictor block past the last block */
  es.predictor = calloc((size_t)K * D + K + 2 * D, sizeof(float));
  for (int j = 0; j < D; j++) es.predictor[K * D + K + D + j] = 1;
  es.pred_block = 12;
  if (nl_exits_save(&es, path, &err)) fail_msg("%s", err.msg);
  assert_int_equal(nl_exits_load(&r, path, &err), -1);
  assert_non_null(strstr(err.msg, "predictor_block"));
  unlink(path);
  nl_exits_free(&es);
  nl_vit_free(&tiny);
  free(prob);
  free(sc);
  free(f2);
  free(feat);
  free(tg);
  nl_vit_free(&m);
}

/* The start from the threshold rule: at tau 1 the rule runs every block,
 * so the started policy does (the plain pass); at tau 0 every image leaves
 * after block 0, so the started policy runs block 0 alone. */
static void test_policy_init_from_rule(void **state) {
  (void)state;
  if (!have_data()) skip();
  nl_vit m;
  load(&m, "vit_small_p7_fmnist.safetensors");
  nl_error err;
  nl_dataset d;
  if (nl_dataset_load(&d, "fmnist:train", 0, 300, &err)) fail_msg("%s", err.msg);
  float *feat;
  if (nl_exits_features(&m, &d, 64, 2, &feat, &err)) fail_msg("%s", err.msg);
  nl_exits e;
  if (nl_exits_init(&e, &m, &err)) fail_msg("%s", err.msg);
  float *x = ref_tensor("inputs", 8 * 784), lg[80];
  int blocks[8];
  nl_exits_ws w;
  if (nl_exits_ws_init(&w, &m, 8, 2, &err)) fail_msg("%s", err.msg);
  nl_exits_policy_opts o;
  nl_exits_policy_opts_default(&o);
  o.epochs = 0;
  o.init_feat = feat;
  o.init_epochs = 20;
  o.init_bias = 0;
  o.exit_head = 1;
  o.threads = 1;
  o.init_tau = 1;
  if (nl_exits_policy_fit(&m, &e, &d, &o, &err)) fail_msg("%s", err.msg);
  assert_int_equal(e.policy_exit_head, 1);
  if (nl_exits_policy_forward(&m, &e, &w, x, 8, lg, blocks, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < 8; i++) assert_int_equal(blocks[i], 12);
  float *pl = plain_logits(&m, x, 8);
  assert_memory_equal(lg, pl, sizeof lg);
  free(pl);
  o.init_tau = 0;
  if (nl_exits_policy_fit(&m, &e, &d, &o, &err)) fail_msg("%s", err.msg);
  if (nl_exits_policy_forward(&m, &e, &w, x, 8, lg, blocks, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < 8; i++) assert_int_equal(blocks[i], 1);
  /* no start and no epochs: refused */
  o.init_feat = NULL;
  assert_int_equal(nl_exits_policy_fit(&m, &e, &d, &o, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  nl_exits_ws_free(&w);
  nl_exits_free(&e);
  free(x);
  free(feat);
  nl_dataset_free(&d);
  nl_vit_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_depth),
      cmocka_unit_test(test_packed_vs_alone),
      cmocka_unit_test(test_flops_by_hand),
      cmocka_unit_test(test_rules_by_hand),
      cmocka_unit_test(test_file_and_mismatch),
      cmocka_unit_test(test_fit_and_oracle),
      cmocka_unit_test(test_policy_vs_identity_blocks),
      cmocka_unit_test(test_pred_rules_by_hand),
      cmocka_unit_test(test_pred_packed_vs_alone),
      cmocka_unit_test(test_pred_fit_separable),
      cmocka_unit_test(test_policy_init_from_rule),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
