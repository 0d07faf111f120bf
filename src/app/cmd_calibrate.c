#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "base/json.h"
#include "app/model_path.h"
#include "data/dataset.h"
#include "app/data_load.h"
#include "model/quant.h"
#include "model/vit.h"
#include "train/calibrate.h"
#include "train/evaluate.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "adapted model to calibrate (the output of replace)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"teacher", NL_OPT_STR, "FILE", NULL, "the original model it was adapted from", NULL, NL_OPTF_PATH | NL_OPTF_REQUIRED},
    {"output", NL_OPT_STR, "FILE", NULL, "calibrated checkpoint to write (safetensors)", NULL, NL_OPTF_PATH | NL_OPTF_REQUIRED},
    {"images", NL_OPT_INT, "N", "512", "unlabeled training images to calibrate on (the first N of --data)", NULL, 0},
    {"data", NL_OPT_STR, "SPEC", "fmnist:train", "calibration images: " NL_DATA_SPEC_HELP, NULL, 0},
    {"eval-data", NL_OPT_STR, "SPEC", "fmnist:test", "test images for top-1 before and after", NULL, 0},
    NL_OPT_SKIP_BAD,
    {"what", NL_OPT_CHOICE, "WHAT", "consts", "what to tune: the expressions' constants, the norms' affine and DyT alphas, or both", "consts|affine|both", 0},
    {"epochs", NL_OPT_INT, "E", "10", "passes over the images", NULL, 0},
    {"lr", NL_OPT_NUM, "X", "0.01", "Adam step size", NULL, 0},
    {"tau", NL_OPT_NUM, "T", "1", "distillation temperature (the loss is tau^2 KL at tau)", NULL, 0},
    {"batch", NL_OPT_INT, "B", "64", "images per step", NULL, 0},
    {"eval-limit", NL_OPT_INT, "N", "2000", "test images for top-1 before and after (0: none)", NULL, 0},
    {"threads", NL_OPT_INT, "N", "0", "worker threads (0: normlab --threads)", NULL, 0},
    {"seed", NL_OPT_INT, "S", "0", "seed of the image order", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

typedef struct {
  nl_ctx *ctx;
  int json;
} live;

/* Per-epoch KL lines, and the front-end's callback. */
static int on_epoch(const nl_progress *p, void *user) {
  live *l = user;
  nl_ctx *ctx = l->ctx;
  if (!l->json) {
    if (p->done == 0)
      fprintf(ctx->err, "calibrate: KL before %.6f\n", p->vals[0]);
    else
      fprintf(ctx->err, "calibrate: epoch %ld/%ld: KL %.6f (%.1f s)\n", p->done, p->total,
              p->vals[0], p->elapsed);
    fflush(ctx->err);
  }
  return ctx->progress && ctx->progress(p, ctx->progress_user);
}

static int top1(const nl_vit *m, const nl_dataset *t, int threads, const char *name, double *out,
                nl_error *err) {
  nl_eval_opts eo;
  nl_eval_opts_default(&eo);
  eo.threads = threads;
  eo.model_name = name;
  nl_eval_result r;
  if (nl_vit_evaluate(m, t, &eo, &r, err)) return -1;
  *out = r.images ? (double)r.top1 / r.images : 0;
  return 0;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long images, epochs, batch, evlim, threads, seed;
  if (nl_arg_int_range(a, "images", 1, 60000, &images, err) ||
      nl_arg_int_range(a, "epochs", 1, 100000, &epochs, err) ||
      nl_arg_int_range(a, "batch", 1, 4096, &batch, err) ||
      nl_arg_int_range(a, "eval-limit", 0, 10000, &evlim, err) ||
      nl_arg_int_range(a, "threads", 0, 4096, &threads, err) ||
      nl_arg_int_range(a, "seed", 0, 2147483647L, &seed, err))
    return -1;
  const char *tpath = nl_arg_need(a, "teacher", err);
  const char *outpath = tpath ? nl_arg_need(a, "output", err) : NULL;
  if (!outpath) return -1;
  const char *what = nl_arg_str(a, "what");
  nl_calib_opts o;
  nl_calib_opts_default(&o);
  o.what = strcmp(what, "consts") == 0   ? NL_CALIB_CONSTS
           : strcmp(what, "affine") == 0 ? NL_CALIB_AFFINE
                                         : NL_CALIB_BOTH;
  o.epochs = (int)epochs;
  o.batch = (int)batch;
  o.lr = (float)nl_arg_num(a, "lr");
  o.tau = (float)nl_arg_num(a, "tau");
  o.seed = (uint64_t)seed;
  o.threads = threads ? (int)threads : ctx->threads;
  o.interruptible = 1;
  live l = {ctx, nl_arg_flag(a, "json")};
  o.progress = on_epoch;
  o.progress_user = &l;
  const char *path = nl_model_path(ctx, a);
  if (!path) return nl_fail(err, NL_EINPUT, "no model: give --model FILE");
  nl_vit m, t;
  if (nl_vit_load(&m, path, NULL, err)) return -1;
  if (nl_vit_quant_check_trainable(&m, path, "calibrate", err)) {
    nl_vit_free(&m);
    return -1;
  }
  if (nl_vit_load(&t, tpath, NULL, err)) {
    nl_vit_free(&m);
    return -1;
  }
  nl_dataset d, test;
  memset(&test, 0, sizeof test);
  const char *spec = nl_arg_str(a, "data"), *espec = nl_arg_str(a, "eval-data");
  const int skip = nl_app_skip_bad(a);
  int rc = nl_app_load_images(ctx, spec, 0, images, &m.cfg, skip, &d, err);
  if (rc) {
    nl_vit_free(&t);
    nl_vit_free(&m);
    return -1;
  }
  if (!rc && evlim > 0) rc = nl_app_load_data(ctx, espec, 0, evlim, &m.cfg, skip, &test, err);
  double before = 0, after = 0;
  /* the calibration checks the model and the teacher first (shape, finite) */
  nl_calib_result r;
  memset(&r, 0, sizeof r);
  if (!rc) rc = nl_vit_calibrate(&m, &t, &d, &o, &r, err);
  if (!rc && evlim > 0) {
    /* top-1 before: the checkpoint as given, reloaded */
    nl_vit m0;
    rc = nl_vit_load(&m0, path, NULL, err);
    if (!rc) {
      rc = top1(&m0, &test, o.threads, path, &before, err);
      nl_vit_free(&m0);
    }
    if (!rc) rc = top1(&m, &test, o.threads, "the calibrated model", &after, err);
  }
  if (!rc && r.stopped) rc = nl_fail(err, NL_EINTR, "interrupted after %d epochs: nothing written", r.epochs_done);
  if (!rc) rc = nl_vit_save(&m, outpath, err);
  if (!rc) {
    if (l.json) {
      json_t *root = json_object(), *ek = json_array();
      json_object_set_new(root, "model", json_string(path));
      json_object_set_new(root, "teacher", json_string(tpath));
      json_object_set_new(root, "output", json_string(outpath));
      json_object_set_new(root, "what", json_string(what));
      json_object_set_new(root, "images", json_integer(d.n));
      json_object_set_new(root, "skipped", json_integer(d.skipped + test.skipped));
      json_object_set_new(root, "constants", json_integer(r.nconsts));
      json_object_set_new(root, "tau", json_real(o.tau));
      json_object_set_new(root, "kl_before", json_real(r.kl_before));
      json_object_set_new(root, "kl_after", json_real(r.kl_after));
      for (int e = 0; e < r.epochs_done; e++) json_array_append_new(ek, json_real(r.epoch_kl[e]));
      json_object_set_new(root, "epoch_kl", ek);
      if (evlim > 0) {
        json_object_set_new(root, "eval_images", json_integer(test.n));
        json_object_set_new(root, "top1_before", json_real(before));
        json_object_set_new(root, "top1_after", json_real(after));
      }
      json_object_set_new(root, "seconds", json_real(r.seconds));
      nl_json_print(ctx->out, root);
      json_decref(root);
    } else {
      fprintf(ctx->out, "calibrated %d constants%s on %d images in %.1f s: KL %.6f -> %.6f\n",
              r.nconsts, o.what & NL_CALIB_AFFINE ? " and the norms' affine" : "", d.n, r.seconds,
              r.kl_before, r.kl_after);
      if (evlim > 0)
        fprintf(ctx->out, "top-1 on %d test images: %.2f %% -> %.2f %%\n", test.n, 100 * before,
                100 * after);
      if (d.skipped + test.skipped)
        fprintf(ctx->out, "%d bad images skipped (%d calibration, %d test): not counted\n",
                d.skipped + test.skipped, d.skipped, test.skipped);
      fprintf(ctx->out, "wrote %s\n", outpath);
    }
  }
  nl_calib_result_free(&r);
  if (evlim > 0) nl_dataset_free(&test);
  nl_dataset_free(&d);
  nl_vit_free(&t);
  nl_vit_free(&m);
  return rc;
}

const nl_cmd nl_cmd_calibrate = {
    .name = "calibrate",
    .args = NULL,
    .summary = "tune an adapted model's norm constants to the original model's outputs",
    .help = "Tunes the numbers of every norm slot of an adapted model (--what consts: the\n"
            "constants of each expression; affine: the norms' w, b and DyT alphas; both)\n"
            "to minimise the distillation loss tau^2 KL(teacher || model) against the\n"
            "original model (--teacher) on the first --images training images of\n"
            "Fashion-MNIST, without their labels, by Adam over --epochs passes. The\n"
            "gradient of each constant comes from the backward pass and the expression's\n"
            "derivative with respect to its constants. No expression changes its form.\n"
            "Prints the KL before and after each epoch, top-1 on the first --eval-limit\n"
            "test images before and after, and writes --output atomically. The teacher\n"
            "must have the model's architecture; a model or teacher with NaN or infinite\n"
            "parameters is an error (exit 2). Ctrl-C stops and writes nothing.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
