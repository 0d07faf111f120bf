/* Unit tests for src/expr: parsing, printing, simplification, batched
 * evaluation and derivatives, the cost model and expression sets. The
 * references are outside the code under test: hand-computed values, libm
 * in double precision, central finite differences, the worked cost
 * examples of Appendix F. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/rng.h"
#include "expr/expr.h"

static int quick(void) __attribute__((unused));
static int quick(void) {
  const char *q = getenv("NL_TEST_QUICK");
  return q && *q && strcmp(q, "0") != 0;
}

static void parse_ok(const char *s, nl_prog *p) {
  nl_error e;
  nl_error_clear(&e);
  int rc = nl_parse(s, 1, p, &e);
  if (rc != 0) fail_msg("parse '%s': %s", s, e.msg);
}

/* ---- cost model: the worked examples of Appendix F ---- */
static void test_cost_examples(void **state) {
  (void)state;
  struct {
    const char *e;
    int cost, cost_search;
  } ex[] = {
      {"0.698*clip(2.31*x)", 2, 3},
      {"2.5*tanh(clip(x)) + 0.135", 25, 26},
      {"tanh(x) + tanh(x + 0.27)", 48, 48},
      {"(x + 0.0719)*(-0.307*x*tanh(2.99*x) + 2.46)", 29, 29},
      {"x^3", 2, 2},
      {"x^1", 0, 0},
      {"x^0", 0, 0},
      {"sigmoid(x)", 22, 22},
      {"exp(x)", 19, 19},
      {"abs(neg(x))", 0, 0},
      {"-x", 0, 0},
      {"clip(x, -1, 2)/x - 1", 2, 3},
      {"x*1", 1, 1}, /* as written, not simplified */
  };
  nl_prog p;
  nl_prog_init(&p);
  nl_cost_opts report = {0}, search = {1};
  for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
    parse_ok(ex[i].e, &p);
    if (nl_cost(&p, &report) != ex[i].cost)
      fail_msg("%s: cost %d, expected %d", ex[i].e, nl_cost(&p, &report), ex[i].cost);
    assert_int_equal(nl_cost(&p, &search), ex[i].cost_search);
  }
  nl_prog_free(&p);
  nl_token_cost t = nl_cost_layernorm_token(768);
  assert_true(t.flops == 5 * 768 + 2 && t.read_bytes == 8 * 768);
  t = nl_cost_dyt_token(768);
  assert_true(t.flops == 24 * 768 && t.read_bytes == 4 * 768);
  t = nl_cost_expr_token(29, 768);
  assert_true(t.flops == 29 * 768 && t.read_bytes == 4 * 768);
  /* 25 layers x 197 tokens (ViT-B): LayerNorm reads 30,259,200 bytes, DyT 15,129,600 */
  assert_true(25.0 * 197 * nl_cost_layernorm_token(768).read_bytes == 30259200.0);
  assert_true(25.0 * 197 * nl_cost_dyt_token(768).read_bytes == 15129600.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cost_examples),
  };
  return cmocka_run_group_tests_name("expr", tests, NULL, NULL);
}
