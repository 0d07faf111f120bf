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
  /* cost and cost_search as written (clip charged 0 and 1), simplified:
   * what nl_cost reports once the expression is simplified */
  struct {
    const char *e;
    int cost, cost_search, simplified;
  } ex[] = {
      {"0.698*clip(2.31*x)", 2, 3, 2},
      {"2.5*tanh(clip(x)) + 0.135", 25, 26, 25},
      {"tanh(x) + tanh(x + 0.27)", 48, 48, 48},
      {"(x + 0.0719)*(-0.307*x*tanh(2.99*x) + 2.46)", 29, 29, 29},
      {"x^3", 2, 2, 2},
      {"x^1", 0, 0, 0},
      {"x^0", 0, 0, 0},
      {"sigmoid(x)", 22, 22, 22},
      {"exp(x)", 19, 19, 19},
      {"abs(neg(x))", 0, 0, 0},
      {"-x", 0, 0, 0},
      {"clip(x, -1, 2)/x - 1", 2, 3, 2},
      {"x*1", 1, 1, 0},
      {"tanh(1.5*x) + 2*3", 26, 26, 25},
      {"x*(x - x) + tanh(x)", 26, 26, 23},
  };
  nl_prog p;
  nl_prog_init(&p);
  nl_cost_opts report = {0}, search = {1};
  for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
    parse_ok(ex[i].e, &p);
    if (nl_cost_written(&p, &report) != ex[i].cost)
      fail_msg("%s: cost %d, expected %d", ex[i].e, nl_cost_written(&p, &report), ex[i].cost);
    assert_int_equal(nl_cost_written(&p, &search), ex[i].cost_search);
    if (nl_cost(&p, &report) != ex[i].simplified)
      fail_msg("%s: simplified cost %d, expected %d", ex[i].e, nl_cost(&p, &report),
               ex[i].simplified);
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


/* ---- random programs and an independent reference evaluator ---- */

typedef struct gen_opts {
  int smooth; /* no abs/clip (kinks) */
  int no_exp; /* no exp (overflow) */
  int twins;  /* now and then a binary operator's operands are one subtree twice,
                 or its second operand is a scaled or negated copy (x - x,
                 tanh(x) + 2*tanh(x)): material for cancellations */
} gen_opts;

static void copy_last_subtree(nl_prog *p) {
  int n = p->nodes[p->len - 1].size, s = p->len - n;
  for (int i = 0; i < n; i++) {
    nl_node c = p->nodes[s + i];
    nl_prog_push(p, (nl_op)c.op, c.val, c.ival);
  }
}

static void gen_rec(nl_prog *p, nl_rng *r, int depth, const gen_opts *o) {
  int leaf = depth <= 0 || nl_rng_below(r, 4) == 0;
  if (leaf) {
    if (nl_rng_below(r, 2) == 0) {
      nl_prog_push(p, NL_OP_X, 0, 0);
    } else {
      static const float special[] = {0.0f, 1.0f, -1.0f, 2.0f, 0.5f, 5.0f, -5.0f};
      float v = nl_rng_below(r, 3) == 0 ? special[nl_rng_below(r, 7)]
                                        : (float)(nl_rng_uniform(r) * 6.0 - 3.0);
      nl_prog_push(p, NL_OP_CONST, v, 0);
    }
    return;
  }
  for (;;) {
    nl_op op = (nl_op)(NL_OP_ADD + nl_rng_below(r, NL_OP_COUNT - NL_OP_ADD));
    if (o->smooth && (op == NL_OP_ABS || op == NL_OP_CLIP || op == NL_OP_CLIP3)) continue;
    if (o->no_exp && op == NL_OP_EXP) continue;
    int32_t iv = op == NL_OP_POW ? (int32_t)nl_rng_below(r, 4) : 0;
    if (o->twins && nl_ops[op].arity == 2 && nl_rng_below(r, 3) == 0) {
      gen_rec(p, r, depth - 1, o);
      copy_last_subtree(p);
      int how = (int)nl_rng_below(r, 3);
      if (how == 1) {
        nl_prog_push(p, NL_OP_NEG, 0, 0);
      } else if (how == 2) {
        static const float scale[] = {2.0f, -1.0f, 0.5f, -3.0f};
        int sp = p->len - p->nodes[p->len - 1].size;
        nl_node *tail = nl_xmalloc(sizeof(nl_node) * (size_t)(p->len - sp));
        memcpy(tail, p->nodes + sp, sizeof(nl_node) * (size_t)(p->len - sp));
        int tn = p->len - sp;
        p->len = sp;
        nl_prog_push(p, NL_OP_CONST, scale[nl_rng_below(r, 4)], 0);
        for (int i = 0; i < tn; i++) nl_prog_push(p, (nl_op)tail[i].op, tail[i].val, tail[i].ival);
        nl_prog_push(p, NL_OP_MUL, 0, 0);
        free(tail);
      }
      nl_prog_push(p, op, 0, iv);
      return;
    }
    for (int k = 0; k < nl_ops[op].arity; k++) gen_rec(p, r, depth - 1, o);
    nl_prog_push(p, op, 0, iv);
    return;
  }
}

static void gen(nl_prog *p, nl_rng *r, int depth, const gen_opts *o) {
  p->len = 0;
  gen_rec(p, r, depth, o);
}

/* Set when some intermediate of a reference evaluation leaves the float
 * range (float evaluation then overflows where double does not). */
static int ref_float_overflow;

/* Reference value in double with libm, optionally with every node's
 * output multiplied by (1 + eps*u), u uniform in [-1, 1]. */
static double ref_rec(const nl_prog *p, int i, double x, double eps, nl_rng *r) {
  const nl_node *n = &p->nodes[i];
  double a[3] = {0, 0, 0}, v;
  int c[3], j = i - 1;
  for (int k = n->arity - 1; k >= 0; k--) {
    c[k] = j;
    j -= p->nodes[j].size;
  }
  for (int k = 0; k < n->arity; k++) a[k] = ref_rec(p, c[k], x, eps, r);
  switch (n->op) {
    case NL_OP_CONST: v = n->val; break;
    case NL_OP_X: v = x; break;
    case NL_OP_ADD: v = a[0] + a[1]; break;
    case NL_OP_SUB: v = a[0] - a[1]; break;
    case NL_OP_MUL: v = a[0] * a[1]; break;
    case NL_OP_DIV: v = a[0] / a[1]; break;
    case NL_OP_NEG: v = -a[0]; break;
    case NL_OP_POW: v = pow(a[0], n->ival); break;
    case NL_OP_TANH: v = tanh(a[0]); break;
    case NL_OP_SIGMOID: v = 1.0 / (1.0 + exp(-a[0])); break;
    case NL_OP_EXP: v = exp(a[0]); break;
    case NL_OP_ABS: v = fabs(a[0]); break;
    case NL_OP_CLIP: v = isnan(a[0]) ? a[0] : fmin(fmax(a[0], -5.0), 5.0); break;
    case NL_OP_CLIP3: {
      double t = a[0] < a[1] ? a[1] : a[0];
      v = t > a[2] ? a[2] : t;
      break;
    }
    default: v = NAN;
  }
  if (fabs(v) > FLT_MAX && isfinite(v)) ref_float_overflow = 1;
  if (eps > 0 && r) {
    v *= 1.0 + eps * (2.0 * nl_rng_uniform(r) - 1.0);
    if (v == 0) v = nl_rng_below(r, 2) ? 0.0 : -0.0; /* the sign of a zero is not kept */
  }
  return v;
}

static double ref(const nl_prog *p, double x) { return ref_rec(p, p->len - 1, x, 0, NULL); }

/* How much the value at x moves when every node is perturbed by a relative
 * eps (and zeros take either sign): the rounding the expression itself is
 * sensitive to. -1 when the perturbations change whether the value is
 * finite, or which infinity or NaN it is. */
static int same_class(double a, double b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  if (isinf(a) || isinf(b)) return a == b;
  return 1;
}

static double spread(const nl_prog *p, double x, double eps, nl_rng *r) {
  double v0 = ref(p, x), s = 0;
  for (int t = 0; t < 8; t++) {
    double v = ref_rec(p, p->len - 1, x, eps, r);
    if (!same_class(v, v0) || isfinite(v) != isfinite(v0)) return -1;
    if (isfinite(v) && fabs(v - v0) > s) s = fabs(v - v0);
  }
  return s;
}


/* ---- programs ---- */
static void test_prog_basics(void **state) {
  (void)state;
  nl_prog p, q;
  nl_prog_init(&p);
  nl_prog_init(&q);
  /* 2*x + tanh(x) */
  nl_prog_push(&p, NL_OP_CONST, 2.0f, 0);
  nl_prog_push(&p, NL_OP_X, 0, 0);
  nl_prog_push(&p, NL_OP_MUL, 0, 0);
  nl_prog_push(&p, NL_OP_X, 0, 0);
  nl_prog_push(&p, NL_OP_TANH, 0, 0);
  int root = nl_prog_push(&p, NL_OP_ADD, 0, 0);
  assert_int_equal(root, 5);
  assert_int_equal(p.nodes[5].size, 6);
  assert_int_equal(p.nodes[2].size, 3);
  assert_int_equal(p.nodes[4].size, 2);
  assert_int_equal(nl_prog_depth(&p), 3);
  assert_true(fabs(nl_eval1(&p, 0.5) - (1.0 + tanh(0.5))) < 1e-15);
  assert_int_equal(nl_prog_nconst(&p), 1);
  float c = 0;
  nl_prog_get_consts(&p, &c);
  assert_true(c == 2.0f);
  c = 3.0f;
  nl_prog_set_consts(&p, &c);
  assert_true(fabs(nl_eval1(&p, 0.5) - (1.5 + tanh(0.5))) < 1e-15);
  nl_prog_copy(&q, &p);
  for (int i = 0; i < p.len; i++) p.nodes[i].size = 1;
  assert_int_equal(nl_prog_fix_sizes(&p), 0);
  assert_int_equal(p.nodes[5].size, 6);
  assert_int_equal(memcmp(p.nodes, q.nodes, sizeof(nl_node) * (size_t)p.len), 0);
  p.len = 4; /* two trees: not well formed */
  assert_int_equal(nl_prog_fix_sizes(&p), -1);
  p.len = 0;
  assert_int_equal(nl_prog_push(&p, NL_OP_ADD, 0, 0), -1); /* no operands */
  nl_prog_free(&p);
  nl_prog_free(&q);
}

/* ---- parsing: values of hand-computed expressions ---- */
static void test_parse_values(void **state) {
  (void)state;
  struct {
    const char *e;
    double x, want;
  } ex[] = {
      {"1 + 2*3", 0, 7},
      {"(1 + 2)*3", 0, 9},
      {"8/4/2", 0, 1},
      {"8 - 4 - 2", 0, 2},
      {"-x^2", 3, -9},
      {"-2^2", 0, -4},
      {"(-2)^2", 0, 4},
      {"2*-3", 0, -6},
      {"x - -1", 2, 3},
      {"--x", 2, 2},
      {"1.5e2 + .5 + 2E-1 + 3.", 0, 153.7},
      {"x^0", 5, 1},
      {"clip(10)", 0, 5},
      {"clip(-7*x)", 1, -5},
      {"clip(x, -1, 2)", 3, 2},
      {"clip(x, -1, 2)", -3, -1},
      {"neg(x)", 2, -2},
      {"abs(-3)", 0, 3},
      {"sigmoid(0)", 0, 0.5},
      {"exp(1)", 0, M_E},
      {"tanh(x)", 0.5, 0.46211715726000974},
      {"x*x*x - x/2", 2, 7},
      {" \t x \n + 1 ", 1, 2},
  };
  nl_prog p;
  nl_prog_init(&p);
  for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
    parse_ok(ex[i].e, &p);
    double v = nl_eval1(&p, ex[i].x);
    if (fabs(v - ex[i].want) > 1e-6 * (1 + fabs(ex[i].want)))
      fail_msg("%s at x=%g: %.17g, expected %.17g", ex[i].e, ex[i].x, v, ex[i].want);
  }
  /* a negative literal is one constant node */
  parse_ok("-0.307", &p);
  assert_int_equal(p.len, 1);
  assert_int_equal(p.nodes[0].op, NL_OP_CONST);
  assert_true(p.nodes[0].val == -0.307f);
  parse_ok("-x", &p);
  assert_int_equal(p.nodes[p.len - 1].op, NL_OP_NEG);
  /* 400 nested parentheses are fine */
  char *deep = nl_xmalloc(1000);
  memset(deep, '(', 400);
  deep[400] = 'x';
  memset(deep + 401, ')', 400);
  deep[801] = '\0';
  parse_ok(deep, &p);
  assert_int_equal(p.len, 1);
  free(deep);
  nl_prog_free(&p);
}

/* ---- parse errors: line:column, message, source line, caret ---- */
static void check_error(const char *text, int line, const char *want_prefix, int caret_col) {
  nl_prog p;
  nl_prog_init(&p);
  nl_error e;
  nl_error_clear(&e);
  int rc = nl_parse(text, line, &p, &e);
  if (rc == 0) fail_msg("'%.60s' parsed, expected an error", text);
  assert_int_equal(e.code, NL_EINPUT);
  if (strncmp(e.msg, want_prefix, strlen(want_prefix)) != 0)
    fail_msg("'%.60s': got '%s', expected it to start with '%s'", text, e.msg, want_prefix);
  /* three lines: message, source, caret */
  const char *l2 = strchr(e.msg, '\n');
  assert_non_null(l2);
  const char *l3 = strchr(l2 + 1, '\n');
  assert_non_null(l3);
  assert_null(strchr(l3 + 1, '\n'));
  if (caret_col > 0) {
    /* caret under the fault: 4 spaces of indent + (col - 1) */
    size_t pos = strlen(l3 + 1) - 1;
    if (pos != (size_t)(4 + caret_col - 1) || l3[1 + pos] != '^')
      fail_msg("'%s': caret at %zu, expected %d\n%s", text, pos, 4 + caret_col - 1, e.msg);
  }
  nl_prog_free(&p);
}

static void test_parse_errors(void **state) {
  (void)state;
  check_error("tanh(x))", 1, "1:8: unmatched ')'", 8);
  check_error("x + foo(x)", 1, "1:5: unknown function 'foo'", 5);
  check_error("clip(x, 1)", 1, "1:1: clip takes 1 or 3 arguments, got 2", 1);
  check_error("tanh(x, 1)", 1, "1:1: tanh takes 1 argument, got 2", 1);
  check_error("tanh()", 1, "1:6: tanh() needs an argument", 6);
  check_error("x*nan", 1, "1:3: 'nan' is not allowed", 3);
  check_error("inf + x", 1, "1:1: 'inf' is not allowed", 1);
  check_error("1e999*x", 1, "1:1: number out of range", 1);
  check_error("x + 1e39", 1, "1:5: number out of range", 5);
  check_error("x + 1 2", 1, "1:7: unexpected '2' after the end", 7);
  check_error("", 1, "1:1: empty expression", 1);
  check_error("   ", 1, "1:4: empty expression", 4);
  check_error("(x + 1", 1, "1:7: expected ')' to close the '(' at column 1", 7);
  check_error("x^2^3", 1, "1:4: chained '^'", 4);
  check_error("x^-1", 1, "1:3: exponent must be a non-negative integer", 3);
  check_error("x^2.5", 1, "1:3: exponent must be a non-negative integer", 3);
  check_error("x^65", 1, "1:3: exponent too large", 3);
  check_error("y + 1", 1, "1:1: unknown name 'y'", 1);
  check_error("tanh x", 1, "1:6: expected '(' after 'tanh'", 6);
  check_error("1e+", 1, "1:2: malformed number", 2);
  check_error("1.2.3", 1, "1:4: malformed number", 4);
  check_error("x +", 1, "1:4: unexpected end of input", 4);
  check_error("x @ 2", 1, "1:3: unexpected '@'", 3);
  check_error("+x", 1, "1:1: unary '+'", 1);
  check_error("x +\n  foo(x)", 1, "2:3: unknown function 'foo'", 3);
  check_error("x + y", 7, "7:5: unknown name 'y'", 5);
  /* deep nesting and long chains: bounded, no stack exhaustion */
  size_t n = 100000;
  char *s = nl_xmalloc(n + 2);
  memset(s, '(', n);
  s[n] = 'x';
  s[n + 1] = '\0';
  check_error(s, 1, "1:501: expression nested too deeply (more than 500 levels)", 0);
  memset(s, '-', n);
  check_error(s, 1, "1:501: expression nested too deeply", 0);
  for (size_t i = 0; i < n; i++) s[i] = "tanh("[i % 5];
  s[n] = '\0';
  check_error(s, 1, "1:2501: expression nested too deeply", 0);
  free(s);
  /* a sum of 600 terms is 600 levels deep */
  char *sum = nl_xmalloc(600 * 2 + 1);
  for (int i = 0; i < 600; i++) memcpy(sum + 2 * i, i ? "+x" : "xx", 2);
  sum[1] = ' ';
  sum[1200] = '\0';
  check_error(sum, 1, "1:1: expression nested too deeply", 0);
  free(sum);
  /* a very long line is shown around the fault only */
  char *lng = nl_xmalloc(5000);
  memset(lng, ' ', 4990);
  memcpy(lng + 4990, "x + )", 6);
  nl_prog p;
  nl_prog_init(&p);
  nl_error e;
  assert_int_equal(nl_parse(lng, 1, &p, &e), -1);
  assert_true(strncmp(e.msg, "1:4995: unexpected ')'", 22) == 0);
  assert_true(strlen(e.msg) < 300);
  free(lng);
  nl_prog_free(&p);
}

/* ---- printing ---- */
static void check_print(const char *in, nl_print_style st, const char *want) {
  nl_prog p;
  nl_prog_init(&p);
  parse_ok(in, &p);
  char *s = nl_print(&p, st);
  if (strcmp(s, want) != 0) fail_msg("print(%s) = '%s', expected '%s'", in, s, want);
  free(s);
  nl_prog_free(&p);
}

static void test_print(void **state) {
  (void)state;
  const nl_print_style S = NL_PRINT_SHORT;
  check_print("x+1", S, "x + 1");
  check_print("((x*2))", S, "x*2");
  check_print("(x+1)*2", S, "(x + 1)*2");
  check_print("x-(1-x)", S, "x - (1 - x)");
  check_print("(x-1)-x", S, "x - 1 - x");
  check_print("x+(1+x)", S, "x + (1 + x)");
  check_print("x/(2*x)", S, "x/(2*x)");
  check_print("(x/2)*x", S, "x/2*x");
  check_print("x*(2/x)", S, "x*(2/x)");
  check_print("-(x+1)", S, "-(x + 1)");
  check_print("-(x*2)", S, "-(x*2)");
  check_print("(-x)*2", S, "-x*2");
  check_print("(-x)^2", S, "(-x)^2");
  check_print("-(x^2)", S, "-x^2");
  check_print("neg(neg(x))", S, "-(-x)");
  check_print("(x^2)^3", S, "(x^2)^3");
  check_print("(-2)^2", S, "(-2)^2");
  check_print("tanh(x)^2", S, "tanh(x)^2");
  check_print("x - -2", S, "x - -2");
  check_print("2*(3*x)", S, "2*(3*x)");
  check_print("tanh( clip(x , -1,2) )", S, "tanh(clip(x, -1, 2))");
  check_print("(x + 0.0719)*(-0.307*x*tanh(2.99*x) + 2.46)", S,
              "(x + 0.0719)*(-0.307*x*tanh(2.99*x) + 2.46)");
  check_print("0.123456*x", S, "0.123*x");
  check_print("0.123456*x", NL_PRINT_EXACT, "0.123456*x");
  check_print("1234567*x", S, "1.23e+06*x");
  check_print("0.698*x", NL_PRINT_EXACT, "0.698*x");
  check_print("tanh(x)*2 + clip(x)", NL_PRINT_C,
              "tanhf(x)*2.0f + fminf(fmaxf(x, -5.0f), 5.0f)");
  check_print("x^3 - -0.5", NL_PRINT_C, "powf(x, 3) - -0.5f");
  check_print("tanh(x)*2 + clip(x)", NL_PRINT_TORCH,
              "torch.tanh(x)*2 + torch.clamp(x, -5.0, 5.0)");
  check_print("(x+1)^3*sigmoid(x)", NL_PRINT_TORCH, "(x + 1)**3*torch.sigmoid(x)");
  /* constants as c[k] of a buffer, k in postfix order; never parenthesised */
  check_print("x^3 - -0.5", NL_PRINT_TORCH_BUF, "x**3 - c[0]");
  check_print("x - -2", NL_PRINT_TORCH_BUF, "x - c[0]");
  check_print("(-2)^2*x", NL_PRINT_TORCH_BUF, "c[0]**2*x");
  check_print("clip(x, -1, 2)*0.5 + 1", NL_PRINT_TORCH_BUF,
              "torch.clamp(x, c[0], c[1])*c[2] + c[3]");
  check_print("-(x*2) + tanh(3*x)", NL_PRINT_TORCH_BUF, "-(x*c[0]) + torch.tanh(c[1]*x)");
  check_print("(x+1)/2", NL_PRINT_LATEX, "\\frac{x + 1}{2}");
  check_print("tanh(x)*x^2", NL_PRINT_LATEX, "\\tanh\\left(x\\right) \\cdot x^{2}");
  check_print("(-2)^2", NL_PRINT_LATEX, "\\left(-2\\right)^{2}");
  /* subtree printing */
  nl_prog p;
  nl_prog_init(&p);
  parse_ok("tanh(2*x) + 1", &p);
  char *s = nl_print_sub(&p, 2, S);
  assert_string_equal(s, "2*x");
  free(s);
  nl_prog_free(&p);
}

/* Round trip: parse(print_exact(p)) has p's structure and values, for
 * thousands of random programs. */
static void test_roundtrip_random(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 11);
  nl_prog p, q;
  nl_prog_init(&p);
  nl_prog_init(&q);
  gen_opts o = {0, 0, 0};
  int n = quick() ? 500 : 3000;
  for (int t = 0; t < n; t++) {
    gen(&p, &r, 5, &o);
    char *s = nl_print(&p, NL_PRINT_EXACT);
    nl_error e;
    if (nl_parse(s, 1, &q, &e) != 0) fail_msg("'%s' does not parse: %s", s, e.msg);
    for (int k = 0; k < 9; k++) {
      double x = -4.0 + k;
      double a = nl_eval1(&p, x), b = nl_eval1(&q, x);
      if (!(a == b || (isnan(a) && isnan(b)))) fail_msg("'%s' at %g: %.17g vs %.17g", s, x, a, b);
    }
    /* printing is canonical: a second round trip prints the same text */
    char *s2 = nl_print(&q, NL_PRINT_EXACT);
    assert_int_equal(nl_parse(s2, 1, &q, &e), 0);
    char *s3 = nl_print(&q, NL_PRINT_EXACT);
    assert_string_equal(s2, s3);
    free(s);
    free(s2);
    free(s3);
  }
  nl_prog_free(&p);
  nl_prog_free(&q);
}

/* The C and PyTorch spellings mean what the expression means: random
 * programs are printed as C (compiled with the system compiler) and as
 * Python over a minimal stand-in for torch (math functions on floats), run,
 * and compared with the double reference. Skipped when no compiler or
 * python3 is installed. */
static int run_and_compare(const char *cmd, nl_prog *progs, int nprog, const double *xs, int nx,
                           const char *what) {
  FILE *fp = popen(cmd, "r");
  if (!fp) return 0;
  int got = 0;
  nl_rng nr;
  nl_rng_seed(&nr, 99);
  for (int t = 0; t < nprog; t++)
    for (int k = 0; k < nx; k++) {
      char buf[128];
      if (!fgets(buf, sizeof buf, fp)) {
        pclose(fp);
        return got;
      }
      double v = strtod(buf, NULL);
      if (strncmp(buf, "nan", 3) == 0 || strncmp(buf, "-nan", 4) == 0) v = NAN;
      ref_float_overflow = 0;
      double a = ref(&progs[t], xs[k]);
      double sp = spread(&progs[t], xs[k], 1e-6, &nr);
      if (sp < 0 || ref_float_overflow || !isfinite(a)) continue;
      if (fabs(v - a) > 1e-5 * (1 + fabs(a)) + 8 * sp) {
        char *s = nl_print(&progs[t], NL_PRINT_EXACT);
        fail_msg("%s spelling of %s at x=%g: %.9g, reference %.9g", what, s, xs[k], v, a);
      }
      got++;
    }
  pclose(fp);
  return got;
}

static void test_print_c_and_torch_run(void **state) {
  (void)state;
  enum { NP = 150 };
  const double xs[] = {-4.5, -1.25, 0.3, 2.0, 6.5};
  const int nx = 5;
  nl_prog progs[NP];
  nl_rng r;
  nl_rng_seed(&r, 77);
  gen_opts o = {0, 0, 0};
  for (int t = 0; t < NP; t++) {
    nl_prog_init(&progs[t]);
    gen(&progs[t], &r, 1 + (int)nl_rng_below(&r, 4), &o);
  }
  char dir[] = "/tmp/normlab-print-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128], cmd[512];
  /* C */
  snprintf(path, sizeof path, "%s/f.c", dir);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fprintf(fp, "#include <math.h>\n#include <stdio.h>\n");
  for (int t = 0; t < NP; t++) {
    char *s = nl_print(&progs[t], NL_PRINT_C);
    fprintf(fp, "static float f%d(float x) { (void)x; return %s; }\n", t, s);
    free(s);
  }
  fprintf(fp, "int main(void) {\n  const float xs[] = {-4.5f, -1.25f, 0.3f, 2.0f, 6.5f};\n");
  for (int t = 0; t < NP; t++)
    fprintf(fp, "  for (int k = 0; k < 5; k++) printf(\"%%.9g\\n\", (double)f%d(xs[k]));\n", t);
  fprintf(fp, "  return 0;\n}\n");
  fclose(fp);
  snprintf(cmd, sizeof cmd, "cc -std=c11 -O0 -o %s/f %s/f.c -lm 2>/dev/null && %s/f", dir, dir,
           dir);
  int n_c = run_and_compare(cmd, progs, NP, xs, nx, "C");
  /* PyTorch, over a stand-in module */
  snprintf(path, sizeof path, "%s/f.py", dir);
  fp = fopen(path, "w");
  assert_non_null(fp);
  fprintf(fp,
          "import math\n"
          "class torch:\n"
          "    tanh = staticmethod(math.tanh)\n"
          "    exp = staticmethod(lambda a: math.exp(a) if a < 709 else math.inf)\n"
          "    abs = staticmethod(abs)\n"
          "    sigmoid = staticmethod(lambda a: 1/(1+math.exp(-a)) if a > -709 else 0.0)\n"
          "    clamp = staticmethod(lambda a, lo, hi: a if a != a else min(max(a, lo), hi))\n"
          "def div(a, b):\n"
          "    return a / b\n"
          "xs = [-4.5, -1.25, 0.3, 2.0, 6.5]\n"
          "fs = [\n");
  for (int t = 0; t < NP; t++) {
    char *s = nl_print(&progs[t], NL_PRINT_TORCH);
    fprintf(fp, "    lambda x: %s,\n", s);
    free(s);
  }
  fprintf(fp,
          "]\n"
          "for f in fs:\n"
          "    for x in xs:\n"
          "        try:\n"
          "            print('%%.17g' %% f(x))\n"
          "        except (ZeroDivisionError, OverflowError):\n"
          "            print('nan')\n");
  fclose(fp);
  snprintf(cmd, sizeof cmd, "python3 %s/f.py 2>/dev/null", dir);
  int n_py = run_and_compare(cmd, progs, NP, xs, nx, "PyTorch");
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) print_message("could not remove %s\n", dir);
  for (int t = 0; t < NP; t++) nl_prog_free(&progs[t]);
  print_message("compared %d C and %d Python values\n", n_c, n_py);
  if (n_c == 0 && n_py == 0) skip();
  assert_true(n_c == 0 || n_c > NP * nx / 2);
  assert_true(n_py == 0 || n_py > NP * nx / 2);
}

/* ---- simplification ---- */
static void check_simplify(const char *in, const char *want) {
  nl_prog p;
  nl_prog_init(&p);
  parse_ok(in, &p);
  nl_simplify(&p);
  char *s = nl_print(&p, NL_PRINT_SHORT);
  if (strcmp(s, want) != 0) fail_msg("simplify(%s) = '%s', expected '%s'", in, s, want);
  free(s);
  nl_prog_free(&p);
}

static void test_simplify_identities(void **state) {
  (void)state;
  check_simplify("x*1", "x");
  check_simplify("1*x", "x");
  check_simplify("x/1", "x");
  check_simplify("x+0", "x");
  check_simplify("0+x", "x");
  check_simplify("x-0", "x");
  check_simplify("0-x", "-x");
  check_simplify("x*0", "0");
  check_simplify("tanh(x)*0 + 1", "1");
  check_simplify("exp(x)*0", "0*exp(x)");    /* inf*0 is NaN at large x */
  check_simplify("(1/x)*0", "0*(1/x)");      /* NaN at x = 0 */
  check_simplify("x^30*0", "0*x^30");        /* overflows for |x| > 19 */
  check_simplify("0/(x^2 + 1)", "0");        /* 0/inf is still 0 */
  check_simplify("0/x", "0/x");
  check_simplify("neg(neg(x))", "x");
  check_simplify("clip(clip(x))", "clip(x)");
  check_simplify("clip(7)", "5");
  check_simplify("clip(x, -5, 5)", "clip(x)");
  check_simplify("clip(tanh(x))", "tanh(x)");
  check_simplify("abs(neg(x))", "abs(x)");
  check_simplify("abs(abs(x))", "abs(x)");
  check_simplify("abs(sigmoid(x))", "sigmoid(x)");
  check_simplify("2 + 3*4", "14");
  check_simplify("tanh(0)", "0");
  check_simplify("exp(100)", "exp(100)"); /* not a float */
  check_simplify("3e38 + 3e38", "3e+38 + 3e+38"); /* overflows: left alone */
  check_simplify("-3e38 - 3e38", "-3e+38 - 3e+38");
  check_simplify("1e30*(1e30*x)", "1e+30*(1e+30*x)");
  check_simplify("2*(3*x)", "6*x");
  check_simplify("2*(3*(4*x))", "24*x");
  check_simplify("x*2", "2*x");
  check_simplify("(x + 1) + 2", "x + 3");
  check_simplify("x - 2 + 5", "x + 3");
  check_simplify("x + 2 - 2", "x");
  check_simplify("-(2*x)", "-2*x");
  check_simplify("2*neg(x)", "-2*x");
  check_simplify("x*-1", "-x");
  check_simplify("x^1", "x");
  check_simplify("x^0", "1");
  check_simplify("exp(x)^0", "1"); /* the engine's x^0 is 1 for every x */
  check_simplify("(x*1 + 0)*(2*(0.5*tanh(x)))", "x*tanh(x)");
  /* cancellations and like terms */
  check_simplify("x - neg(x)", "2*x");
  check_simplify("x + neg(x)", "0");
  check_simplify("x - x", "0");
  check_simplify("-x + x", "0");
  check_simplify("tanh(x) - tanh(x)", "0");
  check_simplify("tanh(x) + tanh(-x)", "0"); /* tanh is odd */
  check_simplify("2*x + 3*x", "5*x");
  check_simplify("x + x + x", "3*x");
  check_simplify("3*x - x - 2*x + 1", "1");
  check_simplify("2*x*tanh(x) - tanh(x)*x*2", "0");
  check_simplify("x + 2*(x + 1)", "3*x + 2"); /* distributed: 3 FLOPs -> 2 */
  check_simplify("2*(x + tanh(x))", "2*(x + tanh(x))"); /* distributing costs more */
  check_simplify("x - tanh(x) - x", "-tanh(x)");
  check_simplify("x*(x - x) + tanh(x)", "tanh(x)");
  check_simplify("(tanh(x) + 2)/(tanh(x) + 2)", "1");
  check_simplify("exp(x) + exp(x)", "2*exp(x)"); /* same sign: inf + inf = 2*inf */
  check_simplify("2*x/4", "0.5*x");
  check_simplify("x/3", "x/3");
  check_simplify("(-x)^2", "x^2");
  check_simplify("abs(x)^4", "x^4");
  check_simplify("clip(x^2 + 6)", "5");
  check_simplify("clip(x, 2, 1)", "1");
  check_simplify("clip(sigmoid(x), -1, 2)", "sigmoid(x)");
  check_simplify("1 + x + 2", "x + 3");
  check_simplify("1 + x", "1 + x");                   /* not reordered for its own sake */
  check_simplify("-x^4 + (abs(x) + 1)", "-x^4 + (abs(x) + 1)");
  check_simplify("x*(tanh(x)*sigmoid(x))", "x*(tanh(x)*sigmoid(x))"); /* not regrouped */
  /* kept: each is NaN or infinite somewhere, or would not be a float */
  check_simplify("x/x", "x/x");                         /* 0/0 */
  check_simplify("exp(x) - exp(x)", "exp(x) - exp(x)"); /* inf - inf above 88.7 */
  check_simplify("x*x - x*x", "x*x - x*x");             /* x*x overflows above 1.8e19 */
  check_simplify("(x^2 + 1)/(x^2 + 1)", "(x^2 + 1)/(x^2 + 1)"); /* inf/inf */
  check_simplify("1e-30*(1e-30*x)", "1e-30*(1e-30*x)"); /* 1e-60 underflows */
  check_simplify("1e-20*1e-20", "1e-20*1e-20");         /* 1e-40 would be rounded */
  check_simplify("-(x + 1)*tanh(x)", "-(x + 1)*tanh(x)");
}

/* The examples of the defect report: constant subtrees and cancellations
 * were left in, counted in the FLOPs and written out. Values worked out
 * by hand: 3.17*5.46 = 17.3082, 0.345*0.552 = 0.19044. */
static void test_simplify_defect_examples(void **state) {
  (void)state;
  struct {
    const char *in;
    int written, written_search, simplified; /* FLOPs: clip charged 0, 1; simplified */
  } ex[] = {
      {"sigmoid(-3.17*5.46)", 23, 23, 0},
      {"clip(2.51)", 0, 1, 0},
      {"x*(0.345*-0.552)", 2, 2, 1},
      {"x + (-x + x)", 2, 2, 0},
      {"0.3*(x - x)", 2, 2, 0},
  };
  nl_prog p;
  nl_prog_init(&p);
  nl_cost_opts report = {0}, search = {1};
  for (int i = 0; i < 5; i++) {
    parse_ok(ex[i].in, &p);
    assert_int_equal(nl_cost_written(&p, &report), ex[i].written);
    assert_int_equal(nl_cost_written(&p, &search), ex[i].written_search);
    if (nl_cost(&p, &report) != ex[i].simplified)
      fail_msg("%s: cost %d, expected %d once simplified", ex[i].in, nl_cost(&p, &report),
               ex[i].simplified);
    assert_int_equal(nl_cost(&p, &search), ex[i].simplified);
    nl_simplify(&p);
    assert_int_equal(nl_cost_written(&p, &report), ex[i].simplified);
    assert_int_equal(nl_cost_written(&p, &search), ex[i].simplified);
    const nl_node *n = p.nodes;
    switch (i) {
      case 0: { /* one constant: 1/(1 + e^17.3082) */
        double want = 1.0 / (1.0 + exp(17.3082));
        assert_int_equal(p.len, 1);
        assert_int_equal(n[0].op, NL_OP_CONST);
        if (fabs(n[0].val - want) > 1e-5 * want)
          fail_msg("sigmoid(-3.17*5.46) folded to %.9g, expected %.9g", (double)n[0].val, want);
        break;
      }
      case 1: /* clip leaves 2.51 alone */
        assert_int_equal(p.len, 1);
        assert_int_equal(n[0].op, NL_OP_CONST);
        assert_true(n[0].val == 2.51f);
        break;
      case 2: /* one constant times x: -0.19044*x */
        assert_int_equal(p.len, 3);
        assert_int_equal(n[0].op, NL_OP_CONST);
        assert_int_equal(n[1].op, NL_OP_X);
        assert_int_equal(n[2].op, NL_OP_MUL);
        if (fabs(n[0].val + 0.19044) > 1e-7)
          fail_msg("x*(0.345*-0.552): coefficient %.9g, expected -0.19044", (double)n[0].val);
        break;
      case 3: /* x */
        assert_int_equal(p.len, 1);
        assert_int_equal(n[0].op, NL_OP_X);
        break;
      case 4: /* 0 */
        assert_int_equal(p.len, 1);
        assert_int_equal(n[0].op, NL_OP_CONST);
        assert_true(n[0].val == 0.0f);
        break;
    }
  }
  nl_prog_free(&p);
}

/* Where dropping a subtree would change the float engine's NaN or
 * infinity, the subtree stays and the engine still gives it. */
static void test_simplify_keeps_nan(void **state) {
  (void)state;
  struct {
    const char *e;
    float x;
  } ex[] = {
      {"exp(x)*0", 100.0f},   {"x*x - x*x", 1e20f},           {"x/x", 0.0f},
      {"0*(1/x) + 1", 0.0f},  {"(x^2 + 1)/(x^2 + 1)", 1e20f}, {"exp(x) - exp(x)", 100.0f},
      {"x^30*0", 30.0f},      {"2*exp(x) - exp(x) - exp(x)", 100.0f},
  };
  nl_prog p;
  nl_prog_init(&p);
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, 16);
  for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
    float a, b;
    parse_ok(ex[i].e, &p);
    nl_eval(&p, &ex[i].x, &a, 1, &ws);
    if (!isnan(a)) fail_msg("%s at %g: %g, expected NaN (inf*0, inf - inf or 0/0)", ex[i].e,
                            (double)ex[i].x, (double)a);
    nl_simplify(&p);
    nl_eval(&p, &ex[i].x, &b, 1, &ws);
    if (!isnan(b)) {
      char *s = nl_print(&p, NL_PRINT_EXACT);
      fail_msg("%s simplified to %s gives %g at %g, not NaN", ex[i].e, s, (double)b,
               (double)ex[i].x);
    }
  }
  nl_eval_ws_free(&ws);
  nl_prog_free(&p);
}

/* A subtree written twice is computed the same way twice, so that e - e
 * is exactly 0 where e is finite; where e may overflow the pair stays, and
 * the simplified program must still compute both copies alike (rewriting
 * one copy alone, e.g. -(e) as a regrouped product, or re-associating
 * A + (e - e) into (A + e) - e, loses that). Checked with the float
 * engine at points where the written form gives 0 or A exactly. */
static void test_simplify_twins(void **state) {
  (void)state;
  struct {
    const char *e;
    double want; /* by hand: e - e = 0; NaN: x, or tanh(x) */
    int neg;     /* at negative x */
  } ex[] = {
      {"x*exp(x)/-3*tanh(x) + -(x*exp(x)/-3*tanh(x))", 0, 0},
      {"-(x*exp(x)/-3*tanh(x)) + x*exp(x)/-3*tanh(x)", 0, 0},
      {"0.25 + (exp(x)*(x/7) - exp(x)*(x/7))", 0.25, 0},
      /* x + (e - e) is x where e is large; (x + e) - e would be 0 there */
      {"x + (exp(-x) - exp(-x)) + 2*x - 2*x", NAN, 1},
      {"tanh(x) - 3 + (exp(-x) - exp(-x)) + 3", NAN, 1},
  };
  const float xs[] = {0.7f, 1.3f, 2.1f, 2.9f}, xneg[] = {-20.0f, -30.0f, -50.0f, -80.0f};
  nl_prog p;
  nl_prog_init(&p);
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, 16);
  for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
    parse_ok(ex[i].e, &p);
    nl_simplify(&p);
    for (int k = 0; k < 4; k++) {
      float y;
      const float *x = ex[i].neg ? &xneg[k] : &xs[k];
      nl_eval(&p, x, &y, 1, &ws);
      float want = (float)ex[i].want;
      if (isnan(want)) want = strncmp(ex[i].e, "tanh", 4) == 0 ? -1.0f : *x;
      if (y != want) {
        char *s = nl_print(&p, NL_PRINT_EXACT);
        fail_msg("%s -> %s: %.9g at x=%g, expected %.9g", ex[i].e, s, (double)y, (double)*x,
                 (double)want);
      }
    }
  }
  /* and the simplification still happens around the pair */
  check_simplify("x + (exp(-x) - exp(-x)) + 2*x - 2*x", "x + (exp(-x) - exp(-x))");
  check_simplify("x + 1 + exp(x) - exp(x) + 2", "x + (exp(x) - exp(x)) + 3");
  nl_eval_ws_free(&ws);
  nl_prog_free(&p);
}

/* Property: simplification never changes the value, never costs more and
 * reaches a fixed point. The allowed difference at x is what relative
 * perturbations of 2^-22 at every node move the original expression by
 * (the folding of constants rounds to float, sums and products are
 * re-associated); points where such perturbations change finiteness are
 * skipped. Half the programs hold twin subtrees (x - x, e + 2*e, ...). */
static void test_simplify_property(void **state) {
  (void)state;
  nl_rng r, nr, xr;
  nl_rng_seed(&r, 5);
  nl_rng_seed(&nr, 6);
  nl_rng_seed(&xr, 7);
  nl_prog p, q, q2;
  nl_prog_init(&p);
  nl_prog_init(&q);
  nl_prog_init(&q2);
  int n = quick() ? 800 : 5000, compared = 0, skipped = 0, shrunk = 0, cheaper = 0;
  const double fixed[] = {-1e6, -40, -6, -5, -3.3, -2, -1, -0.7, -0.3, -1e-3, 0, 1e-4, 0.2,
                          0.5, 1, 1.5, 2, 3, 4.9, 5, 6, 40, 1e6};
  const int nfixed = (int)(sizeof fixed / sizeof fixed[0]), nrand = 16;
  nl_cost_opts c0 = {0}, c1 = {1};
  for (int t = 0; t < n; t++) {
    gen_opts o = {0, 0, t % 2};
    gen(&p, &r, 1 + (int)nl_rng_below(&r, 6), &o);
    nl_prog_copy(&q, &p);
    nl_simplify(&q);
    assert_int_equal(nl_prog_fix_sizes(&q), 0);
    assert_true(q.len <= p.len);
    shrunk += q.len < p.len;
    int w0 = nl_cost_written(&p, &c0), w1 = nl_cost_written(&p, &c1);
    int s0 = nl_cost_written(&q, &c0), s1 = nl_cost_written(&q, &c1);
    if (s0 > w0 || s1 > w1) {
      char *s1t = nl_print(&p, NL_PRINT_EXACT), *s2t = nl_print(&q, NL_PRINT_EXACT);
      fail_msg("simplify made %s (%d FLOPs) into %s (%d FLOPs)", s1t, w1, s2t, s1);
    }
    cheaper += s1 < w1;
    /* a fixed point: simplifying again changes nothing */
    nl_prog_copy(&q2, &q);
    nl_simplify(&q2);
    if (q2.len != q.len || memcmp(q2.nodes, q.nodes, sizeof(nl_node) * (size_t)q.len) != 0) {
      char *s1t = nl_print(&q, NL_PRINT_EXACT), *s2t = nl_print(&q2, NL_PRINT_EXACT);
      fail_msg("simplify is not at a fixed point: %s -> %s", s1t, s2t);
    }
    for (int k = 0; k < nfixed + nrand; k++) {
      double x;
      if (k < nfixed)
        x = fixed[k];
      else if (k % 2)
        x = nl_rng_uniform(&xr) * 16.0 - 8.0;
      else
        x = (nl_rng_below(&xr, 2) ? -1 : 1) * pow(10.0, nl_rng_uniform(&xr) * 9.0 - 3.0);
      x = (float)x; /* the engine's x are floats */
      double a = ref(&p, x), b = nl_eval1(&q, x);
      double sp = spread(&p, x, 0x1p-22, &nr);
      if (sp < 0) {
        skipped++;
        continue;
      }
      compared++;
      if (!same_class(a, b) ||
          (isfinite(a) && fabs(a - b) > 1e-12 * (1 + fabs(a)) + 8 * sp)) {
        char *s1t = nl_print(&p, NL_PRINT_EXACT), *s2t = nl_print(&q, NL_PRINT_EXACT);
        fail_msg("simplify changed the value at x=%g: %s = %.17g, %s = %.17g (spread %g)", x,
                 s1t, a, s2t, b, sp);
      }
    }
  }
  print_message("%d programs: %d shorter, %d cheaper; %d values compared, %d skipped\n", n,
                shrunk, cheaper, compared, skipped);
  assert_true(skipped < compared / 20);
  assert_true(shrunk > n / 4);
  nl_prog_free(&p);
  nl_prog_free(&q);
  nl_prog_free(&q2);
}

/* Constants are floats: one that would underflow to 0 is refused with its
 * position; subnormal ones are kept and written back exactly. */
static void test_constants_tiny(void **state) {
  (void)state;
  check_error("1e-50*x", 1, "1:1: number 1e-50 is too small", 1);
  check_error("x*1e-50", 1, "1:3: number 1e-50 is too small", 3);
  check_error("x + 7e-46", 1, "1:5: number 7e-46 is too small", 5); /* below half of 1.4e-45 */
  check_error("0.00000000000000000000000000000000000000000000000001", 1,
              "1:1: number 0.0000000000", 1);
  nl_prog p, q;
  nl_prog_init(&p);
  nl_prog_init(&q);
  parse_ok("0e-50*x + 0.000e-99", &p); /* zeros are zeros */
  /* 1e-40 and the smallest float 1.4e-45 are kept as the nearest floats */
  parse_ok("1e-40*x + 1.4e-45", &p);
  assert_true(p.nodes[0].val == 1e-40f && p.nodes[0].val != 0.0f);
  assert_true(p.nodes[3].val == nextafterf(0.0f, 1.0f));
  char *s = nl_print(&p, NL_PRINT_EXACT);
  assert_string_equal(s, "1e-40*x + 1e-45");
  parse_ok(s, &q);
  free(s);
  assert_int_equal(q.len, p.len);
  assert_int_equal(memcmp(q.nodes, p.nodes, sizeof(nl_node) * (size_t)p.len), 0);
  /* simplification keeps them, and the engine multiplies by them */
  nl_simplify(&q);
  assert_true(q.nodes[0].val == 1e-40f);
  parse_ok("1e-40*x", &p);
  nl_simplify(&p);
  float x = 2.0f, y = 0;
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, 4);
  nl_eval(&p, &x, &y, 1, &ws);
  nl_eval_ws_free(&ws);
  if (!(y == 2.0f * 1e-40f && y != 0.0f)) fail_msg("2*1e-40 = %g, expected %g", (double)y, 2.0 * 1e-40f);
  /* in a set: file, line and column */
  nl_exprset set;
  nl_exprset_init(&set);
  nl_error e;
  nl_error_clear(&e);
  assert_int_equal(nl_exprset_parse("a = x\nb = 2*1e-50*x\n", "f.exprs", &set, &e), -1);
  if (strncmp(e.msg, "f.exprs:2:7: number 1e-50 is too small", 38) != 0)
    fail_msg("got '%s'", e.msg);
  nl_exprset_free(&set);
  nl_prog_free(&p);
  nl_prog_free(&q);
}

/* ---- batched evaluation ---- */

/* The vectorised exp, tanh and sigmoid against libm in double. */
static void test_eval_approximations(void **state) {
  (void)state;
  const char *fn[] = {"exp(x)", "tanh(x)", "sigmoid(x)"};
  double (*ref_f[])(double) = {exp, tanh, NULL};
  const size_t n = 200001;
  float *x = nl_xmalloc(sizeof(float) * n), *y = nl_xmalloc(sizeof(float) * n);
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, 4);
  nl_prog p;
  nl_prog_init(&p);
  for (int f = 0; f < 3; f++) {
    double lo = f == 0 ? -103.0 : -30.0, hi = f == 0 ? 88.7 : 30.0;
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * (double)i / (double)(n - 1));
    x[0] = 1e-30f; /* tiny arguments */
    x[1] = -3e-8f;
    x[2] = 0.0f;
    parse_ok(fn[f], &p);
    nl_eval(&p, x, y, n, &ws);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
      double r = ref_f[f] ? ref_f[f](x[i]) : 1.0 / (1.0 + exp(-(double)x[i]));
      if (fabs(r) < 1e-37) { /* subnormal results: absolute error */
        assert_true(fabs(y[i] - r) < 1e-40);
        continue;
      }
      double e = fabs(y[i] - r) / fabs(r);
      if (e > worst) worst = e;
      if (e > 1e-6) fail_msg("%s at %.9g: %.9g, libm %.9g (rel %.3g)", fn[f], x[i], y[i], r, e);
    }
    print_message("%s: worst relative error %.3g\n", fn[f], worst);
  }
  /* special values */
  float xs[] = {INFINITY, -INFINITY, 1e30f, -1e30f, 88.72f, 89.0f, -104.0f, -200.0f};
  float ys[8];
  struct {
    const char *e;
    float want[8];
  } sv[] = {
      {"exp(x)", {INFINITY, 0, INFINITY, 0, expf(88.72f), INFINITY, 0, 0}},
      {"tanh(x)", {1, -1, 1, -1, 1, 1, -1, -1}},
      {"sigmoid(x)", {1, 0, 1, 0, 1, 1, 0, 0}},
      {"clip(x)", {5, -5, 5, -5, 5, 5, -5, -5}},
      {"abs(x)", {INFINITY, INFINITY, 1e30f, 1e30f, 88.72f, 89, 104, 200}},
  };
  for (int k = 0; k < 5; k++) {
    parse_ok(sv[k].e, &p);
    nl_eval(&p, xs, ys, 8, &ws);
    for (int i = 0; i < 8; i++)
      if (!(ys[i] == sv[k].want[i] || fabsf(ys[i] - sv[k].want[i]) <= 1e-6f * fabsf(sv[k].want[i])))
        fail_msg("%s at %g: %g, expected %g", sv[k].e, xs[i], ys[i], sv[k].want[i]);
  }
  nl_prog_free(&p);
  nl_eval_ws_free(&ws);
  free(x);
  free(y);
}

/* nl_eval against the double reference, over random programs and lengths
 * around the chunk size, including n = 0 and in-place evaluation. */
static void test_eval_batched(void **state) {
  (void)state;
  nl_rng r, nr;
  nl_rng_seed(&r, 21);
  nl_rng_seed(&nr, 22);
  const size_t lens[] = {0, 1, 7, 255, 256, 257, 513, 1000};
  const size_t maxn = 1000;
  float *x = nl_xmalloc(sizeof(float) * maxn), *y = nl_xmalloc(sizeof(float) * (maxn + 1));
  float *z = nl_xmalloc(sizeof(float) * maxn);
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, 2); /* grows on demand */
  nl_prog p;
  nl_prog_init(&p);
  gen_opts o = {0, 0, 0};
  int progs = quick() ? 100 : 2000, compared = 0;
  for (int t = 0; t < progs; t++) {
    gen(&p, &r, 1 + (int)nl_rng_below(&r, 5), &o);
    size_t n = lens[t % 8];
    for (size_t i = 0; i < n; i++) x[i] = (float)(nl_rng_uniform(&r) * 12.0 - 6.0);
    y[n] = 12345.0f; /* guard */
    nl_eval(&p, x, y, n, &ws);
    assert_true(y[n] == 12345.0f);
    for (size_t i = 0; i < n; i++) {
      ref_float_overflow = 0;
      double a = ref(&p, x[i]);
      if (ref_float_overflow) continue; /* not representable in float */
      double sp = spread(&p, x[i], 2e-6, &nr);
      if (sp < 0) continue;
      compared++;
      if (!same_class(a, y[i]) || (isfinite(a) && fabs(a - y[i]) > 1e-6 * (1 + fabs(a)) + 8 * sp)) {
        char *s = nl_print(&p, NL_PRINT_EXACT);
        fail_msg("%s at x=%.9g (i=%zu of %zu): batched %.9g, reference %.9g", s, x[i], i, n, y[i],
                 a);
      }
    }
    /* in place gives the same */
    memcpy(z, x, sizeof(float) * n);
    nl_eval(&p, z, z, n, &ws);
    for (size_t i = 0; i < n; i++)
      assert_true(z[i] == y[i] || (isnan(z[i]) && isnan(y[i])));
  }
  assert_true(compared > progs * 100);
  nl_prog_free(&p);
  nl_eval_ws_free(&ws);
  free(x);
  free(y);
  free(z);
}

static void test_eval_nan(void **state) {
  (void)state;
  const char *ex[] = {"tanh(x)", "sigmoid(x)", "exp(x)", "clip(x)", "abs(x)", "x^3", "-x",
                      "0.5*clip(2*x) + tanh(x)/sigmoid(x)", "clip(x, -1, 2)", "exp(-x)*x"};
  float x[300], y[300];
  for (int i = 0; i < 300; i++) x[i] = (i % 7 == 3) ? NAN : (float)(i - 150) * 0.03f;
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, 16);
  nl_prog p;
  nl_prog_init(&p);
  for (size_t k = 0; k < sizeof ex / sizeof ex[0]; k++) {
    parse_ok(ex[k], &p);
    nl_eval(&p, x, y, 300, &ws);
    for (int i = 0; i < 300; i++) {
      if (isnan(x[i]) != isnan(y[i])) fail_msg("%s at %g gave %g", ex[k], x[i], y[i]);
      assert_true(isnan(nl_eval1(&p, NAN)));
    }
  }
  nl_prog_free(&p);
  nl_eval_ws_free(&ws);
}

/* ---- derivatives against central finite differences in double ---- */

/* f'(x) by central differences with two step sizes; returns 0 when they
 * disagree (a kink or a pole nearby). */
static int fd_dx(const nl_prog *p, double x, double *d) {
  double h = 1e-5 * (1 + fabs(x));
  double d1 = (nl_eval1(p, x + h) - nl_eval1(p, x - h)) / (2 * h);
  double d2 = (nl_eval1(p, x + h / 2) - nl_eval1(p, x - h / 2)) / h;
  if (!isfinite(d1) || !isfinite(d2) || fabs(d1 - d2) > 1e-5 * (1 + fabs(d1))) return 0;
  *d = d2;
  return 1;
}

static void test_eval_dx(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 31);
  nl_prog p;
  nl_prog_init(&p);
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, 8);
  gen_opts o = {0, 1, 0};
  const size_t n = 300;
  float x[300], y[300], dx[300];
  int progs = quick() ? 150 : 2000, checked = 0;
  for (int t = 0; t < progs; t++) {
    gen(&p, &r, 1 + (int)nl_rng_below(&r, 4), &o);
    for (size_t i = 0; i < n; i++) x[i] = (float)(nl_rng_uniform(&r) * 8.0 - 4.0);
    nl_eval_dx(&p, x, y, dx, n, &ws);
    for (size_t i = 0; i < n; i++) {
      double d, v = nl_eval1(&p, x[i]);
      if (!isfinite(v) || fabs(v) > 1e4 || !fd_dx(&p, x[i], &d) || fabs(d) > 1e4) continue;
      checked++;
      if (fabs(dx[i] - d) > 2e-3 * (1 + fabs(d))) {
        char *s = nl_print(&p, NL_PRINT_EXACT);
        fail_msg("d/dx %s at %.9g: %.9g, finite differences %.9g", s, x[i], dx[i], d);
      }
      assert_true(fabs(y[i] - v) <= 1e-4 * (1 + fabs(v)));
    }
  }
  assert_true(checked > progs * 150);
  /* hand-checked: d/dx of 3*x^2 - tanh(x) at 0.5 */
  parse_ok("3*x^2 - tanh(x)", &p);
  float x1 = 0.5f, y1, d1;
  nl_eval_dx(&p, &x1, &y1, &d1, 1, &ws);
  double t = tanh(0.5);
  assert_true(fabs(d1 - (3.0 - (1 - t * t))) < 1e-6);
  nl_prog_free(&p);
  nl_eval_ws_free(&ws);
}

/* MSE gradient and Jacobian with respect to the constants against central
 * differences of the double-precision MSE. */
static double mse_ref(const nl_prog *p, const float *x, const float *y, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    double r = nl_eval1(p, x[i]) - y[i];
    s += r * r;
  }
  return s / (double)n;
}

static void test_mse_grad_and_jac(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 41);
  nl_prog p;
  nl_prog_init(&p);
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, 8);
  gen_opts o = {1, 1, 0};
  const size_t n = 700; /* three chunks, the last partial */
  float *x = nl_xmalloc(sizeof(float) * n), *y = nl_xmalloc(sizeof(float) * n);
  float *out = nl_xmalloc(sizeof(float) * n);
  int progs = quick() ? 100 : 400, checked = 0;
  for (int t = 0; t < progs; t++) {
    gen(&p, &r, 1 + (int)nl_rng_below(&r, 4), &o);
    int nc = nl_prog_nconst(&p);
    for (size_t i = 0; i < n; i++) {
      x[i] = (float)(nl_rng_uniform(&r) * 6.0 - 3.0);
      y[i] = (float)(nl_rng_uniform(&r) * 2.0 - 1.0);
    }
    double m0 = mse_ref(&p, x, y, n);
    if (!isfinite(m0) || m0 > 1e6 || nc == 0) continue;
    float *g = nl_xmalloc(sizeof(float) * (size_t)nc), *c = nl_xmalloc(sizeof(float) * (size_t)nc);
    float *jac = nl_xmalloc(sizeof(float) * (size_t)nc * n);
    double m = nl_mse_grad(&p, x, y, n, g, &ws);
    assert_true(fabs(m - m0) <= 1e-4 * (1 + m0));
    nl_eval_jac(&p, x, out, jac, n, &ws);
    nl_prog_get_consts(&p, c);
    for (int k = 0; k < nc; k++) {
      float c0 = c[k];
      double h = 1e-3 * (1 + fabs(c0));
      float cp = (float)(c0 + h), cm = (float)(c0 - h);
      c[k] = cp;
      nl_prog_set_consts(&p, c);
      double mp = mse_ref(&p, x, y, n);
      c[k] = cm;
      nl_prog_set_consts(&p, c);
      double mm = mse_ref(&p, x, y, n);
      c[k] = c0;
      nl_prog_set_consts(&p, c);
      double fd = (mp - mm) / ((double)cp - (double)cm);
      /* curvature check: skip where the step is too coarse */
      float cp2 = (float)(c0 + h / 2), cm2 = (float)(c0 - h / 2);
      c[k] = cp2;
      nl_prog_set_consts(&p, c);
      double mp2 = mse_ref(&p, x, y, n);
      c[k] = cm2;
      nl_prog_set_consts(&p, c);
      double mm2 = mse_ref(&p, x, y, n);
      c[k] = c0;
      nl_prog_set_consts(&p, c);
      double fd2 = (mp2 - mm2) / ((double)cp2 - (double)cm2);
      if (!isfinite(fd) || fabs(fd - fd2) > 1e-3 * (1 + fabs(fd))) continue;
      checked++;
      if (fabs(g[k] - fd2) > 2e-3 * (1 + fabs(fd2))) {
        char *s = nl_print(&p, NL_PRINT_EXACT);
        fail_msg("dMSE/dc%d of %s: %.9g, finite differences %.9g", k, s, g[k], fd2);
      }
      /* Jacobian column at a few points */
      for (size_t i = 0; i < n; i += 97) {
        c[k] = cp2;
        nl_prog_set_consts(&p, c);
        double fp = nl_eval1(&p, x[i]);
        c[k] = cm2;
        nl_prog_set_consts(&p, c);
        double fm = nl_eval1(&p, x[i]);
        c[k] = c0;
        nl_prog_set_consts(&p, c);
        double jd = (fp - fm) / ((double)cp2 - (double)cm2);
        if (!isfinite(jd) || fabs(jd) > 1e4) continue;
        if (fabs(jac[(size_t)k * n + i] - jd) > 5e-3 * (1 + fabs(jd)))
          fail_msg("jac[%d][%zu]: %.9g, finite differences %.9g", k, i, jac[(size_t)k * n + i],
                   jd);
      }
    }
    free(g);
    free(c);
    free(jac);
  }
  assert_true(checked > progs / 2);
  /* hand-checked: f = a*x + b, y = 0: dMSE/da = 2 mean((a x + b) x), dMSE/db = 2 mean(a x + b) */
  parse_ok("2*x + 1", &p);
  float xs[3] = {1, 2, 3}, ys[3] = {0, 0, 0}, g2[2];
  double mse = nl_mse_grad(&p, xs, ys, 3, g2, &ws);
  assert_true(fabs(mse - (9.0 + 25.0 + 49.0) / 3.0) < 1e-5);
  assert_true(fabs(g2[0] - 2.0 * (3 * 1 + 5 * 2 + 7 * 3) / 3.0) < 1e-4);
  assert_true(fabs(g2[1] - 2.0 * (3 + 5 + 7) / 3.0) < 1e-4);
  assert_true(nl_mse_grad(&p, xs, ys, 0, g2, &ws) == 0.0 && g2[0] == 0.0f);
  /* kinks: clip(x, lo, hi) and abs(x - c), derivatives by hand:
   * dMSE/dlo = 2 mean(f [x < lo]), dMSE/dhi = 2 mean(f [x > hi]),
   * dMSE/dc of abs(x - c)^2 = 2 mean(|x - c| * -sign(x - c)) */
  float gx[9], gy[9], g3[3];
  for (int i = 0; i < 9; i++) {
    gx[i] = -2.0f + 0.5f * (float)i; /* -2 .. 2, none at the kinks */
    gy[i] = 0.0f;
  }
  parse_ok("clip(x, -0.75, 1.25)", &p);
  nl_mse_grad(&p, gx, gy, 9, g3, &ws);
  double glo = 0, ghi = 0, gc = 0;
  for (int i = 0; i < 9; i++) {
    if (gx[i] < -0.75) glo += 2 * -0.75 / 9;
    if (gx[i] > 1.25) ghi += 2 * 1.25 / 9;
  }
  assert_true(fabs(g3[0] - glo) < 1e-6 && fabs(g3[1] - ghi) < 1e-6);
  parse_ok("abs(x - 0.3)", &p);
  nl_mse_grad(&p, gx, gy, 9, g3, &ws);
  for (int i = 0; i < 9; i++) gc += 2 * fabs(gx[i] - 0.3) * (gx[i] > 0.3 ? -1 : 1) / 9;
  assert_true(fabs(g3[0] - gc) < 1e-5);
  nl_prog_free(&p);
  nl_eval_ws_free(&ws);
  free(x);
  free(y);
  free(out);
}

/* ---- expression sets ---- */
static void test_exprset(void **state) {
  (void)state;
  const char *text =
      "# a set\n"
      "\n"
      "blocks.0.norm1 = 0.698*clip(2.31*x)   # clip-based\r\n"
      "  blocks.0.norm2=tanh(x)#no space\n"
      "norm = x^2 + 1\n"
      "   # indented comment\n";
  nl_exprset s;
  nl_exprset_init(&s);
  nl_error e;
  nl_error_clear(&e);
  if (nl_exprset_parse(text, "t.exprs", &s, &e) != 0) fail_msg("%s", e.msg);
  assert_int_equal(s.n, 3);
  assert_string_equal(s.e[0].name, "blocks.0.norm1");
  assert_string_equal(s.e[0].comment, "clip-based");
  assert_string_equal(s.e[1].name, "blocks.0.norm2");
  assert_string_equal(s.e[1].comment, "no space");
  assert_null(s.e[2].comment);
  assert_true(fabs(nl_eval1(&s.e[0].prog, 1.0) - 0.698f * 2.31f) < 1e-6);
  assert_true(fabs(nl_eval1(&s.e[2].prog, 3.0) - 10.0) < 1e-12);
  const nl_exprset_entry *f = nl_exprset_find(&s, "norm");
  assert_non_null(f);
  assert_null(nl_exprset_find(&s, "nope"));
  /* save and load: same names, comments and values */
  char path[] = "/tmp/normlab-expr-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  nl_prog p;
  nl_prog_init(&p);
  parse_ok("0.123456789*x - 1e-7", &p);
  nl_exprset_set(&s, "extra", &p, "added\nlater");
  parse_ok("x", &p);
  nl_exprset_set(&s, "norm", &p, NULL); /* replaces */
  assert_int_equal(s.n, 4);
  assert_int_equal(nl_exprset_save(&s, path, &e), 0);
  nl_exprset t;
  nl_exprset_init(&t);
  if (nl_exprset_load(path, &t, &e) != 0) fail_msg("%s", e.msg);
  assert_int_equal(t.n, 4);
  for (int i = 0; i < 4; i++) {
    assert_string_equal(s.e[i].name, t.e[i].name);
    for (double x = -3; x <= 3; x += 0.25)
      assert_true(nl_eval1(&s.e[i].prog, x) == nl_eval1(&t.e[i].prog, x));
  }
  assert_string_equal(t.e[3].comment, "added later");
  /* what cannot be read back is not written */
  s.e[0].prog.nodes[0].val = INFINITY;
  assert_int_equal(nl_exprset_save(&s, path, &e), -1);
  assert_non_null(strstr(e.msg, "not finite"));
  assert_true(fabs(nl_eval1(&t.e[2].prog, 2.0) - 2.0) < 1e-12);
  unlink(path);
  nl_exprset_free(&t);
  nl_exprset_free(&s);
  nl_prog_free(&p);

  /* errors name the file, line and column */
  struct {
    const char *text, *want;
  } bad[] = {
      {"a = x\nb x + 1\n", "f.exprs:2:1: expected 'NAME = EXPR'"},
      {"a = x\n = x\n", "f.exprs:2:2: missing layer name"},
      {"a b = x\n", "f.exprs:1:2: invalid character in layer name"},
      {"a = x\n\nb = x\na = tanh(x)\n", "f.exprs:4:1: duplicate layer name 'a' (first defined on line 1)"},
      {"a = x\nlayer.1 = 2*foo(x)  # c\n", "f.exprs:2:13: unknown function 'foo'"},
      {"a =   # nothing\n", "f.exprs:1:7: empty expression"},
      {"a = x +\n", "f.exprs:1:8: unexpected end of input"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    nl_exprset_init(&s);
    nl_error_clear(&e);
    assert_int_equal(nl_exprset_parse(bad[k].text, "f.exprs", &s, &e), -1);
    assert_int_equal(e.code, NL_EINPUT);
    if (strncmp(e.msg, bad[k].want, strlen(bad[k].want)) != 0)
      fail_msg("got '%s', expected '%s'", e.msg, bad[k].want);
    nl_exprset_free(&s);
  }
  /* the caret sits under the fault in the whole line */
  nl_exprset_init(&s);
  assert_int_equal(nl_exprset_parse("layer.1 = 2*foo(x)\n", "f.exprs", &s, &e), -1);
  const char *l3 = strrchr(e.msg, '\n');
  assert_string_equal(l3 + 1, "                ^"); /* 4 + 12 spaces */
  assert_non_null(strstr(e.msg, "\n    layer.1 = 2*foo(x)\n"));
  nl_exprset_free(&s);
  assert_int_equal(nl_exprset_load("/nonexistent/x.exprs", &s, &e), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cost_examples),
      cmocka_unit_test(test_prog_basics),
      cmocka_unit_test(test_parse_values),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_print),
      cmocka_unit_test(test_roundtrip_random),
      cmocka_unit_test(test_print_c_and_torch_run),
      cmocka_unit_test(test_simplify_identities),
      cmocka_unit_test(test_simplify_defect_examples),
      cmocka_unit_test(test_simplify_keeps_nan),
      cmocka_unit_test(test_simplify_twins),
      cmocka_unit_test(test_simplify_property),
      cmocka_unit_test(test_constants_tiny),
      cmocka_unit_test(test_eval_approximations),
      cmocka_unit_test(test_eval_batched),
      cmocka_unit_test(test_eval_nan),
      cmocka_unit_test(test_eval_dx),
      cmocka_unit_test(test_mse_grad_and_jac),
      cmocka_unit_test(test_exprset),
  };
  return cmocka_run_group_tests_name("expr", tests, NULL, NULL);
}
