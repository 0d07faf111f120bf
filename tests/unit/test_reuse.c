/* Unit tests for attention reuse (src/train/reuse.c, model/reuse_plan.c).
 *  - FLOPs saved worked out by hand for vit_small_p7 (T 17, D 64), for
 *    probability reuse and for linear and mlp TBs;
 *  - plans naming a block that does not exist, block 0, a repeat, or a
 *    source that is the same or a later block are NL_EINPUT;
 *  - a plan saved in a checkpoint loads back (blocks, sources, TB weights);
 *  - a linear TB's least squares against numpy's solution of the same
 *    ridge problem on the attention outputs of the plain pass;
 *  - with Fashion-MNIST: the empty plan gives nl_vit_evaluate's top-1; and
 *    a block reusing attention that is its own: block 4 is made the
 *    identity (proj, fc2 zeroed) with block 5's norm1 and q, k weights, so
 *    it computes exactly the probabilities block 5 computes on the same
 *    input; reusing them in block 5 must give the plain pass's top-1 on that
 *    model, while reusing the unmodified model's block 4 must not. */
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
#include "model/reuse_plan.h"
#include "model/vit.h"
#include "train/evaluate.h"
#include "train/reuse.h"

static const char *fixture(const char *name) {
  static char buf[512];
  const char *dir = getenv("NL_FIXTURES");
  snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "../shared/fixtures/timm", name);
  return buf;
}

static int have_data(void) {
  const char *dir = getenv("NL_FMNIST_DIR");
  char p[512];
  snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir ? dir : NL_FMNIST_DIR_DEFAULT);
  return access(fixture("vit_small_p7_fmnist.safetensors"), R_OK) == 0 && access(p, R_OK) == 0;
}

static void test_parse_and_flops(void **state) {
  (void)state;
  nl_error err;
  nl_vit_reuse *p = nl_reuse_plan_new(12, 64);
  assert_int_equal(nl_reuse_parse("4,9", NL_TB_NONE, 0, p, &err), 0);
  for (int l = 0; l < 12; l++) assert_int_equal(p->src[l], l == 4 ? 3 : l == 9 ? 8 : -1);
  nl_reuse_plan_free(p);
  /* a run of blocks reuses the last block before it that computes its own */
  p = nl_reuse_plan_new(12, 64);
  assert_int_equal(nl_reuse_parse("5,6,7:2", NL_TB_NONE, 0, p, &err), 0);
  assert_int_equal(p->src[5], 4);
  assert_int_equal(p->src[6], 4);
  assert_int_equal(p->src[7], 2);
  nl_reuse_plan_free(p);
  const char *bad[] = {"0", "12", "3,3", "3,x", "5:5", "5:7", "5:", "-1"};
  const char *why[] = {"block 0", "does not exist", "twice", "comma", "earlier", "earlier",
                       "source", "block"};
  for (int i = 0; i < 8; i++) {
    p = nl_reuse_plan_new(12, 64);
    assert_int_equal(nl_reuse_parse(bad[i], NL_TB_NONE, 0, p, &err), -1);
    assert_int_equal(err.code, NL_EINPUT);
    if (!strstr(err.msg, why[i])) fail_msg("'%s': %s", bad[i], err.msg);
    nl_reuse_plan_free(p);
  }
  /* the plan API: same-or-later sources, blocks that do not exist */
  p = nl_reuse_plan_new(12, 64);
  assert_int_equal(nl_reuse_plan_set(p, 4, 4, NL_TB_NONE, 0, &err), -1);
  assert_int_equal(nl_reuse_plan_set(p, 4, 6, NL_TB_LINEAR, 0, &err), -1);
  assert_int_equal(nl_reuse_plan_set(p, 12, 3, NL_TB_NONE, 0, &err), -1);
  assert_non_null(strstr(err.msg, "does not exist"));
  assert_int_equal(nl_reuse_plan_set(p, 4, 3, NL_TB_MLP, 0, &err), -1);
  /* probabilities from a block that skips its attention */
  assert_int_equal(nl_reuse_plan_set(p, 4, 3, NL_TB_LINEAR, 0, &err), 0);
  assert_int_equal(nl_reuse_plan_set(p, 5, 4, NL_TB_NONE, 0, &err), -1);
  assert_non_null(strstr(err.msg, "has none"));
  nl_reuse_plan_free(p);
  nl_vit_config c;
  memset(&c, 0, sizeof c);
  c.tokens = 17, c.dim = 64, c.mlp_hidden = 256, c.npatch = 16, c.in_chans = 1, c.patch = 7;
  c.depth = 12, c.classes = 10;
  /* per reuse: q, k projections 2*17*64*128 = 278528, q k^T 2*17*17*64 = 36992 */
  assert_true(fabs(nl_reuse_flops(&c, 0) - 21043456) < 0.5);
  assert_true(fabs(nl_reuse_flops(&c, 3) - (21043456 - 3 * 315520)) < 0.5);
  p = nl_reuse_plan_new(12, 64);
  assert_int_equal(nl_reuse_parse("3,8", NL_TB_NONE, 0, p, &err), 0);
  assert_true(fabs(nl_reuse_plan_flops(p, &c) - (21043456 - 2 * 315520)) < 0.5);
  /* a linear TB: qkv 2*17*64*192 = 417792, attention 4*17*17*64 = 73984,
   * proj 2*17*64*64 = 139264, less the TB's 139264: 491776 */
  assert_int_equal(nl_reuse_plan_set(p, 8, 7, NL_TB_LINEAR, 0, &err), 0);
  assert_true(fabs(nl_reuse_block_saving(p, &c, 8) - 491776) < 0.5);
  /* an mlp TB of 16: 2*17*64*16*2 = 69632 */
  assert_int_equal(nl_reuse_plan_set(p, 9, 8, NL_TB_MLP, 16, &err), 0);
  assert_true(fabs(nl_reuse_block_saving(p, &c, 9) - (631040 - 69632)) < 0.5);
  assert_true(fabs(nl_reuse_plan_flops(p, &c) - (21043456 - 315520 - 491776 - 561408)) < 0.5);
  nl_reuse_plan_free(p);
}

/* logits of the first n images of d under plan (NULL: none) */
static float *logits_of(nl_vit *m, nl_vit_reuse *plan, const nl_dataset *d, int n) {
  nl_error err;
  nl_vit_reuse *own = m->reuse;
  m->reuse = plan;
  nl_vit_acts a;
  if (nl_vit_acts_init(&a, &m->cfg, n, 0, &err)) fail_msg("%s", err.msg);
  a.threads = 2;
  float *img = malloc(sizeof(float) * n * 28 * 28);
  nl_dataset_normalize(d, 0, n, 1, m->cfg.nmean, m->cfg.mean, m->cfg.std, img);
  if (nl_vit_forward(m, &a, img, n, NULL, NULL, &err)) fail_msg("%s", err.msg);
  float *lg = malloc(sizeof(float) * n * 10);
  memcpy(lg, a.logits, sizeof(float) * n * 10);
  free(img);
  nl_vit_acts_free(&a);
  m->reuse = own;
  return lg;
}

static void test_own_attention(void **state) {
  (void)state;
  if (!have_data()) skip();
  nl_vit m;
  nl_error err;
  if (nl_vit_load(&m, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err)) fail_msg("%s", err.msg);
  nl_dataset d;
  if (nl_dataset_load(&d, "fmnist:test", 0, 300, &err)) fail_msg("%s", err.msg);
  nl_vit_reuse *five = nl_reuse_plan_new(12, 64);
  assert_int_equal(nl_reuse_plan_set(five, 5, 4, NL_TB_NONE, 0, &err), 0);
  long t0, t1;
  nl_eval_result er;
  if (nl_reuse_eval(&m, NULL, &d, 64, 2, &t0, NULL, &err)) fail_msg("%s", err.msg);
  if (nl_vit_evaluate(&m, &d, NULL, &er, &err)) fail_msg("%s", err.msg);
  assert_int_equal(t0, er.top1);
  /* the unmodified model: block 4's attention differs from block 5's */
  if (nl_reuse_eval(&m, five, &d, 64, 2, &t1, NULL, &err)) fail_msg("%s", err.msg);
  long before = t1, plain = t0;
  /* block 4: identity, computing block 5's probabilities */
  const int D = 64;
  nl_vit_block *b4 = &m.blocks[4], *b5 = &m.blocks[5];
  memset(b4->proj_w, 0, sizeof(float) * D * D);
  memset(b4->proj_b, 0, sizeof(float) * D);
  memset(b4->fc2_w, 0, sizeof(float) * D * 256);
  memset(b4->fc2_b, 0, sizeof(float) * D);
  memcpy(b4->norm1->w, b5->norm1->w, sizeof(float) * D);
  memcpy(b4->norm1->b, b5->norm1->b, sizeof(float) * D);
  memcpy(b4->qkv_w, b5->qkv_w, sizeof(float) * 2 * D * D);
  memcpy(b4->qkv_b, b5->qkv_b, sizeof(float) * 2 * D);
  if (nl_reuse_eval(&m, NULL, &d, 64, 2, &t0, NULL, &err)) fail_msg("%s", err.msg);
  if (nl_reuse_eval(&m, five, &d, 64, 2, &t1, NULL, &err)) fail_msg("%s", err.msg);
  assert_int_equal(t1, t0);
  assert_true(before != plain); /* reuse does change the unmodified model's output */
  /* bit for bit: block 5 reusing block 4's probabilities, which are its own,
   * gives the plain pass's logits; also from the plan saved and loaded */
  float *lp = logits_of(&m, NULL, &d, 40), *lr = logits_of(&m, five, &d, 40);
  assert_memory_equal(lp, lr, sizeof(float) * 40 * 10);
  m.reuse = five;
  char path[] = "/tmp/nl_test_reuse_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  if (nl_vit_save(&m, path, &err)) fail_msg("%s", err.msg);
  m.reuse = NULL;
  nl_vit m2;
  if (nl_vit_load(&m2, path, NULL, &err)) fail_msg("%s", err.msg);
  assert_non_null(m2.reuse);
  assert_int_equal(nl_reuse_plan_count(m2.reuse), 1);
  assert_int_equal(m2.reuse->src[5], 4);
  float *l2 = logits_of(&m2, m2.reuse, &d, 40);
  assert_memory_equal(lp, l2, sizeof(float) * 40 * 10);
  free(lp), free(lr), free(l2);
  nl_vit_free(&m2);
  unlink(path);
  nl_reuse_plan_free(five);
  nl_dataset_free(&d);
  nl_vit_free(&m);
}

/* A linear TB fitted on 64 images: the ridge problem solved by numpy on the
 * attention outputs (proj outputs) of blocks 4 and 5 of the plain pass. */
static void test_linear_lsq(void **state) {
  (void)state;
  if (!have_data() || system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) skip();
  nl_vit m;
  nl_error err;
  if (nl_vit_load(&m, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err)) fail_msg("%s", err.msg);
  nl_dataset d;
  if (nl_dataset_load(&d, "fmnist:train", 0, 64, &err)) fail_msg("%s", err.msg);
  nl_reuse_fit_opts o;
  nl_reuse_fit_opts_default(&o);
  o.batch = 32, o.threads = 2, o.ridge = 1e-3;
  int bl = 5, src = 4;
  nl_vit_reuse *fit = NULL;
  if (nl_reuse_fit_each(&m, &bl, &src, 1, NL_TB_LINEAR, 0, &d, &o, &fit, &err)) fail_msg("%s", err.msg);
  /* the activations, from the plain pass with every layer kept */
  nl_vit_acts a;
  if (nl_vit_acts_init(&a, &m.cfg, 64, 1, &err)) fail_msg("%s", err.msg);
  float *img = malloc(sizeof(float) * 64 * 28 * 28);
  nl_dataset_normalize(&d, 0, 64, 1, m.cfg.nmean, m.cfg.mean, m.cfg.std, img);
  if (nl_vit_forward(&m, &a, img, 64, NULL, NULL, &err)) fail_msg("%s", err.msg);
  char dir[] = "/tmp/nl_test_lsq_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char p[600];
  const size_t rows = 64 * 17;
  snprintf(p, sizeof p, "%s/z", dir);
  FILE *f = fopen(p, "wb");
  fwrite(a.layer[4].proj, sizeof(float), rows * 64, f);
  fwrite(a.layer[5].proj, sizeof(float), rows * 64, f);
  fclose(f);
  snprintf(p, sizeof p, "%s/w", dir);
  f = fopen(p, "wb");
  fwrite(fit->w1[5], sizeof(float), 64 * 64, f);
  fwrite(fit->b1[5], sizeof(float), 64, f);
  fclose(f);
  char cmd[2000];
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c \"\n"
           "import numpy as np\n"
           "z = np.fromfile('%s/z', np.float32).astype(np.float64).reshape(2, %zu, 64)\n"
           "X = np.hstack([z[0], np.ones((%zu, 1))]); Y = z[1]\n"
           "A = X.T @ X; A += 1e-3 * np.trace(A) / A.shape[0] * np.eye(A.shape[0])\n"
           "S = np.linalg.solve(A, X.T @ Y)\n"
           "w = np.fromfile('%s/w', np.float32).astype(np.float64)\n"
           "W, b = w[:4096].reshape(64, 64), w[4096:]\n"
           "e = max(abs(W - S[:64].T).max(), abs(b - S[64]).max()) / abs(S).max()\n"
           "print(e)\n"
           "raise SystemExit(0 if e < 1e-4 else 1)\n\"",
           dir, rows, rows, dir);
  int rc = system(cmd);
  snprintf(p, sizeof p, "rm -rf %s", dir);
  if (system(p)) {
  }
  assert_int_equal(rc, 0);
  free(img);
  nl_vit_acts_free(&a);
  nl_reuse_plan_free(fit);
  nl_dataset_free(&d);
  nl_vit_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_and_flops),
      cmocka_unit_test(test_own_attention),
      cmocka_unit_test(test_linear_lsq),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
