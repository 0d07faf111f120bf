/* `normlab bench gp`: generations per second of the GP search with the
 * paper's settings (population 500, 10 Adam steps on the best 100, 20 nodes)
 * on one layer's points, with one thread and with all threads, and its
 * node evaluations per second per core beside the expression engine's
 * limit (the fused loops of `bench expr`). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "app/bench.h"
#include "app/bench_fused.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "model/maps.h"
#include "search/gp.h"

typedef struct stopper {
  double seconds;
  int min_gens;
} stopper;

static int stop_cb(const nl_gp_progress *p, void *u) {
  const stopper *s = u;
  return p->gen >= s->min_gens && p->elapsed >= s->seconds;
}

typedef struct figures {
  int threads, gens;
  double seconds, node_evals;
} figures;

static int measure(const float *x, const float *y, size_t n, int threads, double secs,
                   figures *f, nl_error *err) {
  nl_gp_config c;
  nl_gp_config_default(&c);
  c.gens = 1000000;
  c.threads = threads;
  stopper st = {secs, 3};
  nl_gp_result r;
  int rc = nl_gp_run(&c, "bench", x, y, n, 0, stop_cb, &st, &r, err);
  if (rc != 0) return -1;
  f->threads = threads;
  f->gens = r.gens_done;
  f->seconds = r.seconds;
  f->node_evals = r.node_evals;
  nl_gp_result_free(&r);
  return 0;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  double secs = nl_arg_num(a, "seconds");
  if (secs <= 0) secs = 3;
  const char *maps = nl_arg_str(a, "maps");
  nl_maps m;
  nl_maps_init(&m);
  const float *x, *y;
  float *sx = NULL, *sy = NULL;
  size_t n;
  char source[512];
  if (maps) {
    if (nl_maps_load(&m, maps, err) != 0) return -1;
    x = m.layers[0].x;
    y = m.layers[0].y;
    n = m.layers[0].n;
    snprintf(source, sizeof source, "%s, layer %s", maps, m.layers[0].name);
  } else {
    n = 50000;
    sx = nl_xmalloc(sizeof(float) * n);
    sy = nl_xmalloc(sizeof(float) * n);
    nl_rng r;
    nl_rng_seed(&r, 1);
    for (size_t i = 0; i < n; i++) {
      sx[i] = (float)(0.5 * nl_rng_normal(&r));
      sy[i] = (float)(tanh(3 * sx[i]) + 0.3 * nl_rng_normal(&r));
    }
    x = sx;
    y = sy;
    snprintf(source, sizeof source, "synthetic y = tanh(3x) + noise");
  }
  int T = nl_threads_count(ctx->threads);
  figures f1, fT;
  int rc = measure(x, y, n, 1, secs * 0.4, &f1, err);
  if (rc == 0) rc = T > 1 ? measure(x, y, n, T, secs * 0.4, &fT, err) : (fT = f1, 0);
  /* the engine's limit on one core */
  double limit = 0;
  if (rc == 0) {
    nl_prog p;
    double nodes = 0;
    for (int t = 0; t < NL_BENCH_NTREES && rc == 0; t++) {
      nl_prog_init(&p);
      rc = nl_parse(nl_bench_trees[t], 1, &p, err);
      nodes += p.len;
      nl_prog_free(&p);
    }
    enum { NP = 45000 };
    float *bx = nl_aalloc(sizeof(float) * NP), *by = nl_aalloc(sizeof(float) * NP);
    for (int i = 0; i < NP; i++) bx[i] = -6.0f + 12.0f * (float)i / NP;
    if (rc == 0) limit = nl_bench_fused_rate(bx, by, NP, nodes, secs * 0.2);
    nl_afree(bx);
    nl_afree(by);
  }
  if (rc == 0) {
    double g1 = f1.gens / f1.seconds, gT = fT.gens / fT.seconds;
    double ne1 = f1.node_evals / f1.seconds, neT = fT.node_evals / fT.seconds / fT.threads;
    if (nl_arg_flag(a, "json")) {
      json_t *o = json_pack(
          "{s:s,s:s,s:I,s:i,s:f,s:f,s:f,s:f,s:f,s:f}", "bench", "gp", "data", source,
          "points", (json_int_t)n, "threads", fT.threads, "gens_per_s_1thread", g1,
          "gens_per_s", gT, "seconds_per_gen", 1.0 / gT, "node_evals_per_s_per_core_1thread",
          ne1, "node_evals_per_s_per_core", neT, "limit_node_evals_per_s_per_core", limit);
      nl_json_print(ctx->out, o);
      json_decref(o);
    } else {
      nl_bench_print_machine(ctx);
      fprintf(ctx->out,
              "GP search, paper settings (population 500, best 100 get 10 Adam steps on %d\n"
              "subsampled points, at most 20 nodes) on %zu points (%s):\n\n",
              4096, n, source);
      fprintf(ctx->out, "  %-30s %8.2f gens/s  %7.3f s/gen  %10.3g node-evals/s per core\n",
              "1 thread", g1, 1.0 / g1, ne1);
      if (T > 1)
        fprintf(ctx->out, "  %-30s %8.2f gens/s  %7.3f s/gen  %10.3g node-evals/s per core\n",
                "all threads", gT, 1.0 / gT, neT);
      fprintf(ctx->out, "  %-30s %8s         %7s        %10.3g node-evals/s per core\n",
              "limit: fused loops (bench expr)", "", "", limit);
      fprintf(ctx->out,
              "\n  node-evals: points x nodes of forward evaluations (a gradient step counts "
              "twice);\n  %.0f%% of the limit per core with %d thread(s). Other load on the "
              "machine lowers these.\n",
              limit > 0 ? 100.0 * neT / limit : 0.0, fT.threads);
    }
  }
  free(sx);
  free(sy);
  nl_maps_free(&m);
  return rc;
}

const nl_bench nl_bench_gp = {
    .name = "gp",
    .summary = "GP search: generations/s and node-evals/s per core vs the engine's limit",
    .run = run,
};
