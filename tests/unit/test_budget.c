/* Cost-aware choice and the human in the loop: evolve --select budget=F
 * never picks a member above the budget (property test over random
 * fronts, the cost counted by hand on the printed simplified tree), the
 * Levenberg-Marquardt re-fit recovers generating constants from noisy
 * points, seeds of the initial population win on data they generate, an
 * injected expression reaches a running search, the fronts' origin column
 * (and old files without it), the search-time FLOP limit and the option
 * parsers' errors. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/rng.h"
#include "model/maps.h"
#include "search/campaign_opts.h"
#include "search/fit.h"
#include "search/fronts.h"
#include "search/gp.h"

static int quick(void) { return getenv("NL_TEST_QUICK") != NULL; }

/* ---- the cost of printed text, counted by hand ----
 * Appendix F's table: tanh 23, sigmoid 22, exp 19, + - * / 1 each, x^n
 * n-1 multiplications, neg, abs and clip 0. A '-' is binary when the text
 * before it (spaces skipped) ends an operand: a digit, x, ')' or a letter
 * that is not the 'e' of a number's exponent. */
static int text_cost(const char *s) {
  int cost = 0;
  for (const char *p = s; *p; p++) {
    if (strncmp(p, "tanh(", 5) == 0) cost += 23, p += 4;
    else if (strncmp(p, "sigmoid(", 8) == 0) cost += 22, p += 7;
    else if (strncmp(p, "exp(", 4) == 0) cost += 19, p += 3;
    else if (strncmp(p, "abs(", 4) == 0) p += 3;
    else if (strncmp(p, "clip(", 5) == 0) p += 4;
    else if (*p == '+' || *p == '*' || *p == '/') {
      /* '+' of an exponent (1e+30) belongs to the number */
      if (*p == '+' && p > s && (p[-1] == 'e' || p[-1] == 'E') && p - 1 > s && isdigit((unsigned char)p[-2])) continue;
      cost++;
    } else if (*p == '-') {
      if (p > s && (p[-1] == 'e' || p[-1] == 'E') && p - 1 > s &&
          (isdigit((unsigned char)p[-2]) || p[-2] == '.'))
        continue; /* 1e-05 */
      const char *q = p - 1;
      while (q >= s && *q == ' ') q--;
      if (q >= s && (isalnum((unsigned char)*q) || *q == ')' || *q == '.')) cost++;
    } else if (*p == '^') {
      int n = atoi(p + 1);
      cost += n > 1 ? n - 1 : 0;
    }
  }
  return cost;
}

static void test_text_cost_by_hand(void **state) {
  (void)state;
  assert_int_equal(text_cost("x"), 0);
  assert_int_equal(text_cost("-x"), 0);
  assert_int_equal(text_cost("x - 1e-05"), 1);
  assert_int_equal(text_cost("-0.5*x + tanh(x)"), 25);
  assert_int_equal(text_cost("x^3 - -2"), 3);
  assert_int_equal(text_cost("clip(x, -1, 2)*1.5e+20"), 1);
  assert_int_equal(text_cost("sigmoid(exp(x)/abs(x))"), 42);
}

/* A random program: operators of the whole registry, constants, x. */
static void random_prog(nl_rng *r, nl_prog *p, int depth) {
  if (depth <= 1 || nl_rng_uniform(r) < 0.25) {
    double u = nl_rng_uniform(r);
    if (u < 0.5) nl_prog_push(p, NL_OP_X, 0, 0);
    else if (u < 0.6) nl_prog_push(p, NL_OP_CONST, (float)(1 + nl_rng_below(r, 3)), 0);
    else nl_prog_push(p, NL_OP_CONST, (float)(2 * nl_rng_normal(r)), 0);
    return;
  }
  static const nl_op ops[] = {NL_OP_ADD, NL_OP_SUB, NL_OP_MUL, NL_OP_DIV, NL_OP_NEG,
                              NL_OP_POW, NL_OP_TANH, NL_OP_SIGMOID, NL_OP_EXP, NL_OP_ABS,
                              NL_OP_CLIP, NL_OP_CLIP3, NL_OP_MUL, NL_OP_ADD};
  nl_op op = ops[nl_rng_below(r, sizeof ops / sizeof ops[0])];
  for (int k = 0; k < nl_ops[op].arity; k++) random_prog(r, p, depth - 1);
  nl_prog_push(p, op, 0, op == NL_OP_POW ? (int32_t)(1 + nl_rng_below(r, 4)) : 0);
}

/* The cost of a program counted by hand: simplified as a fronts file
 * holds it, printed, counted on the text. */
static int hand_cost(const nl_prog *p) {
  nl_prog q;
  nl_prog_init(&q);
  nl_prog_copy(&q, p);
  nl_simplify(&q);
  char *t = nl_print(&q, NL_PRINT_EXACT);
  int c = text_cost(t);
  free(t);
  nl_prog_free(&q);
  return c;
}

/* Over many random fronts (unsimplified programs, flops columns that lie)
 * budget=ln and budget=F pick the lowest validation fitness among the
 * members within the budget and never one above it; with none within,
 * nothing, and the cheapest cost is reported. Both the member-array and
 * the fronts-file (text) selectors. */
static void test_budget_property(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_stream(&r, 13, 1);
  int fronts = quick() ? 150 : 600, picked = 0, none = 0;
  for (int f = 0; f < fronts; f++) {
    int n = 1 + (int)nl_rng_below(&r, 14);
    nl_gp_member *m = calloc((size_t)n, sizeof *m);
    nl_front_member *fm = calloc((size_t)n, sizeof *fm);
    int *cost = calloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) {
      nl_prog_init(&m[i].prog);
      random_prog(&r, &m[i].prog, 2 + (int)nl_rng_below(&r, 4));
      cost[i] = hand_cost(&m[i].prog);
      m[i].nodes = m[i].prog.len;
      m[i].flops = 0; /* a lie the selector must not believe */
      m[i].val_fitness = nl_rng_uniform(&r);
      fm[i].layer = "L";
      fm[i].expr = nl_print(&m[i].prog, NL_PRINT_EXACT); /* unsimplified text */
      fm[i].nodes = m[i].nodes;
      fm[i].flops = 0;
      fm[i].val_fitness = m[i].val_fitness;
      fm[i].val_mse = m[i].val_fitness;
    }
    int d = f % 3 == 0 ? 1 + (int)nl_rng_below(&r, 3) : 3 + (int)nl_rng_below(&r, 1000);
    double lim = f % 2 ? 5.0 + 2.0 / d : (double)nl_rng_below(&r, 40);
    if (f % 2) assert_true(fabs(nl_gp_limit(NL_GP_LN, d) - lim) < 1e-12);
    int want = -1, low = -1;
    for (int i = 0; i < n; i++) {
      if (low < 0 || cost[i] < low) low = cost[i];
      if (cost[i] <= lim &&
          (want < 0 || m[i].val_fitness < m[want].val_fitness ||
           (m[i].val_fitness == m[want].val_fitness && m[i].nodes < m[want].nodes)))
        want = i;
    }
    int cheap = -2, cheap2 = -2;
    int got = nl_gp_select_within(m, n, lim, &cheap);
    nl_error e;
    nl_error_clear(&e);
    int got2 = nl_fronts_select_within(fm, (size_t)n, lim, &cheap2, &e);
    if (got >= 0) {
      assert_true(cost[got] <= lim);
      picked++;
    } else {
      none++;
    }
    assert_int_equal(got, want);
    assert_int_equal(cheap, low);
    /* the text went through print and parse: the same member */
    assert_int_equal(got2, want);
    assert_int_equal(cheap2, low);
    for (int i = 0; i < n; i++) {
      nl_prog_free(&m[i].prog);
      free(fm[i].expr);
    }
    free(m);
    free(fm);
    free(cost);
  }
  /* the property was exercised both ways */
  assert_true(picked > fronts / 10 && none > 0);
}

/* A front whose only members are above LayerNorm's budget: nothing is
 * chosen, and the cheapest cost is the hand count (tanh 23 + one mul). */
static void test_budget_none(void **state) {
  (void)state;
  nl_front_member fm[2] = {{.layer = "L", .expr = "tanh(2*x)", .val_fitness = 0.1},
                           {.layer = "L", .expr = "sigmoid(x) + x", .val_fitness = 0.05}};
  int cheap = -1;
  nl_error e;
  nl_error_clear(&e);
  assert_int_equal(nl_fronts_select_within(fm, 2, nl_gp_limit(NL_GP_LN, 192), &cheap, &e), -1);
  assert_int_equal(cheap, 23);
  /* a constant subtree folds: (2 + 3)*x costs 1 after simplification */
  nl_front_member f2[1] = {{.layer = "L", .expr = "(2 + 3)*x + (1 + 1)*x*0 + x*x*x", .val_fitness = 1}};
  assert_int_equal(nl_fronts_select_within(f2, 1, 5.0, &cheap, &e), 0);
  nl_front_member f3[1] = {{.layer = "L", .expr = "x +* 2", .val_fitness = 1}};
  assert_int_equal(nl_fronts_select_within(f3, 1, 5.0, &cheap, &e), -2);
  assert_int_equal(e.code, NL_EINPUT);
}

/* ---- the re-fit ---- */

/* y = a x + b clip(x, lo, hi) + noise: the Levenberg-Marquardt re-fit,
 * started from other constants, recovers the generating ones. */
static void test_polish_recovers(void **state) {
  (void)state;
  const double a = 0.45, b = 1.6, lo = -1.2, hi = 0.9, sigma = 0.05;
  size_t n = 20000;
  float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
  nl_rng r;
  nl_rng_stream(&r, 7, 3);
  for (size_t i = 0; i < n; i++) {
    double xi = 6.0 * nl_rng_uniform(&r) - 3.0;
    double c = xi < lo ? lo : xi > hi ? hi : xi;
    x[i] = (float)xi;
    y[i] = (float)(a * xi + b * c + sigma * nl_rng_normal(&r));
  }
  nl_prog p;
  nl_prog_init(&p);
  nl_error e;
  /* written with a constant subtree (folded first) and off constants */
  assert_int_equal(nl_parse("(0.25 + 0.05)*x + 1.2*clip(x, -0.8, 0.6)", 1, &p, &e), 0);
  nl_gp_config c;
  nl_gp_config_default(&c);
  c.penalty = 0; /* plain least squares: the generating constants are the optimum */
  nl_fit_polish_info info;
  assert_int_equal(nl_fit_polish(&p, &c, "L", x, y, n, 100, &info), 1);
  assert_true(info.kept);
  assert_true(info.val_after <= info.val_before);
  /* the noise sets the floor: validation MSE close to sigma^2 */
  assert_true(info.val_mse < 1.1 * sigma * sigma);
  assert_true(info.val_r2 > 0.99);
  float k[8];
  assert_int_equal(nl_prog_nconst(&p), 4); /* folded: a, b, lo, hi */
  nl_prog_get_consts(&p, k);
  assert_true(fabs(k[0] - a) < 0.01);
  assert_true(fabs(k[1] - b) < 0.01);
  assert_true(fabs(k[2] - lo) < 0.02);
  assert_true(fabs(k[3] - hi) < 0.02);
  /* already at the optimum: a second re-fit changes nothing measurable */
  nl_fit_polish(&p, &c, "L", x, y, n, 100, &info);
  assert_true(info.val_after <= info.val_before);
  nl_prog_free(&p);
  free(x);
  free(y);
}

/* ---- seeds, injection, origins ---- */

static void synth(float **x, float **y, size_t n) {
  *x = malloc(sizeof(float) * n);
  *y = malloc(sizeof(float) * n);
  nl_rng r;
  nl_rng_stream(&r, 11, 5);
  for (size_t i = 0; i < n; i++) {
    double xi = 4.0 * nl_rng_uniform(&r) - 2.0;
    double c = xi < -0.7 ? -0.7 : xi > 0.5 ? 0.5 : xi;
    (*x)[i] = (float)xi;
    (*y)[i] = (float)(0.3 * xi + 1.7 * c); /* no noise: the generator is exact */
  }
}

/* The exact generating function, given as a seed, wins: the chosen
 * member (minval) has origin seed and a validation R^2 of 1. */
static void test_seed_wins(void **state) {
  (void)state;
  size_t n = 3000;
  float *x, *y;
  synth(&x, &y, n);
  nl_prog seed;
  nl_prog_init(&seed);
  nl_error e;
  assert_int_equal(nl_parse("0.3*x + 1.7*clip(x, -0.7, 0.5)", 1, &seed, &e), 0);
  nl_gp_config c;
  nl_gp_config_default(&c);
  c.pop = 40;
  c.gens = 4;
  c.threads = 1;
  c.penalty = 0;
  nl_gp_extra xt = {&seed, 1, NULL, NULL};
  nl_gp_result res;
  assert_int_equal(nl_gp_run_with(&c, &xt, "L", x, y, n, 0, NULL, NULL, &res, &e), 0);
  assert_true(res.chosen >= 0);
  assert_int_equal(res.front[res.chosen].origin, NL_GP_ORIGIN_SEED);
  assert_true(res.front[res.chosen].val_r2 > 1 - 1e-9);
  /* without the seed the search does not find it in 4 generations */
  nl_gp_result r2;
  assert_int_equal(nl_gp_run(&c, "L", x, y, n, 0, NULL, NULL, &r2, &e), 0);
  for (int i = 0; i < r2.nfront; i++) assert_int_equal(r2.front[i].origin, NL_GP_ORIGIN_SEARCH);
  assert_true(r2.front[r2.chosen].val_r2 < res.front[res.chosen].val_r2);
  nl_gp_result_free(&r2);
  nl_gp_result_free(&res);
  nl_prog_free(&seed);
  free(x);
  free(y);
}

typedef struct {
  const char *text;
  int calls, given;
  int at_gen; /* give it on this call */
} inj;

static int give(const char *layer, nl_prog *out, void *u) {
  inj *j = u;
  assert_string_equal(layer, "L");
  if (j->given || j->calls++ < j->at_gen) return 0;
  nl_error e;
  assert_int_equal(nl_parse(j->text, 1, out, &e), 0);
  j->given = 1;
  return 1;
}

/* An expression injected while the search runs joins it and, being exact,
 * ends up chosen with origin injected. */
static void test_inject_joins(void **state) {
  (void)state;
  size_t n = 3000;
  float *x, *y;
  synth(&x, &y, n);
  nl_gp_config c;
  nl_gp_config_default(&c);
  c.pop = 40;
  c.gens = 5;
  c.threads = 1;
  c.penalty = 0;
  inj j = {"0.3*x + 1.7*clip(x, -0.7, 0.5)", 0, 0, 2};
  nl_gp_extra xt = {NULL, 0, give, &j};
  nl_gp_result res;
  nl_error e;
  assert_int_equal(nl_gp_run_with(&c, &xt, "L", x, y, n, 0, NULL, NULL, &res, &e), 0);
  assert_int_equal(j.given, 1);
  assert_int_equal(res.front[res.chosen].origin, NL_GP_ORIGIN_INJECTED);
  assert_true(res.front[res.chosen].val_r2 > 1 - 1e-9);
  nl_gp_result_free(&res);
  free(x);
  free(y);
}

/* The fronts files carry the origin; an older file without the column
 * reads as the search's; a bad origin is an error naming file and line. */
static void test_fronts_origin(void **state) {
  (void)state;
  char dir[] = "/tmp/nl-budget-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/a.csv", dir);
  FILE *f = fopen(path, "w");
  fprintf(f, "%s\n", nl_gp_csv_header);
  nl_gp_member m[2];
  memset(m, 0, sizeof m);
  nl_error e;
  nl_prog_init(&m[0].prog);
  nl_prog_init(&m[1].prog);
  nl_parse("x", 1, &m[0].prog, &e);
  nl_parse("2*x", 1, &m[1].prog, &e);
  m[1].origin = NL_GP_ORIGIN_INJECTED;
  nl_fronts_write_rows(f, "L", 0, m, 2);
  fclose(f);
  snprintf(path, sizeof path, "%s/b.csv", dir);
  f = fopen(path, "w");
  fprintf(f, "layer,seed,rank,nodes,flops,train_fitness,val_fitness,val_mse,val_r2,expr\n"
             "M,0,1,1,0,1,1,1,0.5,\"x\"\n");
  fclose(f);
  nl_fronts fr;
  assert_int_equal(nl_fronts_read(dir, NULL, &fr, &e), 0);
  assert_int_equal((int)fr.n, 3);
  assert_int_equal(fr.m[0].origin, NL_GP_ORIGIN_SEARCH);
  assert_int_equal(fr.m[1].origin, NL_GP_ORIGIN_INJECTED);
  assert_string_equal(fr.m[2].layer, "M");
  assert_int_equal(fr.m[2].origin, NL_GP_ORIGIN_SEARCH);
  nl_fronts_free(&fr);
  f = fopen(path, "w");
  fprintf(f, "layer,expr,origin\nM,x,handmade\n");
  fclose(f);
  assert_int_equal(nl_fronts_read(dir, NULL, &fr, &e), -1);
  assert_int_equal(e.code, NL_EINPUT);
  assert_non_null(strstr(e.msg, "b.csv:2"));
  assert_non_null(strstr(e.msg, "handmade"));
  unlink(path);
  snprintf(path, sizeof path, "%s/a.csv", dir);
  unlink(path);
  rmdir(dir);
  nl_prog_free(&m[0].prog);
  nl_prog_free(&m[1].prog);
}

/* ---- the search-time limit ---- */

/* Under --max-flops ln every front member costs at most 5 (hand count)
 * and has clip bounds free of x; the piecewise-linear target is fitted. */
static void test_max_flops_search(void **state) {
  (void)state;
  size_t n = 3000;
  float *x, *y;
  synth(&x, &y, n);
  nl_gp_config c;
  nl_gp_config_default(&c);
  c.pop = quick() ? 60 : 150;
  c.gens = quick() ? 6 : 15;
  c.threads = 1;
  c.max_flops = NL_GP_LN;
  c.width = 192;
  c.select = NL_GP_BUDGET;
  c.budget = NL_GP_LN;
  nl_gp_result res;
  nl_error e;
  assert_int_equal(nl_gp_run(&c, "L", x, y, n, 0, NULL, NULL, &res, &e), 0);
  assert_true(res.nfront > 0);
  int clip3 = 0;
  for (int i = 0; i < res.nfront; i++) {
    assert_true(hand_cost(&res.front[i].prog) <= 5);
    const nl_prog *p = &res.front[i].prog;
    for (int k = 0; k < p->len; k++) {
      if (p->nodes[k].op != NL_OP_CLIP3) continue;
      clip3++;
      int hi = k - 1, lo = hi - p->nodes[hi].size;
      for (int j = lo - p->nodes[lo].size + 1; j < k; j++) assert_int_not_equal(p->nodes[j].op, NL_OP_X);
    }
  }
  assert_true(clip3 > 0); /* the bounded clip was drawn */
  assert_true(res.chosen >= 0);
  assert_true(res.front[res.chosen].val_r2 > 0.95);
  nl_gp_result_free(&res);
  free(x);
  free(y);
}

/* ---- options ---- */

static void test_select_parse(void **state) {
  (void)state;
  nl_gp_campaign_opts o;
  nl_gp_campaign_opts_init(&o);
  nl_error e;
  assert_int_equal(nl_gp_campaign_opts_set(&o, "select", "budget=ln", &e), 0);
  assert_int_equal(o.cfg.select, NL_GP_BUDGET);
  assert_true(o.cfg.budget == NL_GP_LN);
  assert_int_equal(nl_gp_campaign_opts_set(&o, "select", "budget=7.5", &e), 0);
  assert_true(o.cfg.budget == 7.5);
  assert_int_equal(nl_gp_campaign_opts_set(&o, "select", "knee", &e), 0);
  assert_int_equal(o.cfg.select, NL_GP_KNEE);
  const char *bad[] = {"budget=", "budget=0", "budget=-3", "budget=abc", "budget=inf",
                       "budget=nan", "budget", "cheap", "budget=5x", "budget=LN"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(nl_gp_campaign_opts_set(&o, "select", bad[i], &e), -1);
    assert_int_equal(e.code, NL_EINPUT);
    assert_non_null(strstr(e.msg, "--select"));
  }
  assert_int_equal(nl_gp_campaign_opts_set(&o, "max_flops", "ln", &e), 0);
  assert_true(o.cfg.max_flops == NL_GP_LN);
  assert_int_equal(nl_gp_campaign_opts_set(&o, "max-flops", "9", &e), 0);
  assert_true(o.cfg.max_flops == 9);
  assert_int_equal(nl_gp_campaign_opts_set(&o, "max-flops", "-1", &e), -1);
  assert_non_null(strstr(e.msg, "--max-flops"));
  assert_int_equal(nl_gp_campaign_opts_set(&o, "max-flops", "x", &e), -1);
  assert_int_equal(nl_gp_campaign_opts_set(&o, "init", "seeds.exprs", &e), 0);
  assert_string_equal(o.init, "seeds.exprs");
  nl_gp_campaign_opts_free(&o);
  char buf[32];
  nl_gp_selection_format(NL_GP_BUDGET, NL_GP_LN, buf, sizeof buf);
  assert_string_equal(buf, "budget=ln");
  nl_gp_selection_format(NL_GP_BUDGET, 12, buf, sizeof buf);
  assert_string_equal(buf, "budget=12");
}

int main(void) {
  const struct CMUnitTest t[] = {
      cmocka_unit_test(test_text_cost_by_hand), cmocka_unit_test(test_budget_property),
      cmocka_unit_test(test_budget_none),       cmocka_unit_test(test_polish_recovers),
      cmocka_unit_test(test_seed_wins),         cmocka_unit_test(test_inject_joins),
      cmocka_unit_test(test_fronts_origin),     cmocka_unit_test(test_max_flops_search),
      cmocka_unit_test(test_select_parse),
  };
  return cmocka_run_group_tests(t, NULL, NULL);
}
