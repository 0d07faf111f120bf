/* normlab replace: every LayerNorm of a model becomes f(x) * w + b (an
 * expression set), DyT, or LayerNorm again; writes the adapted checkpoint. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/model_path.h"
#include "base/mem.h"
#include "model/replace.h"
#include "model/vit.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model (safetensors, timm names)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"set", NL_OPT_STR, "SPEC", NULL,
     "FILE.exprs, dyt, dyt=ALPHA, dyt=FILE.json or ln (see above)",
     NULL, NL_OPTF_REQUIRED | NL_OPTF_PATH},
    {"output", NL_OPT_STR, "FILE", NULL, "adapted checkpoint to write (safetensors)", NULL, NL_OPTF_PATH | NL_OPTF_REQUIRED},
    {"heads", NL_OPT_INT, "N", NULL, "number of attention heads (overrides the config)", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object instead of the table", NULL, 0},
    {0},
};

static void print_json(nl_ctx *ctx, const char *model, const char *out, const char *label,
                       const nl_vit *m, const int *kept) {
  json_t *root = json_object(), *layers = json_array(), *kl = json_array();
  json_object_set_new(root, "model", json_string(model));
  json_object_set_new(root, "set", json_string(label));
  json_object_set_new(root, "output", json_string(out));
  for (int i = 0; i < m->nnorms; i++) {
    const nl_norm *n = &m->norms[i];
    json_t *e = json_pack("{s:s,s:s}", "name", n->name, "kind", nl_norm_kind_name(n->kind));
    if (n->kind == NL_NORM_DYT) json_object_set_new(e, "alpha", json_real(*n->alpha));
    if (n->kind == NL_NORM_EXPR) json_object_set_new(e, "expr", json_string(n->expr));
    json_array_append_new(layers, e);
    if (kept[i]) json_array_append_new(kl, json_string(n->name));
  }
  json_object_set_new(root, "layers", layers);
  json_object_set_new(root, "kept", kl);
  json_dumpf(root, ctx->out, JSON_PRESERVE_ORDER);
  fputc('\n', ctx->out);
  json_decref(root);
}

static void print_table(nl_ctx *ctx, const char *out, const char *label,
                        const nl_replace_spec *s, const nl_vit *m, const int *kept) {
  FILE *o = ctx->out;
  int w = 5, nkept = 0, nkln = 0, nrep = 0;
  for (int i = 0; i < m->nnorms; i++) {
    int l = (int)strlen(m->norms[i].name);
    if (l > w) w = l;
  }
  fprintf(o, "%-*s  %-9s  %s\n", w, "layer", "kind", "function (times w, plus b)");
  for (int i = 0; i < m->nnorms; i++) {
    const nl_norm *n = &m->norms[i];
    fprintf(o, "%-*s  %-9s  ", w, n->name, nl_norm_kind_name(n->kind));
    if (n->kind == NL_NORM_DYT) fprintf(o, "tanh(%.9g*x)", (double)*n->alpha);
    else if (n->kind == NL_NORM_EXPR) fputs(n->expr, o);
    else fputs("LayerNorm", o);
    if (kept[i]) fputs(" (not in the set)", o);
    fputc('\n', o);
    nkept += kept[i];
    nkln += kept[i] && n->kind == NL_NORM_LAYERNORM;
    nrep += !kept[i] && n->kind != NL_NORM_LAYERNORM;
  }
  fprintf(o, "%d of %d layers replaced", nrep, m->nnorms);
  if (nkept) {
    fprintf(o, "; %d kept %s (not in %s):", nkept, nkln == nkept ? "LayerNorm" : "as they were",
            s->source ? s->source : label);
    for (int i = 0; i < m->nnorms; i++)
      if (kept[i]) fprintf(o, " %s", m->norms[i].name);
  }
  fprintf(o, "\nwrote %s\n", out);
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *settext = nl_arg_need(a, "set", err);
  if (!settext) return -1;
  const char *outpath = nl_arg_need(a, "output", err);
  if (!outpath) return -1;
  nl_vit_load_opts lo = {0};
  if (nl_arg_given(a, "heads")) {
    long h;
    if (nl_arg_int_range(a, "heads", 1, 4096, &h, err)) return -1;
    lo.heads = (int)h;
  }
  nl_replace_parsed s;
  if (nl_replace_parse(&s, settext, err)) {
    nl_replace_parsed_free(&s);
    return nl_error_prefix(err, "--set");
  }
  const char *path = nl_model_path(ctx, a);
  nl_vit m;
  if (nl_vit_load(&m, path, &lo, err)) {
    nl_replace_parsed_free(&s);
    return -1;
  }
  int *kept = nl_xcalloc((size_t)m.nnorms, sizeof(int));
  int rc = nl_vit_replace(&m, &s.spec, kept, err);
  if (!rc) rc = nl_vit_save(&m, outpath, err);
  if (!rc) {
    if (nl_arg_flag(a, "json")) print_json(ctx, path, outpath, settext, &m, kept);
    else print_table(ctx, outpath, settext, &s.spec, &m, kept);
  }
  free(kept);
  nl_vit_free(&m);
  nl_replace_parsed_free(&s);
  return rc;
}

const nl_cmd nl_cmd_replace = {
    .name = "replace",
    .args = NULL,
    .summary = "replace every LayerNorm by f(x)*w+b (expression set), DyT or LayerNorm",
    .help = "Loads the model, replaces each norm layer according to --set and writes the\n"
            "adapted checkpoint to --output (atomically; nothing is written on error). The\n"
            "affine w, b of each layer is inherited from its LayerNorm.\n"
            "  --set FILE.exprs   each layer named in the set becomes EXPR*w + b; layers the\n"
            "                     set does not name are left as they were (LayerNorm in a\n"
            "                     timm model) and listed in the report\n"
            "  --set dyt[=ALPHA]  DyT tanh(alpha*x)*w + b everywhere, alpha 0.5 unless given\n"
            "  --set dyt=FILE     per-layer alphas: the JSON of `normlab dyt --json`, or\n"
            "                     {\"LAYER\": ALPHA, ...}; layers not in it are left as they were\n"
            "  --set ln           LayerNorm everywhere (undoes a replacement)\n"
            "The checkpoint records each layer's kind in __metadata__ \"norms\" and DyT\n"
            "alphas as learnable tensors <layer>.alpha; info, eval, forward and extract\n"
            "load it directly. Prints a table of what each layer became.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
