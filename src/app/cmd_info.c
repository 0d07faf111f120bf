#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "app/cmd.h"
#include "app/model_path.h"
#include "base/json.h"
#include "model/quant.h"
#include "model/vit.h"
#include "train/evaluate.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model file (instead of MODEL)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"heads", NL_OPT_INT, "N", NULL, "number of attention heads (overrides the config)", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

/* The model as one JSON object (see normlab(1), info). */
static json_t *info_json(const char *path, const nl_vit *m, double flops) {
  const nl_vit_config *c = &m->cfg;
  json_t *mean = json_array(), *std = json_array(), *names = json_array(), *norms = json_array(),
         *bad = json_array();
  for (int i = 0; i < c->nmean; i++) {
    json_array_append_new(mean, nl_json_float(c->mean[i]));
    json_array_append_new(std, nl_json_float(c->std[i]));
  }
  for (int i = 0; i < m->nnorms; i++) {
    const nl_norm *n = &m->norms[i];
    json_array_append_new(names, json_string(n->name));
    json_t *e = json_pack("{s:s, s:s}", "name", n->name, "kind", nl_norm_kind_name(n->kind));
    if (n->kind == NL_NORM_DYT) json_object_set_new(e, "alpha", nl_json_float(*n->alpha));
    if (n->kind == NL_NORM_EXPR) json_object_set_new(e, "expr", json_string(n->expr));
    json_array_append_new(norms, e);
  }
  for (int i = 0; i < m->ntensors; i++) {
    size_t nn, ni;
    if (!nl_vit_tensor_nonfinite(m, i, &nn, &ni)) continue;
    json_array_append_new(bad, json_pack("{s:s, s:I, s:I, s:I, s:I}", "name", m->tensors[i].name,
                                         "count", (json_int_t)(nn + ni), "nan", (json_int_t)nn,
                                         "inf", (json_int_t)ni, "numel",
                                         (json_int_t)m->tensors[i].numel));
  }
  json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:s, "
                        "s:b, s:b}",
                        "model", path, "architecture", c->arch, "config_source", c->source,
                        "img_size", c->img_size, "in_chans", c->in_chans, "patch_size", c->patch,
                        "embed_dim", c->dim, "depth", c->depth, "num_heads", c->heads,
                        "mlp_hidden", c->mlp_hidden, "num_classes", c->classes, "tokens",
                        c->tokens, "class_token", c->class_token, "global_pool",
                        c->avg_pool ? "avg" : "token", "layer_scale", c->layer_scale, "qkv_bias",
                        c->qkv_bias);
  json_t *widths = json_array();
  for (int l = 0; l < c->depth; l++) json_array_append_new(widths, json_integer(nl_vit_mlp_width(c, l)));
  json_object_set_new(j, "mlp_widths", widths);
  json_t *heads = json_array();
  for (int l = 0; l < c->depth; l++) json_array_append_new(heads, json_integer(nl_vit_heads(c, l)));
  json_object_set_new(j, "head_counts", heads);
  json_object_set_new(j, "eps", nl_json_float(c->eps));
  json_object_set_new(j, "mean", mean);
  json_object_set_new(j, "std", std);
  json_object_set_new(j, "normalization_source", json_string(c->norm_source));
  json_object_set_new(j, "img_size_source", json_string(c->size_source));
  json_object_set_new(j, "crop_pct", nl_json_float(c->crop_pct));
  json_object_set_new(j, "interpolation", json_string(c->interpolation));
  json_object_set_new(j, "preprocessing_source", json_string(c->crop_source));
  json_object_set_new(j, "parameters", json_integer((json_int_t)nl_vit_param_count(m)));
  {
    char prec[160];
    nl_vit_precision(m, prec, sizeof prec);
    json_object_set_new(j, "precision", json_string(prec));
    json_object_set_new(j, "stored_bytes", json_integer((json_int_t)nl_vit_stored_bytes(m)));
  }
  json_object_set_new(j, "flops_per_image", json_integer((json_int_t)llround(flops)));
  json_object_set_new(j, "norm_layers", names);
  json_object_set_new(j, "norms", norms);
  json_object_set_new(j, "non_finite", bad);
  return j;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *path = a->npos ? a->pos[0] : nl_model_path(ctx, a);
  nl_vit_load_opts lo = {0};
  if (nl_arg_given(a, "heads")) {
    long h;
    if (nl_arg_int_range(a, "heads", 1, 4096, &h, err)) return -1;
    lo.heads = (int)h;
  }
  nl_vit m;
  if (nl_vit_load(&m, path, &lo, err)) return -1;
  const nl_vit_config *c = &m.cfg;
  FILE *o = ctx->out;
  double flops = nl_vit_flops_per_image(c);
  if (nl_arg_flag(a, "json")) {
    json_t *j = info_json(path, &m, flops);
    nl_json_print(o, j);
    json_decref(j);
  } else {
    fprintf(o, "model:        %s\n", path);
    if (c->arch[0]) fprintf(o, "architecture: %s\n", c->arch);
    fprintf(o, "config from:  %s\n", c->source);
    fprintf(o, "input:        %d x %d x %d, patch %d (%d x %d grid, %d tokens%s)\n", c->in_chans,
            c->img_size, c->img_size, c->patch, c->grid, c->grid, c->tokens,
            c->class_token ? " with class token" : "");
    fprintf(o, "width %d, depth %d, heads %d, mlp %d, classes %d\n", c->dim, c->depth, c->heads,
            c->mlp_hidden, c->classes);
    if (!nl_vit_mlp_uniform(c)) {
      fprintf(o, "mlp per block:");
      for (int l = 0; l < c->depth; l++) fprintf(o, " %d", nl_vit_mlp_width(c, l));
      fprintf(o, " (pruned; mlp above is the widest)\n");
    }
    if (!nl_vit_heads_full(c)) {
      fprintf(o, "heads per block:");
      for (int l = 0; l < c->depth; l++) fprintf(o, " %d", nl_vit_heads(c, l));
      fprintf(o, " (pruned; head dim %d)\n", nl_vit_head_dim(c));
    }
    fprintf(o, "pooling:      %s\n", c->avg_pool ? "average of patch tokens, fc_norm" : "class token after norm");
    fprintf(o, "layer scale:  %s, qkv bias: %s, LayerNorm eps %g\n", c->layer_scale ? "yes" : "no",
            c->qkv_bias ? "yes" : "no", (double)c->eps);
    fprintf(o, "mean/std:     ");
    for (int i = 0; i < c->nmean; i++) fprintf(o, "%s%g", i ? "," : "", (double)c->mean[i]);
    fprintf(o, " / ");
    for (int i = 0; i < c->nmean; i++) fprintf(o, "%s%g", i ? "," : "", (double)c->std[i]);
    fprintf(o, " (%s)\n", c->norm_source);
    fprintf(o, "input size:   %d (%s)\n", c->img_size, c->size_source);
    fprintf(o, "preprocess:   crop_pct %g, %s (%s)\n", (double)c->crop_pct, c->interpolation,
            c->crop_source);
    fprintf(o, "parameters:   %zu\n", nl_vit_param_count(&m));
    {
      char prec[160];
      nl_vit_precision(&m, prec, sizeof prec);
      fprintf(o, "precision:    %s (%zu bytes stored)\n", prec, nl_vit_stored_bytes(&m));
    }
    for (int i = 0; i < m.ntensors; i++) {
      size_t nn, ni;
      if (nl_vit_tensor_nonfinite(&m, i, &nn, &ni))
        fprintf(o, "non-finite:   %s: %zu of %zu values (%zu NaN, %zu infinite)\n",
                m.tensors[i].name, nn + ni, m.tensors[i].numel, nn, ni);
    }
    fprintf(o, "FLOPs/image:  %.1f M (matrix products, multiply-add = 2)\n", flops * 1e-6);
    int count[3] = {0, 0, 0};
    for (int i = 0; i < m.nnorms; i++) count[m.norms[i].kind]++;
    if (count[NL_NORM_LAYERNORM] == m.nnorms) {
      fprintf(o, "norm layers (%d, all LayerNorm):", m.nnorms);
      for (int i = 0; i < m.nnorms; i++) fprintf(o, "%s%s", i % 6 ? " " : "\n  ", m.norms[i].name);
      fprintf(o, "\n");
    } else {
      fprintf(o, "norm layers (%d: %d LayerNorm, %d DyT, %d expression):\n", m.nnorms,
              count[NL_NORM_LAYERNORM], count[NL_NORM_DYT], count[NL_NORM_EXPR]);
      int w = 0;
      for (int i = 0; i < m.nnorms; i++)
        if ((int)strlen(m.norms[i].name) > w) w = (int)strlen(m.norms[i].name);
      for (int i = 0; i < m.nnorms; i++) {
        const nl_norm *n = &m.norms[i];
        fprintf(o, "  %-*s  %-9s", w, n->name, nl_norm_kind_name(n->kind));
        if (n->kind == NL_NORM_DYT) fprintf(o, "  tanh(%.9g*x)*w + b", (double)*n->alpha);
        if (n->kind == NL_NORM_EXPR) fprintf(o, "  (%s)*w + b", n->expr);
        fputc('\n', o);
      }
    }
  }
  nl_vit_free(&m);
  return 0;
}

const nl_cmd nl_cmd_info = {
    .name = "info",
    .args = "[MODEL]",
    .summary = "show a model's config, parameter count, norm layers and FLOPs",
    .help = "Loads MODEL (a safetensors file with timm tensor names; default: the session's\n"
            "model or the bundled vit_small_p7_fmnist) and prints its config and where it\n"
            "came from (__metadata__ model_args, config.json beside the file, or inferred\n"
            "from tensor shapes), the parameter count, the norm layers with their kind\n"
            "(LayerNorm, DyT with its alpha, or the expression of an adapted checkpoint)\n"
            "and the matrix FLOPs per image. Tensors holding NaN or infinite values are\n"
            "listed (non-finite, with their counts; \"non_finite\" in --json).",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 1,
    .run = run,
};
