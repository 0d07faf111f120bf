#include <stdio.h>
#include <string.h>

#include "app/cmd.h"
#include "app/model_path.h"
#include "model/vit.h"
#include "train/evaluate.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model file (instead of MODEL)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"heads", NL_OPT_INT, "N", NULL, "number of attention heads (overrides the config)", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

static void json_str(FILE *o, const char *s) {
  fputc('"', o);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', o);
    if ((unsigned char)*s < 0x20) fprintf(o, "\\u%04x", *s);
    else fputc(*s, o);
  }
  fputc('"', o);
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
    fprintf(o, "{\"model\": ");
    json_str(o, path);
    fprintf(o, ", \"architecture\": ");
    json_str(o, c->arch);
    fprintf(o, ", \"config_source\": ");
    json_str(o, c->source);
    fprintf(o,
            ", \"img_size\": %d, \"in_chans\": %d, \"patch_size\": %d, \"embed_dim\": %d, "
            "\"depth\": %d, \"num_heads\": %d, \"mlp_hidden\": %d, \"num_classes\": %d, "
            "\"tokens\": %d, \"class_token\": %s, \"global_pool\": \"%s\", \"layer_scale\": %s, "
            "\"qkv_bias\": %s, \"eps\": %g, \"mean\": [",
            c->img_size, c->in_chans, c->patch, c->dim, c->depth, c->heads, c->mlp_hidden,
            c->classes, c->tokens, c->class_token ? "true" : "false", c->avg_pool ? "avg" : "token",
            c->layer_scale ? "true" : "false", c->qkv_bias ? "true" : "false", (double)c->eps);
    for (int i = 0; i < c->nmean; i++) fprintf(o, "%s%.9g", i ? ", " : "", (double)c->mean[i]);
    fprintf(o, "], \"std\": [");
    for (int i = 0; i < c->nmean; i++) fprintf(o, "%s%.9g", i ? ", " : "", (double)c->std[i]);
    fprintf(o, "], \"normalization_source\": ");
    json_str(o, c->norm_source);
    fprintf(o, ", \"parameters\": %zu, \"flops_per_image\": %.0f, \"norm_layers\": [",
            nl_vit_param_count(&m), flops);
    for (int i = 0; i < m.nnorms; i++) {
      if (i) fputs(", ", o);
      json_str(o, m.norms[i].name);
    }
    fprintf(o, "], \"norms\": [");
    for (int i = 0; i < m.nnorms; i++) {
      const nl_norm *n = &m.norms[i];
      fprintf(o, "%s{\"name\": ", i ? ", " : "");
      json_str(o, n->name);
      fprintf(o, ", \"kind\": \"%s\"", nl_norm_kind_name(n->kind));
      if (n->kind == NL_NORM_DYT) fprintf(o, ", \"alpha\": %.9g", (double)*n->alpha);
      if (n->kind == NL_NORM_EXPR) {
        fprintf(o, ", \"expr\": ");
        json_str(o, n->expr);
      }
      fputc('}', o);
    }
    fprintf(o, "], \"non_finite\": [");
    for (int i = 0, k = 0; i < m.ntensors; i++) {
      size_t nn, ni;
      if (!nl_vit_tensor_nonfinite(&m, i, &nn, &ni)) continue;
      fprintf(o, "%s{\"name\": ", k++ ? ", " : "");
      json_str(o, m.tensors[i].name);
      fprintf(o, ", \"count\": %zu, \"nan\": %zu, \"inf\": %zu, \"numel\": %zu}", nn + ni, nn,
              ni, m.tensors[i].numel);
    }
    fprintf(o, "]}\n");
  } else {
    fprintf(o, "model:        %s\n", path);
    if (c->arch[0]) fprintf(o, "architecture: %s\n", c->arch);
    fprintf(o, "config from:  %s\n", c->source);
    fprintf(o, "input:        %d x %d x %d, patch %d (%d x %d grid, %d tokens%s)\n", c->in_chans,
            c->img_size, c->img_size, c->patch, c->grid, c->grid, c->tokens,
            c->class_token ? " with class token" : "");
    fprintf(o, "width %d, depth %d, heads %d, mlp %d, classes %d\n", c->dim, c->depth, c->heads,
            c->mlp_hidden, c->classes);
    fprintf(o, "pooling:      %s\n", c->avg_pool ? "average of patch tokens, fc_norm" : "class token after norm");
    fprintf(o, "layer scale:  %s, qkv bias: %s, LayerNorm eps %g\n", c->layer_scale ? "yes" : "no",
            c->qkv_bias ? "yes" : "no", (double)c->eps);
    fprintf(o, "mean/std:     ");
    for (int i = 0; i < c->nmean; i++) fprintf(o, "%s%g", i ? "," : "", (double)c->mean[i]);
    fprintf(o, " / ");
    for (int i = 0; i < c->nmean; i++) fprintf(o, "%s%g", i ? "," : "", (double)c->std[i]);
    fprintf(o, " (%s)\n", c->norm_source);
    fprintf(o, "parameters:   %zu\n", nl_vit_param_count(&m));
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
