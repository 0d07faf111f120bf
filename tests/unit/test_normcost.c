/* The norm slots' cost and the forward pass's parts: an expression slot's
 * chunked forward (f(x), then the affine, chunk by chunk) against the
 * scalar interpreter and the affine written out; the same for any thread
 * count; the forward pass's part timing leaves the logits bit for bit and
 * times every part; the per-block cost rows against formulas worked out
 * by hand for the small fixture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "expr/expr.h"
#include "model/blockcost.h"
#include "model/norm.h"
#include "model/safetensors.h"
#include "model/vit.h"

static char fx_path[4096];

static const char *fixture(const char *name) {
  const char *dir = getenv("NL_FIXTURES");
  snprintf(fx_path, sizeof fx_path, "%s/%s", dir ? dir : "../shared/fixtures/timm", name);
  return fx_path;
}

/* out = f(x) * w + b over shapes that cross the chunk boundaries (16,384
 * elements: rows of 5, of 100 with 163 rows a chunk, of 768, and rows
 * longer than a chunk), serial and parallel (above 65,536 elements). */
static void test_exprnorm_chunks(void **state) {
  (void)state;
  static const int shapes[][2] = {{3, 5}, {1000, 100}, {40, 768}, {7, 20000}, {300, 192}};
  nl_prog p;
  nl_prog_init(&p);
  nl_error err;
  assert_int_equal(nl_parse("tanh(0.7*x) + 0.1*clip(x - 0.2)", 1, &p, &err), 0);
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    const int N = shapes[s][0], C = shapes[s][1];
    const size_t n = (size_t)N * C;
    float *x = nl_xmalloc(sizeof(float) * n), *out = nl_xmalloc(sizeof(float) * n);
    float *fx = nl_xmalloc(sizeof(float) * n), *dfx = nl_xmalloc(sizeof(float) * n);
    float *out2 = nl_xmalloc(sizeof(float) * n), *out1 = nl_xmalloc(sizeof(float) * n);
    float *w = nl_xmalloc(sizeof(float) * (size_t)C), *b = nl_xmalloc(sizeof(float) * (size_t)C);
    for (size_t i = 0; i < n; i++) x[i] = (float)(4.0 * sin(0.013 * (double)i + 0.5 * (double)s));
    for (int c = 0; c < C; c++) w[c] = 0.5f + 0.001f * (float)c, b[c] = 0.01f * (float)(c % 13);
    int outer = nl_threads_enter(2);
    nl_exprnorm_forward(out, NULL, NULL, x, &p, w, b, N, C, NULL);
    nl_exprnorm_forward(out2, fx, dfx, x, &p, w, b, N, C, NULL);
    nl_threads_leave(outer);
    outer = nl_threads_enter(1);
    nl_exprnorm_forward(out1, NULL, NULL, x, &p, w, b, N, C, NULL);
    nl_threads_leave(outer);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
      const int c = (int)(i % (size_t)C);
      double f = nl_eval1(&p, x[i]);
      double want = f * w[c] + b[c];
      double e = fabs(out[i] - want) / (1 + fabs(want));
      if (e > worst) worst = e;
      /* training: fx is f(x), out its affine, the same as inference */
      assert_true(fabs(fx[i] - f) <= 1e-5 * (1 + fabs(f)));
      assert_true(out2[i] == out[i]);
      assert_true(out1[i] == out[i]); /* any thread count, bit for bit */
    }
    if (worst > 1e-5) fail_msg("shape %d x %d: relative error %g", N, C, worst);
    free(x), free(out), free(fx), free(dfx), free(out2), free(out1), free(w), free(b);
  }
  nl_prog_free(&p);
}

static void load_small(nl_vit *m) {
  nl_error err;
  if (nl_vit_load(m, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err)) fail_msg("%s", err.msg);
}

/* Timing the parts changes nothing in the result and times every part. */
static void test_part_timing(void **state) {
  (void)state;
  nl_vit m;
  load_small(&m);
  nl_error err;
  const nl_vit_config *c = &m.cfg;
  nl_vit_acts a;
  assert_int_equal(nl_vit_acts_init(&a, c, 4, 0, &err), 0);
  size_t n = (size_t)4 * c->in_chans * c->img_size * c->img_size;
  float *x = nl_xmalloc(sizeof(float) * n), *l0 = nl_xmalloc(sizeof(float) * 4 * c->classes);
  for (size_t i = 0; i < n; i++) x[i] = (float)sin(0.1 * (double)i);
  assert_int_equal(nl_vit_forward(&m, &a, x, 4, NULL, NULL, &err), 0);
  memcpy(l0, a.logits, sizeof(float) * 4 * c->classes);
  const size_t ns = nl_vit_part_slots(c->depth);
  double *ps = nl_xcalloc(ns, sizeof(double));
  a.part_s = ps;
  assert_int_equal(nl_vit_forward(&m, &a, x, 4, NULL, NULL, &err), 0);
  assert_memory_equal(l0, a.logits, sizeof(float) * 4 * c->classes);
  double sum[NL_PART_COUNT] = {0};
  for (int l = -1; l < c->depth; l++)
    for (int p = 0; p < NL_PART_COUNT; p++) {
      double v = ps[nl_vit_part_index(p, l)];
      assert_true(v >= 0);
      sum[p] += v;
      int in_block = p >= NL_PART_NORM1 && p <= NL_PART_RESIDUAL;
      if (in_block != (l >= 0)) assert_true(v == 0); /* nothing in the wrong slot */
    }
  for (int p = 0; p < NL_PART_COUNT; p++)
    if (!(sum[p] > 0)) fail_msg("part %s not timed", nl_vit_part_name(p));
  free(ps);
  free(x);
  free(l0);
  nl_vit_acts_free(&a);
  nl_vit_free(&m);
}

/* Rows of vit_small_p7 (D = 64, T = 17, NP = 16, 2 heads, MLP 256, 10
 * classes, patch 7 of 1 channel) at 4 bytes a weight, figures worked out
 * by hand. */
static void test_cost_rows(void **state) {
  (void)state;
  nl_vit m;
  load_small(&m);
  nl_error err;
  nl_part_cost *r;
  int n;
  assert_int_equal(nl_vit_cost_rows(&m, NULL, 1, &r, &n, &err), 0);
  assert_int_equal(n, 12 * 9 + 3);
  /* patch_embed: 2*16*64*49 FLOPs; 64*49 + 64 + cls 64 + pos 17*64 params */
  assert_int_equal(r[0].part, NL_PART_PATCH);
  assert_true(r[0].flops == 100352 && r[0].params == 4352);
  assert_true(r[0].bytes == 4352 * 4 + 4 * 16 * 49);
  /* blocks.0.qkv: 2*17*64*192 FLOPs, 3*64^2 + 192 params, + 17*64*4 bytes of input */
  assert_int_equal(r[2].part, NL_PART_QKV);
  assert_int_equal(r[2].block, 0);
  assert_true(r[2].flops == 417792 && r[2].params == 12480 && r[2].bytes == 49920 + 4352);
  /* attention: 4*17^2*64 + 2*17*(24*17 + 1) */
  assert_true(r[3].flops == 73984 + 13906 && r[3].bytes == 4 * (3 * 17 * 64 + 2 * 289));
  /* norm1 LayerNorm: 17*(5*64 + 2) FLOPs, 17*8*64 bytes + 128 params */
  assert_true(r[1].flops == 5474 && r[1].bytes == 8704 + 512);
  /* gelu: 27*17*256 */
  assert_true(r[7].part == NL_PART_GELU && r[7].flops == 117504);
  /* head: 2*64*10 FLOPs, 650 params */
  assert_true(r[n - 1].part == NL_PART_HEAD && r[n - 1].flops == 1280 && r[n - 1].params == 650);
  free(r);
  /* batch 8: the weights' bytes per image are an eighth */
  assert_int_equal(nl_vit_cost_rows(&m, NULL, 8, &r, &n, &err), 0);
  assert_true(r[2].bytes == 49920 / 8 + 4352);
  free(r);
  assert_int_equal(nl_vit_cost_rows(&m, NULL, 0, &r, &n, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  nl_vit_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exprnorm_chunks),
      cmocka_unit_test(test_part_timing),
      cmocka_unit_test(test_cost_rows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
