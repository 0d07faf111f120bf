/* Unit tests for attention reuse (src/train/reuse.c).
 *  - FLOPs saved worked out by hand for vit_small_p7 (T 17, D 64);
 *  - plans naming a block that does not exist, block 0, or a repeat are
 *    NL_EINPUT;
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
  unsigned char r[12];
  nl_error err;
  assert_int_equal(nl_reuse_parse("4,9", 12, r, &err), 0);
  for (int l = 0; l < 12; l++) assert_int_equal(r[l], l == 4 || l == 9);
  assert_int_equal(nl_reuse_parse("0", 12, r, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "block 0"));
  assert_int_equal(nl_reuse_parse("12", 12, r, &err), -1);
  assert_non_null(strstr(err.msg, "does not exist"));
  assert_int_equal(nl_reuse_parse("3,3", 12, r, &err), -1);
  assert_int_equal(nl_reuse_parse("3,x", 12, r, &err), -1);
  nl_vit_config c;
  memset(&c, 0, sizeof c);
  c.tokens = 17, c.dim = 64, c.mlp_hidden = 256, c.npatch = 16, c.in_chans = 1, c.patch = 7;
  c.depth = 12, c.classes = 10;
  /* per reuse: q, k projections 2*17*64*128 = 278528, q k^T 2*17*17*64 = 36992 */
  assert_true(fabs(nl_reuse_flops(&c, 0) - 21043456) < 0.5);
  assert_true(fabs(nl_reuse_flops(&c, 3) - (21043456 - 3 * 315520)) < 0.5);
}

static void test_own_attention(void **state) {
  (void)state;
  if (!have_data()) skip();
  nl_vit m;
  nl_error err;
  if (nl_vit_load(&m, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err)) fail_msg("%s", err.msg);
  nl_dataset d;
  if (nl_dataset_load(&d, "fmnist:test", 0, 300, &err)) fail_msg("%s", err.msg);
  unsigned char none[12] = {0}, five[12] = {0};
  five[5] = 1;
  long t0, t1;
  nl_eval_result er;
  if (nl_reuse_eval(&m, none, &d, 64, 2, &t0, NULL, &err)) fail_msg("%s", err.msg);
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
  if (nl_reuse_eval(&m, none, &d, 64, 2, &t0, NULL, &err)) fail_msg("%s", err.msg);
  if (nl_reuse_eval(&m, five, &d, 64, 2, &t1, NULL, &err)) fail_msg("%s", err.msg);
  assert_int_equal(t1, t0);
  assert_true(before != plain); /* reuse does change the unmodified model's output */
  nl_dataset_free(&d);
  nl_vit_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_and_flops),
      cmocka_unit_test(test_own_attention),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
