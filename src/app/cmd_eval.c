#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/model_path.h"
#include "base/interrupt.h"
#include "base/mem.h"
#include "base/timer.h"
#include "data/dataset.h"
#include "model/vit.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model (safetensors, timm names)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"data", NL_OPT_STR, "SPEC", "fmnist:test", "data spec: fmnist:test or fmnist:train", NULL, 0},
    {"offset", NL_OPT_INT, "N", "0", "skip the first N images", NULL, 0},
    {"limit", NL_OPT_INT, "N", "0", "evaluate at most N images (0: all)", NULL, 0},
    {"batch", NL_OPT_INT, "B", "100", "images per forward pass", NULL, 0},
    {"heads", NL_OPT_INT, "N", NULL, "number of attention heads (overrides the config)", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

/* Rank of the true class: number of logits strictly above it. */
static int rank_of(const float *l, int classes, int label) {
  int r = 0;
  for (int k = 0; k < classes; k++)
    if (l[k] > l[label] || (l[k] == l[label] && k < label)) r++;
  return r;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long offset, limit, batch;
  if (nl_arg_int_range(a, "offset", 0, 1000000000, &offset, err) ||
      nl_arg_int_range(a, "limit", 0, 1000000000, &limit, err) ||
      nl_arg_int_range(a, "batch", 1, 4096, &batch, err))
    return -1;
  nl_vit_load_opts lo = {0};
  if (nl_arg_given(a, "heads")) {
    long h;
    if (nl_arg_int_range(a, "heads", 1, 4096, &h, err)) return -1;
    lo.heads = (int)h;
  }
  const char *path = nl_model_path(ctx, a);
  nl_vit m;
  if (nl_vit_load(&m, path, &lo, err)) return -1;
  nl_dataset d;
  if (nl_dataset_load(&d, nl_arg_str(a, "data"), offset, limit, err)) {
    nl_vit_free(&m);
    return -1;
  }
  const nl_vit_config *c = &m.cfg;
  int rc = 0;
  if (d.rows != c->img_size || d.cols != c->img_size) {
    rc = nl_fail(err, NL_EINPUT, "%s expects %dx%d images but %s has %dx%d", path, c->img_size,
                 c->img_size, d.name, d.rows, d.cols);
  } else if (d.classes > c->classes) {
    rc = nl_fail(err, NL_EINPUT, "%s has %d classes but %s has labels up to %d", path, c->classes,
                 d.name, d.classes - 1);
  }
  nl_vit_acts acts;
  if (!rc) rc = nl_vit_acts_init(&acts, c, (int)batch, 0, err);
  if (rc) {
    nl_dataset_free(&d);
    nl_vit_free(&m);
    return -1;
  }
  float *x = nl_xmalloc(sizeof(float) * (size_t)batch * c->in_chans * d.rows * d.cols);
  long top1 = 0, top5 = 0, done = 0;
  int k5 = c->classes < 5 ? c->classes : 5;
  double t0 = nl_now(), last = 0;
  int interrupted = 0;
  for (int i = 0; i < d.n && !rc; i += (int)batch) {
    if (nl_interrupted()) {
      interrupted = 1;
      break;
    }
    int n = d.n - i < batch ? d.n - i : (int)batch;
    nl_dataset_normalize(&d, i, n, c->in_chans, c->nmean, c->mean, c->std, x);
    rc = nl_vit_forward(&m, &acts, x, n, NULL, NULL, err);
    if (rc) break;
    for (int b = 0; b < n; b++) {
      int r = rank_of(acts.logits + (size_t)b * c->classes, c->classes, d.labels[i + b]);
      top1 += r == 0;
      top5 += r < k5;
    }
    done += n;
    double now = nl_now();
    if (ctx->progress) { /* a front-end's live callback may stop the run */
      nl_progress p = {"eval", d.name, done, d.n, now - t0, NULL, 0, NULL, NULL};
      if (ctx->progress(&p, ctx->progress_user)) {
        interrupted = 1;
        break;
      }
    }
    if (ctx->tty && (now - last > 0.2 || done == d.n)) {
      last = now;
      fprintf(ctx->err, "\reval: %ld/%d images, top-1 %.2f %%, %.0f images/s   ", done, d.n,
              100.0 * top1 / done, done / (now - t0));
      fflush(ctx->err);
    }
  }
  double el = nl_now() - t0;
  if (ctx->tty && done) fprintf(ctx->err, "\n");
  if (!rc) {
    double f1 = done ? (double)top1 / done : 0, f5 = done ? (double)top5 / done : 0;
    double ips = el > 0 ? done / el : 0;
    if (nl_arg_flag(a, "json"))
      fprintf(ctx->out,
              "{\"top1\": %.6f, \"top5\": %.6f, \"images\": %ld, \"images_per_second\": %.2f%s}\n",
              f1, f5, done, ips, interrupted ? ", \"interrupted\": true" : "");
    else
      fprintf(ctx->out, "%s on %s: top-1 %.2f %%, top-5 %.2f %% of %ld images (%.1f images/s)%s\n",
              path, d.name, 100 * f1, 100 * f5, done, ips, interrupted ? " [interrupted]" : "");
    if (interrupted) rc = nl_fail(err, NL_EINTR, "interrupted after %ld of %d images", done, d.n);
  }
  free(x);
  nl_vit_acts_free(&acts);
  nl_dataset_free(&d);
  nl_vit_free(&m);
  return rc;
}

const nl_cmd nl_cmd_eval = {
    .name = "eval",
    .args = NULL,
    .summary = "top-1 / top-5 accuracy of a model on a dataset",
    .help = "Runs the model over the images of --data (fmnist:test or fmnist:train, from\n"
            "Debian's dataset-fashion-mnist), normalised with the model's mean/std, and\n"
            "prints top-1, top-5, the number of images and images/s. Ctrl-C stops early\n"
            "and reports the images done so far.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
