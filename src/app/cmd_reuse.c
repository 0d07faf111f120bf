/* reuse: attention reuse (train/reuse.h), training-free: top-1 and FLOPs of
 * a plan given (--blocks) or found greedily on held-out training images. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/model_path.h"
#include "base/json.h"
#include "data/dataset.h"
#include "model/vit.h"
#include "train/reuse.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "the model (safetensors, timm names)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"blocks", NL_OPT_STR, "LIST", NULL, "blocks that reuse the attention before them (0-based, e.g. 4,9)", NULL, 0},
    {"search", NL_OPT_CHOICE, "HOW", "none", "greedy: add the block whose reuse costs least top-1 on held-out images, while within --max-drop", "none|greedy", 0},
    {"max-drop", NL_OPT_NUM, "P", "1", "greedy: top-1 points the plan may lose on the held-out images", NULL, 0},
    {"holdout", NL_OPT_INT, "N", "2000", "greedy: the last N images of fmnist:train", NULL, 0},
    {"eval-images", NL_OPT_INT, "N", "0", "the first N test images (0: all)", NULL, 0},
    {"batch", NL_OPT_INT, "B", "64", "images per forward pass", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

static void plan_text(const unsigned char *r, int depth, char *buf, size_t cap) {
  size_t k = 0;
  buf[0] = '\0';
  for (int l = 0; l < depth && k + 8 < cap; l++)
    if (r[l]) k += (size_t)snprintf(buf + k, cap - k, "%s%d", k ? "," : "", l);
  if (!k) snprintf(buf, cap, "none");
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long evn, batch, holdout;
  if (nl_arg_int_range(a, "eval-images", 0, 1000000000, &evn, err) ||
      nl_arg_int_range(a, "batch", 1, 4096, &batch, err) ||
      nl_arg_int_range(a, "holdout", 1, 60000, &holdout, err))
    return -1;
  int greedy = strcmp(nl_arg_str(a, "search"), "greedy") == 0;
  const char *list = nl_arg_str(a, "blocks");
  if (greedy == (list != NULL))
    return nl_fail(err, NL_EINPUT, "reuse: give --blocks LIST or --search greedy");
  double drop = nl_arg_num(a, "max-drop");
  if (!(drop >= 0 && drop <= 100)) return nl_fail(err, NL_EINPUT, "--max-drop %g: top-1 points, in [0, 100]", drop);
  const char *path = nl_model_path(ctx, a);
  if (!path) return nl_fail(err, NL_EINPUT, "no model: give --model FILE");
  nl_vit m;
  if (nl_vit_load(&m, path, NULL, err)) return -1;
  const nl_vit_config *c = &m.cfg;
  unsigned char *plan = calloc((size_t)c->depth, 1), *none = calloc((size_t)c->depth, 1);
  nl_dataset d, hd;
  memset(&d, 0, sizeof d);
  memset(&hd, 0, sizeof hd);
  int rc = list ? nl_reuse_parse(list, c->depth, plan, err) : 0;
  if (!rc && greedy) {
    rc = nl_dataset_load(&hd, "fmnist:train", 60000 - holdout, holdout, err);
    long base = 0;
    if (!rc) rc = nl_reuse_eval(&m, none, &hd, (int)batch, ctx->threads, &base, NULL, err);
    while (!rc) {
      int best = -1;
      long bt = -1;
      for (int l = 1; l < c->depth && !rc; l++) {
        if (plan[l]) continue;
        plan[l] = 1;
        long t;
        rc = nl_reuse_eval(&m, plan, &hd, (int)batch, ctx->threads, &t, NULL, err);
        plan[l] = 0;
        if (!rc && t > bt) bt = t, best = l;
      }
      if (rc || best < 0 || 100.0 * (base - bt) / hd.n > drop + 1e-12) break;
      plan[best] = 1;
      char pt[256];
      plan_text(plan, c->depth, pt, sizeof pt);
      fprintf(ctx->err, "reuse: + block %d: top-1 %.2f %% on %d held-out images (full %.2f %%), plan %s\n",
              best, 100.0 * bt / hd.n, hd.n, 100.0 * base / hd.n, pt);
      fflush(ctx->err);
    }
  }
  if (!rc) rc = nl_dataset_load(&d, "fmnist:test", 0, evn, err);
  long tf = 0, tr = 0;
  double sf = 0, sr = 0;
  if (!rc) rc = nl_reuse_eval(&m, none, &d, (int)batch, ctx->threads, &tf, &sf, err);
  if (!rc) rc = nl_reuse_eval(&m, plan, &d, (int)batch, ctx->threads, &tr, &sr, err);
  if (!rc) {
    int nr = 0;
    for (int l = 0; l < c->depth; l++) nr += plan[l];
    double ff = nl_vit_flops_per_image(c) * 1e-6, fr = nl_reuse_flops(c, nr) * 1e-6;
    char pt[256];
    plan_text(plan, c->depth, pt, sizeof pt);
    double n = d.n ? d.n : 1;
    if (nl_arg_flag(a, "json")) {
      json_t *j = json_object();
      json_object_set_new(j, "model", json_string(path));
      json_object_set_new(j, "plan", json_string(pt));
      json_object_set_new(j, "images", json_integer(d.n));
      json_object_set_new(j, "top1_full", json_real(tf / n));
      json_object_set_new(j, "top1_reuse", json_real(tr / n));
      json_object_set_new(j, "mflops_full", nl_json_rounded(ff, 4));
      json_object_set_new(j, "mflops_reuse", nl_json_rounded(fr, 4));
      json_object_set_new(j, "images_per_second_full", nl_json_rounded(sf > 0 ? d.n / sf : 0, 1));
      json_object_set_new(j, "images_per_second_reuse", nl_json_rounded(sr > 0 ? d.n / sr : 0, 1));
      nl_json_print(ctx->out, j);
      json_decref(j);
    } else {
      fprintf(ctx->out, "%s, attention reuse in blocks %s (training-free), %d test images:\n", path, pt, d.n);
      fprintf(ctx->out, "full:  top-1 %.2f %%, %.3f MFLOPs/image, %.1f images/s\n", 100 * tf / n, ff,
              sf > 0 ? d.n / sf : 0);
      fprintf(ctx->out, "reuse: top-1 %.2f %%, %.3f MFLOPs/image (%+.1f %%), %.1f images/s\n",
              100 * tr / n, fr, 100 * (fr / ff - 1), sr > 0 ? d.n / sr : 0);
    }
  }
  nl_dataset_free(&d);
  if (greedy) nl_dataset_free(&hd);
  free(plan);
  free(none);
  nl_vit_free(&m);
  return rc;
}

const nl_cmd nl_cmd_reuse = {
    .name = "reuse",
    .args = NULL,
    .summary = "attention reuse (TReX-style): blocks that apply an earlier block's attention",
    .help = "Each block of --blocks skips its q and k projections, q k^T and the softmax\n"
            "and applies the attention probabilities of the last block before it that\n"
            "computed its own to its own values (v, proj and the MLP as usual); no\n"
            "training (no transformation block). --search greedy builds the plan on the\n"
            "last --holdout training images: it adds the block whose reuse loses least\n"
            "top-1 while the loss stays within --max-drop points. Prints top-1, FLOPs per\n"
            "image and images/s of the plan and of the full model on the test images.\n"
            "A block that does not exist, block 0 or a repeat is an error (exit 2).",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
