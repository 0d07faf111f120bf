/* `normlab bench train`: one whole-model training step (forward in training
 * mode, backward, AdamW) of the trainer in src/train/vit_train.c on --model,
 * with random images. The rate counts the matrix-product FLOPs of a step as
 * 3x the forward's (nl_vit_flops_per_image: forward, dX, dW), set beside
 * the measured sgemm peak. --precision bf16: the Linear products in mixed
 * precision (nl_vt_opts.precision). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "app/bench.h"
#include "app/model_path.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "base/timer.h"
#include "model/vit.h"
#include "train/optim.h"
#include "train/vit_train.h"

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long B;
  if (nl_arg_int_range(a, "batch", 1, 4096, &B, err)) return -1;
  double seconds = nl_arg_num(a, "seconds");
  if (!(seconds > 0 && seconds <= 3600))
    return nl_fail(err, NL_EINPUT, "--seconds: expected a number in (0, 3600]");
  const char *path = nl_model_path(ctx, a);
  nl_vit m;
  if (nl_vit_load(&m, path, NULL, err)) return -1;
  const nl_vit_config *c = &m.cfg;
  nl_vt_opts o;
  nl_vt_opts_default(&o);
  if (nl_precision_parse(nl_arg_str(a, "precision"), &o.precision, err)) {
    nl_vit_free(&m);
    return -1;
  }
  o.batch = (int)B;
  o.threads = ctx->threads;
  for (int g = 0; g < NL_TR_NGROUPS; g++) o.lr[g] = 1e-5f;
  nl_vit_trainer t;
  if (nl_vt_init(&t, &m, NULL, &o, err)) {
    nl_vit_free(&m);
    return -1;
  }
  const size_t img = (size_t)c->in_chans * c->img_size * c->img_size;
  float *x = nl_xmalloc((size_t)B * img * sizeof(float));
  int32_t *y = nl_xmalloc((size_t)B * sizeof(int32_t));
  nl_rng r;
  nl_rng_seed(&r, 1);
  for (size_t i = 0; i < (size_t)B * img; i++) x[i] = (float)nl_rng_normal(&r);
  for (long i = 0; i < B; i++) y[i] = (int32_t)nl_rng_below(&r, (uint64_t)c->classes);
  const double peak = nl_bench_sgemm_peak(ctx->threads);
  int rc = 0;
  double tf = 0, tb = 0, to = 0, best = 1e30;
  int reps = 0;
  for (int warm = 1; !rc; warm = 0) {
    double t0 = nl_now();
    while (!rc && (warm ? reps < 1 : (nl_now() - t0 < seconds || reps < 2))) {
      nl_rng dr;
      nl_rng_stream(&dr, 1, (uint64_t)reps);
      double a0 = nl_now();
      rc = nl_vt_forward(&t, x, y, (int)B, &dr, err);
      double a1 = nl_now();
      if (rc) break;
      nl_vt_backward(&t, (int)B);
      double a2 = nl_now();
      nl_tr_adamw_step(&t.opt, 1.0f);
      double a3 = nl_now();
      if (!warm) tf += a1 - a0, tb += a2 - a1, to += a3 - a2, best = a3 - a0 < best ? a3 - a0 : best;
      reps++;
    }
    if (!warm) break;
    reps = 0;
  }
  if (!rc) {
    tf /= reps, tb /= reps, to /= reps;
    /* the best step, as the sgemm peak is the best of its runs (the machine
     * may be shared); the mean step is printed too */
    const double mean = tf + tb + to, step = best, ips = B / step;
    const double gflop = nl_vt_flops_per_image(&t) * B * 1e-9, rate = gflop / step;
    if (nl_arg_flag(a, "json")) {
      json_t *j = json_pack(
          "{s:s, s:s, s:I, s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "bench",
          "train", "model", path, "batch", (json_int_t)B, "precision", nl_precision_name(o.precision), "threads", nl_threads_count(ctx->threads),
          "forward_ms", nl_json_rounded(tf * 1e3, 3), "backward_ms", nl_json_rounded(tb * 1e3, 3),
          "adamw_ms", nl_json_rounded(to * 1e3, 3), "mean_step_ms", nl_json_rounded(mean * 1e3, 3),
          "best_step_ms", nl_json_rounded(best * 1e3, 3), "images_per_second",
          nl_json_rounded(ips, 2), "gflops", nl_json_rounded(rate, 2), "sgemm_peak_gflops",
          nl_json_rounded(peak, 2), "fraction_of_peak", nl_json_rounded(rate / peak, 4),
          "activation_mb", nl_json_rounded(t.nbytes / 1e6, 1));
      nl_json_print(ctx->out, j);
      json_decref(j);
    } else {
      nl_bench_print_machine(ctx);
      fprintf(ctx->out,
              "train: %s, batch %ld, precision %s, %d steps (forward + backward + AdamW, all parameters)\n"
              "  forward  %9.2f ms\n  backward %9.2f ms\n  AdamW    %9.2f ms (means)\n"
              "  best step %.2f ms: %.1f images/s; %.2f GFLOP per step (3x forward matmuls) -> %.1f GFLOP/s\n"
              "  sgemm peak %.1f GFLOP/s: %.1f %% of peak; activations %.0f MB\n",
              path, B, nl_precision_name(o.precision), reps, tf * 1e3, tb * 1e3, to * 1e3, best * 1e3, ips, gflop, rate, peak,
              100.0 * rate / peak, t.nbytes / 1e6);
    }
  }
  free(x);
  free(y);
  nl_vt_free(&t);
  nl_vit_free(&m);
  return rc;
}

const nl_bench nl_bench_train = {
    "train", "whole-model training step (forward, backward, AdamW): images/s, % of sgemm peak",
    run};
