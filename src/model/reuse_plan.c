/* Attention-reuse plans: layout, checks, cost, checkpoint I/O and the two
 * kernels the passes share (model/reuse_plan.h). */
#include "model/reuse_plan.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "model/safetensors.h"
#include "tensor/layers.h"

nl_vit_reuse *nl_reuse_plan_new(int depth, int dim) {
  nl_vit_reuse *p = nl_xcalloc(1, sizeof *p);
  p->depth = depth;
  p->dim = dim;
  for (int l = 0; l < NL_VIT_MAX_DEPTH; l++) p->src[l] = -1;
  return p;
}

void nl_reuse_plan_free(nl_vit_reuse *p) {
  if (!p) return;
  nl_afree(p->params);
  free(p);
}

static size_t tb_numel(const nl_vit_reuse *p, int l) {
  const size_t D = (size_t)p->dim, H = (size_t)p->hidden[l];
  if (p->src[l] < 0) return 0;
  if (p->tb[l] == NL_TB_LINEAR) return D * D + D;
  if (p->tb[l] == NL_TB_MLP) return H * D + H + D * H + D;
  return 0;
}

/* Lay the TB parameters out in one new buffer, copying from old views
 * (keep[l]) or zeroing. */
static void relayout(nl_vit_reuse *p, const unsigned char *keep) {
  size_t total = 0;
  for (int l = 0; l < p->depth; l++) total += (tb_numel(p, l) + 15) / 16 * 16;
  float *buf = total ? nl_aalloc(total * sizeof(float)) : NULL;
  if (buf) memset(buf, 0, total * sizeof(float));
  size_t off = 0;
  const size_t D = (size_t)p->dim;
  for (int l = 0; l < p->depth; l++) {
    size_t n = tb_numel(p, l);
    float *w1 = NULL, *b1 = NULL, *w2 = NULL, *b2 = NULL;
    if (n) {
      float *q = buf + off;
      if (p->tb[l] == NL_TB_LINEAR) {
        w1 = q, b1 = q + D * D;
      } else {
        size_t H = (size_t)p->hidden[l];
        w1 = q, b1 = q + H * D, w2 = b1 + H, b2 = w2 + D * H;
      }
      if (keep[l]) memcpy(q, p->w1[l], n * sizeof(float)); /* the old views are one run too */
      off += (n + 15) / 16 * 16;
    }
    p->w1[l] = w1, p->b1[l] = b1, p->w2[l] = w2, p->b2[l] = b2;
  }
  nl_afree(p->params);
  p->params = buf;
  p->nparams = total;
}

nl_vit_reuse *nl_reuse_plan_copy(const nl_vit_reuse *p) {
  if (!p) return NULL;
  nl_vit_reuse *q = nl_xcalloc(1, sizeof *q);
  *q = *p;
  q->params = NULL;
  unsigned char keep[NL_VIT_MAX_DEPTH];
  for (int l = 0; l < p->depth; l++) keep[l] = tb_numel(p, l) > 0;
  relayout(q, keep); /* copies from p's views, which q still holds */
  return q;
}

static int check_block(const nl_vit_reuse *p, int l, nl_error *err) {
  int s = p->src[l];
  if (s < 0) return 0;
  if (s >= l)
    return nl_fail(err, NL_EINPUT, "reuse plan: block %d cannot reuse the attention of block %d "
                   "(only an earlier block's: 0..%d)", l, s, l - 1);
  if (p->tb[l] == NL_TB_NONE && p->src[s] >= 0 && p->tb[s] != NL_TB_NONE)
    return nl_fail(err, NL_EINPUT, "reuse plan: block %d reuses the attention probabilities of "
                   "block %d, which has none (it skips its attention for a %s transformation "
                   "block)", l, s, nl_tb_kind_name(p->tb[s]));
  if (p->tb[l] == NL_TB_MLP && p->hidden[l] < 1)
    return nl_fail(err, NL_EINPUT, "reuse plan: block %d: an mlp transformation block needs a "
                   "hidden width of at least 1", l);
  return 0;
}

int nl_reuse_plan_set(nl_vit_reuse *p, int l, int src, nl_tb_kind tb, int hidden, nl_error *err) {
  if (l < 0 || l >= p->depth)
    return nl_fail(err, NL_EINPUT, "reuse plan: block %d does not exist (the model has blocks "
                   "0..%d)", l, p->depth - 1);
  if (src >= p->depth || src < -1)
    return nl_fail(err, NL_EINPUT, "reuse plan: block %d's source %d does not exist (the model "
                   "has blocks 0..%d)", l, src, p->depth - 1);
  if (src >= 0 && src >= l)
    return nl_fail(err, NL_EINPUT, "reuse plan: block %d cannot reuse the attention of block %d "
                   "(only an earlier block's: 0..%d)", l, src, l - 1);
  if (tb == NL_TB_MLP && hidden < 1)
    return nl_fail(err, NL_EINPUT, "reuse plan: block %d: an mlp transformation block needs a "
                   "hidden width of at least 1", l);
  nl_vit_reuse t = *p;
  t.src[l] = src;
  t.tb[l] = src < 0 ? NL_TB_NONE : tb;
  t.hidden[l] = t.tb[l] == NL_TB_MLP ? hidden : 0;
  for (int k = 0; k < p->depth; k++)
    if (check_block(&t, k, err)) return -1;
  unsigned char keep[NL_VIT_MAX_DEPTH];
  for (int k = 0; k < p->depth; k++) keep[k] = tb_numel(p, k) > 0;
  keep[l] = keep[l] && t.tb[l] == p->tb[l] && t.hidden[l] == p->hidden[l] && src >= 0;
  p->src[l] = t.src[l], p->tb[l] = t.tb[l], p->hidden[l] = t.hidden[l];
  /* relayout copies from the old views: they stay valid until it frees them */
  relayout(p, keep);
  return 0;
}

int nl_reuse_plan_count(const nl_vit_reuse *p) {
  int n = 0;
  for (int l = 0; p && l < p->depth; l++) n += p->src[l] >= 0;
  return n;
}

int nl_reuse_plan_is_source(const nl_vit_reuse *p, int s) {
  for (int l = s + 1; p && l < p->depth; l++)
    if (p->src[l] == s) return 1;
  return 0;
}

static const char *const tb_names[] = {"none", "linear", "mlp"};

const char *nl_tb_kind_name(nl_tb_kind k) { return (int)k >= 0 && k <= NL_TB_MLP ? tb_names[k] : "?"; }

int nl_tb_kind_parse(const char *s, nl_tb_kind *k) {
  for (int i = 0; i <= NL_TB_MLP; i++)
    if (strcmp(s, tb_names[i]) == 0) {
      *k = (nl_tb_kind)i;
      return 0;
    }
  return -1;
}

void nl_reuse_plan_text(const nl_vit_reuse *p, char *buf, size_t cap) {
  size_t k = 0;
  buf[0] = '\0';
  for (int l = 0; p && l < p->depth && k + 32 < cap; l++) {
    if (p->src[l] < 0) continue;
    k += (size_t)snprintf(buf + k, cap - k, "%s%d<%d", k ? "," : "", l, p->src[l]);
    if (p->tb[l] == NL_TB_LINEAR) k += (size_t)snprintf(buf + k, cap - k, ":linear");
    if (p->tb[l] == NL_TB_MLP) k += (size_t)snprintf(buf + k, cap - k, ":mlp%d", p->hidden[l]);
  }
  if (!k) snprintf(buf, cap, "none");
}

int nl_reuse_plan_check_heads(const nl_vit_reuse *p, const nl_vit_config *c, nl_error *err) {
  for (int l = 0; p && l < p->depth && l < c->depth; l++) {
    const int s = p->src[l];
    if (s < 0 || p->tb[l] != NL_TB_NONE) continue;
    if (nl_vit_heads(c, s) != nl_vit_heads(c, l))
      return nl_fail(err, NL_EINPUT, "reuse plan: block %d (%d heads) cannot apply the attention "
                     "probabilities of block %d (%d heads): a head-pruned model reuses "
                     "attention only between blocks with the same number of heads",
                     l, nl_vit_heads(c, l), s, nl_vit_heads(c, s));
  }
  return 0;
}

double nl_reuse_block_saving(const nl_vit_reuse *p, const nl_vit_config *c, int l) {
  if (!p || l < 0 || l >= p->depth || p->src[l] < 0) return 0;
  const double T = c->tokens, D = c->dim, H = p->hidden[l], A = nl_vit_attn_width(c, l);
  if (p->tb[l] == NL_TB_NONE) return 2.0 * T * D * 2 * A + 2.0 * T * T * A;
  double att = 2.0 * T * D * 3 * A + 4.0 * T * T * A + 2.0 * T * A * D;
  return att - (p->tb[l] == NL_TB_LINEAR ? 2.0 * T * D * D : 4.0 * T * D * H);
}

double nl_reuse_plan_flops(const nl_vit_reuse *p, const nl_vit_config *c) {
  double f = nl_vit_flops_per_image(c);
  for (int l = 0; p && l < p->depth; l++) f -= nl_reuse_block_saving(p, c, l);
  return f;
}

double nl_reuse_plan_bytes_saved(const nl_vit_reuse *p, const nl_vit_config *c) {
  double s = 0, D = c->dim;
  for (int l = 0; p && l < p->depth; l++) {
    if (p->src[l] < 0) continue;
    const double A = nl_vit_attn_width(c, l);
    if (p->tb[l] == NL_TB_NONE) {
      s += 4.0 * (2 * A * D + (c->qkv_bias ? 2 * A : 0));
    } else {
      s += 4.0 * (2 * D + 3 * A * D + (c->qkv_bias ? 3 * A : 0) + A * D + D);
      s -= 4.0 * (double)tb_numel(p, l);
    }
  }
  return s;
}

/* ---- checkpoints ---- */

static void tb_names_of(const nl_vit_reuse *p, int l, char names[4][64], int64_t shapes[4][2],
                        int *ndims, int *n) {
  const int D = p->dim, H = p->hidden[l];
  if (p->tb[l] == NL_TB_LINEAR) {
    snprintf(names[0], 64, "reuse.%d.tb.weight", l);
    snprintf(names[1], 64, "reuse.%d.tb.bias", l);
    shapes[0][0] = D, shapes[0][1] = D, ndims[0] = 2;
    shapes[1][0] = D, ndims[1] = 1;
    *n = 2;
  } else if (p->tb[l] == NL_TB_MLP) {
    snprintf(names[0], 64, "reuse.%d.tb.fc1.weight", l);
    snprintf(names[1], 64, "reuse.%d.tb.fc1.bias", l);
    snprintf(names[2], 64, "reuse.%d.tb.fc2.weight", l);
    snprintf(names[3], 64, "reuse.%d.tb.fc2.bias", l);
    shapes[0][0] = H, shapes[0][1] = D, ndims[0] = 2;
    shapes[1][0] = H, ndims[1] = 1;
    shapes[2][0] = D, shapes[2][1] = H, ndims[2] = 2;
    shapes[3][0] = D, ndims[3] = 1;
    *n = 4;
  } else {
    *n = 0;
  }
}

static float *tb_view(const nl_vit_reuse *p, int l, int i) {
  float *v[4] = {p->w1[l], p->b1[l], p->w2[l], p->b2[l]};
  return v[i];
}

int nl_reuse_plan_is_tensor(const nl_vit_reuse *p, const char *name) {
  for (int l = 0; p && l < p->depth; l++) {
    char nm[4][64];
    int64_t sh[4][2];
    int nd[4], n;
    tb_names_of(p, l, nm, sh, nd, &n);
    for (int i = 0; i < n; i++)
      if (strcmp(nm[i], name) == 0) return 1;
  }
  return 0;
}

int nl_reuse_plan_write(const nl_vit_reuse *p, nl_st_writer *w, nl_error *err) {
  if (!p || !nl_reuse_plan_count(p)) return 0;
  json_t *blocks = json_array();
  for (int l = 0; l < p->depth; l++) {
    if (p->src[l] < 0) continue;
    json_t *e = json_pack("{s:i, s:i, s:s}", "block", l, "source", p->src[l], "tb",
                          nl_tb_kind_name(p->tb[l]));
    if (p->tb[l] == NL_TB_MLP) json_object_set_new(e, "hidden", json_integer(p->hidden[l]));
    json_array_append_new(blocks, e);
    char nm[4][64];
    int64_t sh[4][2];
    int nd[4], n;
    tb_names_of(p, l, nm, sh, nd, &n);
    for (int i = 0; i < n; i++)
      if (nl_st_writer_add(w, nm[i], tb_view(p, l, i), nd[i], sh[i], err)) {
        json_decref(blocks);
        return -1;
      }
  }
  json_t *o = json_pack("{s:i, s:o}", "version", 1, "blocks", blocks);
  char *t = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT);
  json_decref(o);
  nl_st_writer_meta(w, "reuse", t);
  free(t);
  return 0;
}

nl_vit_reuse *nl_reuse_plan_read(const nl_st_file *f, const nl_vit_config *c, const char *path,
                                 nl_error *err) {
  const char *meta = nl_st_meta_get(f, "reuse");
  if (!meta) return NULL;
  json_error_t je;
  json_t *o = json_loads(meta, 0, &je);
  json_t *blocks = o ? json_object_get(o, "blocks") : NULL;
  if (!json_is_array(blocks)) {
    nl_fail(err, NL_EINPUT, "%s: __metadata__ reuse: want {\"version\": 1, \"blocks\": [{\"block\": "
            "L, \"source\": S, \"tb\": \"none\"|\"linear\"|\"mlp\"}, ...]}", path);
    json_decref(o);
    return NULL;
  }
  nl_vit_reuse *p = nl_reuse_plan_new(c->depth, c->dim);
  size_t i;
  json_t *e;
  int rc = 0;
  json_array_foreach(blocks, i, e) {
    json_t *jb = json_object_get(e, "block"), *js = json_object_get(e, "source");
    json_t *jt = json_object_get(e, "tb"), *jh = json_object_get(e, "hidden");
    nl_tb_kind k = NL_TB_NONE;
    if (!json_is_integer(jb) || !json_is_integer(js) || (jt && (!json_is_string(jt) ||
        nl_tb_kind_parse(json_string_value(jt), &k))) || (jh && !json_is_integer(jh))) {
      rc = nl_fail(err, NL_EINPUT, "%s: __metadata__ reuse: entry %zu: want {\"block\": L, "
                   "\"source\": S, \"tb\": \"none\"|\"linear\"|\"mlp\", \"hidden\": H}", path, i);
      break;
    }
    long b = (long)json_integer_value(jb), s = (long)json_integer_value(js);
    long h = jh ? (long)json_integer_value(jh) : 0;
    if (b < 0 || b >= c->depth) {
      rc = nl_fail(err, NL_EINPUT, "%s: __metadata__ reuse: block %ld does not exist (the model "
                   "has blocks 0..%d)", path, b, c->depth - 1);
      break;
    }
    if (p->src[b] >= 0) {
      rc = nl_fail(err, NL_EINPUT, "%s: __metadata__ reuse: block %ld given twice", path, b);
      break;
    }
    if (s < 0 || s >= b) {
      rc = nl_fail(err, NL_EINPUT, "%s: __metadata__ reuse: block %ld cannot reuse the attention "
                   "of block %ld (only an earlier block's: 0..%ld)", path, b, s, b - 1);
      break;
    }
    if (h < 0 || h > 1 << 20) h = 0;
    if (nl_reuse_plan_set(p, (int)b, (int)s, k, (int)h, err)) {
      nl_error_prefix(err, path);
      rc = -1;
      break;
    }
  }
  json_decref(o);
  for (int l = 0; l < p->depth && !rc; l++) {
    char nm[4][64];
    int64_t sh[4][2];
    int nd[4], n;
    tb_names_of(p, l, nm, sh, nd, &n);
    for (int j = 0; j < n && !rc; j++) {
      const nl_st_tensor *t = nl_st_find(f, nm[j]);
      int same = t && t->ndim == nd[j];
      for (int d = 0; same && d < nd[j]; d++) same = t->shape[d] == sh[j][d];
      if (!same)
        rc = nl_fail(err, NL_EINPUT, "%s: reuse plan: tensor '%s' %s (want shape [%lld%s%lld])",
                     path, nm[j], t ? "has the wrong shape" : "is missing", (long long)sh[j][0],
                     nd[j] > 1 ? ", " : "", nd[j] > 1 ? (long long)sh[j][1] : 0LL);
      else
        nl_st_to_f32(t, tb_view(p, l, j));
    }
  }
  if (rc) {
    nl_reuse_plan_free(p);
    return NULL;
  }
  return p;
}

/* ---- kernels ---- */

void nl_reuse_tb_forward(const nl_vit_reuse *p, int l, const float *z, float *out, float *hid,
                         float *act, int rows) {
  const int D = p->dim, H = p->hidden[l];
  if (p->tb[l] == NL_TB_LINEAR) {
    nl_linear_forward(out, z, p->w1[l], p->b1[l], rows, D, D);
    return;
  }
  nl_linear_forward(hid, z, p->w1[l], p->b1[l], rows, D, H);
  nl_gelu_forward(act, hid, (size_t)rows * H);
  nl_linear_forward(out, act, p->w2[l], p->b2[l], rows, H, D);
}
