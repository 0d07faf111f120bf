/* Loading a ViT: config resolution, tensor checks, one parameter buffer. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fileio.h"
#include "base/mem.h"
#include "expr/expr.h"
#include "model/norm.h"
#include "data/transform.h"
#include "model/quant.h"
#include "model/reuse_plan.h"
#include "model/safetensors.h"
#include "model/vit.h"
#include "tensor/gemm.h"

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *s) {
  size_t p = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < ndim && p < cap; i++)
    p += (size_t)snprintf(buf + p, cap - p, "%s%lld", i ? ", " : "", (long long)s[i]);
  if (p < cap) snprintf(buf + p, cap - p, "]");
}

/* ---- shapes ---- */

typedef struct inferred {
  int dim, in_chans, patch, tokens, depth, classes, mlp_hidden; /* mlp_hidden: the widest */
  int widths[NL_VIT_MAX_DEPTH]; /* per block: blocks.N.mlp.fc1.weight rows */
  int qkv_rows[NL_VIT_MAX_DEPTH], proj_cols[NL_VIT_MAX_DEPTH]; /* per block: 3 h hd, h hd */
  int class_token, fc_norm, layer_scale, qkv_bias;
} inferred;

static int infer(const nl_st_file *f, inferred *s, nl_error *err) {
  memset(s, 0, sizeof *s);
  const nl_st_tensor *pw = nl_st_find(f, "patch_embed.proj.weight");
  if (!pw || pw->ndim != 4 || pw->shape[2] != pw->shape[3])
    return nl_fail(err, NL_EINPUT,
                   "%s: %s: not a timm VisionTransformer (needs a square patch_embed.proj.weight [D, C, p, p])",
                   f->path, pw ? "tensor 'patch_embed.proj.weight' has the wrong shape" : "tensor 'patch_embed.proj.weight' is missing");
  s->dim = (int)pw->shape[0];
  s->in_chans = (int)pw->shape[1];
  s->patch = (int)pw->shape[2];
  const nl_st_tensor *pe = nl_st_find(f, "pos_embed");
  if (!pe || pe->ndim != 3 || pe->shape[0] != 1 || pe->shape[2] != s->dim)
    return nl_fail(err, NL_EINPUT, "%s: tensor 'pos_embed' %s (want [1, T, %d])", f->path,
                   pe ? "has the wrong shape" : "is missing", s->dim);
  s->tokens = (int)pe->shape[1];
  s->class_token = nl_st_find(f, "cls_token") != NULL;
  s->fc_norm = nl_st_find(f, "fc_norm.weight") != NULL;
  int depth = 0;
  for (int i = 0; i < f->n; i++) {
    const char *nm = f->t[i].name;
    if (strncmp(nm, "blocks.", 7) == 0) {
      char *end;
      long b = strtol(nm + 7, &end, 10);
      if (end != nm + 7 && *end == '.' && b >= 0 && b < 10000 && b + 1 > depth) depth = (int)b + 1;
    }
  }
  s->depth = depth;
  if (depth == 0)
    return nl_fail(err, NL_EINPUT, "%s: no transformer blocks (tensors blocks.N.*)", f->path);
  const nl_st_tensor *hw = nl_st_find(f, "head.weight");
  if (!hw || hw->ndim != 2)
    return nl_fail(err, NL_EINPUT, "%s: tensor 'head.weight' %s (want [classes, %d])", f->path,
                   hw ? "has the wrong shape" : "is missing", s->dim);
  s->classes = (int)hw->shape[0];
  if (depth > NL_VIT_MAX_DEPTH)
    return nl_fail(err, NL_EINPUT, "%s: %d transformer blocks; at most %d are supported", f->path,
                   depth, NL_VIT_MAX_DEPTH);
  /* per-block MLP widths from fc1's rows (a pruned model may differ per block) */
  for (int b = 0; b < depth; b++) {
    char nm[64];
    snprintf(nm, sizeof nm, "blocks.%d.mlp.fc1.weight", b);
    const nl_st_tensor *f1 = nl_st_find(f, nm);
    if (!f1 || f1->ndim != 2 || f1->shape[0] < 1 || f1->shape[0] > (1 << 24))
      return nl_fail(err, NL_EINPUT, "%s: tensor '%s' %s", f->path, nm,
                     f1 ? "has the wrong shape (want [hidden, dim])" : "is missing");
    s->widths[b] = (int)f1->shape[0];
    if (s->widths[b] > s->mlp_hidden) s->mlp_hidden = s->widths[b];
    /* attention width (a head-pruned model may differ per block) */
    snprintf(nm, sizeof nm, "blocks.%d.attn.qkv.weight", b);
    /* a missing qkv or proj leaves the block's heads at the default; the
     * loader's list of missing tensors names it */
    const nl_st_tensor *qw = nl_st_find(f, nm);
    if (qw && (qw->ndim != 2 || qw->shape[0] < 1 || qw->shape[0] > (1 << 24)))
      return nl_fail(err, NL_EINPUT, "%s: tensor '%s' has the wrong shape (want [3 x heads x "
                     "head_dim, dim])", f->path, nm);
    s->qkv_rows[b] = qw ? (int)qw->shape[0] : -1;
    snprintf(nm, sizeof nm, "blocks.%d.attn.proj.weight", b);
    const nl_st_tensor *pj = nl_st_find(f, nm);
    if (pj && (pj->ndim != 2 || pj->shape[1] < 1 || pj->shape[1] > (1 << 24)))
      return nl_fail(err, NL_EINPUT, "%s: tensor '%s' has the wrong shape (want [dim, heads x "
                     "head_dim])", f->path, nm);
    /* a quantized proj may pack its columns (4-bit: two per byte): checked
     * against the head count by the quantized layer's own shapes instead */
    const int fp = pj && (pj->dtype == NL_DT_F32 || pj->dtype == NL_DT_F16 ||
                          pj->dtype == NL_DT_BF16 || pj->dtype == NL_DT_F64);
    s->proj_cols[b] = fp ? (int)pj->shape[1] : -1;
  }
  s->layer_scale = nl_st_find(f, "blocks.0.ls1.gamma") != NULL;
  s->qkv_bias = nl_st_find(f, "blocks.0.attn.qkv.bias") != NULL;
  if (s->dim <= 0 || s->in_chans <= 0 || s->patch <= 0 || s->classes <= 0 || s->mlp_hidden <= 0)
    return nl_fail(err, NL_EINPUT, "%s: zero-sized dimensions in the model tensors", f->path);
  return 0;
}

/* ---- config sources ---- */

static int get_int(json_t *o, const char *k, int *out) {
  json_t *v = json_object_get(o, k);
  if (!v || json_is_null(v)) return 0;
  if (json_is_integer(v)) {
    *out = (int)json_integer_value(v);
    return 1;
  }
  if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v))) {
    *out = (int)json_real_value(v);
    return 1;
  }
  if (json_is_array(v) && json_array_size(v) >= 1 && json_is_integer(json_array_get(v, json_array_size(v) - 1))) {
    *out = (int)json_integer_value(json_array_get(v, json_array_size(v) - 1));
    return 1;
  }
  return -1;
}

static int check_val(const char *path, const char *src, const char *key, int want, int have,
                     const char *what, nl_error *err) {
  if (want != have)
    return nl_fail(err, NL_EINPUT, "%s: %s says %s = %d but %s gives %d", path, src, key, want,
                   what, have);
  return 0;
}

/* Apply timm model_args (a JSON object) to the config, checking them against
 * the shapes. */
static int apply_model_args(const char *path, const char *src, json_t *ma, const inferred *s,
                            nl_vit_config *c, nl_error *err) {
  if (!json_is_object(ma))
    return nl_fail(err, NL_EINPUT, "%s: %s: model_args is not a JSON object", path, src);
  int v;
  int r;
#define CHK(key, have, what)                                                         \
  if ((r = get_int(ma, key, &v)) < 0)                                                \
    return nl_fail(err, NL_EINPUT, "%s: %s: '%s' is not an integer", path, src, key); \
  if (r && check_val(path, src, key, v, have, what, err)) return -1;
  CHK("in_chans", s->in_chans, "patch_embed.proj.weight");
  CHK("patch_size", s->patch, "patch_embed.proj.weight");
  CHK("embed_dim", s->dim, "patch_embed.proj.weight");
  CHK("depth", s->depth, "the blocks.N tensors");
  CHK("num_classes", s->classes, "head.weight");
#undef CHK
  if ((r = get_int(ma, "img_size", &v)) < 0)
    return nl_fail(err, NL_EINPUT, "%s: %s: 'img_size' is not an integer", path, src);
  if (r) c->img_size = v;
  if ((r = get_int(ma, "num_heads", &v)) < 0 || (r && v <= 0))
    return nl_fail(err, NL_EINPUT, "%s: %s: 'num_heads' is not a positive integer", path, src);
  if (r) c->heads = v;
  json_t *mr = json_object_get(ma, "mlp_ratio");
  for (int b = 0; mr && json_is_number(mr) && b < s->depth; b++)
    if (fabs(json_number_value(mr) * s->dim - s->widths[b]) > 0.5)
      return nl_fail(err, NL_EINPUT, "%s: %s says mlp_ratio = %g but blocks.%d.mlp.fc1.weight has %d rows",
                     path, src, json_number_value(mr), b, s->widths[b]);
  json_t *ct = json_object_get(ma, "class_token");
  if (ct && json_is_boolean(ct) && json_is_true(ct) != s->class_token)
    return nl_fail(err, NL_EINPUT, "%s: %s says class_token = %s but cls_token is %s", path, src,
                   json_is_true(ct) ? "true" : "false", s->class_token ? "present" : "absent");
  json_t *gp = json_object_get(ma, "global_pool");
  if (gp && json_is_string(gp)) {
    const char *g = json_string_value(gp);
    if (strcmp(g, "avg") == 0) c->avg_pool = 1;
    else if (strcmp(g, "token") == 0) c->avg_pool = 0;
    else
      return nl_fail(err, NL_EINPUT, "%s: %s: global_pool '%s' is not supported (token or avg)",
                     path, src, g);
  }
  static const char *const unsupported_true[] = {"no_embed_class", "pre_norm", "dynamic_img_size",
                                                 "qk_norm", "scale_attn_norm", "scale_mlp_norm",
                                                 NULL};
  for (int i = 0; unsupported_true[i]; i++) {
    json_t *x = json_object_get(ma, unsupported_true[i]);
    if (x && json_is_true(x))
      return nl_fail(err, NL_EINPUT, "%s: %s: %s = true is not supported", path, src,
                     unsupported_true[i]);
  }
  if ((r = get_int(ma, "reg_tokens", &v)) > 0 && v != 0)
    return nl_fail(err, NL_EINPUT, "%s: %s: register tokens (reg_tokens = %d) are not supported",
                   path, src, v);
  json_t *fn = json_object_get(ma, "final_norm");
  if (fn && json_is_false(fn))
    return nl_fail(err, NL_EINPUT, "%s: %s: final_norm = false is not supported", path, src);
  return 0;
}

static int parse_float_list(const char *text, float *out, int max) {
  json_error_t je;
  json_t *a = json_loads(text, JSON_DECODE_ANY, &je);
  if (!a) return -1;
  int n = -1;
  if (json_is_array(a) && json_array_size(a) >= 1 && json_array_size(a) <= (size_t)max) {
    n = (int)json_array_size(a);
    for (int i = 0; i < n; i++) {
      json_t *e = json_array_get(a, (size_t)i);
      if (!json_is_number(e)) {
        n = -1;
        break;
      }
      out[i] = (float)json_number_value(e);
    }
  }
  json_decref(a);
  return n;
}

static int json_float_list(json_t *a, float *out, int max) {
  if (!a || !json_is_array(a) || json_array_size(a) < 1 || json_array_size(a) > (size_t)max)
    return -1;
  int n = (int)json_array_size(a);
  for (int i = 0; i < n; i++) {
    json_t *e = json_array_get(a, (size_t)i);
    if (!json_is_number(e)) return -1;
    out[i] = (float)json_number_value(e);
  }
  return n;
}

static char *sibling_path(const char *path, const char *name) {
  const char *slash = strrchr(path, '/');
  size_t dl = slash ? (size_t)(slash - path + 1) : 0;
  char *p = nl_xmalloc(dl + strlen(name) + 1);
  memcpy(p, path, dl);
  strcpy(p + dl, name);
  return p;
}

static int resolve_config(const nl_st_file *f, const inferred *s, const nl_vit_load_opts *o,
                          nl_vit_config *c, nl_error *err) {
  memset(c, 0, sizeof *c);
  c->in_chans = s->in_chans;
  c->patch = s->patch;
  c->dim = s->dim;
  c->depth = s->depth;
  c->classes = s->classes;
  c->mlp_hidden = s->mlp_hidden;
  memcpy(c->mlp_widths, s->widths, sizeof c->mlp_widths);
  c->class_token = s->class_token;
  c->avg_pool = s->fc_norm || !s->class_token;
  c->layer_scale = s->layer_scale;
  c->qkv_bias = s->qkv_bias;
  c->eps = 1e-6f;
  c->nmean = 0;
  int npatch = s->tokens - s->class_token;
  int grid = (int)lround(sqrt((double)(npatch > 0 ? npatch : 0)));
  if (npatch <= 0 || grid * grid != npatch)
    return nl_fail(err, NL_EINPUT, "%s: tensor 'pos_embed' has %d positions: %d patch positions is not a square grid",
                   f->path, s->tokens, npatch);
  int img_inferred = grid * s->patch;
  c->img_size = 0;
  const char *ma_text = nl_st_meta_get(f, "model_args");
  const char *arch = nl_st_meta_get(f, "architecture");
  if (arch) snprintf(c->arch, sizeof c->arch, "%s", arch);
  char *cfg_path = sibling_path(f->path, "config.json");
  if (ma_text) {
    json_error_t je;
    json_t *ma = json_loads(ma_text, 0, &je);
    if (!ma) {
      free(cfg_path);
      return nl_fail(err, NL_EINPUT, "%s: __metadata__ model_args is not valid JSON: %s", f->path,
                     je.text);
    }
    int rc = apply_model_args(f->path, "__metadata__ model_args", ma, s, c, err);
    json_decref(ma);
    if (rc) {
      free(cfg_path);
      return -1;
    }
    snprintf(c->source, sizeof c->source, "__metadata__ model_args");
  } else if (nl_file_exists(cfg_path)) {
    json_error_t je;
    json_t *root = json_load_file(cfg_path, 0, &je);
    if (!root || !json_is_object(root)) {
      json_decref(root);
      nl_fail(err, NL_EINPUT, "%s:%d: not a JSON object: %s", cfg_path, je.line, je.text);
      free(cfg_path);
      return -1;
    }
    int rc = 0, v;
    json_t *a = json_object_get(root, "architecture");
    if (a && json_is_string(a)) snprintf(c->arch, sizeof c->arch, "%s", json_string_value(a));
    if (get_int(root, "num_classes", &v) > 0)
      rc = check_val(cfg_path, "config.json", "num_classes", v, s->classes, "head.weight", err);
    json_t *gp = json_object_get(root, "global_pool");
    if (!rc && gp && json_is_string(gp)) {
      if (strcmp(json_string_value(gp), "avg") == 0) c->avg_pool = 1;
      else if (strcmp(json_string_value(gp), "token") == 0) c->avg_pool = 0;
    }
    json_t *ma = json_object_get(root, "model_args");
    if (!rc && ma) rc = apply_model_args(cfg_path, "config.json model_args", ma, s, c, err);
    json_t *pc = json_object_get(root, "pretrained_cfg");
    if (!rc && pc && json_is_object(pc)) {
      json_t *is = json_object_get(pc, "input_size");
      if (is && json_is_array(is) && json_array_size(is) == 3) {
        int ch = (int)json_integer_value(json_array_get(is, 0));
        rc = check_val(cfg_path, "config.json", "input_size[0]", ch, s->in_chans,
                       "patch_embed.proj.weight", err);
        int ih = (int)json_integer_value(json_array_get(is, 1)),
            iw = (int)json_integer_value(json_array_get(is, 2));
        if (!rc && ih != iw)
          rc = nl_fail(err, NL_EINPUT, "%s: pretrained_cfg.input_size %dx%d is not square", cfg_path,
                       ih, iw);
        if (!rc) {
          c->img_size = iw;
          snprintf(c->size_source, sizeof c->size_source, "config.json pretrained_cfg.input_size");
        }
      }
      json_t *cp = json_object_get(pc, "crop_pct"), *ip = json_object_get(pc, "interpolation");
      if (!rc && cp && !json_is_null(cp)) {
        if (!json_is_number(cp) || !(json_number_value(cp) > 0 && json_number_value(cp) <= 4))
          rc = nl_fail(err, NL_EINPUT, "%s: pretrained_cfg.crop_pct is not a number in (0, 4]", cfg_path);
        else
          c->crop_pct = (float)json_number_value(cp);
      }
      if (!rc && ip && !json_is_null(ip)) {
        if (!json_is_string(ip) || nl_interp_parse(json_string_value(ip)) < 0)
          rc = nl_fail(err, NL_EINPUT,
                       "%s: pretrained_cfg.interpolation must be bicubic, bilinear, box, hamming or "
                       "lanczos",
                       cfg_path);
        else
          snprintf(c->interpolation, sizeof c->interpolation, "%s", json_string_value(ip));
      }
      if (!rc) {
        if (c->crop_pct == 0) c->crop_pct = 0.875f;
        snprintf(c->crop_source, sizeof c->crop_source, "config.json pretrained_cfg%s",
                 cp && !json_is_null(cp) ? "" : " (crop_pct: timm's default 0.875)");
      }
      float mean[4], std[4];
      int nm = json_float_list(json_object_get(pc, "mean"), mean, 4);
      int ns = json_float_list(json_object_get(pc, "std"), std, 4);
      if (!rc && nm > 0 && nm == ns) {
        c->nmean = nm;
        memcpy(c->mean, mean, sizeof mean);
        memcpy(c->std, std, sizeof std);
        snprintf(c->norm_source, sizeof c->norm_source, "config.json pretrained_cfg");
      }
    }
    json_decref(root);
    if (rc) {
      free(cfg_path);
      return -1;
    }
    snprintf(c->source, sizeof c->source, "%s", cfg_path);
  } else {
    snprintf(c->source, sizeof c->source, "inferred from tensor shapes");
  }
  free(cfg_path);
  if (c->img_size && !c->size_source[0])
    snprintf(c->size_source, sizeof c->size_source, "%.80s img_size", c->source);
  if (c->img_size == 0) {
    c->img_size = img_inferred;
    snprintf(c->size_source, sizeof c->size_source, "inferred from pos_embed and the patch size");
  }
  if (!c->crop_source[0]) {
    const char *cp = nl_st_meta_get(f, "crop_pct"), *ip = nl_st_meta_get(f, "interpolation");
    char *end = NULL;
    double v = cp ? strtod(cp, &end) : 1.0;
    if (cp && (end == cp || *end || !(v > 0 && v <= 4)))
      return nl_fail(err, NL_EINPUT, "%s: __metadata__ crop_pct '%s' is not a number in (0, 4]",
                     f->path, cp);
    if (ip && nl_interp_parse(ip) < 0)
      return nl_fail(err, NL_EINPUT,
                     "%s: __metadata__ interpolation '%s' is not bicubic, bilinear, box, hamming or lanczos",
                     f->path, ip);
    c->crop_pct = (float)v;
    if (ip) snprintf(c->interpolation, sizeof c->interpolation, "%s", ip);
    snprintf(c->crop_source, sizeof c->crop_source, "%s",
             cp || ip ? "__metadata__ crop_pct/interpolation" : "default (crop_pct 1: no crop)");
  }
  if (!c->interpolation[0]) snprintf(c->interpolation, sizeof c->interpolation, "bicubic");
  if (c->img_size != img_inferred)
    return nl_fail(err, NL_EINPUT,
                   "%s: config gives img_size %d but pos_embed has %d patch positions (%dx%d grid of %d-pixel patches = %d)",
                   f->path, c->img_size, npatch, grid, grid, s->patch, img_inferred);
  if (c->avg_pool && !s->fc_norm)
    return nl_fail(err, NL_EINPUT, "%s: average pooling needs fc_norm.weight / fc_norm.bias", f->path);
  if (!c->avg_pool && !s->class_token)
    return nl_fail(err, NL_EINPUT, "%s: token pooling needs a class token (cls_token)", f->path);
  const char *mw = nl_st_meta_get(f, "mlp_widths");
  if (mw) {
    /* written by a budget prune: must agree with the shapes */
    json_error_t je;
    json_t *a = json_loads(mw, 0, &je);
    int ok = a && json_is_array(a) && json_array_size(a) == (size_t)s->depth;
    for (int b = 0; ok && b < s->depth; b++) {
      json_t *e = json_array_get(a, (size_t)b);
      ok = json_is_integer(e) && json_integer_value(e) == s->widths[b];
    }
    json_decref(a);
    if (!ok)
      return nl_fail(err, NL_EINPUT,
                     "%s: __metadata__ mlp_widths is not a list of the %d blocks' fc1 rows "
                     "(blocks.N.mlp.fc1.weight)", f->path, s->depth);
  }
  if (o && o->heads > 0) c->heads = o->heads;
  if (c->heads <= 0) c->heads = s->dim / 64 > 0 ? s->dim / 64 : 1;
  if (s->dim % c->heads)
    return nl_fail(err, NL_EINPUT, "%s: width %d is not divisible by %d heads", f->path, s->dim,
                   c->heads);
  /* per-block heads from qkv's rows and proj's columns (head_dim = dim / heads) */
  const int hd = s->dim / c->heads;
  for (int b = 0; b < s->depth; b++) {
    const int rows = s->qkv_rows[b], h = rows / (3 * hd);
    if (rows < 0) { /* missing: named with the other missing tensors */
      c->head_counts[b] = 0;
      continue;
    }
    if (rows % (3 * hd) || h < 1 || h > c->heads || (s->proj_cols[b] >= 0 && s->proj_cols[b] != h * hd))
      return nl_fail(err, NL_EINPUT,
                     "%s: blocks.%d.attn.qkv.weight has %d rows and blocks.%d.attn.proj.weight "
                     "%d columns: want 3 x h x %d and h x %d for h in [1, %d] heads of "
                     "dimension %d (width %d / %d heads)",
                     f->path, b, rows, b, s->proj_cols[b], hd, hd, c->heads, hd, s->dim,
                     c->heads);
    c->head_counts[b] = h == c->heads ? 0 : h;
  }
  const char *hc = nl_st_meta_get(f, "head_counts");
  if (hc) {
    /* written by a head prune: must agree with the shapes */
    json_error_t je;
    json_t *a = json_loads(hc, 0, &je);
    int ok = a && json_is_array(a) && json_array_size(a) == (size_t)s->depth;
    for (int b = 0; ok && b < s->depth; b++) {
      json_t *e = json_array_get(a, (size_t)b);
      ok = json_is_integer(e) && json_integer_value(e) == nl_vit_heads(c, b);
    }
    json_decref(a);
    if (!ok)
      return nl_fail(err, NL_EINPUT,
                     "%s: __metadata__ head_counts is not a list of the %d blocks' heads "
                     "(blocks.N.attn.qkv.weight rows / (3 x %d))", f->path, s->depth, hd);
  }
  if (c->nmean == 0) {
    const char *ms = nl_st_meta_get(f, "mean"), *ss = nl_st_meta_get(f, "std");
    if (ms && ss) {
      int nm = parse_float_list(ms, c->mean, 4), ns = parse_float_list(ss, c->std, 4);
      if (nm <= 0 || nm != ns)
        return nl_fail(err, NL_EINPUT, "%s: __metadata__ mean/std are not matching JSON number lists",
                       f->path);
      c->nmean = nm;
      snprintf(c->norm_source, sizeof c->norm_source, "__metadata__ mean/std");
    } else {
      c->nmean = 1;
      c->mean[0] = 0.2860f;
      c->std[0] = 0.3530f;
      snprintf(c->norm_source, sizeof c->norm_source, "default (Fashion-MNIST)");
    }
  }
  if (c->nmean != 1 && c->nmean != c->in_chans)
    return nl_fail(err, NL_EINPUT, "%s: %d mean/std values for %d input channels", f->path,
                   c->nmean, c->in_chans);
  for (int i = 0; i < c->nmean; i++)
    if (!(c->std[i] > 0))
      return nl_fail(err, NL_EINPUT, "%s: std[%d] = %g is not positive", f->path, i, c->std[i]);
  c->grid = grid;
  c->npatch = npatch;
  c->tokens = s->tokens;
  return 0;
}

/* ---- parameter layout ---- */

typedef struct layout {
  nl_param *p;
  int n, cap;
  size_t total;
} layout;

static size_t add(layout *l, const char *name, int ndim, int64_t a, int64_t b, int64_t c,
                  int64_t d) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    l->p = nl_xrealloc(l->p, sizeof(nl_param) * (size_t)l->cap);
  }
  nl_param *p = &l->p[l->n++];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  p->ndim = ndim;
  int64_t s[4] = {a, b, c, d};
  p->numel = 1;
  for (int i = 0; i < ndim; i++) {
    p->shape[i] = s[i];
    p->numel *= (size_t)s[i];
  }
  p->offset = l->total;
  l->total += (p->numel + 15) / 16 * 16; /* keep every view 64-byte aligned */
  return p->offset;
}

static void build_layout(const nl_vit_config *c, layout *l) {
  int D = c->dim, H, A;
  char nm[48];
  if (c->class_token) add(l, "cls_token", 3, 1, 1, D, 0);
  add(l, "pos_embed", 3, 1, c->tokens, D, 0);
  add(l, "patch_embed.proj.weight", 4, D, c->in_chans, c->patch, c->patch);
  add(l, "patch_embed.proj.bias", 1, D, 0, 0, 0);
#define B(suffix, ...)                                        \
  snprintf(nm, sizeof nm, "blocks.%d.%s", i, suffix); \
  add(l, nm, __VA_ARGS__)
  for (int i = 0; i < c->depth; i++) {
    H = nl_vit_mlp_width(c, i);
    A = nl_vit_attn_width(c, i);
    B("norm1.weight", 1, D, 0, 0, 0);
    B("norm1.bias", 1, D, 0, 0, 0);
    B("norm1.alpha", 1, 1, 0, 0, 0);
    B("attn.qkv.weight", 2, 3 * A, D, 0, 0);
    if (c->qkv_bias) { B("attn.qkv.bias", 1, 3 * A, 0, 0, 0); }
    B("attn.proj.weight", 2, D, A, 0, 0);
    B("attn.proj.bias", 1, D, 0, 0, 0);
    if (c->layer_scale) { B("ls1.gamma", 1, D, 0, 0, 0); }
    B("norm2.weight", 1, D, 0, 0, 0);
    B("norm2.bias", 1, D, 0, 0, 0);
    B("norm2.alpha", 1, 1, 0, 0, 0);
    B("mlp.fc1.weight", 2, H, D, 0, 0);
    B("mlp.fc1.bias", 1, H, 0, 0, 0);
    B("mlp.fc2.weight", 2, D, H, 0, 0);
    B("mlp.fc2.bias", 1, D, 0, 0, 0);
    if (c->layer_scale) { B("ls2.gamma", 1, D, 0, 0, 0); }
  }
#undef B
  const char *fn = c->avg_pool ? "fc_norm" : "norm";
  snprintf(nm, sizeof nm, "%s.weight", fn);
  add(l, nm, 1, D, 0, 0, 0);
  snprintf(nm, sizeof nm, "%s.bias", fn);
  add(l, nm, 1, D, 0, 0, 0);
  snprintf(nm, sizeof nm, "%s.alpha", fn);
  add(l, nm, 1, 1, 0, 0, 0);
  add(l, "head.weight", 2, c->classes, D, 0, 0);
  add(l, "head.bias", 1, c->classes, 0, 0, 0);
}

static float *view(nl_vit *m, const char *name) {
  for (int i = 0; i < m->ntensors; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return m->params + m->tensors[i].offset;
  return NULL;
}

static void wire(nl_vit *m) {
  const nl_vit_config *c = &m->cfg;
  char nm[96];
  m->cls_token = view(m, "cls_token");
  m->pos_embed = view(m, "pos_embed");
  m->patch_w = view(m, "patch_embed.proj.weight");
  m->patch_b = view(m, "patch_embed.proj.bias");
  m->head_w = view(m, "head.weight");
  m->head_b = view(m, "head.bias");
  m->blocks = nl_xcalloc((size_t)c->depth, sizeof(nl_vit_block));
  m->nnorms = 2 * c->depth + 1;
  m->norms = nl_xcalloc((size_t)m->nnorms, sizeof(nl_norm));
#define V(suffix) (snprintf(nm, sizeof nm, "blocks.%d.%s", i, suffix), view(m, nm))
  for (int i = 0; i < c->depth; i++) {
    nl_vit_block *b = &m->blocks[i];
    b->qkv_w = V("attn.qkv.weight");
    b->qkv_b = V("attn.qkv.bias");
    b->proj_w = V("attn.proj.weight");
    b->proj_b = V("attn.proj.bias");
    b->ls1 = V("ls1.gamma");
    b->fc1_w = V("mlp.fc1.weight");
    b->fc1_b = V("mlp.fc1.bias");
    b->fc2_w = V("mlp.fc2.weight");
    b->fc2_b = V("mlp.fc2.bias");
    b->ls2 = V("ls2.gamma");
    for (int k = 0; k < 2; k++) {
      nl_norm *n = &m->norms[2 * i + k];
      snprintf(n->name, sizeof n->name, "blocks.%d.%s", i, k ? "norm2" : "norm1");
      snprintf(nm, sizeof nm, "%s.weight", n->name);
      n->w = view(m, nm);
      snprintf(nm, sizeof nm, "%s.bias", n->name);
      n->b = view(m, nm);
      snprintf(nm, sizeof nm, "%s.alpha", n->name);
      n->alpha = view(m, nm);
      n->kind = NL_NORM_LAYERNORM;
    }
    b->norm1 = &m->norms[2 * i];
    b->norm2 = &m->norms[2 * i + 1];
  }
#undef V
  nl_norm *n = &m->norms[2 * c->depth];
  snprintf(n->name, sizeof n->name, "%s", c->avg_pool ? "fc_norm" : "norm");
  snprintf(nm, sizeof nm, "%s.weight", n->name);
  n->w = view(m, nm);
  snprintf(nm, sizeof nm, "%s.bias", n->name);
  n->b = view(m, nm);
  snprintf(nm, sizeof nm, "%s.alpha", n->name);
  n->alpha = view(m, nm);
  n->kind = NL_NORM_LAYERNORM;
  m->final_norm = n;
}


static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The model takes the layout's tensor list; a zeroed parameter buffer,
 * every alpha 0.5 (not in the file / not DyT yet). skip (may be NULL): per
 * tensor, nonzero for those whose FP32 copies stay out (1: quantized layers
 * under nl_vit_load_opts.int_only, 2: packed ones under .packed): their regions are
 * not written, so their pages are never touched. */
static void adopt_layout(nl_vit *m, layout *l, const unsigned char *skip) {
  m->tensors = l->p;
  m->ntensors = l->n;
  m->tensors_cap = l->cap;
  m->nparams = l->total;
  m->params = nl_aalloc(sizeof(float) * (l->total ? l->total : 1));
  if (!skip) memset(m->params, 0, sizeof(float) * l->total);
  else {
    /* zero everything but the skipped regions (gaps between tensors too) */
    size_t at = 0;
    for (int i = 0; i <= l->n; i++) {
      int last = i == l->n;
      if (!last && !skip[i]) continue;
      size_t end = last ? l->total : l->p[i].offset;
      if (end > at) memset(m->params + at, 0, sizeof(float) * (end - at));
      if (!last) at = l->p[i].offset + l->p[i].numel;
    }
  }
  for (int i = 0; i < l->n; i++)
    if (ends_with(l->p[i].name, ".alpha")) m->params[l->p[i].offset] = 0.5f;
}

int nl_vit_create(nl_vit *m, const nl_vit_config *c, nl_error *err) {
  memset(m, 0, sizeof *m);
  if (c->depth < 1 || c->depth > NL_VIT_MAX_DEPTH || c->dim < 1 || c->heads < 1 ||
      c->dim % c->heads || c->tokens < 1 || c->classes < 1 || c->mlp_hidden < 1)
    return nl_fail(err, NL_EINPUT, "model config: dim %d, depth %d, heads %d, hidden %d, "
                   "classes %d, tokens %d do not make a ViT", c->dim, c->depth, c->heads,
                   c->mlp_hidden, c->classes, c->tokens);
  for (int i = 0; i < c->depth; i++)
    if (nl_vit_mlp_width(c, i) < 1 || nl_vit_mlp_width(c, i) > c->mlp_hidden)
      return nl_fail(err, NL_EINPUT, "model config: block %d's MLP width %d is outside [1, %d]",
                     i, nl_vit_mlp_width(c, i), c->mlp_hidden);
  for (int i = 0; i < c->depth; i++)
    if (nl_vit_heads(c, i) < 1 || nl_vit_heads(c, i) > c->heads)
      return nl_fail(err, NL_EINPUT, "model config: block %d's head count %d is outside [1, %d]",
                     i, nl_vit_heads(c, i), c->heads);
  m->cfg = *c;
  layout l = {0};
  build_layout(&m->cfg, &l);
  adopt_layout(m, &l, NULL);
  wire(m);
  for (int i = 0; i < m->nnorms; i++) nl_vit_alpha_view(m, &m->norms[i], 0);
  return 0;
}

int nl_vit_heads_full(const nl_vit_config *c) {
  for (int i = 0; i < c->depth; i++)
    if (nl_vit_heads(c, i) != c->heads) return 0;
  return 1;
}

int nl_vit_mlp_uniform(const nl_vit_config *c) {
  for (int i = 1; i < c->depth; i++)
    if (nl_vit_mlp_width(c, i) != nl_vit_mlp_width(c, 0)) return 0;
  return 1;
}

/* mlp_ratio for `hidden` rows of width dim, as timm reads it back:
 * int(dim * mlp_ratio) must give hidden again (not hidden - 1 by a
 * rounding of the division). */
static double mlp_ratio_for(int hidden, int dim) {
  double r = (double)hidden / dim;
  while ((long)(dim * r) < hidden) r = nextafter(r, 2.0 * r + 1.0);
  return r;
}

/* Norm kinds from __metadata__ "norms" (see vit.h), else DyT where an
 * alpha tensor is in the file. `has_alpha[i]`: the file holds norms[i]'s
 * alpha. */
static int restore_norms(nl_vit *m, const nl_st_file *f, const char *path, const int *has_alpha,
                         nl_error *err) {
  const char *text = nl_st_meta_get(f, "norms");
  json_t *root = NULL;
  if (text) {
    json_error_t je;
    root = json_loads(text, 0, &je);
    if (!root || !json_is_object(root)) {
      json_decref(root);
      return nl_fail(err, NL_EINPUT, "%s: __metadata__ norms is not a JSON object%s%s", path,
                     root ? "" : ": ", root ? "" : je.text);
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
      if (!nl_vit_norm_find(m, key)) {
        nl_fail(err, NL_EINPUT, "%s: __metadata__ norms: '%s' is not a norm layer of this model",
                path, key);
        json_decref(root);
        return -1;
      }
    }
  }
  int rc = 0;
  for (int i = 0; i < m->nnorms && !rc; i++) {
    nl_norm *n = &m->norms[i];
    nl_norm_kind kind = has_alpha[i] ? NL_NORM_DYT : NL_NORM_LAYERNORM;
    const char *expr = NULL;
    json_t *e = root ? json_object_get(root, n->name) : NULL;
    if (root) kind = NL_NORM_LAYERNORM;
    if (e) {
      json_t *k = json_object_get(e, "kind");
      const char *ks = json_is_object(e) && json_is_string(k) ? json_string_value(k) : NULL;
      if (ks && strcmp(ks, "layernorm") == 0) kind = NL_NORM_LAYERNORM;
      else if (ks && strcmp(ks, "dyt") == 0) kind = NL_NORM_DYT;
      else if (ks && strcmp(ks, "expr") == 0) kind = NL_NORM_EXPR;
      else {
        rc = nl_fail(err, NL_EINPUT,
                     "%s: __metadata__ norms: layer '%s': want {\"kind\": \"layernorm\"|\"dyt\"|\"expr\", ...}",
                     path, n->name);
        break;
      }
      if (kind == NL_NORM_EXPR) {
        json_t *x = json_object_get(e, "expr");
        if (!json_is_string(x)) {
          rc = nl_fail(err, NL_EINPUT, "%s: __metadata__ norms: layer '%s': kind expr needs an \"expr\" string",
                       path, n->name);
          break;
        }
        expr = json_string_value(x);
      }
    }
    if (kind == NL_NORM_DYT && !has_alpha[i]) {
      rc = nl_fail(err, NL_EINPUT, "%s: layer '%s' is DyT but tensor '%s.alpha' is missing", path,
                   n->name, n->name);
    } else if (kind != NL_NORM_DYT && has_alpha[i]) {
      rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s.alpha' but __metadata__ norms says layer '%s' is %s",
                   path, n->name, n->name, nl_norm_kind_name(kind));
    } else if (kind == NL_NORM_DYT) {
      if (!isfinite(*n->alpha))
        rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s.alpha' is %g, not a finite number", path,
                     n->name, (double)*n->alpha);
      else
        nl_norm_set_dyt(m, n, *n->alpha);
    } else if (kind == NL_NORM_EXPR) {
      nl_prog p;
      nl_prog_init(&p);
      nl_error pe;
      if (nl_parse(expr, 1, &p, &pe) != 0)
        rc = nl_fail(err, NL_EINPUT, "%s: __metadata__ norms: layer '%s': %s", path, n->name,
                     pe.msg);
      else if (nl_norm_set_expr(m, n, &p, &pe) != 0)
        rc = nl_fail(err, NL_EINPUT, "%s: __metadata__ norms: %s", path, pe.msg);
      nl_prog_free(&p);
    } else {
      nl_norm_set_layernorm(m, n);
    }
  }
  json_decref(root);
  return rc;
}

/* A directory stands for its model.safetensors. */
static int open_model(nl_st_file *f, const char *path, nl_error *err) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    size_t n = strlen(path);
    char *file = nl_xmalloc(n + 32);
    snprintf(file, n + 32, "%s%smodel.safetensors", path, n && path[n - 1] == '/' ? "" : "/");
    if (!nl_file_exists(file)) {
      nl_fail(err, NL_EINPUT, "%s: a model folder needs model.safetensors (and config.json), as the hub distributes timm models", path);
      free(file);
      return -1;
    }
    int rc = nl_st_open(f, file, err);
    free(file);
    return rc;
  }
  return nl_st_open(f, path, err);
}

/* The Linear (NL_QL_QKV ..) whose weight tensor `name` is, its block in *l;
 * -1 for every other tensor. */
static int linear_of(const char *name, int *l) {
  static const char *const sfx[NL_QL_COUNT] = {"attn.qkv.weight", "attn.proj.weight",
                                               "mlp.fc1.weight", "mlp.fc2.weight"};
  int b, n = 0;
  if (sscanf(name, "blocks.%d.%n", &b, &n) != 1 || n == 0) return -1;
  for (int k = 0; k < NL_QL_COUNT; k++)
    if (strcmp(name + n, sfx[k]) == 0) {
      *l = b;
      return k;
    }
  return -1;
}

int nl_vit_weight_packed(const nl_vit *m, const char *name) {
  int l, k = m->wpack ? linear_of(name, &l) : -1;
  return k >= 0 && l >= 0 && l < m->cfg.depth && m->wpack[NL_QL_COUNT * l + k] != NULL;
}

/* nl_vit_load_opts.packed: each Linear weight marked 2 in skip converted into a
 * buffer of one tensor, then packed into m->wpack_mem; its view dropped. A
 * weight with a non-finite value goes to params as usual instead, so that
 * the evaluation's check names it. */
static int pack_weights(nl_vit *m, const nl_st_file *f, const unsigned char *skip,
                        nl_error *err) {
  size_t total = 0, most = 1;
  for (int i = 0; i < m->ntensors; i++) {
    const nl_param *p = &m->tensors[i];
    int l;
    if (skip[i] != 2 || linear_of(p->name, &l) < 0) continue;
    total += nl_gemm_pack_floats((int)p->shape[0], (int)p->shape[1]);
    if (p->numel > most) most = p->numel;
  }
  if (!total) return 0;
  void *mem = NULL;
  if (posix_memalign(&mem, 64, total * sizeof(float)))
    return nl_fail(err, NL_ENOMEM, "cannot allocate %.1f MB of packed weights", total * 4.0 / 1e6);
  m->wpack_mem = mem;
  m->wpack = nl_xcalloc((size_t)NL_QL_COUNT * m->cfg.depth, sizeof(float *));
  float *tmp = nl_aalloc(most * sizeof(float));
  size_t off = 0;
  for (int i = 0; i < m->ntensors; i++) {
    const nl_param *p = &m->tensors[i];
    int l, k;
    if (skip[i] != 2 || (k = linear_of(p->name, &l)) < 0) continue;
    const nl_st_tensor *t = nl_st_find(f, p->name);
    nl_st_to_f32(t, tmp);
    nl_st_release(f, t);
    size_t bad = 0;
    for (size_t j = 0; j < p->numel; j++) bad += !isfinite(tmp[j]);
    if (bad) {
      memcpy(m->params + p->offset, tmp, p->numel * sizeof(float));
      continue;
    }
    const int N = (int)p->shape[0], K = (int)p->shape[1];
    nl_gemm_pack(m->wpack_mem + off, tmp, N, K, 0, (N + NL_GEMM_NR - 1) / NL_GEMM_NR);
    m->wpack[NL_QL_COUNT * l + k] = m->wpack_mem + off;
    off += nl_gemm_pack_floats(N, K);
    nl_vit_block *B = &m->blocks[l];
    float **view[NL_QL_COUNT] = {&B->qkv_w, &B->proj_w, &B->fc1_w, &B->fc2_w};
    *view[k] = NULL;
  }
  nl_afree(tmp);
  return 0;
}

int nl_vit_read_config(nl_vit_config *c, const char *path, const nl_vit_load_opts *o,
                       nl_error *err) {
  nl_st_file f;
  if (open_model(&f, path, err)) return -1;
  inferred s;
  int rc = infer(&f, &s, err) || resolve_config(&f, &s, o, c, err) ? -1 : 0;
  nl_st_close(&f);
  return rc;
}

int nl_vit_load(nl_vit *m, const char *path, const nl_vit_load_opts *o, nl_error *err) {
  memset(m, 0, sizeof *m);
  nl_st_file f;
  if (open_model(&f, path, err)) return -1;
  inferred s;
  if (infer(&f, &s, err) || resolve_config(&f, &s, o, &m->cfg, err)) {
    nl_st_close(&f);
    return -1;
  }
  nl_vit_quant *qs = NULL;
  const char *qmeta = nl_st_meta_get(&f, "quantization");
  if (qmeta && !(qs = nl_quant_scheme_parse(qmeta, &m->cfg, path, err))) {
    nl_st_close(&f);
    return -1;
  }
  nl_vit_reuse *rp = nl_reuse_plan_read(&f, &m->cfg, path, err);
  if (!rp && nl_st_meta_get(&f, "reuse")) {
    nl_vit_quant_free(qs);
    nl_st_close(&f);
    return -1;
  }
  layout l = {0};
  build_layout(&m->cfg, &l);
  /* every expected tensor present with its shape; nothing else in the file */
  char missing[600] = "", unknown[600] = "";
  int nmiss = 0, nunk = 0;
  for (int i = 0; i < l.n; i++) {
    const nl_st_tensor *t = nl_st_find(&f, l.p[i].name);
    if (!t && ends_with(l.p[i].name, ".alpha")) continue; /* DyT slots only */
    if (t && nl_quant_is_qweight(qs, &m->cfg, l.p[i].name)) continue; /* nl_quant_attach */
    if (!t) {
      if (nmiss++ < 8) {
        size_t k = strlen(missing);
        snprintf(missing + k, sizeof missing - k, "%s%s", k ? ", " : "", l.p[i].name);
      }
      continue;
    }
    int same = t->ndim == l.p[i].ndim;
    for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == l.p[i].shape[d];
    if (!same || !(t->dtype == NL_DT_F32 || t->dtype == NL_DT_F16 || t->dtype == NL_DT_BF16)) {
      char want[96], have[96];
      shape_str(want, sizeof want, l.p[i].ndim, l.p[i].shape);
      shape_str(have, sizeof have, t->ndim, t->shape);
      nl_fail(err, NL_EINPUT, "%s: tensor '%s': %s %s, expected F32/F16/BF16 %s", path, t->name,
              nl_dtype_name(t->dtype), have, want);
      free(l.p);
      nl_vit_quant_free(qs);
      nl_reuse_plan_free(rp);
      nl_st_close(&f);
      return -1;
    }
  }
  for (int i = 0; i < f.n; i++) {
    int known = nl_quant_is_extra(qs, &m->cfg, f.t[i].name) || nl_reuse_plan_is_tensor(rp, f.t[i].name);
    for (int j = 0; j < l.n && !known; j++) known = strcmp(f.t[i].name, l.p[j].name) == 0;
    if (!known && nunk++ < 8) {
      size_t k = strlen(unknown);
      snprintf(unknown + k, sizeof unknown - k, "%s%s", k ? ", " : "", f.t[i].name);
    }
  }
  if (nmiss || nunk) {
    if (nunk)
      nl_fail(err, NL_EINPUT, "%s: %d tensor%s not understood by the ViT loader: %s%s", path, nunk,
              nunk > 1 ? "s" : "", unknown, nunk > 8 ? ", ..." : "");
    else
      nl_fail(err, NL_EINPUT, "%s: %d tensor%s missing: %s%s", path, nmiss, nmiss > 1 ? "s" : "",
              missing, nmiss > 8 ? ", ..." : "");
    free(l.p);
    nl_vit_quant_free(qs);
    nl_reuse_plan_free(rp);
    nl_st_close(&f);
    return -1;
  }
  if (rp && nl_reuse_plan_check_heads(rp, &m->cfg, err)) {
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg);
    nl_fail(err, NL_EINPUT, "%s: %s", path, why);
    free(l.p);
    nl_vit_quant_free(qs);
    nl_reuse_plan_free(rp);
    nl_st_close(&f);
    return -1;
  }
  if (qs && o && o->int_only) qs->int_only = 1;
  m->reuse = rp; /* m owns the plan from here */
  const int pack = o && o->packed && o->precision == NL_PREC_FP32 && !rp && nl_gemm_available();
  unsigned char *skip = NULL;
  if ((qs && qs->int_only) || pack) {
    skip = nl_xcalloc((size_t)(l.n ? l.n : 1), 1);
    for (int i = 0; i < l.n; i++) {
      int b;
      if (nl_quant_is_qweight(qs, &m->cfg, l.p[i].name)) skip[i] = qs->int_only;
      else if (pack && linear_of(l.p[i].name, &b) >= 0 && nl_st_find(&f, l.p[i].name)) skip[i] = 2;
    }
  }
  adopt_layout(m, &l, skip);
  for (int i = 0; i < l.n; i++) {
    const nl_st_tensor *t = nl_st_find(&f, l.p[i].name);
    if (t && nl_quant_is_qweight(qs, &m->cfg, l.p[i].name)) continue; /* nl_quant_attach */
    if (t && !(skip && skip[i])) {
      nl_st_to_f32(t, m->params + l.p[i].offset);
      nl_st_release(&f, t); /* the file's copy leaves memory as it is converted */
    }
  }
  wire(m);
  if (pack && pack_weights(m, &f, skip, err)) {
    free(skip);
    nl_vit_quant_free(qs);
    nl_st_close(&f);
    nl_vit_free(m);
    return -1;
  }
  free(skip);
  int *has_alpha = nl_xcalloc((size_t)m->nnorms, sizeof(int));
  for (int i = 0; i < m->nnorms; i++) {
    char nm[96];
    snprintf(nm, sizeof nm, "%s.alpha", m->norms[i].name);
    has_alpha[i] = nl_st_find(&f, nm) != NULL;
    nl_vit_alpha_view(m, &m->norms[i], 0); /* listed again for DyT slots below */
  }
  int rc = restore_norms(m, &f, path, has_alpha, err);
  free(has_alpha);
  if (qs) {
    if (rc) nl_vit_quant_free(qs);
    else rc = nl_quant_attach(m, qs, &f, path, err); /* m owns qs from here */
  }
  nl_st_close(&f);
  if (!rc && o && o->precision != NL_PREC_FP32) rc = nl_vit_set_precision(m, o->precision, err);
  if (rc) {
    nl_vit_free(m);
    return -1;
  }
  return 0;
}

void nl_vit_free(nl_vit *m) {
  if (!m) return;
  for (int i = 0; i < m->nnorms; i++) nl_norm_expr_release(&m->norms[i]);
  nl_afree(m->params);
  free(m->tensors);
  free(m->blocks);
  free(m->norms);
  nl_vit_quant_free(m->quant);
  free(m->bf16);
  free(m->wpack_mem);
  free(m->wpack);
  nl_reuse_plan_free(m->reuse);
  memset(m, 0, sizeof *m);
}

int nl_vit_save(const nl_vit *m, const char *path, nl_error *err) {
  return nl_vit_save_meta(m, path, NULL, 0, err);
}

int nl_vit_save_meta(const nl_vit *m, const char *path, const char *const *meta, int nmeta,
                     nl_error *err) {
  nl_st_writer *w = nl_st_writer_new();
  if (m->quant && nl_quant_write(m, w, err)) {
    nl_st_writer_free(w);
    return -1;
  }
  for (int i = 0; i < m->ntensors && !m->quant; i++) {
    const nl_param *p = &m->tensors[i];
    if (nl_st_writer_add(w, p->name, m->params + p->offset, p->ndim, p->shape, err)) {
      nl_st_writer_free(w);
      return -1;
    }
  }
  const nl_vit_config *c = &m->cfg;
  char buf[512], ratio[64] = "";
  int uniform = nl_vit_mlp_uniform(c);
  /* per-block widths have no mlp_ratio: the widths go to "mlp_widths" */
  if (uniform)
    snprintf(ratio, sizeof ratio, "\"mlp_ratio\": %.17g, ",
             mlp_ratio_for(nl_vit_mlp_width(c, 0), c->dim));
  snprintf(buf, sizeof buf,
           "{\"img_size\": %d, \"in_chans\": %d, \"num_classes\": %d, \"patch_size\": %d, "
           "\"embed_dim\": %d, \"depth\": %d, \"num_heads\": %d, %s"
           "\"class_token\": %s, \"global_pool\": \"%s\"}",
           c->img_size, c->in_chans, c->classes, c->patch, c->dim, c->depth, c->heads, ratio,
           c->class_token ? "true" : "false", c->avg_pool ? "avg" : "token");
  nl_st_writer_meta(w, "model_args", buf);
  if (!uniform) {
    json_t *a = json_array();
    for (int i = 0; i < c->depth; i++) json_array_append_new(a, json_integer(nl_vit_mlp_width(c, i)));
    char *t = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    nl_st_writer_meta(w, "mlp_widths", t);
    free(t);
  }
  if (!nl_vit_heads_full(c)) {
    json_t *a = json_array();
    for (int i = 0; i < c->depth; i++) json_array_append_new(a, json_integer(nl_vit_heads(c, i)));
    char *t = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    nl_st_writer_meta(w, "head_counts", t);
    free(t);
  }
  for (int k = 0; k < 2; k++) {
    const float *v = k ? c->std : c->mean;
    size_t p = (size_t)snprintf(buf, sizeof buf, "[");
    for (int i = 0; i < c->nmean; i++) p += (size_t)snprintf(buf + p, sizeof buf - p, "%s%.9g", i ? ", " : "", v[i]);
    snprintf(buf + p, sizeof buf - p, "]");
    nl_st_writer_meta(w, k ? "std" : "mean", buf);
  }
  if (c->arch[0]) nl_st_writer_meta(w, "architecture", c->arch);
  if (c->crop_pct > 0) {
    snprintf(buf, sizeof buf, "%.9g", (double)c->crop_pct);
    nl_st_writer_meta(w, "crop_pct", buf);
  }
  if (c->interpolation[0]) nl_st_writer_meta(w, "interpolation", c->interpolation);
  json_t *norms = json_object();
  for (int i = 0; i < m->nnorms; i++) {
    const nl_norm *n = &m->norms[i];
    json_t *e = json_pack("{s:s}", "kind", nl_norm_kind_name(n->kind));
    if (n->kind == NL_NORM_EXPR) json_object_set_new(e, "expr", json_string(n->expr ? n->expr : ""));
    json_object_set_new(norms, n->name, e);
  }
  char *nt = json_dumps(norms, JSON_PRESERVE_ORDER | JSON_COMPACT);
  json_decref(norms);
  nl_st_writer_meta(w, "norms", nt);
  free(nt);
  nl_st_writer_meta(w, "format", "pt");
  if (nl_reuse_plan_write(m->reuse, w, err)) {
    nl_st_writer_free(w);
    return -1;
  }
  for (int i = 0; i < nmeta; i++) nl_st_writer_meta(w, meta[2 * i], meta[2 * i + 1]);
  int rc = nl_st_writer_save(w, path, err);
  nl_st_writer_free(w);
  return rc;
}

size_t nl_vit_param_count(const nl_vit *m) {
  size_t n = 0;
  for (int i = 0; i < m->ntensors; i++) n += m->tensors[i].numel;
  return n;
}

double nl_vit_flops_per_image(const nl_vit_config *c) {
  double T = c->tokens, D = c->dim, N = c->npatch;
  double f = 2.0 * N * D * c->in_chans * c->patch * c->patch;
  for (int l = 0; l < c->depth; l++) {
    const double A = nl_vit_attn_width(c, l);
    f += 2.0 * T * D * 3 * A + 2.0 * 2.0 * T * T * A + 2.0 * T * A * D +
         2.0 * 2.0 * T * D * nl_vit_mlp_width(c, l);
  }
  return f + 2.0 * D * c->classes;
}

nl_norm *nl_vit_norm_find(nl_vit *m, const char *name) {
  for (int i = 0; i < m->nnorms; i++)
    if (strcmp(m->norms[i].name, name) == 0) return &m->norms[i];
  return NULL;
}
