/* normlab prune: remove MLP hidden channels and attention heads physically
 * (model/prune.h). */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/data_load.h"
#include "app/model_path.h"
#include "app/profile_cmd.h"
#include "base/json.h"
#include "model/profile.h"
#include "model/prune.h"
#include "model/vit.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model (safetensors, timm names; default: the bundled "
     "vit_small_p7_fmnist)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"ratio", NL_OPT_NUM, "R", NULL, "fraction of every block's MLP channels removed, in [0, 1)",
     NULL, 0},
    {"budget-mb", NL_OPT_NUM, "MB", NULL,
     "instead of --ratio: remove the globally lowest channels until the parameters fit in MB "
     "(10^6 bytes, F32)", NULL, 0},
    {"score", NL_OPT_CHOICE, NULL, "variance", "channel importance",
     "variance|absmean|magnitude|random|contribution", 0},
    {"heads", NL_OPT_NUM, "R", NULL, "fraction of every block's attention heads removed, in "
     "[0, 1) (each block keeps at least one)", NULL, 0},
    {"keep-heads", NL_OPT_INT, "N", NULL, "instead of --heads: attention heads every block keeps "
     "(1 .. the model's heads)", NULL, 0},
    {"head-score", NL_OPT_CHOICE, NULL, "contribution", "head importance", "contribution|random",
     0},
    {"profile", NL_OPT_STR, "FILE", NULL, "activation profile (normlab profile --output)", NULL,
     NL_OPTF_PATH},
    {"data", NL_OPT_STR, "SPEC", "fmnist:train", "without --profile: images to profile", NULL, 0},
    NL_OPT_SKIP_BAD,
    {"offset", NL_OPT_INT, "N", "0", "without --profile: first image", NULL, 0},
    {"images", NL_OPT_INT, "N", "256", "without --profile: images to profile", NULL, 0},
    {"batch", NL_OPT_INT, "B", "32", "without --profile: images per forward pass", NULL, 0},
    {"no-compensate", NL_OPT_FLAG, NULL, NULL,
     "no bias compensation (fc2.bias += W2[:, j] * mean_j for each removed channel j, "
     "proj.bias likewise for each removed head's channels)", NULL, 0},
    {"seed", NL_OPT_INT, "S", "42", "random score: seed", NULL, 0},
    {"refit", NL_OPT_FLAG, NULL, NULL,
     "refit fc2 on the kept channels: least squares against the unpruned output over the "
     "profiled images (instead of bias compensation)", NULL, 0},
    {"refit-damp", NL_OPT_NUM, "D", "0.01",
     "the refit's ridge, times the mean variance of the kept channels (>= 0)", NULL, 0},
    {"output", NL_OPT_STR, "FILE", NULL, "pruned model to write (safetensors)", NULL,
     NL_OPTF_REQUIRED | NL_OPTF_PATH},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

static nl_prune_score score_of(const char *s) {
  if (strcmp(s, "absmean") == 0) return NL_PRUNE_ABSMEAN;
  if (strcmp(s, "magnitude") == 0) return NL_PRUNE_MAGNITUDE;
  if (strcmp(s, "random") == 0) return NL_PRUNE_RANDOM;
  if (strcmp(s, "contribution") == 0) return NL_PRUNE_CONTRIBUTION;
  return NL_PRUNE_VARIANCE;
}

/* "[256, 128, ...]" or "128 in every block"; heads: the blocks' head counts */
static void widths_text(char *buf, size_t cap, const nl_vit_config *c, int heads) {
  int v[NL_VIT_MAX_DEPTH] = {0}, uniform = 1;
  for (int l = 0; l < c->depth; l++) {
    v[l] = heads ? nl_vit_heads(c, l) : nl_vit_mlp_width(c, l);
    uniform &= v[l] == v[0];
  }
  if (uniform) {
    snprintf(buf, cap, "%d in every block", v[0]);
    return;
  }
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (int l = 0; l < c->depth && k < cap; l++)
    k += (size_t)snprintf(buf + k, cap - k, "%s%d", l ? ", " : "", v[l]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *model = nl_model_path(ctx, a);
  const char *out = nl_arg_need(a, "output", err);
  if (!out) return -1;
  nl_prune_opts po = {.score = score_of(nl_arg_str(a, "score")),
                      .compensate = !nl_arg_flag(a, "no-compensate")};
  int has_ratio = nl_arg_given(a, "ratio"), has_budget = nl_arg_given(a, "budget-mb");
  int has_heads = nl_arg_given(a, "heads"), has_keep = nl_arg_given(a, "keep-heads");
  if (has_ratio && has_budget)
    return nl_fail(err, NL_EINPUT, "give one of --ratio R (a fraction of every block's MLP "
                   "channels) or --budget-mb MB (a parameter budget), not both");
  if (has_heads && has_keep)
    return nl_fail(err, NL_EINPUT, "give one of --heads R (a fraction of every block's heads) "
                   "or --keep-heads N (heads every block keeps), not both");
  if (!has_ratio && !has_budget && !has_heads && !has_keep)
    return nl_fail(err, NL_EINPUT, "give --ratio R or --budget-mb MB (MLP channels) and/or "
                   "--heads R or --keep-heads N (attention heads)");
  int mlp = has_ratio || has_budget, heads = has_heads || has_keep;
  nl_prune_head_opts ho = {.score = strcmp(nl_arg_str(a, "head-score"), "random") == 0
                                        ? NL_PRUNE_RANDOM
                                        : NL_PRUNE_CONTRIBUTION,
                           .compensate = po.compensate};
  if (has_heads) {
    ho.ratio = nl_arg_num(a, "heads");
    if (!(ho.ratio >= 0 && ho.ratio < 1))
      return nl_fail(err, NL_EINPUT, "--heads %g: the fraction of heads removed must be in "
                     "[0, 1)", ho.ratio);
  }
  if (has_keep) {
    long k;
    if (nl_arg_int_range(a, "keep-heads", LONG_MIN, LONG_MAX, &k, err) != 0) return -1;
    if (k < 1 || k > 4096)
      return nl_fail(err, NL_EINPUT, "--keep-heads %ld: every block keeps at least one head", k);
    ho.keep = (int)k;
  }
  if (!mlp && (nl_arg_given(a, "score") || nl_arg_given(a, "refit")))
    return nl_fail(err, NL_EINPUT, "--score and --refit are for MLP channels (--ratio or "
                   "--budget-mb); heads are ranked by --head-score");
  if (!heads && nl_arg_given(a, "head-score"))
    return nl_fail(err, NL_EINPUT, "--head-score is for --heads or --keep-heads");
  if (has_ratio) {
    po.ratio = nl_arg_num(a, "ratio");
    if (!(po.ratio >= 0 && po.ratio < 1))
      return nl_fail(err, NL_EINPUT, "--ratio %g: the fraction of channels removed must be in "
                     "[0, 1)", po.ratio);
  } else if (has_budget) {
    double mb = nl_arg_num(a, "budget-mb");
    if (!(mb > 0))
      return nl_fail(err, NL_EINPUT, "--budget-mb %g: the budget must be positive", mb);
    po.budget_bytes = mb * 1e6;
  }
  long offset, images, batch, seed;
  if (nl_arg_int_range(a, "offset", 0, INT32_MAX, &offset, err) != 0 ||
      nl_arg_int_range(a, "images", 1, INT32_MAX, &images, err) != 0 ||
      nl_arg_int_range(a, "batch", 1, 4096, &batch, err) != 0 ||
      nl_arg_int_range(a, "seed", 0, INT64_MAX, &seed, err) != 0)
    return -1;
  po.seed = ho.seed = (uint64_t)seed;
  po.refit = nl_arg_flag(a, "refit");
  po.refit_damp = nl_arg_num(a, "refit-damp");
  if (!(po.refit_damp >= 0) || !isfinite(po.refit_damp))
    return nl_fail(err, NL_EINPUT, "--refit-damp %g: the damping must be a finite number >= 0",
                   po.refit_damp);
  if (nl_arg_given(a, "refit-damp") && !po.refit)
    return nl_fail(err, NL_EINPUT, "--refit-damp is for --refit");
  const char *prof_path = nl_arg_str(a, "profile");
  if (prof_path && (nl_arg_given(a, "data") || nl_arg_given(a, "images") ||
                    nl_arg_given(a, "offset")))
    return nl_fail(err, NL_EINPUT, "--profile FILE and --data/--images/--offset exclude each "
                   "other (the profile says which images it saw)");
  int need_profile = (mlp && (po.compensate || po.refit || nl_prune_score_needs_profile(po.score))) ||
                     (heads && (ho.compensate || ho.score == NL_PRUNE_CONTRIBUTION));
  nl_vit m, pm;
  if (nl_vit_load(&m, model, NULL, err) != 0) return -1;
  if (has_keep && ho.keep > m.cfg.heads) {
    nl_fail(err, NL_EINPUT, "--keep-heads %d: %s has %d heads per block", ho.keep, model,
            m.cfg.heads);
    nl_vit_free(&m);
    return -1;
  }
  nl_profile p;
  memset(&p, 0, sizeof p);
  int rc = 0;
  char source[4400] = "none";
  if (need_profile && prof_path) {
    rc = nl_profile_load(&p, prof_path, err);
    if (rc == 0) {
      char what[4200];
      snprintf(what, sizeof what, "profile %s", prof_path);
      rc = nl_profile_check(&p, &m, what, err);
    }
    snprintf(source, sizeof source, "%s", prof_path);
  } else if (need_profile) {
    int skipped = 0;
    rc = nl_app_profile(ctx, &m, nl_arg_str(a, "data"), offset, images, batch, po.refit,
                        nl_app_skip_bad(a), &skipped, &p, err);
    snprintf(source, sizeof source, "%ld images of %s from offset %ld", images - skipped,
             nl_arg_str(a, "data"), offset);
    if (skipped)
      snprintf(source + strlen(source), sizeof source - strlen(source), " (%d bad skipped)",
               skipped);
  }
  memset(&pm, 0, sizeof pm);
  if (rc == 0)
    rc = nl_prune_model(&m, need_profile ? &p : NULL, mlp ? &po : NULL, heads ? &ho : NULL, &pm,
                        err);
  size_t before = nl_vit_param_bytes(&m), after = rc == 0 ? nl_vit_param_bytes(&pm) : 0;
  if (rc == 0) {
    json_t *j = json_object();
    json_object_set_new(j, "source", json_string(model));
    if (mlp) json_object_set_new(j, "score", json_string(nl_prune_score_name(po.score)));
    if (has_ratio) json_object_set_new(j, "ratio", json_real(po.ratio));
    else if (has_budget) json_object_set_new(j, "budget_mb", json_real(po.budget_bytes / 1e6));
    json_object_set_new(j, "compensated", json_boolean(po.compensate && (!po.refit || !mlp)));
    if (heads) {
      json_object_set_new(j, "head_score", json_string(nl_prune_score_name(ho.score)));
      if (has_heads) json_object_set_new(j, "heads_ratio", json_real(ho.ratio));
      else json_object_set_new(j, "keep_heads", json_integer(ho.keep));
      json_t *h = json_array(), *h0 = json_array();
      for (int l = 0; l < m.cfg.depth; l++) {
        json_array_append_new(h0, json_integer(nl_vit_heads(&m.cfg, l)));
        json_array_append_new(h, json_integer(nl_vit_heads(&pm.cfg, l)));
      }
      json_object_set_new(j, "heads_before", h0);
      json_object_set_new(j, "heads", h);
    }
    if (po.refit && mlp) {
      json_object_set_new(j, "refit", json_true());
      json_object_set_new(j, "refit_damp", json_real(po.refit_damp));
    }
    if ((mlp && po.score == NL_PRUNE_RANDOM) || (heads && ho.score == NL_PRUNE_RANDOM))
      json_object_set_new(j, "seed", json_integer(seed));
    json_object_set_new(j, "profile", json_string(source));
    json_t *w = json_array(), *w0 = json_array();
    for (int l = 0; l < m.cfg.depth; l++) {
      json_array_append_new(w0, json_integer(nl_vit_mlp_width(&m.cfg, l)));
      json_array_append_new(w, json_integer(nl_vit_mlp_width(&pm.cfg, l)));
    }
    json_object_set_new(j, "widths_before", w0);
    json_object_set_new(j, "widths", w);
    json_object_set_new(j, "param_bytes_before", json_integer((json_int_t)before));
    json_object_set_new(j, "param_bytes", json_integer((json_int_t)after));
    char *text = nl_json_text(j, NL_JSON_LINE);
    const char *meta[] = {"pruned", text};
    rc = nl_vit_save_meta(&pm, out, meta, 1, err);
    free(text);
    if (rc == 0 && nl_arg_flag(a, "json")) {
      json_object_set_new(j, "output", json_string(out));
      nl_json_print(ctx->out, j);
    } else if (rc == 0) {
      char wb[2048], wa[2048];
      if (mlp) {
        widths_text(wb, sizeof wb, &m.cfg, 0);
        widths_text(wa, sizeof wa, &pm.cfg, 0);
        fprintf(ctx->out, "pruned MLP channels of %s by %s score, ", model,
                nl_prune_score_name(po.score));
        if (has_ratio) fprintf(ctx->out, "ratio %g", po.ratio);
        else fprintf(ctx->out, "budget %g MB", po.budget_bytes / 1e6);
        if (po.refit)
          fprintf(ctx->out, ", fc2 refit by least squares, damping %g (profile: %s)\n",
                  po.refit_damp, source);
        else
          fprintf(ctx->out, ", bias compensation %s (profile: %s)\n",
                  po.compensate ? "on" : "off", source);
        fprintf(ctx->out, "MLP widths: %s -> %s\n", wb, wa);
      }
      if (heads) {
        widths_text(wb, sizeof wb, &m.cfg, 1);
        widths_text(wa, sizeof wa, &pm.cfg, 1);
        fprintf(ctx->out, "pruned attention heads of %s by %s score, ", model,
                nl_prune_score_name(ho.score));
        if (has_heads) fprintf(ctx->out, "ratio %g", ho.ratio);
        else fprintf(ctx->out, "keep %d", ho.keep);
        fprintf(ctx->out, ", bias compensation %s (profile: %s)\n", ho.compensate ? "on" : "off",
                source);
        fprintf(ctx->out, "heads: %s -> %s (head dim %d)\n", wb, wa, nl_vit_head_dim(&m.cfg));
      }
      fprintf(ctx->out, "parameters: %zu bytes (%.3f MB) -> %zu bytes (%.3f MB), %.1f %% fewer\n",
              before, before / 1e6, after, after / 1e6, 100.0 * (1.0 - (double)after / before));
      fprintf(ctx->out, "wrote %s\n", out);
    }
    json_decref(j);
  }
  nl_profile_free(&p);
  if (pm.params) nl_vit_free(&pm);
  nl_vit_free(&m);
  return rc;
}

const nl_cmd nl_cmd_prune = {
    .name = "prune",
    .args = NULL,
    .summary = "remove MLP hidden channels and/or attention heads (EdgeFlex)",
    .help = "Removes MLP hidden channels physically: fc1's row j (and bias) and fc2's column j.\n"
            "--score ranks the channels of each block: variance or absmean of the channel's\n"
            "activation after GELU (from an activation profile: --profile FILE from\n"
            "'profile --output', else --images images of --data profiled here), magnitude\n"
            "||W1[j,:]|| * ||W2[:,j]|| (weights only), or random (--seed). --ratio R removes\n"
            "round(R * width) of every block's channels (equal widths: timm loads the result\n"
            "with the mlp_ratio in its metadata); --budget-mb MB removes the globally\n"
            "lowest channels (score over its block's mean score) until the F32 parameters\n"
            "fit in MB x 10^6 bytes, leaving per-block widths (metadata mlp_widths; normlab\n"
            "loads them). Every block keeps at least one channel. Bias compensation (default;\n"
            "--no-compensate to leave it out) adds W2[:, j] * mean_j to fc2.bias for each\n"
            "removed channel j, mean_j from the profile. The output records how it was made\n"
            "in metadata 'pruned' (JSON).\n"
            "--score contribution ranks by Var[h_j] * ||W2[:,j]||^2 (the output variance\n"
            "channel j carries: what compensation leaves as error). --refit replaces bias\n"
            "compensation by a least-squares refit of fc2 on the kept channels: W2' = W2 C[:,K]\n"
            "(C[K,K] + lambda I)^-1, b2' = b2 + W2 mu - W2' mu_K, with the hidden channels'\n"
            "mean mu and covariance C from the profile (profile --cov, or profiled here) and\n"
            "lambda = --refit-damp x the mean kept variance.\n"
            "--heads R removes round(R * h) of every block's h attention heads, --keep-heads N\n"
            "keeps min(N, h); each block keeps at least one head, the head dimension stays\n"
            "dim / heads (per-block head counts: metadata head_counts, and 'heads' in\n"
            "'pruned'). --head-score contribution ranks head h by the sum over its output\n"
            "channels j (proj's inputs) of Var[o_j] * ||W_proj[:,j]||^2 (attn.proj.in of the\n"
            "profile); random (--seed) is the control. Bias compensation adds W_proj[:, j] *\n"
            "mean_j to proj.bias for every channel of a removed head. With --ratio or\n"
            "--budget-mb as well, the MLP channels go first, then the heads, both by the one\n"
            "profile of the unpruned model. 'export' to PyTorch refuses a head-pruned model\n"
            "(timm's layout needs equal heads).",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
