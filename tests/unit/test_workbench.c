/* Unit tests for the workbench's fitting commands (src/repl/fit.c,
 * fit_cmds.c, pipeline.c): refit, fold, impact, score, front and pick,
 * each checked against a reference computed here by other means (known
 * generating constants, closed-form least squares, the DyT fit, a knee
 * worked out by hand). Mappings files are written with the maps library. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "cli/main.h"
#include "base/mem.h"
#include "expr/expr.h"
#include "model/maps.h"
#include "repl/complete.h"
#include "search/fit.h"
#include "repl/repl.h"
#include "search/dyt.h"

static char g_dir[256];

/* Points x on [-3, 3] (n of them, evenly spaced then shuffled by a fixed
 * stride so the validation split sees the whole range) and y = f(x). */
static void points(size_t n, double (*f)(double), float *x, float *y) {
  for (size_t i = 0; i < n; i++) {
    size_t k = (i * 7919) % n;
    x[i] = (float)(-3.0 + 6.0 * (double)k / (double)(n - 1));
    y[i] = (float)f(x[i]);
  }
}

static double f_atanh(double x) { return 1.7 * tanh(0.8 * x); }
static double f_tanh5(double x) { return tanh(x) + 5.0; }
/* not of the model's form: a wiggle the expressions below cannot follow */
static double f_wiggle(double x) { return tanh(2.5 * x) + 0.05 * sin(7.0 * x); }

static const char *write_maps(const char *file, const char *layer, double (*f)(double),
                              size_t n) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", g_dir, file);
  float *x = nl_xmalloc(sizeof(float) * n), *y = nl_xmalloc(sizeof(float) * n);
  points(n, f, x, y);
  nl_maps m;
  nl_maps_init(&m);
  nl_error err;
  nl_error_clear(&err);
  assert_int_equal(nl_maps_add_owned(&m, layer, x, y, n, &err), 0);
  assert_int_equal(nl_maps_save(&m, path, &err), 0);
  nl_maps_free(&m);
  return path;
}

/* Run "-c CMDS" in a fresh session; returns stdout (caller frees) and the
 * exit status. */
static char *run(const char *cmds, int *status) {
  char *out = NULL, *errs = NULL;
  size_t no = 0, ne = 0;
  FILE *o = open_memstream(&out, &no), *e = open_memstream(&errs, &ne);
  nl_ctx ctx = {.out = o, .err = e};
  nl_repl_opts opts = {.commands = cmds};
  *status = nl_repl_main(&ctx, &opts);
  fclose(o);
  fclose(e);
  if (*status != 0) fprintf(stderr, "# stderr: %s\n", errs);
  free(errs);
  return out;
}

static char *runf(int *status, const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return run(cmd, status);
}

/* The line of `text` starting with `prefix`, or NULL. */
static const char *line_of(const char *text, const char *prefix) {
  size_t n = strlen(prefix);
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
    if (strncmp(p, prefix, n) == 0) return p;
  return NULL;
}

/* ---- library ---- */

static void test_paths(void **state) {
  (void)state;
  nl_prog p;
  nl_prog_init(&p);
  nl_error err;
  nl_error_clear(&err);
  assert_int_equal(nl_parse("tanh(1.5 * x) + clip(x, -1, 2)", 1, &p, &err), 0);
  int node;
  assert_int_equal(nl_fit_path_node(&p, "0", &node, &err), 0);
  assert_int_equal(node, p.len - 1);
  assert_int_equal(nl_fit_path_node(&p, "0.0.0.0", &node, &err), 0);
  assert_int_equal(p.nodes[node].op, NL_OP_CONST);
  assert_true(p.nodes[node].val == 1.5f);
  assert_int_equal(nl_fit_path_node(&p, "0.1.2", &node, &err), 0);
  assert_true(p.nodes[node].val == 2.0f);
  /* every node's path leads back to it */
  for (int i = 0; i < p.len; i++) {
    char *path = nl_fit_node_path(&p, i);
    assert_int_equal(nl_fit_path_node(&p, path, &node, &err), 0);
    assert_int_equal(node, i);
    free(path);
  }
  const char *bad[] = {"", "1", "0.", "0..1", "0.2", "0.0.0.0.0", "0.a", "00", NULL};
  for (int i = 0; bad[i]; i++) {
    nl_error_clear(&err);
    assert_int_equal(nl_fit_path_node(&p, bad[i], &node, &err), -1);
    assert_int_equal(err.code, NL_EINPUT);
    assert_non_null(strstr(err.msg, "path"));
  }
  nl_prog_free(&p);
}

static void test_refit_recovers_constants(void **state) {
  (void)state;
  size_t n = 3000;
  float *x = nl_xmalloc(sizeof(float) * n), *y = nl_xmalloc(sizeof(float) * n);
  points(n, f_atanh, x, y);
  nl_prog p;
  nl_prog_init(&p);
  nl_error err;
  nl_error_clear(&err);
  assert_int_equal(nl_parse("1 * tanh(1 * x)", 1, &p, &err), 0);
  nl_fit_pts d = {x, y, n, 0, 0};
  double f = nl_fit_consts(&p, &d, NULL, 100);
  float c[2];
  nl_prog_get_consts(&p, c);
  assert_true(fabs(c[0] - 1.7) < 1e-4);
  assert_true(fabs(c[1] - 0.8) < 1e-4);
  assert_true(f < 1e-9);
  /* with a mask only the free constant moves: a fixed at 1, b fits best */
  nl_prog_free(&p);
  assert_int_equal(nl_parse("1 * tanh(1 * x)", 1, &p, &err), 0);
  unsigned char mask[2] = {0, 1};
  nl_fit_consts(&p, &d, mask, 100);
  nl_prog_get_consts(&p, c);
  assert_true(c[0] == 1.0f);
  assert_true(c[1] > 1.0f); /* a steeper tanh makes up for the lower amplitude */
  nl_prog_free(&p);
  free(x);
  free(y);
}

static void test_fold_closed_forms(void **state) {
  (void)state;
  size_t n = 2000;
  float *x = nl_xmalloc(sizeof(float) * n), *y = nl_xmalloc(sizeof(float) * n);
  points(n, f_wiggle, x, y);
  nl_fit_pts d = {x, y, n, 0, 0};
  nl_error err;
  nl_error_clear(&err);
  nl_prog p, q;
  int node;
  float v;
  /* additive: the best c in tanh(x) + c is mean(y - tanh(x)) */
  nl_prog_init(&p);
  assert_int_equal(nl_parse("tanh(x) + sigmoid(x)", 1, &p, &err), 0);
  assert_int_equal(nl_fit_path_node(&p, "0.1", &node, &err), 0);
  nl_fit_fold(&p, node, &d, &q, &v);
  double want = 0;
  for (size_t i = 0; i < n; i++) want += y[i] - tanh(x[i]);
  want /= (double)n;
  assert_true(fabs(v - want) < 1e-5);
  assert_int_equal(q.len, 4);
  nl_prog_free(&q);
  nl_prog_free(&p);
  /* multiplicative: the best c in tanh(x) * c is sum(y t) / sum(t^2) */
  nl_prog_init(&p);
  assert_int_equal(nl_parse("tanh(x) * sigmoid(x)", 1, &p, &err), 0);
  assert_int_equal(nl_fit_path_node(&p, "0.1", &node, &err), 0);
  nl_fit_fold(&p, node, &d, &q, &v);
  double sty = 0, stt = 0;
  for (size_t i = 0; i < n; i++) {
    double t = tanh(x[i]);
    sty += t * y[i];
    stt += t * t;
  }
  assert_true(fabs(v - sty / stt) < 1e-5);
  nl_prog_free(&q);
  nl_prog_free(&p);
  free(x);
  free(y);
}

/* ---- commands ---- */

static void test_refit_command(void **state) {
  (void)state;
  const char *m = write_maps("a.maps", "L", f_atanh, 4000);
  int st;
  char *out = runf(&st, "load maps %s; set L = 1 * tanh(1 * x); refit L; undo; show L", m);
  assert_int_equal(st, 0);
  const char *l = line_of(out, "L = ");
  assert_non_null(l);
  l = line_of(l + 1, "L = "); /* the refit's result */
  assert_non_null(l);
  double a, b;
  assert_int_equal(sscanf(l, "L = %lf*tanh(%lf*x)", &a, &b), 2);
  assert_true(fabs(a - 1.7) < 1e-4);
  assert_true(fabs(b - 0.8) < 1e-4);
  assert_non_null(strstr(out, "val R2"));
  /* undo brings back the typed constants */
  assert_non_null(line_of(out, "L = 1 * tanh(1 * x)\n"));
  free(out);
  /* no constants, no layer, no maps: exit 2 */
  out = runf(&st, "load maps %s; set L = tanh(x); refit L", m);
  assert_int_equal(st, 2);
  free(out);
  out = runf(&st, "load maps %s; refit L", m);
  assert_int_equal(st, 2);
  free(out);
  out = run("set L = 2*x; refit L", &st);
  assert_int_equal(st, 2);
  free(out);
}

static void test_fold_command(void **state) {
  (void)state;
  /* clip(x + 10) is exactly 5 on x in [-3, 3] (clip clamps to [-5, 5]) */
  const char *m = write_maps("b.maps", "L", f_tanh5, 2000);
  int st;
  char *out = runf(&st,
                   "load maps %s; set L = tanh(x) + clip(x + 10); fold L 0.1; undo; fold L 0.9", m);
  assert_int_equal(st, 2); /* the last fold has a bad path */
  const char *l = line_of(out, "folded 0.1 ");
  assert_non_null(l);
  double v;
  assert_int_equal(sscanf(strstr(l, " to ") + 4, "%lf", &v), 1);
  assert_true(fabs(v - 5.0) < 1e-6);
  assert_non_null(line_of(out, "L = tanh(x) + 5"));
  free(out);
}

static void test_impact_command(void **state) {
  (void)state;
  const char *m = write_maps("c.maps", "L", f_wiggle, 4000);
  int st;
  char *out = runf(&st, "load maps %s; set L = tanh(2.5 * x) + 0 * sigmoid(x); impact L", m);
  assert_int_equal(st, 0);
  /* sigmoid(x) is multiplied by 0: folding it changes nothing at all */
  const char *l = line_of(out, "0.1.1 ");
  assert_non_null(l);
  double folded, r2, dr2;
  char sub[64];
  assert_int_equal(sscanf(l, "0.1.1 %63s %lf %lf %lf", sub, &folded, &r2, &dr2), 4);
  assert_true(fabs(dr2) < 1e-9);
  /* 0 * sigmoid(x) contributes nothing: its fold only adds the mean
   * residual, a tiny offset (the residual 0.05 sin(7x) has mean ~0) */
  l = line_of(out, "0.1 ");
  assert_non_null(l);
  assert_int_equal(sscanf(l, "0.1 %63s %lf %lf %lf", sub, &folded, &r2, &dr2), 4);
  assert_true(fabs(dr2) < 1e-3);
  assert_true(fabs(folded) < 5e-3);
  /* the tanh carries the fit */
  l = line_of(out, "0.0 ");
  assert_non_null(l);
  assert_int_equal(sscanf(l, "0.0 %63s %lf %lf %lf", sub, &folded, &r2, &dr2), 4);
  assert_true(dr2 < -0.9);
  /* impact changes nothing: the expression is the same afterwards */
  free(out);
  out = runf(&st, "load maps %s; set L = tanh(2.5 * x) + 0 * sigmoid(x); impact L; undo; layers",
             m);
  assert_int_equal(st, 0);
  assert_non_null(strstr(out, "(LayerNorm)")); /* one undo removes the only set */
  free(out);
}

static void test_score_matches_dyt(void **state) {
  (void)state;
  size_t n = 5000;
  const char *m = write_maps("d.maps", "blocks.0.norm1", f_wiggle, n);
  /* the reference: the DyT fit of all points, as 'normlab dyt' makes it */
  nl_maps mp;
  nl_error err;
  nl_error_clear(&err);
  assert_int_equal(nl_maps_load(&mp, m, &err), 0);
  double alpha, mse, r2;
  assert_int_equal(nl_dyt_fit(mp.layers[0].x, mp.layers[0].y, n, &alpha, &mse, &r2), 0);
  nl_maps_free(&mp);
  int st;
  char *out = runf(&st, "load maps %s; set blocks.0.norm1 = tanh(%.9g * x); score all", m, alpha);
  assert_int_equal(st, 0);
  const char *l = line_of(out, "blocks.0.norm1  "); /* the table row */
  assert_non_null(l);
  size_t pts;
  double vmse, vr2, r2all, dyt, bound, al;
  assert_int_equal(sscanf(l, "blocks.0.norm1 %zu %lf %lf %lf %lf %lf %lf", &pts, &vmse, &vr2,
                          &r2all, &dyt, &bound, &al),
                   7);
  assert_int_equal(pts, 500); /* the 10% validation split */
  assert_true(fabs(r2all - r2) < 2e-5);
  assert_true(fabs(dyt - r2) < 2e-5);
  assert_true(fabs(al - alpha) < 1e-3);
  assert_true(bound >= r2 - 1e-3);
  free(out);
  /* show gives the same fit figures */
  out = runf(&st, "load maps %s; set blocks.0.norm1 = tanh(%.9g * x); show blocks.0.norm1", m,
             alpha);
  assert_int_equal(st, 0);
  l = line_of(out, "fit: ");
  assert_non_null(l);
  double sv, sd;
  assert_int_equal(sscanf(l, "fit: val R2 %lf, DyT R2 %lf", &sv, &sd), 2);
  assert_true(fabs(sv - vr2) < 1e-5);
  assert_true(fabs(sd - r2) < 2e-5);
  free(out);
  /* a layer the mappings lack */
  out = runf(&st, "load maps %s; score blocks.9.norm1", m);
  assert_int_equal(st, 2);
  free(out);
}

static void test_front_pick(void **state) {
  (void)state;
  char dir[400], path[512];
  snprintf(dir, sizeof dir, "%s/fronts", g_dir);
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/L.csv", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  /* (flops, val_mse): scaled to [0,1] the non-dominated ends are (0,1) and
   * (1,0); the distances to the line x + y = 1 are 0 at the ends, .751 for
   * 5 FLOPs, .805 for 10 and .488 for 40: the knee is the 10-FLOP member.
   * The 20-FLOP one is dominated; minval is the 80-FLOP one. */
  fprintf(f, "layer,seed,rank,nodes,flops,train_fitness,val_fitness,val_mse,val_r2,expr\n"
             "L,0,1,7,80,0.14,0.14,0.14,0.86,\"tanh(2*x) + x * 0.1\"\n"
             "L,0,1,1,0,1,1,1,0,x\n"
             "L,1,1,3,10,0.2,0.2,0.2,0.8,tanh(3*x)\n"
             "L,0,2,4,20,0.5,0.5,0.5,0.5,sigmoid(x) * 2\n"
             "L,1,1,3,5,0.3,0.3,0.3,0.7,x * 0.5\n"
             "L,0,1,5,40,0.15,0.15,0.15,0.85,tanh(2*x) + 0.1\n"
             "M,0,1,1,0,1,1,1,0,x\n");
  fclose(f);
  int st;
  char *out = runf(&st, "load fronts %s; front L; pick L knee; pick L minval; pick L 2; layers; "
                        "undo; layers; pick L 7",
                   dir);
  assert_int_equal(st, 2); /* there is no 7th member */
  /* listed by FLOPs, numbered from 1 */
  const char *l1 = line_of(out, "   1 "), *l3 = line_of(out, "   3 "), *l6 = line_of(out, "   6 ");
  assert_non_null(l1);
  assert_non_null(l3);
  assert_non_null(l6);
  assert_non_null(strstr(l3, "knee"));
  assert_non_null(strstr(l6, "minval"));
  assert_null(line_of(out, "   7 "));
  assert_non_null(line_of(out, "L = tanh(3*x)  (#3"));
  assert_non_null(line_of(out, "L = tanh(2*x) + x * 0.1  (#6"));
  assert_non_null(line_of(out, "L = x * 0.5  (#2"));
  /* undo returns to the minval pick */
  const char *after = strstr(out, "undone");
  assert_non_null(after);
  assert_non_null(strstr(after, "tanh(2*x) + x * 0.1"));
  free(out);
  out = runf(&st, "load fronts %s; pick L middle", dir);
  assert_int_equal(st, 2);
  free(out);
  out = run("front L", &st);
  assert_int_equal(st, 2);
  free(out);
}

static void test_cost_of_session(void **state) {
  (void)state;
  int st;
  char *out = run("set a = tanh(x); set b = x * 2; cost --dim 100 --tokens 10", &st);
  assert_int_equal(st, 0);
  /* tanh 23 FLOPs and * 1: 24 FLOPs/elem over d = 100 and 10 tokens = 24,000;
   * LayerNorm 2 layers x 10 tokens x (5*100 + 2) = 10,040 */
  assert_non_null(strstr(out, "24,000"));
  assert_non_null(strstr(out, "10,040"));
  free(out);
  out = run("cost", &st);
  assert_int_equal(st, 2);
  free(out);
}

/* score uses the search's own validation split: a picked member scores
 * the val MSE its front recorded. */
static void test_score_uses_search_split(void **state) {
  (void)state;
  const char *m = write_maps("e.maps", "L", f_wiggle, 3000);
  int st;
  char *out = runf(&st,
                   "load maps %s; evolve --layer L --gens 3 --pop 30 --output %s/ev; front L; "
                   "pick L minval; score L",
                   m, g_dir);
  assert_int_equal(st, 0);
  /* the minval row of 'front': "   N seed rank nodes flops valF valMSE valR2  minval  expr" */
  const char *p = strstr(out, "minval  ");
  assert_non_null(p);
  while (p > out && p[-1] != '\n') p--;
  int num, seed, rank, nodes, flops;
  double vf, vmse, vr2;
  assert_int_equal(sscanf(p, "%d %d %d %d %d %lf %lf %lf", &num, &seed, &rank, &nodes, &flops,
                          &vf, &vmse, &vr2),
                   8);
  const char *l = strstr(out, "val pts"); /* score's table, after evolve's */
  assert_non_null(l);
  l = line_of(l, "L  ");
  assert_non_null(l);
  size_t pts;
  double smse, sr2;
  assert_int_equal(sscanf(l, "L %zu %lf %lf", &pts, &smse, &sr2), 3);
  assert_int_equal(pts, 300);
  assert_true(fabs(smse - vmse) <= 1e-5 * vmse + 1e-9);
  assert_true(fabs(sr2 - vr2) < 1e-4);
  free(out);
}

/* A script stopped by an error stops its background search (keeping its
 * front) instead of waiting for it; one that runs to its end waits. */
static void test_background_in_scripts(void **state) {
  (void)state;
  const char *m = write_maps("f.maps", "L", f_wiggle, 2000);
  int st;
  char *out = runf(&st,
                   "load maps %s; evolve --layer L --pop 20 --gens 1000000 --output %s/bg &; frob",
                   m, g_dir);
  assert_int_equal(st, 2);
  free(out);
  char path[600];
  snprintf(path, sizeof path, "%s/bg/L.csv", g_dir);
  assert_int_equal(access(path, R_OK), 0); /* the partial front is kept */
  out = runf(&st, "load maps %s; evolve --layer L --pop 20 --gens 2 --output %s/bg2 &; jobs", m,
             g_dir);
  assert_int_equal(st, 0);
  free(out);
  snprintf(path, sizeof path, "%s/bg2/chosen.exprs", g_dir);
  assert_int_equal(access(path, R_OK), 0); /* it ran to its end */
  out = runf(&st, "load maps %s; stop", m);
  assert_int_equal(st, 2); /* nothing to stop */
  free(out);
}

static int has(char **v, const char *s) {
  for (int i = 0; v[i]; i++)
    if (strcmp(v[i], s) == 0) return 1;
  return 0;
}

static void test_complete_new_commands(void **state) {
  (void)state;
  nl_session *s = nl_repl_session();
  nl_session_init(s);
  nl_session_set_expr(s, "blocks.0.norm1", "tanh(1.5 * x) + 2", NULL, NULL);
  int files, n;
  /* fold's NODE: the node paths of the layer's expression, not file names */
  char **v = nl_complete_candidates(nl_repl_session(), "fold blocks.0.norm1 0.0", &files);
  assert_int_equal(files, 0);
  for (n = 0; v[n]; n++) {}
  assert_int_equal(n, 4); /* 0.0 0.0.0 0.0.0.0 0.0.0.1 */
  assert_true(has(v, "0.0") && has(v, "0.0.0.1"));
  nl_session_free_names(v);
  v = nl_complete_candidates(nl_repl_session(), "pick blocks.0.norm1 k", &files);
  assert_true(has(v, "knee"));
  nl_session_free_names(v);
  v = nl_complete_candidates(nl_repl_session(), "score a", &files);
  assert_true(has(v, "all"));
  nl_session_free_names(v);
  v = nl_complete_candidates(nl_repl_session(), "imp", &files);
  assert_true(has(v, "impact"));
  nl_session_free_names(v);
  nl_session_free(s);
}

static int setup(void **state) {
  (void)state;
  const char *t = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/normlab-wb.XXXXXX", t && *t ? t : "/tmp");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  nl_cli_setup(); /* the front-ends wired as the program wires them */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_paths),
      cmocka_unit_test(test_refit_recovers_constants),
      cmocka_unit_test(test_fold_closed_forms),
      cmocka_unit_test(test_refit_command),
      cmocka_unit_test(test_fold_command),
      cmocka_unit_test(test_impact_command),
      cmocka_unit_test(test_score_matches_dyt),
      cmocka_unit_test(test_front_pick),
      cmocka_unit_test(test_cost_of_session),
      cmocka_unit_test(test_complete_new_commands),
      cmocka_unit_test(test_score_uses_search_split),
      cmocka_unit_test(test_background_in_scripts),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
