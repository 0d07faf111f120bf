#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/model_path.h"
#include "base/mem.h"
#include "model/safetensors.h"
#include "model/vit.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model (safetensors, timm names)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"input", NL_OPT_STR, "FILE[:TENSOR]", NULL, "normalised images [N, C, H, W] (tensor 'inputs' by default)", NULL, NL_OPTF_PATH | NL_OPTF_REQUIRED},
    {"output", NL_OPT_STR, "FILE", NULL, "safetensors file to write", NULL, NL_OPTF_PATH | NL_OPTF_REQUIRED},
    {"taps", NL_OPT_FLAG, NULL, NULL, "also write ln_in.<layer> and ln_out.<layer> for every norm layer", NULL, 0},
    {"batch", NL_OPT_INT, "B", "64", "images per forward pass", NULL, 0},
    {"heads", NL_OPT_INT, "N", NULL, "number of attention heads (overrides the config)", NULL, 0},
    NL_PRECISION_OPT,
    {0},
};

typedef struct taps {
  int nnorms, first, total;
  float **in, **out; /* per norm: [total, tokens, dim] */
  int *tokens;
} taps;

static int tap(const char *layer, int index, const float *x, const float *y, int batch, int tokens,
               int dim, void *user) {
  (void)layer;
  taps *t = user;
  size_t per = (size_t)tokens * dim;
  if (!t->in[index]) {
    t->in[index] = nl_xmalloc(sizeof(float) * per * t->total);
    t->out[index] = nl_xmalloc(sizeof(float) * per * t->total);
    t->tokens[index] = tokens;
  }
  memcpy(t->in[index] + (size_t)t->first * per, x, sizeof(float) * per * batch);
  memcpy(t->out[index] + (size_t)t->first * per, y, sizeof(float) * per * batch);
  return 0;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)ctx;
  long batch;
  if (nl_arg_int_range(a, "batch", 1, 4096, &batch, err)) return -1;
  const char *inspec = nl_arg_need(a, "input", err);
  if (!inspec) return -1;
  const char *outpath = nl_arg_need(a, "output", err);
  if (!outpath) return -1;
  nl_vit_load_opts lo = {0};
  lo.int_only = 1; /* inference: a quantized model without FP32 copies */
  lo.packed = 1;   /* and FP32 Linear weights held once, packed */
  if (nl_model_precision(a, &lo, err)) return -1;
  if (nl_arg_given(a, "heads")) {
    long h;
    if (nl_arg_int_range(a, "heads", 1, 4096, &h, err)) return -1;
    lo.heads = (int)h;
  }
  /* FILE[:TENSOR]: the tensor name follows the last ':' when the whole
   * spec is not itself an existing path */
  char *file = nl_xstrdup(inspec);
  const char *tname = "inputs";
  char *colon = strrchr(file, ':');
  FILE *probe = fopen(file, "rb");
  if (probe) fclose(probe);
  else if (colon) {
    *colon = '\0';
    tname = colon + 1;
  }
  const char *path = nl_model_path(ctx, a);
  nl_vit m;
  if (nl_vit_load(&m, path, &lo, err)) {
    free(file);
    return -1;
  }
  const nl_vit_config *c = &m.cfg;
  nl_st_file in;
  if (nl_st_open(&in, file, err)) {
    nl_vit_free(&m);
    free(file);
    return -1;
  }
  int rc = 0;
  const nl_st_tensor *t = nl_st_find(&in, tname);
  int64_t N = 0;
  if (!t) {
    rc = nl_fail(err, NL_EINPUT, "%s: no tensor '%s'", file, tname);
  } else {
    int ok = (t->ndim == 4 || t->ndim == 3);
    int o = t->ndim - 3;
    if (ok) ok = t->shape[o] == c->in_chans && t->shape[o + 1] == c->img_size && t->shape[o + 2] == c->img_size;
    N = t->ndim == 4 ? t->shape[0] : 1;
    if (!ok)
      rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s' must be [N, %d, %d, %d] (normalised images)", file,
                   tname, c->in_chans, c->img_size, c->img_size);
    else if (N < 1)
      rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s' holds no images", file, tname);
  }
  nl_vit_acts acts;
  if (!rc) rc = nl_vit_acts_init(&acts, c, (int)(batch < N ? batch : N), 0, err);
  acts.threads = ctx->threads;
  if (rc) {
    nl_st_close(&in);
    nl_vit_free(&m);
    free(file);
    return -1;
  }
  size_t per_img = (size_t)c->in_chans * c->img_size * c->img_size;
  float *x = nl_xmalloc(sizeof(float) * per_img * (size_t)N);
  nl_st_to_f32(t, x);
  float *logits = nl_xmalloc(sizeof(float) * (size_t)N * c->classes);
  taps tp = {m.nnorms, 0, (int)N, nl_xcalloc((size_t)m.nnorms, sizeof(float *)),
             nl_xcalloc((size_t)m.nnorms, sizeof(float *)), nl_xcalloc((size_t)m.nnorms, sizeof(int))};
  int want_taps = nl_arg_flag(a, "taps");
  for (int64_t i = 0; i < N && !rc; i += acts.batch) {
    int n = (int)(N - i < acts.batch ? N - i : acts.batch);
    tp.first = (int)i;
    rc = nl_vit_forward(&m, &acts, x + (size_t)i * per_img, n, want_taps ? tap : NULL, &tp, err);
    if (!rc) memcpy(logits + (size_t)i * c->classes, acts.logits, sizeof(float) * n * c->classes);
  }
  if (!rc) {
    nl_st_writer *w = nl_st_writer_new();
    int64_t ls[2] = {N, c->classes};
    rc = nl_st_writer_add(w, "logits", logits, 2, ls, err);
    for (int k = 0; k < m.nnorms && want_taps && !rc; k++) {
      char name[64];
      int64_t s3[3] = {N, tp.tokens[k], c->dim}, s2[2] = {N, c->dim};
      int fc = tp.tokens[k] == 1 && m.cfg.avg_pool && k == m.nnorms - 1;
      snprintf(name, sizeof name, "ln_in.%s", m.norms[k].name);
      rc = nl_st_writer_add(w, name, tp.in[k], fc ? 2 : 3, fc ? s2 : s3, err);
      snprintf(name, sizeof name, "ln_out.%s", m.norms[k].name);
      if (!rc) rc = nl_st_writer_add(w, name, tp.out[k], fc ? 2 : 3, fc ? s2 : s3, err);
    }
    nl_st_writer_meta(w, "model", path);
    nl_st_writer_meta(w, "input", inspec);
    if (!rc) rc = nl_st_writer_save(w, outpath, err);
    nl_st_writer_free(w);
  }
  for (int k = 0; k < m.nnorms; k++) {
    free(tp.in[k]);
    free(tp.out[k]);
  }
  free(tp.in);
  free(tp.out);
  free(tp.tokens);
  free(logits);
  free(x);
  nl_vit_acts_free(&acts);
  nl_st_close(&in);
  nl_vit_free(&m);
  free(file);
  return rc;
}

const nl_cmd nl_cmd_forward = {
    .name = "forward",
    .args = NULL,
    .summary = "run a model on images from a safetensors file, write logits (and norm taps)",
    .help = "Reads normalised images [N, C, H, W] from --input FILE[:TENSOR] (tensor 'inputs'\n"
            "by default), runs the model and writes 'logits' [N, classes] to --output; with\n"
            "--taps also ln_in.<layer> and ln_out.<layer> [N, tokens, dim] for every norm\n"
            "layer, for comparing with other implementations.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
