/* exits: early-exit heads after every block (train/exits.h). 'exits fit'
 * trains them on recorded features of the frozen model; 'exits eval' runs
 * the packed early-exit pass against the full-depth pass in the same run. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/data_load.h"
#include "app/model_path.h"
#include "base/fileio.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/timer.h"
#include "data/dataset.h"
#include "model/reuse_plan.h"
#include "model/vit.h"
#include "train/evaluate.h"
#include "train/exits.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "the model (safetensors, timm names)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"output", NL_OPT_STR, "FILE", NULL, "fit: exit heads to write (safetensors)", NULL, NL_OPTF_PATH},
    {"images", NL_OPT_INT, "N", "5000", "fit: training images (the first N of --data)", NULL, 0},
    {"data", NL_OPT_STR, "SPEC", "fmnist:train", "fit: data spec of the training images", NULL, 0},
    NL_OPT_SKIP_BAD,
    {"epochs", NL_OPT_INT, "E", "10", "fit: passes over the recorded features", NULL, 0},
    {"lr", NL_OPT_NUM, "X", "0.002", "fit: AdamW step size", NULL, 0},
    {"seed", NL_OPT_INT, "S", "0", "fit: seed of the minibatch order", NULL, 0},
    {"exits", NL_OPT_STR, "FILE", NULL, "eval: exit heads (from exits fit)", NULL, NL_OPTF_PATH},
    {"tau", NL_OPT_NUM, "T", NULL, "eval: exit when the top softmax probability exceeds T (0..1; 1: never)", NULL, 0},
    {"max-drop", NL_OPT_NUM, "P", NULL, "eval: pick tau on held-out training images: the most aggressive with top-1 at most P points below full depth", NULL, 0},
    {"holdout", NL_OPT_INT, "N", "5000", "the last N images of fmnist:train, never fitted on, for --max-drop", NULL, 0},
    {"oracle", NL_OPT_FLAG, NULL, NULL, "eval: also the oracle: per image the first block that already gives the full-depth prediction", NULL, 0},
    {"eval-images", NL_OPT_INT, "N", "0", "eval: the first N test images (0: all)", NULL, 0},
    {"batch", NL_OPT_INT, "B", "64", "images per forward pass", NULL, 0},
    {"any-weights", NL_OPT_FLAG, NULL, NULL, "eval: accept heads fitted on a model with other weights (same shape)", NULL, 0},
    {"per-image", NL_OPT_STR, "FILE", NULL, "eval: write a CSV per image (label, blocks, prediction, full-depth prediction)", NULL, NL_OPTF_PATH},
    {"policy", NL_OPT_FLAG, NULL, NULL, "fit: also train the block policy (BlockDrop-style); eval: run it instead of the threshold rule", NULL, 0},
    {"policy-epochs", NL_OPT_INT, "E", "5", "fit: passes of the policy's REINFORCE training (0 with --policy-init-tau: the start alone)", NULL, 0},
    {"policy-head", NL_OPT_STR, "final|exit", "final", "fit: the policy's prediction from the model's own head (BlockDrop) or the exit head of the last block run", NULL, 0},
    {"policy-baseline", NL_OPT_STR, "average|greedy", "average", "fit: REINFORCE's baseline: the moving average of the reward, or the reward of the policy's greedy decisions on the same image", NULL, 0},
    {"policy-penalty", NL_OPT_NUM, "G", "1", "fit: the policy's reward for a wrong prediction is -G (BlockDrop's gamma; 1: its reward)", NULL, 0},
    {"policy-lr", NL_OPT_NUM, "X", "0.01", "fit: the policy's AdamW step size", NULL, 0},
    {"policy-init-tau", NL_OPT_NUM, "T", NULL, "fit: start the policy from the threshold rule's decisions at T (logistic regression on block 0's features)", NULL, 0},
    {"predictor", NL_OPT_FLAG, NULL, NULL, "fit: also train the complexity predictor; eval: start each image's exit checks where it says", NULL, 0},
    {"predictor-block", NL_OPT_INT, "F", "0", "fit: the block whose pooled output the predictor reads", NULL, 0},
    {"predictor-epochs", NL_OPT_INT, "E", "20", "fit: passes of the predictor's training", NULL, 0},
    {"quantile", NL_OPT_NUM, "Q", NULL, "eval --predictor: start at the first block whose predicted cumulative probability reaches Q (0..1; 1: never early)", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

static int load_model(nl_ctx *ctx, const nl_args *a, nl_vit *m, const char **path,
                      nl_error *err) {
  *path = nl_model_path(ctx, a);
  if (!*path) return nl_fail(err, NL_EINPUT, "no model: give --model FILE");
  return nl_vit_load(m, *path, NULL, err);
}

/* The last `holdout` images of fmnist:train. */
static int load_holdout(long holdout, nl_dataset *d, nl_error *err) {
  nl_dataset all;
  if (nl_dataset_load(&all, "fmnist:train", 0, 0, err)) return -1;
  long n = all.n;
  nl_dataset_free(&all);
  if (holdout > n)
    return nl_fail(err, NL_EINPUT, "--holdout %ld: fmnist:train has only %ld images", holdout, n);
  return nl_dataset_load(d, "fmnist:train", n - holdout, holdout, err);
}

/* ---- fit ---- */

static int on_exit_fitted(const nl_progress *p, void *user) {
  nl_ctx *ctx = user;
  fprintf(ctx->err, "exits fit: %s (%ld/%ld): loss %.4f, %.1f s\n", p->label, p->done, p->total,
          p->vals[0], p->elapsed);
  fflush(ctx->err);
  return ctx->progress && ctx->progress(p, ctx->progress_user);
}

static int on_policy_epoch(const nl_progress *p, void *user) {
  nl_ctx *ctx = user;
  fprintf(ctx->err, "exits policy: epoch %ld/%ld: reward %.4f, %.2f blocks, top-1 %.2f %% (draws), %.1f s\n",
          p->done, p->total, p->vals[0], p->vals[1], 100 * p->vals[2], p->elapsed);
  fflush(ctx->err);
  return ctx->progress && ctx->progress(p, ctx->progress_user);
}

static int fit(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long images, epochs, seed, batch, holdout;
  if (nl_arg_int_range(a, "images", 1, 1000000, &images, err) ||
      nl_arg_int_range(a, "epochs", 1, 100000, &epochs, err) ||
      nl_arg_int_range(a, "seed", 0, 2147483647L, &seed, err) ||
      nl_arg_int_range(a, "batch", 1, 4096, &batch, err) ||
      nl_arg_int_range(a, "holdout", 0, 1000000, &holdout, err))
    return -1;
  double lr = nl_arg_num(a, "lr");
  if (!(lr > 0)) return nl_fail(err, NL_EINPUT, "--lr %g: must be positive", lr);
  const char *out = nl_arg_need(a, "output", err);
  if (!out) return -1;
  const char *spec = nl_arg_str(a, "data");
  if (strcmp(spec, "fmnist:train") == 0 && images > 60000 - holdout)
    return nl_fail(err, NL_EINPUT,
                   "--images %ld: the last %ld images of fmnist:train are held out for 'exits "
                   "eval --max-drop' (at most %ld; or lower --holdout)",
                   images, holdout, 60000 - holdout);
  const char *path;
  nl_vit m;
  if (load_model(ctx, a, &m, &path, err)) return -1;
  nl_dataset d;
  if (nl_app_load_images(ctx, spec, 0, images, &m.cfg, nl_app_skip_bad(a), &d, err)) {
    nl_vit_free(&m);
    return -1;
  }
  int rc = 0;
  nl_exits e;
  memset(&e, 0, sizeof e);
  float *feat = NULL;
  double t0 = nl_now(), trec = 0;
  if (!rc) rc = nl_exits_init(&e, &m, err);
  if (!rc) rc = nl_exits_features(&m, &d, (int)batch, ctx->threads, &feat, err);
  trec = nl_now() - t0;
  double *loss = nl_xcalloc((size_t)m.cfg.depth, sizeof(double));
  int json = nl_arg_flag(a, "json");
  if (!rc) {
    nl_exits_fit_opts o;
    nl_exits_fit_opts_default(&o);
    o.epochs = (int)epochs;
    o.lr = (float)lr;
    o.seed = (uint64_t)seed;
    o.threads = ctx->threads;
    if (!json) {
      o.progress = on_exit_fitted;
      o.progress_user = ctx;
    }
    rc = nl_exits_fit(&e, feat, d.labels, d.n, &o, loss, err);
  }
  long pblock = 0, pepochs = 0;
  double *ploss = NULL, otarget = 0;
  if (!rc && nl_arg_flag(a, "predictor")) {
    rc = nl_arg_int_range(a, "predictor-block", 0, m.cfg.depth - 1, &pblock, err) ||
         nl_arg_int_range(a, "predictor-epochs", 1, 100000, &pepochs, err);
    int32_t *tg = NULL;
    if (!rc) {
      tg = nl_xmalloc(sizeof(int32_t) * (size_t)d.n);
      nl_exits_oracle_targets(&e, feat, d.n, tg);
      for (int i = 0; i < d.n; i++) otarget += tg[i] + 1;
      otarget /= d.n;
      ploss = nl_xcalloc((size_t)pepochs, sizeof(double));
      nl_exits_pred_opts po;
      nl_exits_pred_opts_default(&po);
      po.block = (int)pblock;
      po.epochs = (int)pepochs;
      po.seed = (uint64_t)seed;
      po.threads = ctx->threads;
      rc = nl_exits_pred_fit(&e, feat, tg, d.n, &po, ploss, err);
    }
    free(tg);
    if (!rc && !json)
      fprintf(ctx->err, "exits predictor: block %ld, oracle's mean blocks %.2f on the fit images, "
              "cross-entropy %.4f (epoch 1) -> %.4f (epoch %ld)\n", pblock, otarget, ploss[0],
              ploss[pepochs - 1], pepochs);
  }
  long pep = 0;
  if (!rc && nl_arg_flag(a, "policy")) {
    int init = nl_arg_given(a, "policy-init-tau");
    rc = nl_arg_int_range(a, "policy-epochs", init ? 0 : 1, 100000, &pep, err);
    nl_exits_policy_opts po;
    nl_exits_policy_opts_default(&po);
    const char *ph = nl_arg_str(a, "policy-head");
    if (!rc && strcmp(ph, "final") && strcmp(ph, "exit"))
      rc = nl_fail(err, NL_EINPUT, "--policy-head %s: final or exit", ph);
    po.exit_head = strcmp(ph, "exit") == 0;
    const char *pb = nl_arg_str(a, "policy-baseline");
    if (!rc && strcmp(pb, "average") && strcmp(pb, "greedy"))
      rc = nl_fail(err, NL_EINPUT, "--policy-baseline %s: average or greedy", pb);
    po.greedy_baseline = strcmp(pb, "greedy") == 0;
    po.lr = (float)nl_arg_num(a, "policy-lr");
    po.penalty = nl_arg_num(a, "policy-penalty");
    if (!rc && !(po.penalty > 0)) rc = nl_fail(err, NL_EINPUT, "--policy-penalty %g: must be positive", po.penalty);
    if (!rc && !(po.lr > 0)) rc = nl_fail(err, NL_EINPUT, "--policy-lr %g: must be positive", po.lr);
    if (!rc && init) {
      po.init_tau = nl_arg_num(a, "policy-init-tau");
      po.init_feat = feat;
      if (!(po.init_tau >= 0 && po.init_tau <= 1))
        rc = nl_fail(err, NL_EINPUT, "--policy-init-tau %g: a probability threshold must be in [0, 1]", po.init_tau);
    }
    po.epochs = (int)pep;
    po.seed = (uint64_t)seed;
    po.threads = ctx->threads;
    if (!json) {
      po.progress = on_policy_epoch;
      po.progress_user = ctx;
    }
    if (!rc) rc = nl_exits_policy_fit(&m, &e, &d, &po, err);
  }
  if (!rc) {
    snprintf(e.model, sizeof e.model, "%s", path);
    snprintf(e.data, sizeof e.data, "%s", spec);
    e.images = d.n;
    e.epochs = (int)epochs;
    e.seed = (uint64_t)seed;
    e.lr = lr;
    rc = nl_exits_save(&e, out, err);
  }
  if (!rc) {
    double secs = nl_now() - t0;
    if (json) {
      json_t *j = json_object(), *l = json_array();
      json_object_set_new(j, "model", json_string(path));
      json_object_set_new(j, "output", json_string(out));
      json_object_set_new(j, "norm", json_string(nl_norm_kind_name(e.kind)));
      json_object_set_new(j, "images", json_integer(d.n));
      json_object_set_new(j, "epochs", json_integer(epochs));
      for (int k = 0; k < e.depth; k++) json_array_append_new(l, json_real(loss[k]));
      json_object_set_new(j, "loss", l);
      if (ploss) {
        json_t *pj = json_object(), *pl = json_array();
        json_object_set_new(pj, "block", json_integer(pblock));
        json_object_set_new(pj, "oracle_mean_blocks", nl_json_rounded(otarget, 4));
        for (long q = 0; q < pepochs; q++) json_array_append_new(pl, json_real(ploss[q]));
        json_object_set_new(pj, "epoch_loss", pl);
        json_object_set_new(j, "predictor", pj);
      }
      json_object_set_new(j, "seconds", nl_json_rounded(secs, 2));
      nl_json_print(ctx->out, j);
      json_decref(j);
    } else {
      fprintf(ctx->out, "%d exit heads (%s norm + linear) on %d images of %s, %ld epochs: "
              "features %.1f s, all %.1f s\n", e.depth, nl_norm_kind_name(e.kind), d.n, spec,
              epochs, trec, secs);
      fprintf(ctx->out, "cross-entropy after each block:");
      for (int k = 0; k < e.depth; k++) fprintf(ctx->out, " %.3f", loss[k]);
      fprintf(ctx->out, "\nwrote %s\n", out);
    }
  }
  free(loss);
  free(ploss);
  free(feat);
  nl_exits_free(&e);
  nl_dataset_free(&d);
  nl_vit_free(&m);
  return rc;
}

/* ---- eval ---- */

typedef struct {
  const char *name;
  long top1;
  double blocks, heads, mflops, ips, ms;
  int timed;
} row;

static json_t *row_json(const row *r, long n) {
  json_t *j = json_object();
  json_object_set_new(j, "top1", json_real(n ? (double)r->top1 / n : 0));
  json_object_set_new(j, "mean_blocks", nl_json_rounded(r->blocks, 4));
  json_object_set_new(j, "mean_heads", nl_json_rounded(r->heads, 4));
  json_object_set_new(j, "mflops_per_image", nl_json_rounded(r->mflops, 4));
  if (r->timed) {
    json_object_set_new(j, "images_per_second", nl_json_rounded(r->ips, 1));
    json_object_set_new(j, "ms_per_batch", nl_json_rounded(r->ms, 4));
  }
  return j;
}

static void row_print(FILE *o, const row *r, long n) {
  fprintf(o, "%-12s %7.2f %%  %6.2f  %9.3f", r->name, n ? 100.0 * r->top1 / n : 0, r->blocks,
          r->mflops);
  if (r->timed)
    fprintf(o, "  %9.1f  %9.3f\n", r->ips, r->ms);
  else
    fprintf(o, "  %9s  %9s\n", "-", "-");
}

static int argmax(const float *l, int C) {
  int a = 0;
  for (int j = 1; j < C; j++)
    if (l[j] > l[a]) a = j;
  return a;
}

static int eval(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long evn, batch, holdout;
  if (nl_arg_int_range(a, "eval-images", 0, 1000000000, &evn, err) ||
      nl_arg_int_range(a, "batch", 1, 4096, &batch, err) ||
      nl_arg_int_range(a, "holdout", 1, 1000000, &holdout, err))
    return -1;
  int has_tau = nl_arg_given(a, "tau"), has_drop = nl_arg_given(a, "max-drop");
  int policy = nl_arg_flag(a, "policy"), predictor = nl_arg_flag(a, "predictor");
  int has_q = nl_arg_given(a, "quantile");
  if (policy && predictor)
    return nl_fail(err, NL_EINPUT, "exits eval: --policy or --predictor, not both");
  if (policy && (has_tau || has_drop || has_q))
    return nl_fail(err, NL_EINPUT, "exits eval: --policy decides the blocks itself: no --tau, --max-drop or --quantile");
  if (predictor && has_drop == has_q)
    return nl_fail(err, NL_EINPUT, "exits eval --predictor: give one of --quantile Q (with --tau T, 0 by default: stop at the predicted block) and --max-drop P");
  if (predictor && has_drop && has_tau)
    return nl_fail(err, NL_EINPUT, "exits eval --predictor: --max-drop picks both Q and T: no --tau");
  if (!predictor && has_q)
    return nl_fail(err, NL_EINPUT, "exits eval: --quantile needs --predictor");
  if (!policy && !predictor && has_tau == has_drop)
    return nl_fail(err, NL_EINPUT, "exits eval: give one of --tau T and --max-drop P (or --policy, or --predictor)");
  double tau = has_tau ? nl_arg_num(a, "tau") : predictor ? 0 : 1;
  double drop = has_drop ? nl_arg_num(a, "max-drop") : 0, qv = has_q ? nl_arg_num(a, "quantile") : 1;
  if (has_q && !(qv >= 0 && qv <= 1))
    return nl_fail(err, NL_EINPUT, "--quantile %g: a cumulative probability must be in [0, 1] (1: never early)", qv);
  if (has_tau && !(tau >= 0 && tau <= 1))
    return nl_fail(err, NL_EINPUT, "--tau %g: a probability threshold must be in [0, 1] (1: never exit)", tau);
  if (has_drop && !(drop >= 0 && drop <= 100))
    return nl_fail(err, NL_EINPUT, "--max-drop %g: top-1 points, in [0, 100]", drop);
  const char *epath = nl_arg_need(a, "exits", err);
  if (!epath) return -1;
  const char *path;
  nl_vit m;
  if (load_model(ctx, a, &m, &path, err)) return -1;
  nl_exits e;
  if (nl_exits_load(&e, epath, err)) {
    nl_vit_free(&m);
    return -1;
  }
  int rc = nl_exits_check(&e, &m, epath, nl_arg_flag(a, "any-weights"), err);
  if (!rc && policy && !e.policy)
    rc = nl_fail(err, NL_EINPUT, "%s: no block policy in it (fit one with 'exits fit --policy')", epath);
  if (!rc && predictor && !e.predictor)
    rc = nl_fail(err, NL_EINPUT, "%s: no complexity predictor in it (fit one with 'exits fit --predictor')", epath);
  if (!rc) rc = nl_vit_check_finite(&m, path, err);
  const nl_vit_config *c = &m.cfg;
  const int C = c->classes;
  nl_dataset d, hd;
  memset(&d, 0, sizeof d);
  memset(&hd, 0, sizeof hd);
  nl_exits_stats picked;
  memset(&picked, 0, sizeof picked);
  nl_exits_stats hfull;
  memset(&hfull, 0, sizeof hfull);
  nl_exits_table ht;
  memset(&ht, 0, sizeof ht);
  if (!rc && has_drop) {
    if (strcmp(e.data, "fmnist:train") == 0 && e.images > 60000 - holdout)
      rc = nl_fail(err, NL_EINPUT, "%s: fitted on the first %ld training images, which overlap "
                   "the last %ld held out for --max-drop (lower --holdout)", epath, e.images, holdout);
    if (!rc) rc = load_holdout(holdout, &hd, err);
    if (!rc) rc = nl_exits_table_make(&m, &e, &hd, (int)batch, ctx->threads, &ht, err);
    if (!rc) {
      if (predictor)
        nl_exits_pick_pred(&ht, drop, &qv, &tau, &picked);
      else
        tau = nl_exits_pick_tau(&ht, drop, &picked);
      nl_exits_full(&ht, &hfull);
    }
  }
  if (!rc) rc = nl_dataset_load(&d, "fmnist:test", 0, evn, err);
  if (!rc) rc = nl_vit_check_data(&m, &d, path, err);
  long n = d.n;
  float *lf = NULL, *le = NULL, *img = NULL;
  int *blocks = NULL, *heads = NULL;
  nl_exits_ws w;
  nl_vit_acts acts;
  memset(&w, 0, sizeof w);
  memset(&acts, 0, sizeof acts);
  double tf = 0, te = 0;
  long nbatches = 0;
  if (!rc) {
    lf = nl_xmalloc(sizeof(float) * (size_t)n * C);
    le = nl_xmalloc(sizeof(float) * (size_t)n * C);
    blocks = nl_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    heads = nl_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    img = nl_aalloc(sizeof(float) * (size_t)batch * c->in_chans * c->img_size * c->img_size);
    rc = nl_exits_ws_init(&w, &m, (int)batch, ctx->threads, err);
    if (!rc) rc = nl_vit_acts_init(&acts, c, (int)batch, 0, err);
    acts.threads = ctx->threads;
  }
  /* the two passes per batch, in alternating order, timed alike */
  for (long i = 0; !rc && i < n; i += batch, nbatches++) {
    int nb = (int)(n - i < batch ? n - i : batch);
    nl_dataset_normalize(&d, (int)i, nb, c->in_chans, c->nmean, c->mean, c->std, img);
    for (int pass = 0; pass < 2 && !rc; pass++) {
      int exit_pass = (pass + (int)nbatches) % 2;
      double t0 = nl_now();
      if (exit_pass) {
        if (policy)
          rc = nl_exits_policy_forward(&m, &e, &w, img, nb, le + (size_t)i * C, blocks + i, err);
        else if (predictor)
          rc = nl_exits_pred_forward(&m, &e, &w, img, nb, qv, tau, le + (size_t)i * C, blocks + i,
                                     heads + i, err);
        else
          rc = nl_exits_forward(&m, &e, &w, img, nb, tau, le + (size_t)i * C, blocks + i, err);
        te += nl_now() - t0;
      } else {
        rc = nl_vit_forward(&m, &acts, img, nb, NULL, NULL, err);
        tf += nl_now() - t0;
        if (!rc) memcpy(lf + (size_t)i * C, acts.logits, sizeof(float) * (size_t)nb * C);
      }
    }
  }
  nl_exits_table tt;
  memset(&tt, 0, sizeof tt);
  int *oblocks = NULL;
  nl_exits_stats os;
  memset(&os, 0, sizeof os);
  int oracle = nl_arg_flag(a, "oracle");
  if (!rc && oracle) {
    rc = nl_exits_table_make(&m, &e, &d, (int)batch, ctx->threads, &tt, err);
    if (!rc) {
      oblocks = nl_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
      nl_exits_oracle(&tt, &os, oblocks);
    }
  }
  if (!rc) {
    /* a model carrying an attention-reuse plan: its savings in the blocks run */
    double rsave = 0, rfull = 0;
    for (long i = 0; i < n && m.reuse; i++)
      for (int k = 0; k < blocks[i] && k < c->depth; k++) rsave += nl_reuse_block_saving(m.reuse, c, k);
    rsave = n ? rsave / n : 0;
    for (int k = 0; k < c->depth && m.reuse; k++) rfull += nl_reuse_block_saving(m.reuse, c, k);
    row full = {"full depth", 0, c->depth, 1, (nl_vit_flops_per_image(c) - rfull) * 1e-6, 0, 0, 1};
    row ex = {"early exit", 0, 0, 0, 0, 0, 0, 1};
    long agree = 0, same_logits = 0;
    double sb = 0, sh = 0, maxdiff = 0;
    for (long i = 0; i < n; i++) {
      const float *f = lf + (size_t)i * C, *x = le + (size_t)i * C;
      int pf = argmax(f, C), px = argmax(x, C);
      full.top1 += pf == d.labels[i];
      ex.top1 += px == d.labels[i];
      agree += pf == px;
      sb += blocks[i];
      if (predictor) sh += heads[i];
      int same = 1;
      for (int j = 0; j < C; j++) {
        double df = fabs((double)f[j] - x[j]);
        if (df > maxdiff) maxdiff = df;
        if (f[j] != x[j]) same = 0;
      }
      same_logits += same;
    }
    ex.blocks = n ? sb / n : 0;
    ex.heads = predictor ? (n ? sh / n : 0) : tau < 1 && !policy ? ex.blocks : 1;
    ex.mflops = (nl_exits_flops(c, ex.blocks, ex.heads) - rsave + (policy ? nl_exits_policy_flops(&e) : 0) +
                 (predictor && tau < 1 ? nl_exits_pred_flops(&e) : 0)) * 1e-6;
    if (policy) ex.name = "policy";
    if (predictor) ex.name = "predictor";
    full.ips = tf > 0 ? n / tf : 0;
    ex.ips = te > 0 ? n / te : 0;
    full.ms = nbatches ? 1e3 * tf / nbatches : 0;
    ex.ms = nbatches ? 1e3 * te / nbatches : 0;
    row orow = {"oracle", os.top1, os.mean_blocks, 1, nl_exits_flops(c, os.mean_blocks, 1) * 1e-6, 0, 0, 0};
    const char *csv = nl_arg_str(a, "per-image");
    if (csv) {
      size_t cap = 64 * (size_t)(n + 1), len = 0;
      char *buf = nl_xmalloc(cap);
      len += (size_t)snprintf(buf + len, cap - len, "image,label,blocks,pred,full_pred%s\n",
                              oracle ? ",oracle_blocks" : "");
      for (long i = 0; i < n; i++) {
        len += (size_t)snprintf(buf + len, cap - len, "%ld,%d,%d,%d,%d", i, d.labels[i], blocks[i],
                                argmax(le + (size_t)i * C, C), argmax(lf + (size_t)i * C, C));
        if (oracle) len += (size_t)snprintf(buf + len, cap - len, ",%d", oblocks[i]);
        len += (size_t)snprintf(buf + len, cap - len, "\n");
      }
      rc = nl_write_file_atomic(csv, buf, len, err);
      free(buf);
    }
    if (!rc && nl_arg_flag(a, "json")) {
      json_t *j = json_object();
      json_object_set_new(j, "model", json_string(path));
      json_object_set_new(j, "exits", json_string(epath));
      json_object_set_new(j, "images", json_integer(n));
      json_object_set_new(j, "batch", json_integer(batch));
      json_object_set_new(j, "rule", json_string(policy ? "policy" : predictor ? "predictor, then max_prob > tau" : "max_prob > tau"));
      if (!policy) json_object_set_new(j, "tau", json_real(tau));
      if (predictor) json_object_set_new(j, "quantile", json_real(qv));
      if (predictor) json_object_set_new(j, "predictor_block", json_integer(e.pred_block));
      if (has_drop) {
        json_t *h = json_object();
        json_object_set_new(h, "max_drop", json_real(drop));
        json_object_set_new(h, "images", json_integer(picked.images));
        json_object_set_new(h, "top1_full", json_real(hfull.images ? (double)hfull.top1 / hfull.images : 0));
        json_object_set_new(h, "top1", json_real(picked.images ? (double)picked.top1 / picked.images : 0));
        json_object_set_new(h, "mean_blocks", nl_json_rounded(picked.mean_blocks, 4));
        json_object_set_new(j, "holdout", h);
      }
      json_object_set_new(j, "full", row_json(&full, n));
      json_object_set_new(j, "exit", row_json(&ex, n));
      if (oracle) {
        json_object_set_new(j, "oracle", row_json(&orow, n));
        json_t *sw = json_array();
        double g[256];
        int ng = nl_exits_tau_grid(g, 256);
        for (int q = 0; q < ng; q++) {
          nl_exits_stats rs;
          nl_exits_rule(&tt, g[q], &rs, NULL);
          row r = {"", rs.top1, rs.mean_blocks, rs.mean_heads,
                   nl_exits_flops(c, rs.mean_blocks, rs.mean_heads) * 1e-6, 0, 0, 0};
          json_t *rj = row_json(&r, n);
          json_object_set_new(rj, "tau", json_real(g[q]));
          json_array_append_new(sw, rj);
        }
        json_object_set_new(j, "sweep", sw);
        if (e.predictor) { /* the predictor alone (tau 0) over the quantiles */
          json_t *pw = json_array();
          double g2[64];
          int nq = nl_exits_q_grid(g2, 64);
          for (int qi = 0; qi < nq; qi++) {
            nl_exits_stats rs;
            nl_exits_pred_rule(&tt, g2[qi], 0, &rs, NULL);
            row r = {"", rs.top1, rs.mean_blocks, rs.mean_heads,
                     (nl_exits_flops(c, rs.mean_blocks, rs.mean_heads) + nl_exits_pred_flops(&e)) * 1e-6, 0, 0, 0};
            json_t *rj = row_json(&r, n);
            json_object_set_new(rj, "quantile", json_real(g2[qi]));
            json_array_append_new(pw, rj);
          }
          json_object_set_new(j, "predictor_sweep", pw);
        }
        if (has_drop) { /* the picks on the held-out images at other budgets, on the test table */
          json_t *pk = json_array();
          double dg[32];
          int nd = nl_exits_drop_grid(dg, 32);
          for (int di = 0; di < nd; di++) {
            nl_exits_stats hs, rs;
            json_t *o = json_object();
            json_object_set_new(o, "max_drop", json_real(dg[di]));
            double t1 = nl_exits_pick_tau(&ht, dg[di], &hs);
            nl_exits_rule(&tt, t1, &rs, NULL);
            row r = {"", rs.top1, rs.mean_blocks, rs.mean_heads,
                     nl_exits_flops(c, rs.mean_blocks, rs.mean_heads) * 1e-6, 0, 0, 0};
            json_t *rj = row_json(&r, n);
            json_object_set_new(rj, "tau", json_real(t1));
            json_object_set_new(o, "rule", rj);
            if (e.predictor) {
              double q1, t2;
              nl_exits_pick_pred(&ht, dg[di], &q1, &t2, &hs);
              nl_exits_pred_rule(&tt, q1, t2, &rs, NULL);
              row r2 = {"", rs.top1, rs.mean_blocks, rs.mean_heads,
                        (nl_exits_flops(c, rs.mean_blocks, rs.mean_heads) + (t2 < 1 ? nl_exits_pred_flops(&e) : 0)) * 1e-6, 0, 0, 0};
              rj = row_json(&r2, n);
              json_object_set_new(rj, "quantile", json_real(q1));
              json_object_set_new(rj, "tau", json_real(t2));
              json_object_set_new(o, "predictor", rj);
            }
            json_array_append_new(pk, o);
          }
          json_object_set_new(j, "picks", pk);
        }
      }
      json_object_set_new(j, "agree_with_full", json_integer(agree));
      json_object_set_new(j, "identical_logits", json_integer(same_logits));
      json_object_set_new(j, "max_abs_logit_diff", json_real(maxdiff));
      nl_json_print(ctx->out, j);
      json_decref(j);
    } else if (!rc) {
      FILE *o = ctx->out;
      fprintf(o, "%s with exits %s on fmnist:test (%ld images), batch %ld, %s\n", path, epath, n,
              batch, nl_norm_kind_name(e.kind));
      if (has_drop)
        fprintf(o, "tau %.6g picked on %ld held-out training images: top-1 %.2f %% vs %.2f %% "
                "full depth (max drop %g points), %.2f blocks\n", tau, picked.images,
                picked.images ? 100.0 * picked.top1 / picked.images : 0,
                hfull.images ? 100.0 * hfull.top1 / hfull.images : 0, drop, picked.mean_blocks);
      if (policy)
        fprintf(o, "block policy: a linear layer on block 0's pooled output picks the later blocks; "
                "the prediction from %s\n", e.policy_exit_head ? "the exit head of the last block run" : "the model's own head");
      else if (predictor)
        fprintf(o, "complexity predictor on block %d's pooled output: exits checked from the first "
                "block with cumulative probability >= q = %.6g, then top softmax probability > "
                "tau = %.6g\n", e.pred_block, qv, tau);
      else
        fprintf(o, "exit rule: top softmax probability > tau = %.6g\n", tau);
      fprintf(o, "%-12s %9s  %6s  %9s  %9s  %9s\n", "", "top-1", "blocks", "MFLOPs", "images/s",
              "ms/batch");
      row_print(o, &full, n);
      row_print(o, &ex, n);
      if (oracle) {
        row_print(o, &orow, n);
        /* the rule at other thresholds, from the same table (not timed) */
        static const double sweep[] = {0.5, 0.8, 0.9, 0.95, 0.99, 0.999};
        for (size_t q = 0; q < sizeof sweep / sizeof *sweep; q++) {
          nl_exits_stats rs;
          nl_exits_rule(&tt, sweep[q], &rs, NULL);
          char name[32];
          snprintf(name, sizeof name, "tau %g", sweep[q]);
          row r = {name, rs.top1, rs.mean_blocks, rs.mean_heads,
                   nl_exits_flops(c, rs.mean_blocks, rs.mean_heads) * 1e-6, 0, 0, 0};
          row_print(o, &r, n);
        }
        static const double qs[] = {0.5, 0.8, 0.9, 0.95, 0.99};
        for (size_t qi = 0; e.predictor && qi < sizeof qs / sizeof *qs; qi++) {
          nl_exits_stats rs;
          nl_exits_pred_rule(&tt, qs[qi], 0, &rs, NULL);
          char name[32];
          snprintf(name, sizeof name, "pred q %g", qs[qi]);
          row r = {name, rs.top1, rs.mean_blocks, rs.mean_heads,
                   (nl_exits_flops(c, rs.mean_blocks, rs.mean_heads) + nl_exits_pred_flops(&e)) * 1e-6, 0, 0, 0};
          row_print(o, &r, n);
        }
      }
      fprintf(o, "%s vs full depth: FLOPs %+.1f %%, images/s x%.2f (same run), %ld of %ld "
              "predictions agree, %ld logits identical (max |diff| %.3g)\n",
              policy ? "policy" : predictor ? "predictor" : "early exit", 100.0 * (ex.mflops / full.mflops - 1), full.ips > 0 ? ex.ips / full.ips : 0, agree,
              n, same_logits, maxdiff);
    }
  }
  free(oblocks);
  free(heads);
  nl_exits_table_free(&tt);
  nl_exits_table_free(&ht);
  nl_vit_acts_free(&acts);
  nl_exits_ws_free(&w);
  nl_afree(img);
  free(blocks);
  free(lf);
  free(le);
  nl_dataset_free(&d);
  if (has_drop) nl_dataset_free(&hd);
  nl_exits_free(&e);
  nl_vit_free(&m);
  return rc;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *sub = a->pos[0];
  if (strcmp(sub, "fit") == 0) return fit(ctx, a, err);
  if (strcmp(sub, "eval") == 0) return eval(ctx, a, err);
  return nl_fail(err, NL_EINPUT, "unknown subcommand '%s' (exits fit, exits eval)", sub);
}

const nl_cmd nl_cmd_exits = {
    .name = "exits",
    .args = "fit|eval",
    .summary = "early-exit heads after every block: fit them, run the early-exit pass",
    .help = "'exits fit --model M --output E' records the pooled output of every block of\n"
            "the frozen model on --images training images once, and trains an exit head\n"
            "per block on them (a copy of the model's final norm, of its kind, and a\n"
            "linear head; AdamW, cross-entropy, --epochs passes, --seed). The last exit is\n"
            "the model's own norm and head. The last --holdout training images are never\n"
            "fitted on.\n"
            "'exits eval --model M --exits E --tau T' runs the test images block by block;\n"
            "after each block the images whose exit head's top softmax probability\n"
            "exceeds T leave and the rest go on as a smaller batch. T is in [0, 1]; 1\n"
            "never exits (the model's own logits). --max-drop P picks T on the held-out\n"
            "training images instead: the threshold with the fewest blocks whose top-1 is\n"
            "at most P points below full depth. Prints top-1, mean blocks, FLOPs per image\n"
            "(as 'info': matrix products, plus one head per block run) and measured\n"
            "images/s and ms per batch of the early-exit and the full-depth pass, timed\n"
            "alternately in the same run; --oracle adds the lower bound: per image the\n"
            "first block whose exit already gives the full-depth prediction, and the rule\n"
            "at other thresholds from the same per-image table (not timed).\n"
            "--policy: 'exits fit --policy' also trains a BlockDrop-style policy (a linear\n"
            "layer on block 0's pooled output, one logit per later block; REINFORCE with\n"
            "reward 1 - (fraction of blocks run)^2 when right, -1 when wrong, a moving-\n"
            "average baseline; --policy-epochs); 'exits eval --policy' runs the blocks it\n"
            "picks per image, each block on the images that run it as one batch.\n"
            "--policy-head exit takes the prediction from the exit head of the last block\n"
            "run instead of the model's own; --policy-init-tau T starts the policy from\n"
            "the threshold rule's decisions at T (logistic regression on the recorded\n"
            "block-0 features; --policy-epochs 0: the start alone).\n"
            "--predictor: 'exits fit --predictor' also trains the complexity predictor, a\n"
            "linear layer (softmax over blocks) on block --predictor-block's pooled output\n"
            "fitted to the oracle's block of each fit image; 'exits eval --predictor\n"
            "--quantile Q [--tau T]' checks an image's exits only from the first block\n"
            "whose predicted cumulative probability reaches Q (1: never early), then\n"
            "leaves at the first exit whose top probability exceeds T (0, the default:\n"
            "at that block); --max-drop P picks Q and T on the held-out images.\n"
            "Exit heads of another model (shape, norm kind, or weights: --any-weights)\n"
            "are an error (exit 2).",
    .opts = opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run,
};
