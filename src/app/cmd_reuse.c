/* reuse: attention reuse (train/reuse.h, model/reuse_plan.h): top-1 and
 * FLOPs of a plan given (--blocks) or found greedily on held-out training
 * images, training-free (--tb none) or with transformation blocks fitted
 * by least squares (--tb linear|mlp); --output writes the model with the
 * plan. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/model_path.h"
#include "base/json.h"
#include "data/dataset.h"
#include "model/reuse_plan.h"
#include "model/vit.h"
#include "train/evit.h"
#include "train/reuse.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "the model (safetensors, timm names)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"blocks", NL_OPT_STR, "LIST", NULL, "blocks that reuse an earlier attention (0-based L or L:SOURCE, e.g. 4,9:7)", NULL, 0},
    {"search", NL_OPT_CHOICE, "HOW", "none", "greedy: add the block whose reuse costs least top-1 on held-out images, while within --max-drop", "none|greedy", 0},
    {"tb", NL_OPT_CHOICE, "KIND", "none", "transformation block: none (reuse the probabilities), linear or mlp (replace the attention branch by a TB on the source's attention output)", "none|linear|mlp", 0},
    {"hidden", NL_OPT_INT, "H", "0", "mlp TB width (0: D/4)", NULL, 0},
    {"max-drop", NL_OPT_NUM, "P", "1", "greedy: top-1 points the plan may lose on the held-out images", NULL, 0},
    {"target", NL_OPT_NUM, "P", "0", "greedy: stop once the plan saves P % of the FLOPs (0: only --max-drop stops)", NULL, 0},
    {"holdout", NL_OPT_INT, "N", "2000", "greedy: the last N images of fmnist:train", NULL, 0},
    {"fit-images", NL_OPT_INT, "N", "5000", "TBs: least squares on the first N images of fmnist:train", NULL, 0},
    {"ridge", NL_OPT_NUM, "R", "1e-4", "TBs: ridge, relative to the normal equations' mean diagonal", NULL, 0},
    {"seed", NL_OPT_INT, "S", "1", "mlp TBs: the draw of fc1", NULL, 0},
    {"evit-blocks", NL_OPT_STR, "LIST", NULL, "also the EViT token-pruning baseline pruning at these blocks, keep ratio matched to the plan's FLOPs (or --keep)", NULL, 0},
    {"keep", NL_OPT_NUM, "RATIO", "0", "EViT: patch tokens kept at each pruning block, in (0, 1] (0: match the plan's FLOPs)", NULL, 0},
    {"eval-images", NL_OPT_INT, "N", "0", "the first N test images (0: all)", NULL, 0},
    {"batch", NL_OPT_INT, "B", "64", "images per forward pass", NULL, 0},
    {"output", NL_OPT_STR, "FILE", NULL, "write the model with the plan (and TBs) as safetensors", NULL, NL_OPTF_PATH},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

typedef struct {
  nl_ctx *ctx;
  nl_vit *m;
  nl_tb_kind tb;
  int hidden, batch;
  nl_dataset fit;  /* TB data (TB plans only) */
  nl_reuse_fit_opts fo;
} state;

/* The greedy search: returns the plan (caller frees) or NULL. */
static nl_vit_reuse *greedy(state *st, const nl_dataset *hd, double drop, double target,
                            nl_error *err) {
  nl_vit *m = st->m;
  const nl_vit_config *c = &m->cfg;
  nl_vit_reuse *plan = nl_reuse_plan_new(c->depth, c->dim);
  long base = 0;
  if (nl_reuse_eval(m, NULL, hd, st->batch, st->ctx->threads, &base, NULL, err)) goto fail;
  const double full = nl_vit_flops_per_image(c);
  for (;;) {
    int cand[NL_VIT_MAX_DEPTH], srcs[NL_VIT_MAX_DEPTH], nc = 0;
    nl_vit_reuse *tries[NL_VIT_MAX_DEPTH] = {0};
    for (int l = 1; l < c->depth; l++) {
      if (plan->src[l] >= 0) continue;
      int s = l - 1;
      if (st->tb == NL_TB_NONE)
        while (s > 0 && plan->src[s] >= 0) s--;
      cand[nc] = l, srcs[nc] = s;
      nc++;
    }
    if (!nc) break;
    if (st->tb != NL_TB_NONE) {
      nl_vit mm = *m;
      mm.reuse = plan;
      if (nl_reuse_fit_each(&mm, cand, srcs, nc, st->tb, st->hidden, &st->fit, &st->fo, tries, err))
        goto fail;
    } else {
      for (int i = 0; i < nc; i++) {
        tries[i] = nl_reuse_plan_copy(plan);
        if (nl_reuse_plan_set(tries[i], cand[i], srcs[i], NL_TB_NONE, 0, err)) goto fail;
      }
    }
    int best = -1;
    long bt = -1;
    int rc = 0;
    for (int i = 0; i < nc && !rc; i++) {
      long t;
      rc = nl_reuse_eval(m, tries[i], hd, st->batch, st->ctx->threads, &t, NULL, err);
      if (!rc && t > bt) bt = t, best = i;
    }
    int stop = rc || best < 0 || 100.0 * (base - bt) / hd->n > drop + 1e-12;
    if (!stop) {
      nl_reuse_plan_free(plan);
      plan = tries[best];
      tries[best] = NULL;
    }
    for (int i = 0; i < nc; i++) nl_reuse_plan_free(tries[i]);
    if (rc) goto fail;
    if (stop) break;
    char pt[512];
    nl_reuse_plan_text(plan, pt, sizeof pt);
    double saved = 100.0 * (1 - nl_reuse_plan_flops(plan, c) / full);
    fprintf(st->ctx->err, "reuse: + block %d: top-1 %.2f %% on %d held-out images (full %.2f %%), "
            "plan %s, FLOPs -%.1f %%\n", cand[best], 100.0 * bt / hd->n, hd->n,
            100.0 * base / hd->n, pt, saved);
    fflush(st->ctx->err);
    if (target > 0 && saved >= target) break;
  }
  return plan;
fail:
  nl_reuse_plan_free(plan);
  return NULL;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long evn, batch, holdout, fitn, hidden, seed;
  if (nl_arg_int_range(a, "eval-images", 0, 1000000000, &evn, err) ||
      nl_arg_int_range(a, "batch", 1, 4096, &batch, err) ||
      nl_arg_int_range(a, "holdout", 1, 60000, &holdout, err) ||
      nl_arg_int_range(a, "fit-images", 1, 60000, &fitn, err) ||
      nl_arg_int_range(a, "hidden", 0, 1 << 16, &hidden, err) ||
      nl_arg_int_range(a, "seed", 0, 2000000000, &seed, err))
    return -1;
  int greedy_on = strcmp(nl_arg_str(a, "search"), "greedy") == 0;
  const char *list = nl_arg_str(a, "blocks");
  if (greedy_on && list)
    return nl_fail(err, NL_EINPUT, "reuse: give --blocks LIST or --search greedy, not both");
  double drop = nl_arg_num(a, "max-drop"), target = nl_arg_num(a, "target");
  double ridge = nl_arg_num(a, "ridge"), keep = nl_arg_num(a, "keep");
  if (!(drop >= 0 && drop <= 100)) return nl_fail(err, NL_EINPUT, "--max-drop %g: top-1 points, in [0, 100]", drop);
  if (!(target >= 0 && target < 100)) return nl_fail(err, NL_EINPUT, "--target %g: a FLOPs percentage in [0, 100)", target);
  if (!(ridge >= 0 && ridge < 1e6)) return nl_fail(err, NL_EINPUT, "--ridge %g: want a number >= 0", ridge);
  if (!(keep >= 0 && keep <= 1)) return nl_fail(err, NL_EINPUT, "--keep %g: a ratio in (0, 1] (0: match the plan's FLOPs)", keep);
  nl_tb_kind tb = NL_TB_NONE;
  nl_tb_kind_parse(nl_arg_str(a, "tb"), &tb);
  const char *path = nl_model_path(ctx, a);
  if (!path) return nl_fail(err, NL_EINPUT, "no model: give --model FILE");
  nl_vit m;
  if (nl_vit_load(&m, path, NULL, err)) return -1;
  const nl_vit_config *c = &m.cfg;
  if (!greedy_on && !list && !m.reuse) {
    nl_vit_free(&m);
    return nl_fail(err, NL_EINPUT, "reuse: give --blocks LIST or --search greedy (%s carries no plan)", path);
  }
  state st;
  memset(&st, 0, sizeof st);
  st.ctx = ctx, st.m = &m, st.tb = tb, st.batch = (int)batch;
  st.hidden = hidden ? (int)hidden : (c->dim / 4 > 0 ? c->dim / 4 : 1);
  nl_reuse_fit_opts_default(&st.fo);
  st.fo.batch = (int)batch, st.fo.threads = ctx->threads, st.fo.ridge = ridge;
  st.fo.seed = (uint64_t)seed;
  /* the plan the model carries, if no other is asked for */
  nl_vit_reuse *plan = !greedy_on && !list ? m.reuse : NULL;
  m.reuse = NULL;
  for (int l = 0; plan && l < c->depth; l++) /* the carried plan's kind, for the report */
    if (plan->src[l] >= 0 && plan->tb[l] != NL_TB_NONE) tb = plan->tb[l];
  nl_dataset d, hd;
  memset(&d, 0, sizeof d);
  memset(&hd, 0, sizeof hd);
  int rc = 0;
  if (tb != NL_TB_NONE && (greedy_on || list))
    rc = nl_dataset_load(&st.fit, "fmnist:train", 0, fitn, err);
  if (!rc && list) {
    plan = nl_reuse_plan_new(c->depth, c->dim);
    rc = nl_reuse_parse(list, tb, st.hidden, plan, err);
    if (!rc && tb != NL_TB_NONE) {
      m.reuse = plan;
      rc = nl_reuse_fit(&m, &st.fit, &st.fo, err);
      m.reuse = NULL;
    }
  }
  if (!rc && greedy_on) {
    rc = nl_dataset_load(&hd, "fmnist:train", 60000 - holdout, holdout, err);
    if (!rc && !(plan = greedy(&st, &hd, drop, target, err))) rc = -1;
    if (!rc && tb != NL_TB_NONE) { /* every TB again, under the final plan before it */
      m.reuse = plan;
      rc = nl_reuse_fit(&m, &st.fit, &st.fo, err);
      m.reuse = NULL;
    }
  }
  if (!rc) rc = nl_dataset_load(&d, "fmnist:test", 0, evn, err);
  long tf = 0, tr = 0, te = 0;
  double sf = 0, sr = 0, se = 0, keep_used = 0, fe = 0;
  const char *eb = nl_arg_str(a, "evit-blocks");
  nl_evit ev;
  memset(&ev, 0, sizeof ev);
  const double ff = nl_vit_flops_per_image(c), fr = nl_reuse_plan_flops(plan, c);
  if (!rc && eb) {
    rc = nl_evit_parse(eb, c, &ev, err);
    if (!rc) ev.keep = keep > 0 ? keep : nl_evit_keep_for_flops(&ev, c, fr);
    keep_used = ev.keep, fe = nl_evit_flops(&ev, c);
  }
  /* the contenders alternate batch by batch in one run (same load) */
  if (!rc) {
    nl_reuse_bench bq = {&m, plan, eb ? &ev : NULL, &d, (int)batch, ctx->threads};
    nl_reuse_bench_result br;
    rc = nl_reuse_bench_run(&bq, &br, err);
    tf = br.top1[0], tr = br.top1[1], te = br.top1[2];
    sf = br.seconds[0], sr = br.seconds[1], se = br.seconds[2];
  }
  if (!rc && nl_arg_str(a, "output")) {
    m.reuse = plan;
    rc = nl_vit_save(&m, nl_arg_str(a, "output"), err);
    m.reuse = NULL;
  }
  if (!rc) {
    char pt[512];
    nl_reuse_plan_text(plan, pt, sizeof pt);
    double n = d.n ? d.n : 1;
    const double pb = 4.0 * nl_vit_param_count(&m);
    const double rb = pb - nl_reuse_plan_bytes_saved(plan, c);
    if (nl_arg_flag(a, "json")) {
      json_t *j = json_object();
      json_object_set_new(j, "model", json_string(path));
      json_object_set_new(j, "plan", json_string(pt));
      json_object_set_new(j, "tb", json_string(nl_tb_kind_name(tb)));
      json_object_set_new(j, "images", json_integer(d.n));
      json_object_set_new(j, "top1_full", json_real(tf / n));
      json_object_set_new(j, "top1_reuse", json_real(tr / n));
      json_object_set_new(j, "mflops_full", nl_json_rounded(ff * 1e-6, 4));
      json_object_set_new(j, "mflops_reuse", nl_json_rounded(fr * 1e-6, 4));
      json_object_set_new(j, "weight_bytes_full", json_integer((json_int_t)pb));
      json_object_set_new(j, "weight_bytes_reuse", json_integer((json_int_t)rb));
      json_object_set_new(j, "images_per_second_full", nl_json_rounded(sf > 0 ? d.n / sf : 0, 1));
      json_object_set_new(j, "images_per_second_reuse", nl_json_rounded(sr > 0 ? d.n / sr : 0, 1));
      if (eb) {
        json_object_set_new(j, "evit_blocks", json_string(eb));
        json_object_set_new(j, "evit_keep", nl_json_rounded(keep_used, 4));
        json_object_set_new(j, "top1_evit", json_real(te / n));
        json_object_set_new(j, "mflops_evit", nl_json_rounded(fe * 1e-6, 4));
        json_object_set_new(j, "images_per_second_evit", nl_json_rounded(se > 0 ? d.n / se : 0, 1));
      }
      nl_json_print(ctx->out, j);
      json_decref(j);
    } else {
      fprintf(ctx->out, "%s, attention reuse %s (TB %s), %d test images:\n", path, pt,
              nl_tb_kind_name(tb), d.n);
      fprintf(ctx->out, "full:  top-1 %.2f %%, %.3f MFLOPs/image, %.0f weight bytes, %.1f images/s\n",
              100 * tf / n, ff * 1e-6, pb, sf > 0 ? d.n / sf : 0);
      fprintf(ctx->out, "reuse: top-1 %.2f %%, %.3f MFLOPs/image (%+.1f %%), %.0f weight bytes, "
              "%.1f images/s\n", 100 * tr / n, fr * 1e-6, 100 * (fr / ff - 1), rb,
              sr > 0 ? d.n / sr : 0);
      if (eb)
        fprintf(ctx->out, "evit:  top-1 %.2f %%, %.3f MFLOPs/image (%+.1f %%), keep %.3f at "
                "blocks %s, %.0f weight bytes, %.1f images/s\n", 100 * te / n, fe * 1e-6,
                100 * (fe / ff - 1), keep_used, eb, pb, se > 0 ? d.n / se : 0);
    }
  }
  nl_dataset_free(&d);
  nl_dataset_free(&hd);
  nl_dataset_free(&st.fit);
  nl_reuse_plan_free(plan);
  nl_vit_free(&m);
  return rc;
}

const nl_cmd nl_cmd_reuse = {
    .name = "reuse",
    .args = NULL,
    .summary = "attention reuse (TReX/SkipAt-style): blocks that reuse an earlier block's attention",
    .help = "--tb none (training-free): each block of --blocks skips its q and k\n"
            "projections, q k^T and the softmax and applies the attention probabilities\n"
            "of its source (by default the last block before it that computes its own)\n"
            "to its own values. --tb linear|mlp: the block skips its whole attention\n"
            "branch and takes a transformation block (TB) of its source's attention\n"
            "output (by default the block before it): a D x D linear map, or an MLP of\n"
            "--hidden units, fitted by ridge least squares on --fit-images training\n"
            "images to the block's own attention output (the mlp: fc2 on a random fc1;\n"
            "`normlab train` can fine-tune a saved plan's TBs). --search greedy builds\n"
            "the plan on the last --holdout training images: it adds the block whose\n"
            "reuse loses least top-1 while the loss stays within --max-drop points\n"
            "(and until --target % FLOPs saved). A model that carries a plan (--output\n"
            "of an earlier run) is evaluated with it when neither is given. Prints top-1,\n"
            "FLOPs, weight bytes and images/s of the plan and the full model on the test\n"
            "images, timed alternately batch by batch; --evit-blocks adds the EViT\n"
            "token-pruning baseline at the plan's FLOPs. A block that does not exist,\n"
            "block 0, a repeat or a source that is not earlier is an error (exit 2).",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
