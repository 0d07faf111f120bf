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
#include "base/json.h"
#include "base/mem.h"
#include "base/timer.h"
#include "expr/expr.h"

#define NPOINTS 45000

typedef struct rate {
  double node_evals, seconds;
} rate;

static double per_s(rate r) { return r.seconds > 0 ? r.node_evals / r.seconds : 0; }

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  double secs = nl_arg_num(a, "seconds");
  if (secs <= 0) secs = 3;
  nl_prog progs[NL_BENCH_NTREES];
  for (int t = 0; t < NL_BENCH_NTREES; t++) {
    nl_prog_init(&progs[t]);
    if (nl_parse(nl_bench_trees[t], 1, &progs[t], err) != 0) return -1;
  }
  float *x = nl_aalloc(sizeof(float) * NPOINTS), *y = nl_aalloc(sizeof(float) * NPOINTS);
  float *z = nl_aalloc(sizeof(float) * NPOINTS);
  for (int i = 0; i < NPOINTS; i++) x[i] = -6.0f + 12.0f * (float)i / NPOINTS;
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, 64);
  double nodes = 0;
  for (int t = 0; t < NL_BENCH_NTREES; t++) nodes += progs[t].len;

  /* check the fused loops compute what the evaluator computes */
  double maxdiff = 0;
  for (int t = 0; t < NL_BENCH_NTREES; t++) {
    nl_eval(&progs[t], x, y, NPOINTS, &ws);
    nl_bench_fused[t](x, z, NPOINTS);
    for (int i = 0; i < NPOINTS; i++) {
      double d = fabsf(y[i] - z[i]) / (1.0 + fabsf(z[i]));
      if (d > maxdiff) maxdiff = d;
    }
  }

  /* Rounds over the whole mix, the methods interleaved so that they see
   * the same machine; each figure is the best round (the least disturbed
   * by other work on the machine). */
  rate rb = {0, 1e30}, rf = {0, 1e30}, rg = {0, 1e30}, rs = {0, 1e30};
  float grad[64];
  volatile double sink = 0;
  double t_end = nl_now() + secs;
  int rounds = 0;
  while (rounds < 3 || nl_now() < t_end) {
    double t0 = nl_now();
    for (int t = 0; t < NL_BENCH_NTREES; t++) nl_eval(&progs[t], x, y, NPOINTS, &ws);
    double t1 = nl_now();
    for (int t = 0; t < NL_BENCH_NTREES; t++) nl_bench_fused[t](x, z, NPOINTS);
    double t2 = nl_now();
    for (int t = 0; t < NL_BENCH_NTREES; t++) (void)nl_mse_grad(&progs[t], x, z, NPOINTS, grad, &ws);
    double t3 = nl_now();
    if (rounds % 8 == 0)
      for (int t = 0; t < NL_BENCH_NTREES; t++)
        for (int i = 0; i < NPOINTS; i += 16) sink += nl_eval1(&progs[t], x[i]);
    double t4 = nl_now();
    if (t1 - t0 < rb.seconds) rb.seconds = t1 - t0;
    if (t2 - t1 < rf.seconds) rf.seconds = t2 - t1;
    if (t3 - t2 < rg.seconds) rg.seconds = t3 - t2;
    if (rounds % 8 == 0 && t4 - t3 < rs.seconds) rs.seconds = t4 - t3;
    rounds++;
  }
  (void)sink;
  rb.node_evals = rf.node_evals = rg.node_evals = nodes * NPOINTS;
  rs.node_evals = nodes * (NPOINTS / 16);

  if (nl_arg_flag(a, "json")) {
    json_t *o = json_pack("{s:s,s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:i}", "bench", "expr", "trees",
                          NL_BENCH_NTREES, "points", NPOINTS, "nodes_per_tree", nodes / NL_BENCH_NTREES,
                          "batched_node_evals_per_s", per_s(rb), "fused_node_evals_per_s",
                          per_s(rf), "mse_grad_node_evals_per_s", per_s(rg),
                          "scalar_node_evals_per_s", per_s(rs), "fused_vs_batched_max_rel_diff",
                          maxdiff, "rounds", rounds);
    nl_json_print(ctx->out, o);
    json_decref(o);
  } else {
    nl_bench_print_machine(ctx);
    fprintf(ctx->out, "expression evaluation, one core, %d trees of %.1f nodes on average "
                      "(tanh, sigmoid, clip), %d points each:\n\n",
            NL_BENCH_NTREES, nodes / NL_BENCH_NTREES, NPOINTS);
    for (int t = 0; t < NL_BENCH_NTREES; t++)
      fprintf(ctx->out, "  %-44s %2d nodes\n", nl_bench_trees[t], progs[t].len);
    fprintf(ctx->out, "\n  %-44s %10.3g node-evals/s  (%.0f%% of the limit)\n",
            "batched evaluator (nl_eval)", per_s(rb), 100.0 * per_s(rb) / per_s(rf));
    fprintf(ctx->out, "  %-44s %10.3g node-evals/s\n", "limit: fused hand-written loops",
            per_s(rf));
    fprintf(ctx->out, "  %-44s %10.3g node-evals/s\n", "MSE + gradient, reverse mode (nl_mse_grad)",
            per_s(rg));
    fprintf(ctx->out, "  %-44s %10.3g node-evals/s\n", "scalar per-point interpreter (nl_eval1)",
            per_s(rs));
    fprintf(ctx->out, "\n  best of %d rounds; batched vs fused results: max relative difference %.2g\n",
            rounds, maxdiff);
  }
  nl_eval_ws_free(&ws);
  for (int t = 0; t < NL_BENCH_NTREES; t++) nl_prog_free(&progs[t]);
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
