/* `normlab bench norm`: ns per token and bytes moved per token of the norm
 * slots' forward (LayerNorm: two passes, DyT and expressions: one), each
 * run by nl_norm_forward exactly as the forward pass runs it, at widths
 * 64, 192, 768 and token counts whose arrays fit in L1, in L2 and not in
 * the last-level cache, beside the machine's streaming-copy bandwidth. */
#define _POSIX_C_SOURCE 200809L
#include "app/bench_norm.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/bench.h"
#include "app/bench_fused.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/threads.h"
#include "base/timer.h"
#include "expr/expr.h"
#include "model/norm.h"
#include "session/session.h"

/* ---- the machine ---- */

static long read_size(const char *path) {
  FILE *fp = fopen(path, "r");
  if (!fp) return 0;
  char buf[64] = "";
  long v = 0;
  if (fgets(buf, sizeof buf, fp)) {
    char *end;
    v = strtol(buf, &end, 10);
    if (*end == 'K') v *= 1024;
    else if (*end == 'M') v *= 1024 * 1024;
    else if (*end == 'G') v *= 1024L * 1024 * 1024;
  }
  fclose(fp);
  return v;
}

static int read_text(const char *path, char *buf, size_t cap) {
  FILE *fp = fopen(path, "r");
  if (!fp) return -1;
  buf[0] = '\0';
  if (!fgets(buf, (int)cap, fp)) buf[0] = '\0';
  fclose(fp);
  buf[strcspn(buf, "\n")] = '\0';
  return 0;
}

void nl_cache_sizes_read(nl_cache_sizes *c) {
  memset(c, 0, sizeof *c);
  for (int i = 0; i < 16; i++) {
    char dir[96], path[128], type[32], level[16];
    snprintf(dir, sizeof dir, "/sys/devices/system/cpu/cpu0/cache/index%d", i);
    snprintf(path, sizeof path, "%s/type", dir);
    if (read_text(path, type, sizeof type) != 0) break;
    snprintf(path, sizeof path, "%s/level", dir);
    if (read_text(path, level, sizeof level) != 0) continue;
    snprintf(path, sizeof path, "%s/size", dir);
    long size = read_size(path);
    int lv = atoi(level);
    if (strcmp(type, "Instruction") == 0 || size <= 0) continue;
    if (lv == 1) c->l1d = size;
    if (lv == 2) c->l2 = size;
    if (lv >= c->llc_level) {
      c->llc_level = lv;
      c->llc = size;
    }
  }
}

typedef struct {
  char *dst;
  const char *src;
  size_t bytes, chunk;
} copy_job;

static void copy_task(size_t i, int worker, void *user) {
  (void)worker;
  const copy_job *j = user;
  size_t a = i * j->chunk, n = j->bytes - a < j->chunk ? j->bytes - a : j->chunk;
  memcpy(j->dst + a, j->src + a, n);
}

double nl_copy_bandwidth(size_t bytes, int threads, double seconds) {
  char *src = nl_aalloc(bytes), *dst = nl_aalloc(bytes);
  for (size_t i = 0; i < bytes; i++) src[i] = (char)(i * 31);
  memset(dst, 0, bytes);
  const size_t chunk = 1 << 20;
  copy_job j = {dst, src, bytes, chunk};
  size_t nch = (bytes + chunk - 1) / chunk;
  double best = 1e30, t_end = nl_now() + seconds;
  int reps = 0;
  while (reps < 3 || nl_now() < t_end) {
    double t0 = nl_now();
    nl_parallel_for_n(nch, threads, copy_task, &j);
    double dt = nl_now() - t0;
    if (dt < best) best = dt;
    reps++;
  }
  nl_afree(src);
  nl_afree(dst);
  return 2.0 * (double)bytes / best * 1e-9;
}

/* ---- the formulas ---- */

double nl_norm_bytes_per_token(nl_norm_kind kind, int d) {
  return kind == NL_NORM_LAYERNORM ? 12.0 * d : 8.0 * d;
}

/* FLOPs per token by the cost model of expr/cost.c. */
static double flops_per_token(const nl_norm *n, int d) {
  switch (n->kind) {
    case NL_NORM_LAYERNORM: return nl_cost_layernorm_token(d).flops;
    case NL_NORM_DYT: return nl_cost_dyt_token(d).flops;
    case NL_NORM_EXPR: {
      nl_prog s;
      nl_prog_init(&s);
      nl_prog_copy(&s, n->prog);
      nl_simplify(&s);
      nl_cost_opts co = {.clip_cost = 0};
      double f = nl_cost_expr_token(nl_cost(&s, &co), d).flops;
      nl_prog_free(&s);
      return f;
    }
  }
  return 0;
}

/* ---- measuring ---- */

void nl_norm_probe_init(nl_norm_probe *p, nl_norm_kind kind, const struct nl_prog *prog, int d) {
  memset(p, 0, sizeof *p);
  p->w = nl_aalloc(sizeof(float) * (size_t)d);
  p->b = nl_aalloc(sizeof(float) * (size_t)d);
  for (int j = 0; j < d; j++) {
    p->w[j] = 1.0f + 0.01f * (float)(j % 7);
    p->b[j] = 0.001f * (float)(j % 5);
  }
  p->alpha = 0.5f;
  p->norm.kind = kind;
  p->norm.w = p->w;
  p->norm.b = p->b;
  p->norm.alpha = &p->alpha;
  p->norm.prog = kind == NL_NORM_EXPR ? (struct nl_prog *)prog : NULL;
  snprintf(p->norm.name, sizeof p->norm.name, "%s", nl_norm_kind_name(kind));
}

void nl_norm_probe_free(nl_norm_probe *p) {
  nl_afree(p->w);
  nl_afree(p->b);
  memset(p, 0, sizeof *p);
}

void nl_norm_time(nl_norm *const *slots, int k, const float *x, float *out, int N, int d,
                  double eps, double seconds, int threads, double *best) {
  int outer = nl_threads_enter(threads);
  int *reps = nl_xmalloc(sizeof(int) * (size_t)k);
  for (int s = 0; s < k; s++) {
    /* warm up, then as many calls per sample as last about 0.2 ms */
    double t0 = nl_now();
    nl_norm_forward(slots[s], out, NULL, NULL, NULL, NULL, x, N, d, (float)eps, NULL);
    double dt = nl_now() - t0;
    t0 = nl_now();
    nl_norm_forward(slots[s], out, NULL, NULL, NULL, NULL, x, N, d, (float)eps, NULL);
    dt = nl_now() - t0;
    reps[s] = dt > 0 ? (int)(2e-4 / dt) + 1 : 1000;
    if (reps[s] > 100000) reps[s] = 100000;
    best[s] = 1e30;
  }
  double t_end = nl_now() + seconds;
  for (int round = 0; round < 3 || nl_now() < t_end; round++) {
    for (int s = 0; s < k; s++) {
      double t0 = nl_now();
      for (int r = 0; r < reps[s]; r++)
        nl_norm_forward(slots[s], out, NULL, NULL, NULL, NULL, x, N, d, (float)eps, NULL);
      double per = (nl_now() - t0) / reps[s];
      if (per < best[s]) best[s] = per;
    }
  }
  free(reps);
  nl_threads_leave(outer);
}

/* ---- the benchmark ---- */

#define DEFAULT_L1 (32L << 10)
#define DEFAULT_L2 (1L << 20)
#define DEFAULT_LLC (32L << 20)
#define MAX_SET_BYTES (1L << 30) /* x and out together */

typedef struct {
  const char *name; /* table name */
  nl_norm_probe probe;
} slot_t;

static const char *fits_in(double bytes, const nl_cache_sizes *c) {
  if (bytes <= c->l1d) return "L1";
  if (bytes <= c->l2) return "L2";
  if (c->llc_level > 2 && bytes <= c->llc) return "L3";
  return "memory";
}

static void human(char *buf, size_t n, double bytes) {
  if (bytes >= 1 << 30) snprintf(buf, n, "%.1f GiB", bytes / (1 << 30));
  else if (bytes >= 1 << 20) snprintf(buf, n, "%.1f MiB", bytes / (1 << 20));
  else snprintf(buf, n, "%.1f KiB", bytes / 1024);
}

/* The expressions: --set FILE, else the session's set, else the built-in
 * mix of `bench expr`. *what says which. */
static int load_set(nl_ctx *ctx, const nl_args *a, nl_exprset *set, const char **what,
                    nl_error *err) {
  const char *file = nl_arg_str(a, "set");
  if (file) {
    if (nl_exprset_load(file, set, err) != 0) return -1;
    if (set->n == 0) return nl_fail(err, NL_EINPUT, "%s: no expressions in the set", file);
    *what = file;
    return 0;
  }
  nl_session *s = ctx->session;
  if (s && s->set.n > 0) {
    for (int i = 0; i < s->set.n; i++) nl_exprset_set(set, s->set.e[i].name, &s->set.e[i].prog, NULL);
    *what = "the session's expression set";
    return 0;
  }
  nl_prog p;
  nl_prog_init(&p);
  for (int t = 0; t < NL_BENCH_NTREES; t++) {
    char name[16];
    snprintf(name, sizeof name, "mix%d", t + 1);
    if (nl_parse(nl_bench_trees[t], 1, &p, err) != 0) {
      nl_prog_free(&p);
      return -1;
    }
    nl_exprset_set(set, name, &p, NULL);
  }
  nl_prog_free(&p);
  *what = "built-in: the 5 representative trees of 'bench expr' (clip, tanh, sigmoid forms)";
  return 0;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  double seconds = nl_arg_num(a, "seconds");
  if (!(seconds > 0 && seconds <= 3600))
    return nl_fail(err, NL_EINPUT, "--seconds must be in (0, 3600]");
  long dims[3] = {64, 192, 768}, ndims = 3, tok_given = 0;
  if (nl_arg_given(a, "dim")) {
    if (nl_arg_int_range(a, "dim", 1, 1L << 16, &dims[0], err)) return -1;
    ndims = 1;
  }
  if (nl_arg_given(a, "tokens") && nl_arg_int_range(a, "tokens", 1, 1L << 26, &tok_given, err))
    return -1;
  for (int i = 0; i < ndims; i++)
    if (tok_given && 8.0 * tok_given * dims[i] > MAX_SET_BYTES)
      return nl_fail(err, NL_EINPUT,
                     "--tokens %ld at d = %ld needs %.0f MiB of arrays; at most %ld MiB", tok_given,
                     dims[i], 8.0 * tok_given * dims[i] / (1 << 20), MAX_SET_BYTES >> 20);
  nl_exprset set;
  nl_exprset_init(&set);
  const char *what = NULL;
  if (load_set(ctx, a, &set, &what, err) != 0) {
    nl_exprset_free(&set);
    return -1;
  }
  const int as_json = nl_arg_flag(a, "json");
  const int threads = nl_threads_count(ctx->threads);
  nl_cache_sizes cs;
  nl_cache_sizes_read(&cs);
  nl_cache_sizes c = cs; /* with fallbacks, for choosing sizes */
  if (c.l1d <= 0) c.l1d = DEFAULT_L1;
  if (c.l2 <= 0) c.l2 = DEFAULT_L2;
  if (c.llc <= 0) c.llc = DEFAULT_LLC, c.llc_level = 3;
  size_t copy_bytes = (size_t)(4 * c.llc > (64L << 20) ? 4 * c.llc : (64L << 20));
  if (copy_bytes > MAX_SET_BYTES / 2) copy_bytes = MAX_SET_BYTES / 2;
  double copy_gbs = nl_copy_bandwidth(copy_bytes, threads, seconds * 0.1 < 0.3 ? seconds * 0.1 : 0.3);

  /* the cases: (d, tokens) */
  long cd[32], ct[32];
  int ncase = 0;
  for (int i = 0; i < ndims; i++) {
    long d = dims[i];
    if (tok_given) {
      cd[ncase] = d, ct[ncase++] = tok_given;
      continue;
    }
    long t1 = c.l1d / 2 / (8 * d), t2 = c.l2 / 2 / (8 * d);
    long t3 = (4 * c.llc + 8 * d - 1) / (8 * d);
    if (8.0 * t3 * d > MAX_SET_BYTES) t3 = MAX_SET_BYTES / (8 * d);
    cd[ncase] = d, ct[ncase++] = t1 > 0 ? t1 : 1;
    cd[ncase] = d, ct[ncase++] = t2 > 0 ? t2 : 1;
    cd[ncase] = d, ct[ncase++] = t3;
  }
  const int k = 2 + set.n;
  slot_t *slots = nl_xcalloc((size_t)k, sizeof *slots);
  nl_norm **sp = nl_xmalloc(sizeof(nl_norm *) * (size_t)k);
  double *best = nl_xmalloc(sizeof(double) * (size_t)k);
  json_t *jcases = json_array();
  if (!as_json) {
    nl_bench_print_machine(ctx);
    fprintf(ctx->out, "caches (sysfs, cpu0): L1d %ld KiB, L2 %ld KiB, L%d %ld KiB%s\n",
            cs.l1d >> 10, cs.l2 >> 10, cs.llc_level, cs.llc >> 10,
            cs.l1d && cs.l2 && cs.llc ? "" : " (0: not found; sizes chosen for 32 KiB, 1 MiB, 32 MiB)");
    char hb[32];
    human(hb, sizeof hb, (double)copy_bytes);
    fprintf(ctx->out, "limit: streaming copy of %s on %d thread%s: %.1f GB/s (read + write)\n",
            hb, threads, threads == 1 ? "" : "s", copy_gbs);
    fprintf(ctx->out, "expressions: %s\n", what);
    fprintf(ctx->out,
            "each slot run by nl_norm_forward as the forward pass runs it; bytes/token by the\n"
            "formula (FP32 activations: LayerNorm 2 reads + 1 write = 12d, DyT and expressions\n"
            "1 read + 1 write = 8d); GB/s = formula bytes / time; best of interleaved rounds\n");
  }
  for (int ci = 0; ci < ncase; ci++) {
    const int d = (int)cd[ci], N = (int)ct[ci];
    const size_t n = (size_t)N * d;
    float *x = nl_aalloc(sizeof(float) * n), *out = nl_aalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = (float)((int)((uint32_t)(i * 2654435761u) >> 20) - 2048) / 682.0f; /* in [-3, 3] */
    memset(out, 0, sizeof(float) * n);
    nl_norm_probe_init(&slots[0].probe, NL_NORM_LAYERNORM, NULL, d);
    slots[0].name = "LayerNorm";
    nl_norm_probe_init(&slots[1].probe, NL_NORM_DYT, NULL, d);
    slots[1].name = "DyT";
    for (int e = 0; e < set.n; e++) {
      nl_norm_probe_init(&slots[2 + e].probe, NL_NORM_EXPR, &set.e[e].prog, d);
      slots[2 + e].name = set.e[e].name;
    }
    for (int s = 0; s < k; s++) sp[s] = &slots[s].probe.norm;
    nl_norm_time(sp, k, x, out, N, d, 1e-6, seconds / ncase, threads, best);
    const double ws = 8.0 * (double)n;
    const char *fit = fits_in(ws, &c);
    json_t *jr = json_array();
    if (!as_json) {
      char hb[32];
      human(hb, sizeof hb, ws);
      fprintf(ctx->out, "\nd = %d, %d tokens: x and out %s, fit in %s\n", d, N, hb, fit);
      fprintf(ctx->out, "  %-16s %6s %11s %12s %8s %8s %9s\n", "slot", "passes", "ns/token",
              "bytes/token", "GB/s", "of copy", "LN/slot");
    }
    for (int s = 0; s < k; s++) {
      const nl_norm *nm = sp[s];
      double ns = best[s] / N * 1e9, bpt = nl_norm_bytes_per_token(nm->kind, d);
      double gbs = bpt / ns, ratio = best[0] / best[s];
      int passes = nm->kind == NL_NORM_LAYERNORM ? 2 : 1;
      if (as_json) {
        json_t *r = json_pack("{s:s,s:s,s:i,s:o,s:o,s:o,s:o,s:o}", "name", slots[s].name, "kind",
                              nl_norm_kind_name(nm->kind), "passes", passes, "ns_per_token",
                              nl_json_rounded(ns, 3), "bytes_per_token", json_real(bpt),
                              "flops_per_token", json_real(flops_per_token(nm, d)), "gb_per_s",
                              nl_json_rounded(gbs, 3), "layernorm_time_ratio",
                              nl_json_rounded(ratio, 4));
        if (nm->kind == NL_NORM_EXPR) {
          char *e = nl_print(nm->prog, NL_PRINT_EXACT);
          json_object_set_new(r, "expr", json_string(e));
          free(e);
        }
        json_array_append_new(jr, r);
      } else {
        fprintf(ctx->out, "  %-16s %6d %11.2f %12.0f %8.2f %7.0f%% %8.2fx\n", slots[s].name,
                passes, ns, bpt, gbs, 100.0 * gbs / copy_gbs, ratio);
      }
    }
    if (as_json)
      json_array_append_new(jcases, json_pack("{s:i,s:i,s:I,s:s,s:o}", "dim", d, "tokens", N,
                                              "working_set_bytes", (json_int_t)ws, "fits",
                                              fit, "results", jr));
    else
      json_decref(jr);
    for (int s = 0; s < k; s++) nl_norm_probe_free(&slots[s].probe);
    nl_afree(x);
    nl_afree(out);
  }
  if (as_json) {
    json_t *j = json_pack("{s:s,s:i,s:{s:I,s:I,s:I,s:i},s:o,s:I,s:s,s:o}", "bench", "norm",
                          "threads", threads, "caches", "l1d", (json_int_t)cs.l1d, "l2",
                          (json_int_t)cs.l2, "llc", (json_int_t)cs.llc, "llc_level",
                          cs.llc_level, "copy_gb_per_s", nl_json_rounded(copy_gbs, 3),
                          "copy_bytes", (json_int_t)copy_bytes, "set", what, "cases", jcases);
    nl_json_print(ctx->out, j);
    json_decref(j);
  } else {
    json_decref(jcases);
  }
  free(slots);
  free(sp);
  free(best);
  nl_exprset_free(&set);
  return 0;
}

const nl_bench nl_bench_norm = {
    .name = "norm",
    .summary = "norm slots: ns and bytes per token, LayerNorm vs DyT vs expressions",
    .run = run,
};
