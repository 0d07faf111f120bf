#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/bench.h"
#include "app/data_load.h"
#include "app/model_path.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/text.h"
#include "base/threads.h"
#include "base/timer.h"

/* The bench table: one row per benchmark, defined in bench_<name>.c. */
extern const nl_bench nl_bench_expr;
extern const nl_bench nl_bench_forward;
extern const nl_bench nl_bench_extract;
extern const nl_bench nl_bench_trainblock;
extern const nl_bench nl_bench_train;
extern const nl_bench nl_bench_gp;
extern const nl_bench nl_bench_peak;
extern const nl_bench nl_bench_norm;
extern const nl_bench nl_bench_data;

static const nl_bench *const benches[] = {
    &nl_bench_expr,
    &nl_bench_forward,
    &nl_bench_extract,
    &nl_bench_trainblock,
    &nl_bench_train,
    &nl_bench_gp,
    &nl_bench_peak,
    &nl_bench_norm,
    &nl_bench_data,
    NULL,
};

void nl_bench_print_machine(nl_ctx *ctx) {
  char model[256] = "unknown CPU";
  FILE *fp = fopen("/proc/cpuinfo", "r");
  if (fp) {
    char line[512];
    while (fgets(line, sizeof line, fp)) {
      if (strncmp(line, "model name", 10) == 0) {
        char *c = strchr(line, ':');
        if (c) {
          c++;
          while (*c == ' ') c++;
          snprintf(model, sizeof model, "%s", c);
          model[strcspn(model, "\n")] = '\0';
        }
        break;
      }
    }
    fclose(fp);
  }
  const int threads = nl_threads_count(ctx->threads);
  fprintf(ctx->out, "machine: %s, %d cores online, %d threads in use\n", model, nl_cpu_count(),
          threads);
  fprintf(ctx->out, "FP32 FMA peak (bench peak): %.1f GFLOP/s on %d threads\n",
          nl_bench_fma_peak(threads), threads);
}

double nl_bench_sgemm_peak(int threads) {
  static double cached = 0.0;
  static int cached_threads = 0;
  threads = nl_threads_count(threads);
  if (cached > 0 && cached_threads == threads) return cached;
  int outer = nl_threads_enter(threads); /* BLAS on `threads` */
  const int n = 1024;
  float *a = nl_aalloc(sizeof(float) * n * n);
  float *b = nl_aalloc(sizeof(float) * n * n);
  float *c = nl_aalloc(sizeof(float) * n * n);
  for (int i = 0; i < n * n; i++) {
    a[i] = (float)((i * 7) % 13) * 0.01f;
    b[i] = (float)((i * 5) % 11) * 0.01f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
  double best = 0.0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = nl_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                n);
    double dt = nl_now() - t0;
    double gf = 2.0 * n * (double)n * n / dt * 1e-9;
    if (gf > best) best = gf;
  }
  nl_afree(a);
  nl_afree(b);
  nl_afree(c);
  nl_threads_leave(outer);
  cached = best;
  cached_threads = threads;
  return best;
}

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model for model benchmarks", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"maps", NL_OPT_STR, "FILE", NULL, "mappings for search benchmarks", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"batch", NL_OPT_INT, "B", "64", "batch size", NULL, 0},
    {"seconds", NL_OPT_NUM, "S", "3", "approximate measuring time", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {"set", NL_OPT_STR, "FILE", NULL, "norm: expression set (default: the session's, else built-in)",
     NULL, NL_OPTF_PATH},
    {"dim", NL_OPT_INT, "D", NULL, "norm: only this width (default: 64, 192 and 768)", NULL, 0},
    {"tokens", NL_OPT_INT, "T", NULL, "norm: only this token count (default: sizes in L1, L2, memory)",
     NULL, 0},
    /* bench data */
    {"data", NL_OPT_STR, "SPEC", NULL, "bench data: images (imagefolder:DIR, cifar10:DIR[:test])", NULL, NL_OPTF_PATH},
    {"images", NL_OPT_INT, "N", "0", "bench data: at most N images (0: all)", NULL, 0},
    {"train", NL_OPT_FLAG, NULL, NULL, "bench data: RandomResizedCrop + flip instead of the eval transform", NULL, 0},
    {"seed", NL_OPT_INT, "S", "0", "bench data: seed of the training crops", NULL, 0},
    {"dump", NL_OPT_STR, "FILE", NULL, "bench data: write the transformed images (safetensors, U8)", NULL, NL_OPTF_PATH},
    NL_OPT_SKIP_BAD,
    NL_PRECISION_OPT,
    {0},
};

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *name = a->npos ? a->pos[0] : NULL;
  if (!name || strcmp(name, "list") == 0) {
    if (nl_arg_flag(a, "json")) {
      json_t *list = json_array();
      for (int i = 0; benches[i]; i++)
        json_array_append_new(list, json_pack("{s:s, s:s}", "name", benches[i]->name, "summary",
                                              benches[i]->summary));
      json_t *j = json_pack("{s:o}", "benchmarks", list);
      nl_json_print(ctx->out, j);
      json_decref(j);
      return 0;
    }
    fprintf(ctx->out, "benchmarks:\n");
    for (int i = 0; benches[i]; i++)
      fprintf(ctx->out, "  %-10s %s\n", benches[i]->name, benches[i]->summary);
    return 0;
  }
  const char *names[16];
  size_t n = 0;
  for (int i = 0; benches[i]; i++) {
    if (strcmp(benches[i]->name, name) == 0) return benches[i]->run(ctx, a, err);
    if (n < sizeof names / sizeof *names) names[n++] = benches[i]->name;
  }
  const char *near = nl_closest(name, names, n);
  if (near) return nl_fail(err, NL_EINPUT, "unknown benchmark '%s'; did you mean '%s'?", name, near);
  return nl_fail(err, NL_EINPUT, "unknown benchmark '%s' (see '%sbench list')", name,
                 nl_cmd_prefix(ctx));
}

const nl_cmd nl_cmd_bench = {
    .name = "bench",
    .args = "[NAME|list]",
    .summary = "measure speed beside the machine's limits",
    .help = "Benchmarks print their figures beside the machine's measured limits.\n"
            "'normlab bench list' lists them (--json: {\"benchmarks\": [{\"name\", \"summary\"}]}).",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 1,
    .run = run,
};
