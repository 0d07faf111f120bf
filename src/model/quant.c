/* Quantized ViTs: scale search (AWQ, SmoothQuant), quantization, loading
 * and saving (see quant.h). */
#include "model/quant.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "tensor/igemm.h"
#include "tensor/layers.h"

static const char *const qlayer_names[NL_QL_COUNT] = {"attn.qkv", "attn.proj", "mlp.fc1",
                                                      "mlp.fc2"};

const char *nl_qlayer_name(int k) { return k >= 0 && k < NL_QL_COUNT ? qlayer_names[k] : "?"; }

static const struct {
  const char *name;
  unsigned mask;
} parts[] = {
    {"head", NL_QPART_HEAD},
    {"patch_embed", NL_QPART_PATCH},
    {"attn", NL_QPART_QKV | NL_QPART_PROJ},
    {"mlp", NL_QPART_FC1 | NL_QPART_FC2},
    {"qkv", NL_QPART_QKV},
    {"proj", NL_QPART_PROJ},
    {"fc1", NL_QPART_FC1},
    {"fc2", NL_QPART_FC2},
};
#define NPARTS ((int)(sizeof parts / sizeof parts[0]))

static unsigned layer_part(int k) { return NL_QPART_QKV << k; }

int nl_quant_parts_parse(const char *list, unsigned *mask, nl_error *err) {
  *mask = 0;
  if (!list || !*list || strcmp(list, "none") == 0) return 0;
  const char *p = list;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    int found = 0;
    for (int i = 0; i < NPARTS && !found; i++)
      if (strlen(parts[i].name) == n && strncmp(parts[i].name, p, n) == 0) {
        *mask |= parts[i].mask;
        found = 1;
      }
    if (!found)
      return nl_fail(err, NL_EINPUT,
                     "unknown part '%.*s' (known: head, patch_embed, attn, mlp, qkv, proj, fc1, fc2)",
                     (int)n, p);
    p += n;
    if (*p == ',') p++;
  }
  return 0;
}

void nl_vit_quant_free(nl_vit_quant *q) {
  if (!q) return;
  if (q->lin) {
    /* the count is not stored: lin ends with a sentinel of oc -1 */
    for (nl_qlinear *l = q->lin; l->oc >= 0; l++) nl_qlinear_free(l);
  }
  free(q->lin);
  free(q->alpha);
  free(q);
}

static nl_vit_quant *quant_new(int depth) {
  nl_vit_quant *q = nl_xcalloc(1, sizeof *q);
  size_t n = (size_t)depth * NL_QL_COUNT;
  q->lin = nl_xcalloc(n + 1, sizeof(nl_qlinear));
  q->lin[n].oc = -1;
  q->alpha = nl_xmalloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) q->alpha[i] = -1;
  return q;
}

/* ---- the layers of a block ---- */

typedef struct {
  float *w, *b;
  int oc, ic;
} lin_ref;

static lin_ref layer_ref(const nl_vit *m, int l, int k) {
  const nl_vit_block *B = &m->blocks[l];
  const int D = m->cfg.dim, H = nl_vit_mlp_width(&m->cfg, l); /* per block: pruned models differ */
  const int A = nl_vit_attn_width(&m->cfg, l);
  switch (k) {
    case NL_QL_QKV: return (lin_ref){B->qkv_w, B->qkv_b, 3 * A, D};
    case NL_QL_PROJ: return (lin_ref){B->proj_w, B->proj_b, D, A};
    case NL_QL_FC1: return (lin_ref){B->fc1_w, B->fc1_b, H, D};
    default: return (lin_ref){B->fc2_w, B->fc2_b, D, H};
  }
}

/* Group for a layer of ic inputs: requested 0 or >= ic: ic (per output
 * channel); else it must divide ic. -1 when not. */
static int eff_group(int group, int ic) {
  if (group <= 0 || group >= ic) return ic;
  return ic % group ? -1 : group;
}

/* ---- scale search ---- */

static void matmul_nt(float *out, const float *x, const float *w, int rows, int ic, int oc) {
  nl_gemm_tiles(0, 1, rows, oc, ic, 1.0f, x, ic, w, ic, 0.0f, out, oc, NULL, 256, 64);
}

static double mse(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    s += d * d;
  }
  return n ? s / (double)n : 0;
}

/* Error of x (w s)^Q / s against ref: the AWQ objective. */
static double scaled_error(const float *x, int rows, int ic, const float *w, int oc, int bits,
                           int group, int symmetric, const float *s, const float *ref, float *ws,
                           float *out) {
  for (int o = 0; o < oc; o++)
    for (int k = 0; k < ic; k++) ws[(size_t)o * ic + k] = w[(size_t)o * ic + k] * s[k];
  nl_qlinear q;
  if (nl_qlinear_quantize(&q, ws, oc, ic, bits, group, symmetric)) return INFINITY;
  nl_qlinear_dequantize(&q, ws);
  nl_qlinear_free(&q);
  for (int o = 0; o < oc; o++)
    for (int k = 0; k < ic; k++) ws[(size_t)o * ic + k] /= s[k];
  matmul_nt(out, x, ws, rows, ic, oc);
  return mse(out, ref, (size_t)rows * oc);
}

void nl_awq_search(const float *x, int rows, int ic, const float *w, int oc, int bits, int group,
                   float *s, float *alpha, double *err_best, double *err_rtn) {
  double *xm = nl_xcalloc((size_t)ic, sizeof(double));
  for (int r = 0; r < rows; r++)
    for (int k = 0; k < ic; k++) xm[k] += fabs((double)x[(size_t)r * ic + k]);
  for (int k = 0; k < ic; k++) xm[k] /= rows > 0 ? rows : 1;
  float *ref = nl_xmalloc(sizeof(float) * (size_t)rows * oc);
  float *out = nl_xmalloc(sizeof(float) * (size_t)rows * oc);
  float *ws = nl_xmalloc(sizeof(float) * (size_t)oc * ic);
  float *cand = nl_xmalloc(sizeof(float) * (size_t)ic);
  matmul_nt(ref, x, w, rows, ic, oc);
  double best = INFINITY;
  for (int g = 0; g < 20; g++) {
    const double a = g / 20.0;
    double lo = INFINITY, hi = 0;
    for (int k = 0; k < ic; k++) {
      double v = pow(xm[k], a);
      if (v < 1e-4) v = 1e-4;
      cand[k] = (float)v;
      lo = fmin(lo, v);
      hi = fmax(hi, v);
    }
    const double norm = sqrt(hi * lo);
    for (int k = 0; k < ic; k++) cand[k] = (float)(cand[k] / norm);
    double e = scaled_error(x, rows, ic, w, oc, bits, group, 0, cand, ref, ws, out);
    if (g == 0) *err_rtn = e;
    if (e < best) {
      best = e;
      *alpha = (float)a;
      memcpy(s, cand, sizeof(float) * (size_t)ic);
    }
  }
  *err_best = best;
  free(xm);
  free(ref);
  free(out);
  free(ws);
  free(cand);
}

void nl_smooth_scales(const float *x, int rows, int ic, const float *w, int oc, float alpha,
                      float *s) {
  for (int k = 0; k < ic; k++) {
    float xa = 0, wa = 0;
    for (int r = 0; r < rows; r++) xa = fmaxf(xa, fabsf(x[(size_t)r * ic + k]));
    for (int o = 0; o < oc; o++) wa = fmaxf(wa, fabsf(w[(size_t)o * ic + k]));
    xa = fmaxf(xa, 1e-5f);
    wa = fmaxf(wa, 1e-5f);
    s[k] = (float)(pow(xa, alpha) / pow(wa, 1.0 - alpha));
  }
}

/* ---- FP16 rounding of kept parts ---- */

static uint16_t f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u, mant = x & 0x7fffffu;
  int exp = (int)((x >> 23) & 0xff);
  if (exp == 255) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
  int e = exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    mant |= 0x800000u;
    int shift = 14 - e;
    uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
  return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 31, m = h & 0x3ffu, x;
  if (e == 0) {
    float v = ldexpf((float)m, -24);
    return sign ? -v : v;
  }
  if (e == 31) x = sign | 0x7f800000u | (m << 13);
  else x = sign | ((e - 15 + 127) << 23) | (m << 13);
  float f;
  memcpy(&f, &x, 4);
  return f;
}

/* The --keep-fp16 part a tensor belongs to (0: none). */
static unsigned tensor_part(const char *name) {
  if (strncmp(name, "head.", 5) == 0) return NL_QPART_HEAD;
  if (strncmp(name, "patch_embed.", 12) == 0) return NL_QPART_PATCH;
  int l, n = 0;
  if (sscanf(name, "blocks.%d.%n", &l, &n) == 1 && n > 0) {
    for (int k = 0; k < NL_QL_COUNT; k++) {
      size_t len = strlen(qlayer_names[k]);
      if (strncmp(name + n, qlayer_names[k], len) == 0 && name[n + len] == '.')
        return layer_part(k);
    }
  }
  return 0;
}

static void round_fp16(float *v, size_t n) {
  for (size_t i = 0; i < n; i++) v[i] = f16_to_f32(f32_to_f16(v[i]));
}

/* ---- quantizing a model ---- */

static float absmax(const float *x, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
  return m;
}

static int quantize_pass(nl_vit *m, const float *images, int n, const nl_quant_opts *o,
                         nl_quant_layer_report *rep, nl_vit_quant *q, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  const int D = c->dim, rows = n * c->tokens;
  nl_vit_acts acts;
  if (nl_vit_acts_init(&acts, c, n, 1, err)) return -1;
  acts.threads = 0;
  if (nl_vit_forward(m, &acts, images, n, NULL, NULL, err)) {
    nl_vit_acts_free(&acts);
    return -1;
  }
  const unsigned todo = ~o->fp16;
  int rc = 0;
  for (int l = 0; l < c->depth && !rc; l++) {
    const nl_vit_layer_acts *L = &acts.layer[l];
    const float *X[NL_QL_COUNT] = {L->ln1, L->atty, L->ln2, L->gelu};
    float *s[NL_QL_COUNT] = {0};
    float *ref[NL_QL_COUNT] = {0};
    /* scales, searched on the original weights */
    for (int k = 0; k < NL_QL_COUNT; k++) {
      if (!(todo & layer_part(k))) continue;
      lin_ref r = layer_ref(m, l, k);
      nl_quant_layer_report *rp = rep ? &rep[l * NL_QL_COUNT + k] : NULL;
      ref[k] = nl_xmalloc(sizeof(float) * (size_t)rows * r.oc);
      matmul_nt(ref[k], X[k], r.w, rows, r.ic, r.oc);
      const int g = o->acts == 8 ? r.ic : eff_group(o->group, r.ic);
      float alpha = 0;
      double eb = 0, er = 0;
      if (o->awq) {
        s[k] = nl_xmalloc(sizeof(float) * (size_t)r.ic);
        nl_awq_search(X[k], rows, r.ic, r.w, r.oc, o->bits, g, s[k], &alpha, &eb, &er);
      } else {
        float *one = nl_xmalloc(sizeof(float) * (size_t)r.ic);
        for (int i = 0; i < r.ic; i++) one[i] = 1;
        float *ws = nl_xmalloc(sizeof(float) * (size_t)r.ic * r.oc);
        float *out = nl_xmalloc(sizeof(float) * (size_t)rows * r.oc);
        er = eb = scaled_error(X[k], rows, r.ic, r.w, r.oc, o->bits, g, o->acts == 8, one, ref[k],
                                   ws, out);
        free(one);
        free(ws);
        free(out);
        if (o->acts == 8 && o->smooth > 0) {
          s[k] = nl_xmalloc(sizeof(float) * (size_t)r.ic);
          nl_smooth_scales(X[k], rows, r.ic, r.w, r.oc, o->smooth, s[k]);
          alpha = o->smooth;
        }
      }
      q->alpha[l * NL_QL_COUNT + k] = alpha;
      if (rp) {
        snprintf(rp->name, sizeof rp->name, "blocks.%d.%s", l, qlayer_names[k]);
        rp->alpha = alpha;
        rp->err_rtn = er;
        rp->err_best = eb;
      }
    }
    /* fold 1/s into the preceding operation (norm affine, v rows), or keep
     * it as the layer's input scale (fc2: GELU comes before), and s into
     * the weight's columns */
    nl_vit_block *B = &m->blocks[l];
    float *inscale = NULL;
    for (int k = 0; k < NL_QL_COUNT; k++) {
      if (!s[k]) continue;
      lin_ref r = layer_ref(m, l, k);
      for (int oo = 0; oo < r.oc; oo++)
        for (int i = 0; i < r.ic; i++) r.w[(size_t)oo * r.ic + i] *= s[k][i];
      if (k == NL_QL_QKV || k == NL_QL_FC1) {
        nl_norm *nm = k == NL_QL_QKV ? B->norm1 : B->norm2;
        for (int i = 0; i < D; i++) {
          nm->w[i] /= s[k][i];
          nm->b[i] /= s[k][i];
        }
      } else if (k == NL_QL_PROJ) {
        for (int i = 0; i < D; i++) {
          for (int j = 0; j < D; j++) B->qkv_w[(size_t)(2 * D + i) * D + j] /= s[k][i];
          if (B->qkv_b) B->qkv_b[2 * D + i] /= s[k][i];
        }
      } else {
        inscale = nl_xmalloc(sizeof(float) * (size_t)r.ic);
        for (int i = 0; i < r.ic; i++) inscale[i] = 1.0f / s[k][i];
      }
    }
    /* quantize, and the layer's own error on its (scaled) input */
    for (int k = 0; k < NL_QL_COUNT && !rc; k++) {
      if (!(todo & layer_part(k))) continue;
      lin_ref r = layer_ref(m, l, k);
      nl_qlinear *ql = &q->lin[l * NL_QL_COUNT + k];
      const int g = o->acts == 8 ? r.ic : eff_group(o->group, r.ic);
      if (g < 0 || nl_qlinear_quantize(ql, r.w, r.oc, r.ic, o->bits, g, o->acts == 8)) {
        rc = nl_fail(err, NL_EINPUT, "blocks.%d.%s: %d input channels cannot be split into groups of %d",
                     l, qlayer_names[k], r.ic, o->group);
        break;
      }
      if (k == NL_QL_FC2 && inscale) {
        ql->in_scale = inscale;
        inscale = NULL;
      }
      /* the layer's input as the quantized model computes it */
      float *xin = nl_xmalloc(sizeof(float) * (size_t)rows * r.ic);
      for (int i = 0; i < rows; i++)
        for (int j = 0; j < r.ic; j++) {
          float v = X[k][(size_t)i * r.ic + j];
          xin[(size_t)i * r.ic + j] = s[k] && k != NL_QL_FC2 ? v / s[k][j] : v;
        }
      if (o->acts == 8) {
        ql->acts = 8;
        ql->act_per_tensor = o->act_per_tensor;
        if (o->act_per_tensor) {
          float mx = 0;
          if (ql->in_scale) {
            for (int i = 0; i < rows; i++)
              for (int j = 0; j < r.ic; j++)
                mx = fmaxf(mx, fabsf(xin[(size_t)i * r.ic + j] * ql->in_scale[j]));
          } else {
            mx = absmax(xin, (size_t)rows * r.ic);
          }
          ql->act_scale = mx > 0 ? mx / 127.0f : 1.0f;
        }
      }
      /* against the FP32 layer with the scales applied (its output is the
       * original one, except qkv's v columns, divided by proj's scales) */
      float *out = nl_xmalloc(sizeof(float) * (size_t)rows * r.oc);
      float *ref2 = nl_xmalloc(sizeof(float) * (size_t)rows * r.oc);
      float *xe = xin;
      if (ql->in_scale) {
        xe = nl_xmalloc(sizeof(float) * (size_t)rows * r.ic);
        for (int i = 0; i < rows; i++)
          for (int j = 0; j < r.ic; j++)
            xe[(size_t)i * r.ic + j] = xin[(size_t)i * r.ic + j] * ql->in_scale[j];
      }
      matmul_nt(ref2, xe, r.w, rows, r.ic, r.oc);
      if (xe != xin) free(xe);
      char eb[200] = "";
      nl_qlinear_pack(ql, 0);
      if (nl_qlinear_forward(out, xin, ql, NULL, rows, eb, sizeof eb))
        rc = nl_fail(err, NL_EINTERNAL, "blocks.%d.%s: %s", l, qlayer_names[k], eb);
      else if (rep)
        rep[l * NL_QL_COUNT + k].err_final = mse(out, ref2, (size_t)rows * r.oc);
      free(out);
      free(ref2);
      free(xin);
      /* the parameter buffer keeps the weights as decoded (times the
       * input scale): the same function for every FP32 user */
      nl_qlinear_dequantize(ql, r.w);
      if (ql->in_scale)
        for (int oo = 0; oo < r.oc; oo++)
          for (int i = 0; i < r.ic; i++) r.w[(size_t)oo * r.ic + i] *= ql->in_scale[i];
      B->q[k] = ql;
    }
    free(inscale);
    for (int k = 0; k < NL_QL_COUNT; k++) {
      free(s[k]);
      free(ref[k]);
    }
  }
  nl_vit_acts_free(&acts);
  return rc;
}

int nl_vit_quantize(nl_vit *m, const float *images, int n, const nl_quant_opts *o, int threads,
                    nl_quant_layer_report *rep, nl_error *err) {
  if (m->quant) return nl_fail(err, NL_EINPUT, "the model is quantized already");
  if (o->bits != 8 && o->bits != 4 && o->bits != 3)
    return nl_fail(err, NL_EINPUT, "--weights %d: want 8, 4 or 3", o->bits);
  if (o->acts != 0 && o->acts != 8) return nl_fail(err, NL_EINPUT, "--acts %d: want 8", o->acts);
  if (o->acts == 8 && (o->bits != 8 || o->awq))
    return nl_fail(err, NL_EINPUT, "--acts 8 needs --weights 8 and --method rtn (the smoothing is SmoothQuant's)");
  if (o->group < 0) return nl_fail(err, NL_EINPUT, "--group %d: want a positive number", o->group);
  if (o->bits == 4 && o->group > 0 && o->group % 2)
    return nl_fail(err, NL_EINPUT, "--group %d: 4-bit groups must be even", o->group);
  if (o->bits == 3 && o->group > 0 && o->group % 8)
    return nl_fail(err, NL_EINPUT, "--group %d: 3-bit groups must be multiples of 8 (8 weights "
                   "in 3 bytes)", o->group);
  if (n < 1) return nl_fail(err, NL_EINPUT, "no calibration images");
  nl_vit_quant *q = quant_new(m->cfg.depth);
  q->bits = o->bits;
  q->group = o->group;
  q->symmetric = o->acts == 8;
  q->acts = o->acts;
  q->act_per_tensor = o->act_per_tensor;
  q->smooth = o->acts == 8 ? o->smooth : 0;
  q->fp16 = o->fp16;
  snprintf(q->method, sizeof q->method, "%s", o->awq ? "awq" : o->acts == 8 && o->smooth > 0 ? "smoothquant" : "rtn");
  if (rep) memset(rep, 0, sizeof *rep * (size_t)m->cfg.depth * NL_QL_COUNT);
  int outer = nl_threads_enter(threads);
  int rc = quantize_pass(m, images, n, o, rep, q, err);
  nl_threads_leave(outer);
  if (!rc) {
    for (int i = 0; i < m->ntensors; i++)
      if (tensor_part(m->tensors[i].name) & o->fp16)
        round_fp16(m->params + m->tensors[i].offset, m->tensors[i].numel);
  }
  m->quant = q;
  if (rc) {
    /* the model is half changed: the caller frees it */
    return -1;
  }
  return 0;
}

/* ---- sizes and names ---- */

static int qweight_layer(const nl_vit_quant *q, const nl_vit_config *c, const char *name,
                         const char *suffix) {
  int l, n = 0;
  if (!q || sscanf(name, "blocks.%d.%n", &l, &n) != 1 || n == 0 || l < 0 || l >= c->depth)
    return -1;
  for (int k = 0; k < NL_QL_COUNT; k++) {
    size_t len = strlen(qlayer_names[k]);
    if (strncmp(name + n, qlayer_names[k], len) == 0 && strcmp(name + n + len, suffix) == 0 &&
        q->lin[l * NL_QL_COUNT + k].bits)
      return l * NL_QL_COUNT + k;
  }
  return -1;
}

int nl_quant_is_qweight(const nl_vit_quant *q, const nl_vit_config *c, const char *name) {
  return qweight_layer(q, c, name, ".weight") >= 0;
}

int nl_quant_is_extra(const nl_vit_quant *q, const nl_vit_config *c, const char *name) {
  return qweight_layer(q, c, name, ".weight_scale") >= 0 ||
         qweight_layer(q, c, name, ".weight_zero") >= 0 ||
         qweight_layer(q, c, name, ".input_scale") >= 0 ||
         qweight_layer(q, c, name, ".act_scale") >= 0;
}

size_t nl_vit_tensor_stored_bytes(const nl_vit *m, int i) {
  const nl_param *p = &m->tensors[i];
  int li = qweight_layer(m->quant, &m->cfg, p->name, ".weight");
  if (li >= 0) return nl_qlinear_bytes(&m->quant->lin[li]);
  if (m->quant && (tensor_part(p->name) & m->quant->fp16)) return p->numel * 2;
  return p->numel * 4;
}

size_t nl_vit_stored_bytes(const nl_vit *m) {
  size_t b = 0;
  for (int i = 0; i < m->ntensors; i++) b += nl_vit_tensor_stored_bytes(m, i);
  return b;
}

void nl_vit_precision(const nl_vit *m, char *buf, size_t cap) {
  const nl_vit_quant *q = m->quant;
  if (!q && m->bf16) {
    snprintf(buf, cap, "bf16 (BF16 products in oneDNN, FP32 accumulation)");
    return;
  }
  if (!q) {
    snprintf(buf, cap, "fp32");
    return;
  }
  char g[32] = "";
  if (q->group > 0) snprintf(g, sizeof g, " g%d", q->group);
  if (q->acts == 8)
    snprintf(buf, cap, "W8A8 %s (INT8 products %s, activations per %s)", q->method,
             nl_igemm_available() ? "on AVX512-VNNI" : "in oneDNN",
             q->act_per_tensor ? "tensor" : "token");
  else
    snprintf(buf, cap, "W%d%s %s weight-only (dequantized per tile)", q->bits, g, q->method);
  if (q->fp16) {
    size_t p = strlen(buf);
    snprintf(buf + p, cap - p, ", FP16:");
    for (int i = 0; i < NPARTS; i++)
      if (i != 2 && i != 3 && (q->fp16 & parts[i].mask)) {
        p = strlen(buf);
        snprintf(buf + p, cap - p, " %s", parts[i].name);
      }
  }
}

/* ---- the scheme in the file ---- */

nl_vit_quant *nl_quant_scheme_parse(const char *text, const nl_vit_config *c, const char *path,
                                    nl_error *err) {
  json_error_t je;
  json_t *root = json_loads(text, 0, &je);
  if (!root || !json_is_object(root)) {
    json_decref(root);
    nl_fail(err, NL_EINPUT, "%s: __metadata__ quantization is not a JSON object", path);
    return NULL;
  }
  nl_vit_quant *q = quant_new(c->depth);
  const char *bad = NULL;
  json_t *v;
  v = json_object_get(root, "bits");
  q->bits = json_is_integer(v) ? (int)json_integer_value(v) : 0;
  if (q->bits != 8 && q->bits != 4 && q->bits != 3) bad = "\"bits\" must be 8, 4 or 3";
  v = json_object_get(root, "group");
  q->group = json_is_integer(v) ? (int)json_integer_value(v) : 0;
  if (!bad && ((v && !json_is_integer(v)) || q->group < 0)) bad = "\"group\" must be an integer >= 0";
  v = json_object_get(root, "symmetric");
  q->symmetric = json_is_true(v);
  v = json_object_get(root, "acts");
  q->acts = json_is_integer(v) ? (int)json_integer_value(v) : 0;
  if (!bad && q->acts != 0 && q->acts != 8) bad = "\"acts\" must be 0 or 8";
  if (!bad && q->acts == 8 && (q->bits != 8 || !q->symmetric))
    bad = "\"acts\": 8 needs 8-bit symmetric weights";
  if (!bad && q->bits != 8 && q->symmetric) bad = "4- and 3-bit weights are asymmetric";
  v = json_object_get(root, "act_mode");
  if (!bad && v && json_is_string(v)) {
    if (strcmp(json_string_value(v), "tensor") == 0) q->act_per_tensor = 1;
    else if (strcmp(json_string_value(v), "token") != 0) bad = "\"act_mode\" must be token or tensor";
  }
  v = json_object_get(root, "method");
  snprintf(q->method, sizeof q->method, "%s", json_is_string(v) ? json_string_value(v) : "rtn");
  v = json_object_get(root, "smooth");
  q->smooth = json_is_number(v) ? (float)json_number_value(v) : 0;
  v = json_object_get(root, "fp16");
  if (!bad && v) {
    if (!json_is_array(v)) bad = "\"fp16\" must be a list of part names";
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
      unsigned mk;
      nl_error pe;
      if (bad) break;
      if (!json_is_string(e) || nl_quant_parts_parse(json_string_value(e), &mk, &pe))
        bad = "\"fp16\" names an unknown part";
      else
        q->fp16 |= mk;
    }
  }
  v = json_object_get(root, "layers");
  char name[96] = "";
  if (!bad && !json_is_array(v)) bad = "\"layers\" must be a list of layer names";
  if (!bad) {
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
      int l, n = 0, found = 0;
      const char *s = json_is_string(e) ? json_string_value(e) : "";
      snprintf(name, sizeof name, "%s", s);
      if (sscanf(s, "blocks.%d.%n", &l, &n) == 1 && n > 0 && l >= 0 && l < c->depth)
        for (int k = 0; k < NL_QL_COUNT && !found; k++)
          if (strcmp(s + n, qlayer_names[k]) == 0) {
            found = 1;
            q->lin[l * NL_QL_COUNT + k].bits = q->bits; /* marked; read by nl_quant_attach */
            json_t *al = json_object_get(json_object_get(root, "alpha"), s);
            if (json_is_number(al)) q->alpha[l * NL_QL_COUNT + k] = (float)json_number_value(al);
          }
      if (!found) {
        bad = "\"layers\" names something that is not a block's qkv, proj, fc1 or fc2";
        break;
      }
    }
  }
  json_decref(root);
  if (bad) {
    nl_fail(err, NL_EINPUT, "%s: __metadata__ quantization: %s%s%s", path, bad, name[0] ? ": " : "",
            name);
    nl_vit_quant_free(q);
    return NULL;
  }
  return q;
}

static int need_tensor(const nl_st_file *f, const char *path, const char *name, nl_dtype dt,
                       int ndim, const int64_t *shape, const nl_st_tensor **out, nl_error *err) {
  const nl_st_tensor *t = nl_st_find(f, name);
  if (!t) return nl_fail(err, NL_EINPUT, "%s: tensor '%s' is missing (quantized layer)", path, name);
  int same = t->dtype == dt && t->ndim == ndim;
  for (int d = 0; same && d < ndim; d++) same = shape[d] < 0 || t->shape[d] == shape[d];
  if (!same) {
    char want[64] = "", have[64] = "";
    for (int d = 0; d < ndim; d++) {
      size_t p = strlen(want);
      if (shape[d] < 0) snprintf(want + p, sizeof want - p, "%sN", d ? ", " : "");
      else snprintf(want + p, sizeof want - p, "%s%lld", d ? ", " : "", (long long)shape[d]);
    }
    for (int d = 0; d < t->ndim; d++) {
      size_t p = strlen(have);
      snprintf(have + p, sizeof have - p, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    }
    return nl_fail(err, NL_EINPUT, "%s: tensor '%s': %s [%s], expected %s [%s]", path, name,
                   nl_dtype_name(t->dtype), have, nl_dtype_name(dt), want);
  }
  *out = t;
  return 0;
}

static int read_layer(nl_vit *m, nl_vit_quant *q, int l, int k, const nl_st_file *f,
                      const char *path, nl_error *err) {
  lin_ref r = layer_ref(m, l, k);
  char base[64], nm[96];
  snprintf(base, sizeof base, "blocks.%d.%s", l, qlayer_names[k]);
  const nl_st_tensor *tw, *ts, *tz, *ti = NULL, *ta = NULL;
  const int bits = q->bits;
  if (!nl_qlinear_ic_ok(bits, r.ic))
    return nl_fail(err, NL_EINPUT, "%s: %s has %d inputs, which %d-bit weights cannot pack", path,
                   base, r.ic, bits);
  int64_t ws[2] = {r.oc, (int64_t)nl_qlinear_row_bytes(bits, r.ic)}, ss[2] = {r.oc, -1};
  snprintf(nm, sizeof nm, "%s.weight", base);
  if (need_tensor(f, path, nm, bits < 8 ? NL_DT_U8 : NL_DT_I8, 2, ws, &tw, err)) return -1;
  snprintf(nm, sizeof nm, "%s.weight_scale", base);
  if (need_tensor(f, path, nm, NL_DT_F32, 2, ss, &ts, err)) return -1;
  const int ng = (int)ts->shape[1];
  if (ng < 1 || r.ic % ng || (bits == 4 && (r.ic / ng) % 2) || (bits == 3 && (r.ic / ng) % 8))
    return nl_fail(err, NL_EINPUT, "%s: tensor '%s': %d groups do not split %d input channels%s",
                   path, nm, ng, r.ic, bits == 4 ? " into even groups"
                                       : bits == 3 ? " into groups of a multiple of 8" : "");
  ss[1] = ng;
  snprintf(nm, sizeof nm, "%s.weight_zero", base);
  if (need_tensor(f, path, nm, bits < 8 ? NL_DT_U8 : NL_DT_I8, 2, ss, &tz, err)) return -1;
  snprintf(nm, sizeof nm, "%s.input_scale", base);
  if (nl_st_find(f, nm)) {
    int64_t is[1] = {r.ic};
    if (need_tensor(f, path, nm, NL_DT_F32, 1, is, &ti, err)) return -1;
  }
  snprintf(nm, sizeof nm, "%s.act_scale", base);
  if (nl_st_find(f, nm) || (q->acts == 8 && q->act_per_tensor)) {
    int64_t as[1] = {1};
    if (need_tensor(f, path, nm, NL_DT_F32, 1, as, &ta, err)) return -1;
  }
  nl_qlinear *ql = &q->lin[l * NL_QL_COUNT + k];
  nl_qlinear_alloc(ql, r.oc, r.ic, bits, ng, q->symmetric);
  memcpy(ql->q, tw->raw, tw->end - tw->begin);
  nl_st_release(f, tw);
  nl_st_to_f32(ts, ql->scale);
  int qmin, qmax;
  nl_qrange(bits, q->symmetric, &qmin, &qmax);
  for (size_t i = 0; i < (size_t)r.oc * ng; i++) {
    int32_t z = bits < 8 ? ((const uint8_t *)tz->raw)[i] : ((const int8_t *)tz->raw)[i];
    ql->zero[i] = z;
    if (!(isfinite(ql->scale[i]) && ql->scale[i] > 0))
      return nl_fail(err, NL_EINPUT, "%s: tensor '%s.weight_scale': entry %zu is %g, not a positive number",
                     path, base, i, (double)ql->scale[i]);
    if (z < qmin || z > qmax || (q->symmetric && z != 0))
      return nl_fail(err, NL_EINPUT, "%s: tensor '%s.weight_zero': entry %zu is %d, outside [%d, %d]",
                     path, base, i, (int)z, q->symmetric ? 0 : qmin, q->symmetric ? 0 : qmax);
  }
  if (q->symmetric)
    for (int o = 0; o < r.oc; o++)
      for (int i = 0; i < r.ic; i++)
        if (nl_qlinear_get(ql, o, i) < qmin)
          return nl_fail(err, NL_EINPUT, "%s: tensor '%s.weight' holds %d, outside [%d, %d]", path,
                         base, (int)nl_qlinear_get(ql, o, i), qmin, qmax);
  if (ti) {
    ql->in_scale = nl_xmalloc(sizeof(float) * (size_t)r.ic);
    nl_st_to_f32(ti, ql->in_scale);
    for (int i = 0; i < r.ic; i++)
      if (!isfinite(ql->in_scale[i]))
        return nl_fail(err, NL_EINPUT, "%s: tensor '%s.input_scale': entry %d is not finite", path,
                       base, i);
  }
  ql->acts = q->acts;
  ql->act_per_tensor = q->act_per_tensor;
  if (ta) {
    nl_st_to_f32(ta, &ql->act_scale);
    if (!(isfinite(ql->act_scale) && ql->act_scale > 0))
      return nl_fail(err, NL_EINPUT, "%s: tensor '%s.act_scale' is %g, not a positive number", path,
                     base, (double)ql->act_scale);
  }
  nl_vit_block *B = &m->blocks[l];
  if (q->int_only) {
    /* no FP32 copy: the view is dropped, its part of m->params untouched */
    float **view[NL_QL_COUNT] = {&B->qkv_w, &B->proj_w, &B->fc1_w, &B->fc2_w};
    *view[k] = NULL;
  } else {
    nl_qlinear_dequantize(ql, r.w);
    if (ql->in_scale)
      for (int o = 0; o < r.oc; o++)
        for (int i = 0; i < r.ic; i++) r.w[(size_t)o * r.ic + i] *= ql->in_scale[i];
  }
  B->q[k] = ql;
  return 0;
}

int nl_vit_tensor_fp32_absent(const nl_vit *m, int i) {
  if (nl_vit_weight_packed(m, m->tensors[i].name)) return 1; /* packed at load */
  return m->quant && m->quant->int_only &&
         qweight_layer(m->quant, &m->cfg, m->tensors[i].name, ".weight") >= 0;
}

int nl_vit_quant_check_trainable(const nl_vit *m, const char *path, const char *what,
                                 nl_error *err) {
  if (!m->quant) return 0;
  char prec[160];
  nl_vit_precision(m, prec, sizeof prec);
  return nl_fail(err, NL_EINPUT,
                 "%s: the model is quantized (%s): %s would change FP32 copies of its integer "
                 "weights that saving does not keep; %s the FP32 model, then quantize it",
                 path, prec, what, what);
}

int nl_quant_attach(nl_vit *m, nl_vit_quant *q, const nl_st_file *f, const char *path,
                    nl_error *err) {
  m->quant = q;
  for (int l = 0; l < m->cfg.depth; l++)
    for (int k = 0; k < NL_QL_COUNT; k++) {
      nl_qlinear *ql = &q->lin[l * NL_QL_COUNT + k];
      if (!ql->bits) continue;
      ql->bits = 0; /* the mark; read_layer sets the layer up */
      if (read_layer(m, q, l, k, f, path, err)) return -1;
      /* W8A8 on AVX512-VNNI: packed for the kernel once; an inference-only
       * load holds the weights only so */
      nl_qlinear_pack(ql, q->int_only);
    }
  return 0;
}

int nl_quant_write(const nl_vit *m, nl_st_writer *w, nl_error *err) {
  const nl_vit_quant *q = m->quant;
  char nm[96];
  for (int i = 0; i < m->ntensors; i++) {
    const nl_param *p = &m->tensors[i];
    const float *data = m->params + p->offset;
    int li = qweight_layer(q, &m->cfg, p->name, ".weight");
    int rc = 0;
    if (li >= 0) {
      const nl_qlinear *ql = &q->lin[li];
      char base[64];
      snprintf(base, sizeof base, "%.*s", (int)(strlen(p->name) - 7), p->name);
      int64_t ws[2] = {ql->oc, (int64_t)nl_qlinear_row_bytes(ql->bits, ql->ic)},
              ss[2] = {ql->oc, ql->ngroups};
      size_t ng = (size_t)ql->oc * ql->ngroups;
      uint8_t *z = nl_xmalloc(ng);
      for (size_t j = 0; j < ng; j++) z[j] = (uint8_t)(ql->bits < 8 ? ql->zero[j] : (int8_t)ql->zero[j]);
      nl_dtype it = ql->bits < 8 ? NL_DT_U8 : NL_DT_I8;
      uint8_t *raw = ql->q;
      if (!raw) { /* held only packed (nl_qlinear_pack) */
        raw = nl_xmalloc((size_t)ws[0] * (size_t)ws[1]);
        nl_qlinear_raw(ql, raw);
      }
      rc = nl_st_writer_add_raw(w, p->name, it, raw, 2, ws, err);
      if (raw != ql->q) free(raw);
      snprintf(nm, sizeof nm, "%s.weight_scale", base);
      if (!rc) rc = nl_st_writer_add(w, nm, ql->scale, 2, ss, err);
      snprintf(nm, sizeof nm, "%s.weight_zero", base);
      if (!rc) rc = nl_st_writer_add_raw(w, nm, it, z, 2, ss, err);
      free(z);
      if (!rc && ql->in_scale) {
        int64_t is[1] = {ql->ic};
        snprintf(nm, sizeof nm, "%s.input_scale", base);
        rc = nl_st_writer_add(w, nm, ql->in_scale, 1, is, err);
      }
      if (!rc && ql->acts == 8 && ql->act_per_tensor) {
        int64_t as[1] = {1};
        snprintf(nm, sizeof nm, "%s.act_scale", base);
        rc = nl_st_writer_add(w, nm, &ql->act_scale, 1, as, err);
      }
    } else if (tensor_part(p->name) & q->fp16) {
      uint16_t *h = nl_xmalloc(sizeof(uint16_t) * (p->numel ? p->numel : 1));
      for (size_t j = 0; j < p->numel; j++) h[j] = f32_to_f16(data[j]);
      rc = nl_st_writer_add_raw(w, p->name, NL_DT_F16, h, p->ndim, p->shape, err);
      free(h);
    } else {
      rc = nl_st_writer_add(w, p->name, data, p->ndim, p->shape, err);
    }
    if (rc) return -1;
  }
  json_t *root = json_pack("{s:i, s:i, s:b, s:s, s:i, s:s, s:f}", "bits", q->bits, "group",
                           q->group, "symmetric", q->symmetric, "method", q->method, "acts",
                           q->acts, "act_mode", q->act_per_tensor ? "tensor" : "token", "smooth",
                           (double)q->smooth);
  json_t *fp = json_array(), *layers = json_array(), *alpha = json_object();
  for (int i = 0; i < NPARTS; i++)
    if (i != 2 && i != 3 && (q->fp16 & parts[i].mask)) json_array_append_new(fp, json_string(parts[i].name));
  for (int l = 0; l < m->cfg.depth; l++)
    for (int k = 0; k < NL_QL_COUNT; k++) {
      if (!q->lin[l * NL_QL_COUNT + k].bits) continue;
      snprintf(nm, sizeof nm, "blocks.%d.%s", l, qlayer_names[k]);
      json_array_append_new(layers, json_string(nm));
      if (q->alpha[l * NL_QL_COUNT + k] >= 0)
        json_object_set_new(alpha, nm, json_real(round(q->alpha[l * NL_QL_COUNT + k] * 100.0) / 100.0));
    }
  json_object_set_new(root, "fp16", fp);
  json_object_set_new(root, "layers", layers);
  json_object_set_new(root, "alpha", alpha);
  char *text = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT);
  json_decref(root);
  nl_st_writer_meta(w, "quantization", text);
  free(text);
  return 0;
}
