/* `normlab bench expr`: node evaluations per second of the batched
 * expression evaluator on one core, beside the machine's limit for the
 * same work: a fused hand-written loop of the same trees with the same
 * vectorised approximations (what a compiler can make of each tree when
 * it knows it in advance), and the per-point scalar interpreter. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "app/bench.h"
#include "app/bench_fused.h"
#include "base/mem.h"
#include "base/timer.h"
#include "expr/expr.h"

#define NPOINTS 45000
#define NTREES NL_BENCH_NTREES
#define trees nl_bench_trees
#define fused nl_bench_fused

typedef struct rate {
  double node_evals, seconds;
} rate;

static double per_s(rate r) { return r.seconds > 0 ? r.node_evals / r.seconds : 0; }

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  double secs = nl_arg_num(a, "seconds");
  if (secs <= 0) secs = 3;
  nl_prog progs[NTREES];
  for (int t = 0; t < NTREES; t++) {
    nl_prog_init(&progs[t]);
    if (nl_parse(trees[t], 1, &progs[t], err) != 0) return -1;
  }
  float *x = nl_aalloc(sizeof(float) * NPOINTS), *y = nl_aalloc(sizeof(float) * NPOINTS);
  float *z = nl_aalloc(sizeof(float) * NPOINTS);
  for (int i = 0; i < NPOINTS; i++) x[i] = -6.0f + 12.0f * (float)i / NPOINTS;
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, 64);
  double nodes = 0;
  for (int t = 0; t < NTREES; t++) nodes += progs[t].len;

  /* check the fused loops compute what the evaluator computes */
  double maxdiff = 0;
  for (int t = 0; t < NTREES; t++) {
    nl_eval(&progs[t], x, y, NPOINTS, &ws);
    fused[t](x, z, NPOINTS);
    for (int i = 0; i < NPOINTS; i++) {
      double d = fabsf(y[i] - z[i]) / (1.0 + fabsf(z[i]));
      if (d > maxdiff) maxdiff = d;
    }
  }

  /* time each method in rounds over the whole mix, ~40% of the time each
   * for the batched evaluator and the fused loops, the rest scalar */
  rate rb = {0, 0}, rf = {0, 0}, rs = {0, 0};
  double t_end = nl_now() + secs * 0.4;
  while (nl_now() < t_end) {
    double t0 = nl_now();
    for (int t = 0; t < NTREES; t++) nl_eval(&progs[t], x, y, NPOINTS, &ws);
    rb.seconds += nl_now() - t0;
    rb.node_evals += nodes * NPOINTS;
  }
  rf.node_evals = nl_bench_fused_rate(x, z, NPOINTS, nodes, secs * 0.4);
  rf.seconds = 1;
  rate rg = {0, 0};
  float grad[64];
  t_end = nl_now() + secs * 0.1;
  while (nl_now() < t_end) {
    double t0 = nl_now();
    for (int t = 0; t < NTREES; t++) (void)nl_mse_grad(&progs[t], x, z, NPOINTS, grad, &ws);
    rg.seconds += nl_now() - t0;
    rg.node_evals += nodes * NPOINTS;
  }
  t_end = nl_now() + secs * 0.05;
  volatile double sink = 0;
  while (nl_now() < t_end) {
    double t0 = nl_now();
    for (int t = 0; t < NTREES; t++)
      for (int i = 0; i < NPOINTS; i += 16) sink += nl_eval1(&progs[t], x[i]);
    rs.seconds += nl_now() - t0;
    rs.node_evals += nodes * (NPOINTS / 16);
  }
  (void)sink;

  if (nl_arg_flag(a, "json")) {
    json_t *o = json_pack("{s:s,s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f}", "bench", "expr", "trees",
                          NTREES, "points", NPOINTS, "nodes_per_tree", nodes / NTREES,
                          "batched_node_evals_per_s", per_s(rb), "fused_node_evals_per_s",
                          per_s(rf), "mse_grad_node_evals_per_s", per_s(rg),
                          "scalar_node_evals_per_s", per_s(rs), "fused_vs_batched_max_rel_diff",
                          maxdiff);
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fprintf(ctx->out, "%s\n", s);
    free(s);
    json_decref(o);
  } else {
    nl_bench_print_machine(ctx);
    fprintf(ctx->out, "expression evaluation, one core, %d trees of %.1f nodes on average "
                      "(tanh, sigmoid, clip), %d points each:\n\n",
            NTREES, nodes / NTREES, NPOINTS);
    for (int t = 0; t < NTREES; t++)
      fprintf(ctx->out, "  %-44s %2d nodes\n", trees[t], progs[t].len);
    fprintf(ctx->out, "\n  %-44s %10.3g node-evals/s  (%.0f%% of the limit)\n",
            "batched evaluator (nl_eval)", per_s(rb), 100.0 * per_s(rb) / per_s(rf));
    fprintf(ctx->out, "  %-44s %10.3g node-evals/s\n", "limit: fused hand-written loops",
            per_s(rf));
    fprintf(ctx->out, "  %-44s %10.3g node-evals/s\n", "MSE + gradient, reverse mode (nl_mse_grad)",
            per_s(rg));
    fprintf(ctx->out, "  %-44s %10.3g node-evals/s\n", "scalar per-point interpreter (nl_eval1)",
            per_s(rs));
    fprintf(ctx->out, "\n  batched vs fused results: max relative difference %.2g\n", maxdiff);
  }
  nl_eval_ws_free(&ws);
  for (int t = 0; t < NTREES; t++) nl_prog_free(&progs[t]);
  nl_afree(x);
  nl_afree(y);
  nl_afree(z);
  return 0;
}

const nl_bench nl_bench_expr = {
    .name = "expr",
    .summary = "batched expression evaluation: node-evals/s per core vs a fused loop",
    .run = run,
};
