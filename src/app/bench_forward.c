/* `normlab bench forward`: images/s and achieved GFLOP/s of the batched
 * forward pass beside the machine's measured sgemm peak. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/bench.h"
#include "app/model_path.h"
#include "base/interrupt.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "base/timer.h"
#include "model/quant.h"
#include "model/vit.h"

/* Seconds of the Linear parts (patch embedding, qkv, proj, fc1, fc2, head;
 * the patch part includes im2col and the tokens, the head part the
 * pooling) in a part_s array, and their matrix FLOPs per image. */
static void linear_share(int depth, const double *ps, const nl_vit_config *c, double *sec,
                         double *flops) {
  const double T = c->tokens, D = c->dim;
  *sec = ps[nl_vit_part_index(NL_PART_PATCH, -1)] + ps[nl_vit_part_index(NL_PART_HEAD, -1)];
  *flops = 2.0 * c->npatch * ((double)c->in_chans * c->patch * c->patch) * D + 2.0 * D * c->classes;
  for (int l = 0; l < depth; l++) {
    static const nl_vit_part lp[] = {NL_PART_QKV, NL_PART_PROJ, NL_PART_FC1, NL_PART_FC2};
    for (int k = 0; k < 4; k++) *sec += ps[nl_vit_part_index(lp[k], l)];
    *flops += 2.0 * T * (4 * D * nl_vit_attn_width(c, l) + 2 * D * nl_vit_mlp_width(c, l));
  }
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long batch;
  if (nl_arg_int_range(a, "batch", 1, 4096, &batch, err)) return -1;
  double seconds = nl_arg_num(a, "seconds");
  if (!(seconds > 0 && seconds <= 3600))
    return nl_fail(err, NL_EINPUT, "--seconds must be in (0, 3600]");
  const char *path = nl_model_path(ctx, a);
  nl_vit m;
  /* a quantized model without FP32 copies; FP32 Linear weights held once, packed */
  nl_vit_load_opts lo = {.int_only = 1, .packed = 1};
  if (nl_model_precision(a, &lo, err) || nl_vit_load(&m, path, &lo, err)) return -1;
  const nl_vit_config *c = &m.cfg;
  nl_vit_acts acts;
  if (nl_vit_acts_init(&acts, c, (int)batch, 0, err)) {
    nl_vit_free(&m);
    return -1;
  }
  acts.threads = ctx->threads;
  if (nl_vit_acts_pack(&acts, &m, err)) {
    nl_vit_acts_free(&acts);
    nl_vit_free(&m);
    return -1;
  }
  const int threads = nl_threads_count(ctx->threads);
  /* where the time goes: the Linear products against the rest */
  double *parts = nl_xcalloc(nl_vit_part_slots(c->depth), sizeof(double));
  size_t n = (size_t)batch * c->in_chans * c->img_size * c->img_size;
  float *x = nl_xmalloc(sizeof(float) * n);
  nl_rng r;
  nl_rng_seed(&r, 1);
  for (size_t i = 0; i < n; i++) x[i] = (float)nl_rng_normal(&r);
  int rc = nl_vit_forward(&m, &acts, x, (int)batch, NULL, NULL, err); /* warm-up */
  long reps = 0;
  acts.part_s = parts;
  double t0 = nl_now(), el = 0, cpu0 = nl_cpu_now();
  double best = INFINITY; /* the fastest pass: the least disturbed by other work */
  while (!rc && (el = nl_now() - t0) < seconds && !nl_interrupted()) {
    double tp = nl_now();
    rc = nl_vit_forward(&m, &acts, x, (int)batch, NULL, NULL, err);
    tp = nl_now() - tp;
    if (tp < best) best = tp;
    reps++;
  }
  el = nl_now() - t0;
  const double cpu = nl_cpu_now() - cpu0;
  if (!rc && reps > 0) {
    char prec[160];
    nl_vit_precision(&m, prec, sizeof prec);
    double ips = reps * batch / el;
    double gf = ips * nl_vit_flops_per_image(c) * 1e-9;
    double peak = nl_bench_sgemm_peak(threads);
    double lin_s, lin_flops;
    linear_share(m.cfg.depth, parts, c, &lin_s, &lin_flops);
    lin_s /= reps;
    const double lin_gf = lin_s > 0 ? lin_flops * batch / lin_s * 1e-9 : 0;
    if (nl_arg_flag(a, "json")) {
      json_t *j = json_pack("{s:s, s:s, s:I, s:i, s:o, s:o, s:o, s:o, s:o}", "bench", "forward",
                            "model", path, "batch", (json_int_t)batch, "threads",
                            threads, "images_per_second", nl_json_rounded(ips, 2),
                            "gflops", nl_json_rounded(gf, 2), "sgemm_peak_gflops",
                            nl_json_rounded(peak, 2), "fraction_of_peak",
                            nl_json_rounded(gf / peak, 4), "fma_peak_gflops",
                            nl_json_rounded(nl_bench_fma_peak(threads), 2));
      json_object_set_new(j, "precision", json_string(prec));
      json_object_set_new(j, "model_bytes", json_integer((json_int_t)nl_vit_stored_bytes(&m)));
      json_object_set_new(j, "linear_ms_per_batch", nl_json_rounded(1e3 * lin_s, 3));
      json_object_set_new(j, "fastest_batch_ms", nl_json_rounded(1e3 * best, 3));
      json_object_set_new(j, "cpu_ms_per_batch", nl_json_rounded(1e3 * cpu / reps, 3));
      json_object_set_new(j, "linear_gflops", nl_json_rounded(lin_gf, 2));
      nl_json_print(ctx->out, j);
      json_decref(j);
    } else {
      nl_bench_print_machine(ctx);
      fprintf(ctx->out, "model: %s (%d x %d, patch %d, width %d, depth %d, %d tokens)\n", path,
              c->img_size, c->img_size, c->patch, c->dim, c->depth, c->tokens);
      fprintf(ctx->out, "precision: %s; model bytes %zu\n", prec, nl_vit_stored_bytes(&m));
      fprintf(ctx->out, "forward, batch %ld: %.1f images/s, %.2f ms per batch (%ld batches)\n",
              batch, ips, 1e3 * el / reps, reps);
      fprintf(ctx->out, "fastest batch: %.2f ms (%.1f images/s); CPU time %.2f ms per batch (all threads)\n",
              1e3 * best, batch / best, 1e3 * cpu / reps);
      fprintf(ctx->out, "matrix FLOPs: %.1f MFLOP/image, achieved %.1f GFLOP/s\n",
              nl_vit_flops_per_image(c) * 1e-6, gf);
      fprintf(ctx->out, "sgemm peak (1024^3, %d threads): %.1f GFLOP/s -> %.1f %% of peak\n",
              threads, peak, 100 * gf / peak);
      fprintf(ctx->out, "FMA peak (%d threads): %.1f GFLOP/s -> %.1f %% of it\n", threads,
              nl_bench_fma_peak(threads), 100 * gf / nl_bench_fma_peak(threads));
      fprintf(ctx->out,
              "Linear layers (patch, qkv, proj, fc1, fc2, head): %.2f ms per batch (%.0f %% of the "
              "pass), %.1f GFLOP/s; the rest %.2f ms\n",
              1e3 * lin_s, 100 * lin_s / (el / reps), lin_gf, 1e3 * (el / reps - lin_s));
    }
  }
  free(x);
  free(parts);
  nl_vit_acts_free(&acts);
  nl_vit_free(&m);
  return rc;
}

const nl_bench nl_bench_forward = {
    .name = "forward",
    .summary = "batched ViT forward pass: images/s and GFLOP/s vs sgemm peak",
    .run = run,
};
