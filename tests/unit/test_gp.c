/* The GP search: NSGA-II ranks and crowding on a hand-computed toy set,
 * the fitness formula and its gradient, variation limits, selection,
 * determinism across thread counts, campaign resume, and an end-to-end
 * search on synthetic data with a known noise ceiling. */
#define _POSIX_C_SOURCE 200809L
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

#include "app/cmd.h"
#include "base/fileio.h"
#include "base/rng.h"
#include "base/threads.h"
#include "model/maps.h"
#include "search/campaign_opts.h"
#include "search/gp.h"
#include "search/gp_local.h"

static int quick(void) { return getenv("NL_TEST_QUICK") != NULL; }

/* Seven points; by hand: front 1 = {A, B, G, C}, front 2 = {D, F},
 * front 3 = {E}. Crowding in front 1: objective 1 order A B G C (range 3),
 * objective 2 order C G B A (range 4): B = (3-1)/3 + (5-2)/4 = 17/12,
 * G = (4-2)/3 + (3-1)/4 = 7/6, A and C infinite. */
static void test_nsga2_toy(void **state) {
  (void)state;
  /*                 A     B     C     G     D     E     F */
  const double o[] = {1, 5, 2, 3, 4, 1, 3, 2, 3, 4, 5, 5, 2, 6};
  int rank[7];
  assert_int_equal(nl_nsga2_rank(o, 7, 2, rank), 3);
  const int want[7] = {1, 1, 1, 1, 2, 3, 2};
  for (int i = 0; i < 7; i++) assert_int_equal(rank[i], want[i]);
  const int f1[4] = {0, 1, 2, 3};
  double cr[4];
  nl_nsga2_crowding(o, 2, f1, 4, cr);
  assert_true(isinf(cr[0]) && isinf(cr[2]));
  assert_true(fabs(cr[1] - 17.0 / 12.0) < 1e-12);
  assert_true(fabs(cr[3] - 7.0 / 6.0) < 1e-12);
  const int f2[2] = {4, 6};
  nl_nsga2_crowding(o, 2, f2, 2, cr);
  assert_true(isinf(cr[0]) && isinf(cr[1]));
  /* NaN counts as +inf: dominated by everything finite with the same complexity */
  const double o2[] = {NAN, 1, 0.5, 1};
  assert_int_equal(nl_nsga2_rank(o2, 2, 2, rank), 2);
  assert_int_equal(rank[0], 2);
  assert_int_equal(rank[1], 1);
}

/* Ranks of random point sets (with ties and infinities) against the
 * definition: rank = 1 + the largest rank among the points dominating it. */
static void test_nsga2_random(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 3);
  for (int rep = 0; rep < 200; rep++) {
    int n = 1 + (int)nl_rng_below(&r, 60), m = rep % 3 == 0 ? 3 : 2;
    double o[60 * 3];
    for (int i = 0; i < n * m; i++) {
      o[i] = (double)nl_rng_below(&r, 8);
      if (nl_rng_below(&r, 50) == 0) o[i] = INFINITY;
    }
    int rank[60], want[60];
    nl_nsga2_rank(o, n, m, rank);
    for (int i = 0; i < n; i++) want[i] = 0;
    for (int pass = 0; pass < n; pass++)
      for (int i = 0; i < n; i++) {
        int w = 1;
        for (int j = 0; j < n; j++) {
          int le = 1, lt = 0;
          for (int k = 0; k < m; k++) {
            if (o[j * m + k] > o[i * m + k]) le = 0;
            if (o[j * m + k] < o[i * m + k]) lt = 1;
          }
          if (le && lt && want[j] + 1 > w) w = want[j] + 1;
        }
        want[i] = w;
      }
    for (int i = 0; i < n; i++) assert_int_equal(rank[i], want[i]);
  }
}

static void parse(const char *s, nl_prog *p) {
  nl_error e;
  nl_prog_init(p);
  assert_int_equal(nl_parse(s, 1, p, &e), 0);
}

/* f = 3x on x = {-1, 0, 1, 2}, y = 0: MSE = (9 + 0 + 9 + 36) / 4 = 13.5;
 * with gamma = 0.005, delta = 4: penalty 0.0025 * (144 + 144) = 0.72. */
static void test_penalty_formula(void **state) {
  (void)state;
  nl_prog p;
  parse("3*x", &p);
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, 8);
  const float x[4] = {-1, 0, 1, 2}, y[4] = {0, 0, 0, 0};
  assert_true(fabs(nl_gp_penalty(&p, 0.005, 4.0, &ws) - 0.72) < 1e-9);
  assert_true(fabs(nl_gp_fitness(&p, x, y, 4, 0.005, 4.0, &ws) - 14.22) < 1e-6);
  assert_true(fabs(nl_gp_fitness(&p, x, y, 4, 0.0, 4.0, &ws) - 13.5) < 1e-6);
  /* a bounded function pays at most gamma * 25 with clip */
  nl_prog q;
  parse("clip(100*x)", &q);
  assert_true(fabs(nl_gp_penalty(&q, 0.005, 1e6, &ws) - 0.005 * 25) < 1e-9);
  /* the gradient of F in the constants, penalty included, against central
   * differences of F computed in double precision */
  nl_prog r;
  parse("1.3*tanh(0.7*x + 0.2) + 0.4*x", &r);
  float xs[64], ys[64];
  for (int i = 0; i < 64; i++) {
    xs[i] = -3.0f + 6.0f * (float)i / 63.0f;
    ys[i] = tanhf(2 * xs[i]);
  }
  const double gamma = 0.05, delta = 6.0;
  int nc = nl_prog_nconst(&r);
  assert_int_equal(nc, 4);
  float g[4], c[4];
  nl_gp_fitness_grad(&r, xs, ys, 64, gamma, delta, g, &ws);
  nl_prog_get_consts(&r, c);
  for (int k = 0; k < nc; k++) {
    double h = 1e-3, fp = 0, fm = 0;
    for (int sgn = -1; sgn <= 1; sgn += 2) {
      float cc[4];
      memcpy(cc, c, sizeof cc);
      cc[k] = (float)(c[k] + sgn * h);
      nl_prog_set_consts(&r, cc);
      double s = 0;
      for (int i = 0; i < 64; i++) {
        double d = nl_eval1(&r, xs[i]) - ys[i];
        s += d * d;
      }
      double fpl = nl_eval1(&r, delta), fmi = nl_eval1(&r, -delta);
      double F = s / 64 + gamma * 0.5 * (fpl * fpl + fmi * fmi);
      if (sgn < 0) fm = F; else fp = F;
    }
    nl_prog_set_consts(&r, c);
    double fd = (fp - fm) / (2 * h);
    assert_true(fabs(g[k] - fd) < 2e-3 * (1 + fabs(fd)));
  }
  nl_prog_free(&p);
  nl_prog_free(&q);
  nl_prog_free(&r);
  nl_eval_ws_free(&ws);
}

static int allowed(const nl_node *n) {
  if (n->op == NL_OP_X || n->op == NL_OP_CONST) return 1;
  for (int k = 0; k < NL_GP_NOPS; k++)
    if (n->op == nl_gp_ops[k]) return 1;
  return 0;
}

/* Random trees and long chains of variation: never over max_nodes, always
 * one well-formed tree of allowed operators; initial depth respected. */
static void test_max_nodes_property(void **state) {
  (void)state;
  const int limits[] = {1, 3, 7, 20};
  for (int li = 0; li < 4; li++) {
    nl_gp_config c;
    nl_gp_config_default(&c);
    c.max_nodes = limits[li];
    nl_rng r;
    nl_rng_seed(&r, 11 + li);
    enum { NP = 40 };
    nl_prog pop[NP], child;
    nl_prog_init(&child);
    for (int i = 0; i < NP; i++) {
      nl_prog_init(&pop[i]);
      nl_gp_random_tree(&c, &r, &pop[i], 1 + i % c.init_depth, i % 2);
      assert_true(pop[i].len <= c.max_nodes);
      assert_true(nl_prog_depth(&pop[i]) <= c.init_depth);
    }
    int gens = quick() ? 100 : 500;
    for (int g = 0; g < gens; g++)
      for (int i = 0; i < NP; i++) {
        int a = (int)nl_rng_below(&r, NP), b = (int)nl_rng_below(&r, NP);
        nl_gp_vary(&c, &r, &pop[a], &pop[b], &child);
        assert_true(child.len >= 1 && child.len <= c.max_nodes);
        nl_prog chk;
        nl_prog_init(&chk);
        nl_prog_copy(&chk, &child);
        assert_int_equal(nl_prog_fix_sizes(&chk), 0);
        for (int k = 0; k < child.len; k++) {
          assert_int_equal(chk.nodes[k].size, child.nodes[k].size);
          assert_true(allowed(&child.nodes[k]));
        }
        nl_prog_free(&chk);
        nl_prog_copy(&pop[i], &child);
      }
    for (int i = 0; i < NP; i++) nl_prog_free(&pop[i]);
    nl_prog_free(&child);
  }
}

/* Knee: (flops, val_mse) = (0, 1), (1, .2), (5, .15), (10, .1) scaled to
 * [0,1]: distances to the line x + y = 1 are 0, .79, .44, 0: the second. */
static void test_select(void **state) {
  (void)state;
  nl_gp_member m[5];
  memset(m, 0, sizeof m);
  const int fl[5] = {0, 1, 5, 10, 12};
  const double mse[5] = {1.0, 0.2, 0.15, 0.1, 0.3};
  for (int i = 0; i < 5; i++) {
    m[i].flops = fl[i];
    m[i].nodes = i + 1;
    m[i].val_mse = mse[i];
    m[i].val_fitness = mse[i] + 0.01;
  }
  assert_int_equal(nl_gp_select(m, 5, NL_GP_KNEE), 1);
  assert_int_equal(nl_gp_select(m, 5, NL_GP_MINVAL), 3);
}

typedef struct {
  float *x, *y;
  size_t n;
} data;

static data synth(size_t n, double sigma, uint64_t seed) {
  data d = {malloc(n * sizeof(float)), malloc(n * sizeof(float)), n};
  nl_rng r;
  nl_rng_seed(&r, seed);
  for (size_t i = 0; i < n; i++) {
    double x = 1.2 * nl_rng_normal(&r);
    d.x[i] = (float)x;
    d.y[i] = (float)(tanh(2 * x) + sigma * nl_rng_normal(&r));
  }
  return d;
}

static void small_config(nl_gp_config *c) {
  nl_gp_config_default(c);
  c->pop = 60;
  c->gens = 6;
  c->const_top = 20;
  c->const_points = 1000;
}

static char *front_text(const nl_gp_result *r) {
  size_t cap = 1 << 16, len = 0;
  char *s = calloc(cap, 1);
  for (int i = 0; i < r->nfront; i++) {
    char *e = nl_print(&r->front[i].prog, NL_PRINT_EXACT);
    len += (size_t)snprintf(s + len, cap - len, "%d %d %.17g %.17g %s\n", r->front[i].rank,
                            r->front[i].nodes, r->front[i].train_fitness, r->front[i].val_mse, e);
    free(e);
  }
  return s;
}

/* Same seed: the same front with 1 and 2 threads; another seed index: a
 * different search. */
static void test_determinism(void **state) {
  (void)state;
  data d = synth(3000, 0.05, 5);
  nl_gp_config c;
  small_config(&c);
  nl_error e;
  nl_gp_result r1, r2, r3;
  c.threads = 1;
  assert_int_equal(nl_gp_run(&c, "L", d.x, d.y, d.n, 0, NULL, NULL, &r1, &e), 0);
  c.threads = 2;
  assert_int_equal(nl_gp_run(&c, "L", d.x, d.y, d.n, 0, NULL, NULL, &r2, &e), 0);
  assert_int_equal(nl_gp_run(&c, "L", d.x, d.y, d.n, 1, NULL, NULL, &r3, &e), 0);
  char *a = front_text(&r1), *b = front_text(&r2), *c3 = front_text(&r3);
  assert_true(r1.nfront > 0);
  assert_string_equal(a, b);
  assert_int_equal(r1.chosen, r2.chosen);
  assert_true(strcmp(a, c3) != 0);
  free(a);
  free(b);
  free(c3);
  nl_gp_result_free(&r1);
  nl_gp_result_free(&r2);
  nl_gp_result_free(&r3);
  free(d.x);
  free(d.y);
}

/* y = tanh(2x) + N(0, 0.05^2): the best R^2 any f can reach is
 * 1 - 0.0025 / Var(y); a few small generations get within 0.005 of it. */
static void test_end_to_end(void **state) {
  (void)state;
  const double sigma = 0.05;
  data d = synth(6000, sigma, 7);
  nl_gp_config c;
  small_config(&c);
  c.pop = 100;
  c.gens = 10;
  nl_error e;
  nl_gp_result r;
  assert_int_equal(nl_gp_run(&c, "tanh2x", d.x, d.y, d.n, 0, NULL, NULL, &r, &e), 0);
  assert_true(r.finished);
  assert_int_equal(r.gens_done, 10);
  double m = 0, v = 0;
  for (size_t i = 0; i < d.n; i++) m += d.y[i];
  m /= (double)d.n;
  for (size_t i = 0; i < d.n; i++) v += (d.y[i] - m) * (d.y[i] - m);
  v /= (double)d.n;
  double ceiling = 1 - sigma * sigma / v;
  const nl_gp_member *ch = &r.front[r.chosen];
  char *s = nl_print(&ch->prog, NL_PRINT_SHORT);
  printf("# chosen %s  val R^2 %.5f  ceiling %.5f\n", s, ch->val_r2, ceiling);
  free(s);
  assert_true(ch->val_r2 > ceiling - 0.005);
  for (int i = 0; i < r.nfront; i++) assert_true(r.front[i].nodes <= c.max_nodes);
  /* the front is non-dominated in (train fitness, nodes) */
  for (int i = 0; i < r.nfront; i++)
    for (int j = 0; j < r.nfront; j++)
      if (i != j)
        assert_false(r.front[j].train_fitness <= r.front[i].train_fitness &&
                     r.front[j].nodes <= r.front[i].nodes);
  nl_gp_result_free(&r);
  free(d.x);
  free(d.y);
}

typedef struct {
  int calls, stop_at;
} stopper;

static int stop_cb(const nl_gp_progress *p, void *u) {
  stopper *s = u;
  s->calls++;
  return s->stop_at > 0 && p->task == 2 && p->gen == s->stop_at;
}

static char *slurp(const char *dir, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  nl_error e;
  char *t = nl_read_file(path, NULL, &e);
  assert_non_null(t);
  return t;
}

static void rm_rf(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

/* A campaign of 2 layers x 2 seeds stopped through the callback in the
 * third layer-seed, then rerun, ends with the same files as one run
 * straight through; a third run searches nothing. */
static void test_campaign_resume(void **state) {
  (void)state;
  nl_maps m;
  nl_maps_init(&m);
  nl_error e;
  data d1 = synth(1500, 0.05, 21), d2 = synth(1500, 0.1, 22);
  for (size_t i = 0; i < d2.n; i++) d2.y[i] = 0.5f * d2.y[i] + 0.1f * d2.x[i];
  assert_int_equal(nl_maps_add(&m, "blocks.0.norm1", d1.x, d1.y, d1.n, &e), 0);
  assert_int_equal(nl_maps_add(&m, "blocks.0.norm2", d2.x, d2.y, d2.n, &e), 0);
  nl_gp_config c;
  small_config(&c);
  c.pop = 30;
  c.gens = 4;
  char a[] = "/tmp/nl-gp-a.XXXXXX", b[] = "/tmp/nl-gp-b.XXXXXX";
  assert_non_null(mkdtemp(a));
  assert_non_null(mkdtemp(b));
  stopper st = {0, 0};
  nl_gp_campaign cam = {.cfg = &c, .maps = &m, .seeds = 2, .outdir = a, .progress = stop_cb,
                        .user = &st};
  nl_gp_summary s;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), 0);
  assert_int_equal(s.nlayers, 2);
  assert_int_equal(s.layers[1].seeds_done, 2);
  nl_gp_summary_free(&s);
  /* interrupted at generation 2 of task 2 (layer 2, seed 0) */
  cam.outdir = b;
  st.stop_at = 2;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), -1);
  assert_int_equal(e.code, NL_EINTR);
  nl_gp_summary_free(&s);
  char p[600];
  snprintf(p, sizeof p, "%s/parts/blocks.0.norm2.seed0.partial.csv", b);
  assert_true(nl_file_exists(p));
  st.stop_at = 0;
  st.calls = 0;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), 0);
  assert_int_equal(st.calls, 2 * c.gens); /* only layer 2's two seeds ran */
  assert_int_equal(s.layers[0].skipped, 2);
  nl_gp_summary_free(&s);
  assert_false(nl_file_exists(p));
  const char *files[] = {"blocks.0.norm1.csv", "blocks.0.norm2.csv", "chosen.exprs"};
  for (int i = 0; i < 3; i++) {
    char *x = slurp(a, files[i]), *y = slurp(b, files[i]);
    assert_string_equal(x, y);
    free(x);
    free(y);
  }
  /* nothing left to do */
  st.calls = 0;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), 0);
  assert_int_equal(st.calls, 0);
  nl_gp_summary_free(&s);
  /* chosen.exprs reads back and names both layers */
  nl_exprset set;
  nl_exprset_init(&set);
  snprintf(p, sizeof p, "%s/chosen.exprs", a);
  assert_int_equal(nl_exprset_load(p, &set, &e), 0);
  assert_int_equal(set.n, 2);
  assert_non_null(nl_exprset_find(&set, "blocks.0.norm2"));
  nl_exprset_free(&set);
  rm_rf(a);
  rm_rf(b);
  nl_maps_free(&m);
  free(d1.x);
  free(d1.y);
  free(d2.x);
  free(d2.y);
}


/* ---- the campaign's settings: one parser (search/campaign_opts.h) ---- */

static void expect_set_error(const char *key, const char *value, const char *msg) {
  nl_gp_campaign_opts o;
  nl_gp_campaign_opts_init(&o);
  nl_error e;
  nl_error_clear(&e);
  assert_int_equal(nl_gp_campaign_opts_set(&o, key, value, &e), -1);
  assert_int_equal(e.code, NL_EINPUT);
  if (strcmp(e.msg, msg) != 0) fail_msg("%s=%s: got \"%s\", wanted \"%s\"", key, value, e.msg, msg);
  nl_gp_campaign_opts_free(&o);
}

static void test_campaign_opts(void **state) {
  (void)state;
  nl_gp_campaign_opts o;
  nl_gp_campaign_opts_init(&o);
  nl_gp_config d;
  nl_gp_config_default(&d);
  assert_memory_equal(&o.cfg, &d, sizeof d);
  assert_int_equal(o.seeds, 1);
  assert_null(o.maps);
  assert_null(o.layer);
  nl_error e;
  const char *kv[][2] = {
      {"maps", "m.st"},      {"output", "dir"},       {"layer", "blocks.1.norm2"},
      {"seeds", "3"},        {"seed", "2147483647"},  {"pop", "40"},
      {"gens", "0"},         {"max_nodes", "12"},     {"init-depth", "3"},
      {"tournament", "40"},  {"penalty", "0"},        {"const-steps", "5"},
      {"const_top", "7"},    {"const-lr", "0.25"},    {"const-points", "0"},
      {"complexity", "flops"}, {"select", "knee"},    {"threads", "3"},
      {"recompute", NULL},   {"json", "true"},
  };
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
    if (nl_gp_campaign_opts_set(&o, kv[i][0], kv[i][1], &e) != 0) fail_msg("%s: %s", kv[i][0], e.msg);
    assert_true(nl_gp_campaign_opts_known(kv[i][0]));
  }
  assert_int_equal(nl_gp_campaign_opts_finish(&o, &e), 0);
  assert_string_equal(o.maps, "m.st");
  assert_string_equal(o.output, "dir");
  assert_string_equal(o.layer, "blocks.1.norm2");
  assert_int_equal(o.seeds, 3);
  assert_true(o.cfg.seed == 2147483647u);
  assert_int_equal(o.cfg.pop, 40);
  assert_int_equal(o.cfg.gens, 0);
  assert_int_equal(o.cfg.max_nodes, 12);
  assert_int_equal(o.cfg.init_depth, 3);
  assert_int_equal(o.cfg.tournament, 40);
  assert_true(o.cfg.penalty == 0.0);
  assert_int_equal(o.cfg.const_steps, 5);
  assert_int_equal(o.cfg.const_top, 7);
  assert_true(o.cfg.const_lr == 0.25);
  assert_int_equal(o.cfg.const_points, 0);
  assert_int_equal(o.cfg.complexity, NL_GP_FLOPS);
  assert_int_equal(o.cfg.select, NL_GP_KNEE);
  assert_int_equal(o.cfg.threads, 3);
  assert_int_equal(o.recompute, 1);
  assert_int_equal(o.json, 1);
  /* layer all is every layer; a flag cleared */
  assert_int_equal(nl_gp_campaign_opts_set(&o, "layer", "all", &e), 0);
  assert_null(o.layer);
  assert_int_equal(nl_gp_campaign_opts_set(&o, "recompute", "false", &e), 0);
  assert_int_equal(o.recompute, 0);
  /* the check between options, after the last set */
  assert_int_equal(nl_gp_campaign_opts_set(&o, "pop", "10", &e), 0);
  assert_int_equal(nl_gp_campaign_opts_finish(&o, &e), -1);
  assert_string_equal(e.msg, "--tournament must be between 1 and --pop (10), got 40");
  nl_gp_campaign_opts_free(&o);
  assert_false(nl_gp_campaign_opts_known("population"));
  expect_set_error("population", "5", "unknown option '--population' (see 'normlab help evolve')");
  expect_set_error("pop", "2", "--pop must be between 4 and 1000000, got 2");
  expect_set_error("pop", "abc", "--pop expects an integer, got 'abc'");
  expect_set_error("max_nodes", "2.5", "--max-nodes expects an integer, got '2.5'");
  expect_set_error("threads", "0", "--threads must be between 1 and 256, got 0");
  expect_set_error("seed", "-1", "--seed must be between 0 and 2147483647, got -1");
  expect_set_error("penalty", "-0.5", "--penalty must be >= 0, got -0.5");
  expect_set_error("const-lr", "0", "--const-lr must be > 0, got 0");
  expect_set_error("const-lr", "inf", "--const-lr expects a finite number, got 'inf'");
  expect_set_error("complexity", "bits", "--complexity expects one of nodes|flops, got 'bits'");
  expect_set_error("select", "best", "--select expects one of minval|knee|budget=F|budget=ln, got 'best'");
  expect_set_error("json", "yes", "option --json takes no value");
  expect_set_error("gens", NULL, "option --gens needs a value");
}

extern const nl_cmd nl_cmd_evolve;

/* The command's table and the parser agree: every option of 'evolve' is
 * the parser's, and the defaults its help shows are the parser's. */
static void test_campaign_opts_cli(void **state) {
  (void)state;
  nl_gp_campaign_opts a, b;
  nl_gp_campaign_opts_init(&a);
  nl_gp_campaign_opts_init(&b);
  nl_error e;
  for (const nl_opt *o = nl_cmd_evolve.opts; o->name; o++) {
    if (!nl_gp_campaign_opts_known(o->name)) fail_msg("evolve --%s is not the parser's", o->name);
    if (o->def && nl_gp_campaign_opts_set(&b, o->name, o->def, &e) != 0)
      fail_msg("default of --%s: %s", o->name, e.msg);
  }
  assert_memory_equal(&a.cfg, &b.cfg, sizeof a.cfg);
  assert_int_equal(a.seeds, b.seeds);
  assert_null(b.layer); /* "all" */
  nl_gp_campaign_opts_free(&a);
  nl_gp_campaign_opts_free(&b);
}

/* A layer that cannot be searched is an error naming it, before any search. */
static void test_check_points(void **state) {
  (void)state;
  nl_gp_config c;
  small_config(&c);
  nl_error e;
  data d = synth(200, 0.05, 9);
  assert_int_equal(nl_gp_check_points(&c, "L", d.x, d.y, d.n, &e), 0);
  float *flat = malloc(sizeof(float) * d.n);
  for (size_t i = 0; i < d.n; i++) flat[i] = 0.25f;
  assert_int_equal(nl_gp_check_points(&c, "blocks.3.norm1", d.x, flat, d.n, &e), -1);
  assert_int_equal(e.code, NL_EINPUT);
  assert_non_null(strstr(e.msg, "layer 'blocks.3.norm1': y is constant (0.25 at all 200 points)"));
  nl_gp_result r;
  assert_int_equal(nl_gp_run(&c, "blocks.3.norm1", d.x, flat, d.n, 0, NULL, NULL, &r, &e), -1);
  assert_non_null(strstr(e.msg, "y is constant"));
  /* constant on the validation split only: its R^2 would be undefined */
  size_t *perm = malloc(sizeof(size_t) * d.n), nt;
  nl_gp_split(&c, "V", d.n, perm, &nt);
  memcpy(flat, d.y, sizeof(float) * d.n);
  for (size_t i = nt; i < d.n; i++) flat[perm[i]] = 0.5f;
  assert_int_equal(nl_gp_check_points(&c, "V", d.x, flat, d.n, &e), -1);
  assert_non_null(strstr(e.msg, "layer 'V': y is constant (0.5) on all 20 validation points"));
  flat[perm[nt]] = 0.75f;
  assert_int_equal(nl_gp_check_points(&c, "V", d.x, flat, d.n, &e), 0);
  flat[3] = NAN;
  assert_int_equal(nl_gp_check_points(&c, "V", d.x, flat, d.n, &e), -1);
  assert_non_null(strstr(e.msg, "layer 'V': point 3 is not finite"));
  assert_int_equal(nl_gp_check_points(&c, "S", d.x, d.y, 9, &e), -1);
  assert_non_null(strstr(e.msg, "9 points, at least 10 needed"));
  free(perm);
  free(flat);
  free(d.x);
  free(d.y);
}

/* A campaign directory holds the results of one mappings file and one
 * set of settings: a finished part from other mappings or settings is
 * refused (named, with what differs) and left as it is, or searched
 * again with recompute; a run on one layer keeps the other layers'
 * entries in chosen.exprs. */
static void test_campaign_guard(void **state) {
  (void)state;
  nl_error e;
  data d1 = synth(800, 0.05, 31), d2 = synth(800, 0.1, 32);
  nl_maps a, b;
  nl_maps_init(&a);
  nl_maps_init(&b);
  assert_int_equal(nl_maps_add(&a, "blocks.0.norm1", d1.x, d1.y, d1.n, &e), 0);
  assert_int_equal(nl_maps_add(&a, "blocks.0.norm2", d2.x, d2.y, d2.n, &e), 0);
  d1.y[17] += 0.5f; /* b: one point of the first layer differs */
  assert_int_equal(nl_maps_add(&b, "blocks.0.norm1", d1.x, d1.y, d1.n, &e), 0);
  assert_int_equal(nl_maps_add(&b, "blocks.0.norm2", d2.x, d2.y, d2.n, &e), 0);
  assert_true(nl_maps_fingerprint(&a) != nl_maps_fingerprint(&b));
  nl_gp_config c;
  small_config(&c);
  c.pop = 20;
  c.gens = 2;
  char dir[] = "/tmp/nl-gp-g.XXXXXX";
  assert_non_null(mkdtemp(dir));
  const char *one[] = {"blocks.0.norm1"}, *two[] = {"blocks.0.norm2"};
  nl_gp_campaign cam = {.cfg = &c, .maps = &a, .layers = one, .nlayers = 1, .seeds = 1,
                        .outdir = dir};
  nl_gp_summary s;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), 0);
  nl_gp_summary_free(&s);
  char *part_a = slurp(dir, "parts/blocks.0.norm1.seed0.csv");
  /* other mappings */
  cam.maps = &b;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), -1);
  nl_gp_summary_free(&s);
  assert_int_equal(e.code, NL_EINPUT);
  assert_non_null(strstr(e.msg, "/parts/blocks.0.norm1.seed0.csv was computed from other mappings"));
  char fa[20], fb[20];
  snprintf(fa, sizeof fa, "%016llx", (unsigned long long)nl_maps_fingerprint(&a));
  snprintf(fb, sizeof fb, "%016llx", (unsigned long long)nl_maps_fingerprint(&b));
  assert_non_null(strstr(e.msg, fa));
  assert_non_null(strstr(e.msg, fb));
  char *again = slurp(dir, "parts/blocks.0.norm1.seed0.csv");
  assert_string_equal(part_a, again); /* left as it was */
  free(again);
  /* other settings */
  cam.maps = &a;
  c.gens = 3;
  c.pop = 24;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), -1);
  nl_gp_summary_free(&s);
  assert_non_null(strstr(e.msg, "was computed with other settings (pop 20 there, 24 here; gens 2 "
                                "there, 3 here)"));
  c.gens = 2;
  c.pop = 20;
  /* recompute: searched again from b, as a fresh run on b */
  cam.maps = &b;
  cam.recompute = 1;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), 0);
  assert_int_equal(s.layers[0].skipped, 0);
  nl_gp_summary_free(&s);
  char fresh[] = "/tmp/nl-gp-f.XXXXXX";
  assert_non_null(mkdtemp(fresh));
  cam.outdir = fresh;
  cam.recompute = 0;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), 0);
  nl_gp_summary_free(&s);
  char *x = slurp(dir, "blocks.0.norm1.csv"), *y = slurp(fresh, "blocks.0.norm1.csv");
  assert_string_equal(x, y);
  free(x);
  free(y);
  /* the second layer into the same directory keeps the first in chosen.exprs */
  cam.outdir = dir;
  cam.layers = two;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), 0);
  nl_gp_summary_free(&s);
  char p[600];
  snprintf(p, sizeof p, "%s/chosen.exprs", dir);
  nl_exprset got, first;
  nl_exprset_init(&got);
  nl_exprset_init(&first);
  assert_int_equal(nl_exprset_load(p, &got, &e), 0);
  snprintf(p, sizeof p, "%s/chosen.exprs", fresh);
  assert_int_equal(nl_exprset_load(p, &first, &e), 0);
  assert_int_equal(got.n, 2);
  assert_string_equal(got.e[0].name, "blocks.0.norm1"); /* in the mappings' order */
  assert_string_equal(got.e[1].name, "blocks.0.norm2");
  assert_string_equal(got.e[0].text, first.e[0].text);
  assert_string_equal(got.e[0].comment, first.e[0].comment);
  nl_exprset_free(&got);
  nl_exprset_free(&first);
  /* a layer from other mappings beside a kept one: refused, or the kept
   * one dropped with recompute ("fresh" holds blocks.0.norm1 from b) */
  cam.outdir = fresh;
  cam.maps = &a;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), -1);
  nl_gp_summary_free(&s);
  assert_non_null(strstr(e.msg, "/chosen.exprs holds layer blocks.0.norm1, whose part "));
  assert_non_null(strstr(e.msg, "/parts/blocks.0.norm1.seed0.csv was computed from other mappings"));
  cam.recompute = 1;
  assert_int_equal(nl_gp_campaign_run(&cam, &s, &e), 0);
  nl_gp_summary_free(&s);
  nl_exprset_init(&got);
  assert_int_equal(nl_exprset_load(p, &got, &e), 0);
  assert_int_equal(got.n, 1);
  assert_string_equal(got.e[0].name, "blocks.0.norm2");
  nl_exprset_free(&got);
  free(part_a);
  rm_rf(dir);
  rm_rf(fresh);
  nl_maps_free(&a);
  nl_maps_free(&b);
  free(d1.x);
  free(d1.y);
  free(d2.x);
  free(d2.y);
}

static void test_bad_config(void **state) {
  (void)state;
  nl_gp_config c;
  nl_gp_config_default(&c);
  nl_error e;
  assert_int_equal(nl_gp_config_check(&c, &e), 0);
  c.max_nodes = 0;
  assert_int_equal(nl_gp_config_check(&c, &e), -1);
  assert_int_equal(e.code, NL_EINPUT);
  nl_gp_config_default(&c);
  c.tournament = c.pop + 1;
  assert_int_equal(nl_gp_config_check(&c, &e), -1);
}

int main(void) {
  const struct CMUnitTest t[] = {
      cmocka_unit_test(test_nsga2_toy), cmocka_unit_test(test_nsga2_random),       cmocka_unit_test(test_penalty_formula),
      cmocka_unit_test(test_max_nodes_property), cmocka_unit_test(test_select),
      cmocka_unit_test(test_bad_config),      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_end_to_end),      cmocka_unit_test(test_campaign_resume),
      cmocka_unit_test(test_campaign_opts),   cmocka_unit_test(test_campaign_opts_cli),
      cmocka_unit_test(test_check_points),    cmocka_unit_test(test_campaign_guard),
  };
  return cmocka_run_group_tests(t, NULL, NULL);
}
