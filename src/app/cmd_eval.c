#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/data_load.h"
#include "app/model_path.h"
#include "base/json.h"
#include "base/mem.h"
#include "data/dataset.h"
#include "model/safetensors.h"
#include "model/vit.h"
#include "train/evaluate.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model (safetensors, timm names)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"data", NL_OPT_STR, "SPEC", "fmnist:test", "data spec: " NL_DATA_SPEC_HELP, NULL, 0},
    NL_OPT_SKIP_BAD,
    {"offset", NL_OPT_INT, "N", "0", "skip the first N images", NULL, 0},
    {"images", NL_OPT_INT, "N", "0", "evaluate at most N images (0: all)", NULL, 0},
    {"batch", NL_OPT_INT, "B", "100", "images per forward pass", NULL, 0},
    {"heads", NL_OPT_INT, "N", NULL, "number of attention heads (overrides the config)", NULL, 0},
    {"set", NL_OPT_STR, "SPEC", NULL,
     "replace the norms first, as replace --set (at the prompt: the session's set; none: as "
     "loaded)",
     NULL, NL_OPTF_PATH},
    {"compare-ref", NL_OPT_STR, "FILE", NULL,
     "also the agreement of the predictions with FILE's 'test_predictions' (one class per "
     "image of the split, as the timm fixtures' _ref files)", NULL, NL_OPTF_PATH},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    NL_PRECISION_OPT,
    {0},
};

typedef struct {
  nl_ctx *ctx;
  double last;
} live;

/* The front-end's callback and the terminal line, after every batch. */
static int on_batch(const nl_progress *p, void *user) {
  live *l = user;
  nl_ctx *ctx = l->ctx;
  if (ctx->progress && ctx->progress(p, ctx->progress_user)) return 1;
  if (ctx->tty && (p->elapsed - l->last > 0.2 || p->done == p->total)) {
    l->last = p->elapsed;
    fprintf(ctx->err, "\reval: %ld/%ld images, top-1 %.2f %%, %.0f images/s   ", p->done, p->total,
            100.0 * p->vals[0], p->elapsed > 0 ? p->done / p->elapsed : 0);
    fflush(ctx->err);
  }
  return 0;
}

/* The reference predictions of --compare-ref: tensor test_predictions, one
 * class index per image (any integer or float dtype holding integers in
 * [0, classes)). */
static int load_ref(const char *path, int classes, int **pred, long *n, nl_error *err) {
  nl_st_file f;
  *pred = NULL;
  if (nl_st_open(&f, path, err)) return -1;
  const nl_st_tensor *t = nl_st_find(&f, "test_predictions");
  int rc = 0;
  if (!t || t->ndim != 1)
    rc = nl_fail(err, NL_EINPUT, "%s: no 1-D tensor 'test_predictions' (one class per image) "
                 "for --compare-ref", path);
  float *v = rc ? NULL : nl_xmalloc((t->numel ? t->numel : 1) * sizeof(float));
  if (v) nl_st_to_f32(t, v);
  *n = rc ? 0 : (long)t->numel;
  int *p = rc ? NULL : nl_xmalloc((size_t)(*n ? *n : 1) * sizeof(int));
  for (long i = 0; rc == 0 && i < *n; i++) {
    if (!(v[i] >= 0 && v[i] < classes && v[i] == floorf(v[i])))
      rc = nl_fail(err, NL_EINPUT, "%s: test_predictions[%ld] = %g is not a class of the model "
                   "(0..%d)", path, i, v[i], classes - 1);
    else
      p[i] = (int)v[i];
  }
  free(v);
  nl_st_close(&f);
  if (rc) free(p);
  else *pred = p;
  return rc;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long offset, limit, batch;
  if (nl_arg_int_range(a, "offset", 0, 1000000000, &offset, err) ||
      nl_arg_int_range(a, "images", 0, 1000000000, &limit, err) ||
      nl_arg_int_range(a, "batch", 1, 4096, &batch, err))
    return -1;
  nl_vit_load_opts lo = {0};
  lo.int_only = 1; /* inference: a quantized model without FP32 copies */
  lo.packed = 1;   /* and FP32 Linear weights held once, packed */
  if (nl_model_precision(a, &lo, err)) return -1;
  if (nl_arg_given(a, "heads")) {
    long h;
    if (nl_arg_int_range(a, "heads", 1, 4096, &h, err)) return -1;
    lo.heads = (int)h;
  }
  const char *path = nl_model_path(ctx, a);
  nl_model_norms norms;
  int replaced = 0;
  if (nl_model_norms_get(ctx, a, 1, &norms, err)) {
    nl_model_norms_free(&norms);
    return -1;
  }
  nl_vit m;
  if (nl_vit_load(&m, path, &lo, err)) {
    nl_model_norms_free(&norms);
    return -1;
  }
  if (nl_model_norms_apply(&norms, &m, NULL, &replaced, err)) {
    nl_vit_free(&m);
    nl_model_norms_free(&norms);
    return -1;
  }
  /* what was evaluated: the file, and the norms put into it */
  char what[4400];
  if (norms.spec)
    snprintf(what, sizeof what, "%s with %s (%d of %d norm layers replaced)", path, norms.label,
             replaced, m.nnorms);
  else
    snprintf(what, sizeof what, "%s", path);
  /* image folders stream: 8 batches at a time, the next decoded meanwhile */
  const char *spec = nl_arg_str(a, "data");
  nl_data_stream *st;
  if (nl_app_open_stream(ctx, spec, offset, limit, &m.cfg, nl_app_skip_bad(a),
                         (int)(batch * 8 > 512 ? batch * 8 : 512), &st, err)) {
    nl_vit_free(&m);
    nl_model_norms_free(&norms);
    return -1;
  }
  const char *refpath = nl_arg_str(a, "compare-ref");
  int *ref = NULL, *pred = NULL;
  long nref = 0, total = nl_data_stream_total(st);
  if (refpath) {
    if (nl_arg_flag(a, "skip-bad"))
      nl_fail(err, NL_EINPUT, "--compare-ref and --skip-bad exclude each other (an image left "
              "out would shift every later one against its reference)");
    else if (load_ref(refpath, m.cfg.classes, &ref, &nref, err) == 0 && offset + total > nref)
      nl_fail(err, NL_EINPUT, "%s holds %ld reference predictions; images %ld..%ld of %s asked "
              "for", refpath, nref, offset, offset + total - 1, spec);
    if (!ref || offset + total > nref) {
      free(ref);
      nl_data_stream_close(st);
      nl_vit_free(&m);
      nl_model_norms_free(&norms);
      return -1;
    }
    pred = nl_xmalloc((size_t)(total ? total : 1) * sizeof(int));
  }
  live l = {ctx, -1};
  nl_eval_opts o;
  nl_eval_opts_default(&o);
  o.batch = (int)batch;
  o.threads = ctx->threads;
  o.interruptible = 1;
  o.progress = on_batch;
  o.progress_user = &l;
  o.model_name = path;
  o.predictions = pred;
  o.npredictions = pred ? total : 0;
  nl_eval_result r;
  int rc = nl_vit_evaluate_stream(&m, st, &o, &r, err);
  if (ctx->tty && r.images) fprintf(ctx->err, "\n");
  if (!rc) {
    long done = r.images;
    double f1 = done ? (double)r.top1 / done : 0, f5 = done ? (double)r.top5 / done : 0;
    double ips = r.seconds > 0 ? done / r.seconds : 0;
    long agree = 0;
    for (long i = 0; pred && i < done && i < total; i++) agree += pred[i] == ref[offset + i];
    if (nl_arg_flag(a, "json")) {
      json_t *j = json_pack("{s:f, s:f, s:I, s:o}", "top1", f1, "top5", f5, "images",
                            (json_int_t)done, "images_per_second", nl_json_rounded(ips, 2));
      if (norms.spec) {
        json_object_set_new(j, "set", json_string(norms.label));
        json_object_set_new(j, "replaced", json_integer(replaced));
      }
      json_object_set_new(j, "skipped", json_integer((json_int_t)r.skipped));
      if (pred) {
        json_object_set_new(j, "agreement", json_real(done ? (double)agree / done : 0));
        json_object_set_new(j, "disagree", json_integer((json_int_t)(done - agree)));
      }
      if (r.stopped) json_object_set_new(j, "interrupted", json_true());
      if (m.bf16) json_object_set_new(j, "precision", json_string("bf16"));
      nl_json_print(ctx->out, j);
      json_decref(j);
    } else {
      char skipped[96] = "";
      if (r.skipped)
        snprintf(skipped, sizeof skipped, ", %ld bad image%s skipped (not counted)", r.skipped,
                 r.skipped == 1 ? "" : "s");
      fprintf(ctx->out, "%s on %s: top-1 %.2f %%, top-5 %.2f %% of %ld images%s (%.1f images/s)%s%s\n",
              what, spec, 100 * f1, 100 * f5, done, skipped, ips, m.bf16 ? ", bf16 products" : "",
              r.stopped ? " [interrupted]" : "");
      if (pred)
        fprintf(ctx->out, "agreement with %s: %.2f %% (%ld of %ld images differ)\n", refpath,
                done ? 100.0 * agree / done : 0, done - agree, done);
    }
    if (r.stopped)
      rc = nl_fail(err, NL_EINTR, "interrupted after %ld of %ld images", done,
                   nl_data_stream_total(st));
  }
  free(pred);
  free(ref);
  nl_data_stream_close(st);
  nl_vit_free(&m);
  nl_model_norms_free(&norms);
  return rc;
}

/* old option names (normlab(1), OPTION NAMES) */
static const nl_opt_alias aliases[] = {{"limit", "images"}, {NULL, NULL}};

const nl_cmd nl_cmd_eval = {
    .name = "eval",
    .args = NULL,
    .summary = "top-1 / top-5 accuracy of a model on a dataset",
    .help = "Runs the model over the images of --data (fmnist:test or fmnist:train, from\n"
            "Debian's dataset-fashion-mnist; imagefolder:DIR or cifar10:DIR[:test] through\n"
            "the model's timm transform), normalised with the model's mean/std, and\n"
            "prints top-1, top-5, the number of images and images/s. Ctrl-C stops early\n"
            "and reports the images done so far. --skip-bad leaves out images that fail to\n"
            "decode, names each on stderr, and counts them in the summary; top-1 and top-5\n"
            "are then over the images used. A model with NaN or infinite parameters,\n"
            "or whose logits are not finite, is an error naming the tensor (exit 2).\n"
            "--set replaces the norms before evaluating (as replace --set, nothing written);\n"
            "at the prompt it defaults to the session's expression set, as it is, on the\n"
            "session's model ('--set none': the model as loaded).\n"
            "--precision bf16 runs the Linear layers as BF16 products (weights rounded once\n"
            "at load, FP32 accumulation; norms, softmax, GELU, residuals FP32); it needs\n"
            "AVX512-BF16 and is refused elsewhere (exit 2).\n"
            "--compare-ref FILE also prints the share of images whose predicted class (the\n"
            "argmax) is the one in FILE's tensor test_predictions, image offset + i against\n"
            "entry offset + i (the timm fixtures' NAME_ref.safetensors hold the reference\n"
            "model's argmax over the whole test split); JSON keys agreement, disagree.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
    .aliases = aliases,
};
