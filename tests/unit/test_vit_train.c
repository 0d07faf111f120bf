/* Unit tests for the whole-model trainer (src/train/vit_train.c).
 *
 * Gradient check: a small random ViT (img 8, patch 4, dim 8, depth 2,
 * heads 2, classes 3, layer scale; also with block 1 head-pruned to 1 of its
 * 2 heads), one norm slot of each kind (LayerNorm,
 * DyT, expression), drop path with masks drawn by the trainer. The loss is
 * recomputed by an independent double-precision forward written here (the
 * expression in double by nl_eval1), and a few entries of every parameter
 * tensor and every DyT alpha are checked against central differences of it
 * (h = 1e-5: truncation ~1e-10, rounding ~1e-11). The analytic gradient is
 * the float engine's, with float rounding (~1e-6 relative, observed); the
 * bound |a - n| <= 1e-3 |n| + 1e-4 max|n| is far above that and far below
 * the error of a wrong or missing term. Both for cross entropy and for the
 * distillation loss. The same on a 4-block model under an attention-reuse
 * plan (block 1 applying block 0's probabilities, block 2 a linear and
 * block 3 an mlp transformation block, model/reuse_plan.h): the reference
 * forward follows the plan, and the TB parameters are checked too.
 *
 * AdamW through the trainer: after one step every entry of a decayed and a
 * non-decayed tensor equals the first-step formula written out here;
 * frozen groups stay untouched. A short run on 200 Fashion-MNIST images
 * lowers the loss. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/rng.h"
#include "base/threads.h"
#include "data/dataset.h"
#include "expr/expr.h"
#include "model/reuse_plan.h"
#include "model/safetensors.h"
#include "model/vit.h"
#include "train/augment.h"
#include "train/evaluate.h"
#include "train/train_opts.h"
#include "train/vit_train.h"

/* ---------------- a small random model, written and loaded ---------------- */

typedef struct {
  int img, patch, dim, depth, heads, classes, hidden, ls, avg;
  int heads1; /* > 0: block 1 has that many heads (a head-pruned block) */
} small_cfg;

static void add(nl_st_writer *w, nl_rng *r, const char *name, int ndim, const int64_t *shape,
                float lo, float hi) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
  float *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * (float)nl_rng_uniform(r);
  nl_error err;
  assert_int_equal(nl_st_writer_add(w, name, v, ndim, shape, &err), 0);
  free(v);
}

static void write_model(const char *path, const small_cfg *c, uint64_t seed) {
  nl_rng r;
  nl_rng_seed(&r, seed);
  nl_st_writer *w = nl_st_writer_new();
  const int64_t D = c->dim, G = c->img / c->patch, T = G * G + 1, Hm = c->hidden;
  char n[96];
  add(w, &r, "cls_token", 3, (int64_t[]){1, 1, D}, -0.5f, 0.5f);
  add(w, &r, "pos_embed", 3, (int64_t[]){1, T, D}, -0.5f, 0.5f);
  add(w, &r, "patch_embed.proj.weight", 4, (int64_t[]){D, 1, c->patch, c->patch}, -0.4f, 0.4f);
  add(w, &r, "patch_embed.proj.bias", 1, (int64_t[]){D}, -0.2f, 0.2f);
  for (int l = 0; l < c->depth; l++) {
#define T2(suf, a, b, lo, hi) \
  snprintf(n, sizeof n, "blocks.%d." suf, l), add(w, &r, n, 2, (int64_t[]){a, b}, lo, hi)
#define T1(suf, a, lo, hi) \
  snprintf(n, sizeof n, "blocks.%d." suf, l), add(w, &r, n, 1, (int64_t[]){a}, lo, hi)
    T1("norm1.weight", D, 0.7f, 1.3f);
    T1("norm1.bias", D, -0.2f, 0.2f);
    const int64_t A = l == 1 && c->heads1 ? c->heads1 * (D / c->heads) : D;
    T2("attn.qkv.weight", 3 * A, D, -0.5f, 0.5f);
    T1("attn.qkv.bias", 3 * A, -0.2f, 0.2f);
    T2("attn.proj.weight", D, A, -0.5f, 0.5f);
    T1("attn.proj.bias", D, -0.2f, 0.2f);
    if (c->ls) T1("ls1.gamma", D, 0.3f, 0.9f);
    T1("norm2.weight", D, 0.7f, 1.3f);
    T1("norm2.bias", D, -0.2f, 0.2f);
    T2("mlp.fc1.weight", Hm, D, -0.5f, 0.5f);
    T1("mlp.fc1.bias", Hm, -0.2f, 0.2f);
    T2("mlp.fc2.weight", D, Hm, -0.5f, 0.5f);
    T1("mlp.fc2.bias", D, -0.2f, 0.2f);
    if (c->ls) T1("ls2.gamma", D, 0.3f, 0.9f);
#undef T1
#undef T2
  }
  const char *fn = c->avg ? "fc_norm" : "norm";
  snprintf(n, sizeof n, "%s.weight", fn);
  add(w, &r, n, 1, (int64_t[]){D}, 0.7f, 1.3f);
  snprintf(n, sizeof n, "%s.bias", fn);
  add(w, &r, n, 1, (int64_t[]){D}, -0.2f, 0.2f);
  add(w, &r, "head.weight", 2, (int64_t[]){c->classes, D}, -0.8f, 0.8f);
  add(w, &r, "head.bias", 1, (int64_t[]){c->classes}, -0.2f, 0.2f);
  char ma[512];
  snprintf(ma, sizeof ma,
           "{\"img_size\": %d, \"in_chans\": 1, \"patch_size\": %d, \"embed_dim\": %d, "
           "\"depth\": %d, \"num_heads\": %d, \"mlp_ratio\": %g, \"num_classes\": %d, "
           "\"global_pool\": \"%s\"}",
           c->img, c->patch, c->dim, c->depth, c->heads, (double)c->hidden / c->dim, c->classes,
           c->avg ? "avg" : "token");
  nl_st_writer_meta(w, "model_args", ma);
  nl_error err;
  if (nl_st_writer_save(w, path, &err)) fail_msg("%s", err.msg);
  nl_st_writer_free(w);
}

static void load_small(nl_vit *m, const small_cfg *c, uint64_t seed) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/nl_vt_%d_%d.safetensors", (int)getpid(), (int)seed);
  write_model(path, c, seed);
  nl_error err;
  if (nl_vit_load(m, path, NULL, &err)) fail_msg("%s", err.msg);
  unlink(path);
}

/* blocks.0.norm1 LayerNorm, blocks.0.norm2 DyT, blocks.1.norm1 expression,
 * blocks.1.norm2 DyT, final norm expression. */
static const char *EXPR_F = "tanh(0.8 * x) * 0.6 + x / (1 + x * x) * 0.4";

static void set_kinds(nl_vit *m) {
  nl_prog p;
  nl_prog_init(&p);
  nl_error err;
  if (nl_parse(EXPR_F, 1, &p, &err)) fail_msg("%s", err.msg);
  nl_norm_set_dyt(m, m->blocks[0].norm2, 0.7f);
  assert_int_equal(nl_norm_set_expr(m, m->blocks[1].norm1, &p, &err), 0);
  nl_norm_set_dyt(m, m->blocks[1].norm2, 1.3f);
  assert_int_equal(nl_norm_set_expr(m, m->final_norm, &p, &err), 0);
  nl_prog_free(&p);
}

/* ---------------- double-precision reference forward ---------------- */

typedef struct {
  const nl_vit *m;
  double *P;          /* parameters */
  double *alpha;      /* per norm slot */
  const float *img;
  const int32_t *y;
  int B;
  const float *dp;    /* [depth][2][B] drop-path scales */
  const float *teacher; /* logits or NULL */
  double tau, lambda;
  double *TB;         /* the reuse plan's TB parameters (NULL: no plan) */
} ref_ctx;

static const double *tbp(const ref_ctx *c, const float *view) {
  return c->TB + (view - c->m->reuse->params);
}

static const double *prm(const ref_ctx *c, const float *view) {
  return c->P + (view - c->m->params);
}

static void r_norm(const ref_ctx *c, const nl_norm *n, double *out, const double *x, int N,
                   int D) {
  const double *w = prm(c, n->w), *b = prm(c, n->b);
  const double a = c->alpha[n - c->m->norms];
  for (int i = 0; i < N; i++) {
    const double *r = x + (size_t)i * D;
    double *o = out + (size_t)i * D;
    if (n->kind == NL_NORM_LAYERNORM) {
      double mu = 0, v = 0;
      for (int k = 0; k < D; k++) mu += r[k];
      mu /= D;
      for (int k = 0; k < D; k++) v += (r[k] - mu) * (r[k] - mu);
      v /= D;
      for (int k = 0; k < D; k++) o[k] = (r[k] - mu) / sqrt(v + c->m->cfg.eps) * w[k] + b[k];
    } else if (n->kind == NL_NORM_DYT) {
      for (int k = 0; k < D; k++) o[k] = tanh(a * r[k]) * w[k] + b[k];
    } else {
      for (int k = 0; k < D; k++) o[k] = nl_eval1(n->prog, r[k]) * w[k] + b[k];
    }
  }
}

static void r_lin(double *out, const double *x, const double *w, const double *b, int N, int I,
                  int O) {
  for (int i = 0; i < N; i++)
    for (int o = 0; o < O; o++) {
      double s = b ? b[o] : 0;
      for (int k = 0; k < I; k++) s += x[(size_t)i * I + k] * w[(size_t)o * I + k];
      out[(size_t)i * O + o] = s;
    }
}

static double ref_loss(void *vp) {
  const ref_ctx *c = vp;
  const nl_vit *m = c->m;
  const nl_vit_config *cf = &m->cfg;
  const int B = c->B, S = cf->img_size, P = cf->patch, G = cf->grid, D = cf->dim;
  const int T = cf->tokens, Hm = cf->mlp_hidden, NH = cf->heads, hd = D / NH, K = cf->classes;
  const int pre = cf->class_token;
  double *x = calloc((size_t)B * T * D, sizeof *x), *h = calloc((size_t)B * T * D, sizeof *x);
  double *qkv = calloc((size_t)B * T * 3 * D, sizeof *x), *ao = calloc((size_t)B * T * D, 8);
  double *pr = calloc((size_t)B * T * D, 8), *f1 = calloc((size_t)B * T * Hm, 8);
  double *f2 = calloc((size_t)B * T * D, 8);
  const double *pw = prm(c, m->patch_w), *pb = prm(c, m->patch_b), *pos = prm(c, m->pos_embed);
  for (int b = 0; b < B; b++) {
    if (pre)
      for (int d = 0; d < D; d++) x[(size_t)b * T * D + d] = prm(c, m->cls_token)[d] + pos[d];
    for (int gy = 0; gy < G; gy++)
      for (int gx = 0; gx < G; gx++)
        for (int d = 0; d < D; d++) {
          double s = pb[d];
          for (int ky = 0; ky < P; ky++)
            for (int kx = 0; kx < P; kx++)
              s += pw[(size_t)d * P * P + ky * P + kx] *
                   c->img[(size_t)b * S * S + (size_t)(gy * P + ky) * S + gx * P + kx];
          int t = pre + gy * G + gx;
          x[((size_t)b * T + t) * D + d] = s + pos[(size_t)t * D + d];
        }
  }
  const int N = B * T;
  const nl_vit_reuse *R = m->reuse;
  double *probs = calloc((size_t)cf->depth * B * NH * T * T, 8); /* per block */
  double *outs = calloc((size_t)cf->depth * N * D, 8);           /* attention outputs */
  for (int l = 0; l < cf->depth; l++) {
    const nl_vit_block *bl = &m->blocks[l];
    const float *dp1 = c->dp + (size_t)(2 * l) * B, *dp2 = dp1 + B;
    const int src = R ? R->src[l] : -1;
    double *Pl = probs + (size_t)l * B * NH * T * T;
    const int NHl = nl_vit_heads(cf, l), A = NHl * hd; /* head-pruned blocks have fewer */
    if (src >= 0 && R->tb[l] != NL_TB_NONE) {
      const double *zs = outs + (size_t)src * N * D;
      if (R->tb[l] == NL_TB_LINEAR) {
        r_lin(pr, zs, tbp(c, R->w1[l]), tbp(c, R->b1[l]), N, D, D);
      } else {
        const int H = R->hidden[l];
        double *hb = calloc((size_t)N * H, 8);
        r_lin(hb, zs, tbp(c, R->w1[l]), tbp(c, R->b1[l]), N, D, H);
        for (size_t i = 0; i < (size_t)N * H; i++) hb[i] = 0.5 * hb[i] * (1 + erf(hb[i] / sqrt(2.0)));
        r_lin(pr, hb, tbp(c, R->w2[l]), tbp(c, R->b2[l]), N, H, D);
        free(hb);
      }
    } else {
    r_norm(c, bl->norm1, h, x, N, D);
    r_lin(qkv, h, prm(c, bl->qkv_w), prm(c, bl->qkv_b), N, D, 3 * A);
    if (src >= 0) /* the source's probabilities, as it applied them */
      memcpy(Pl, probs + (size_t)src * B * NH * T * T, sizeof(double) * B * NH * T * T);
    for (int b = 0; b < B; b++)
      for (int hh = 0; hh < NHl; hh++)
        for (int i = 0; i < T; i++) {
          double *s = Pl + (((size_t)b * NH + hh) * T + i) * T, mx = -1e300, z = 0;
          if (src < 0) {
            const double *q = qkv + ((size_t)b * T + i) * 3 * A + hh * hd;
            for (int j = 0; j < T; j++) {
              const double *k = qkv + ((size_t)b * T + j) * 3 * A + A + hh * hd;
              double v = 0;
              for (int e = 0; e < hd; e++) v += q[e] * k[e];
              s[j] = v / sqrt((double)hd);
              mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < T; j++) z += s[j] = exp(s[j] - mx);
            for (int j = 0; j < T; j++) s[j] /= z;
          }
          for (int e = 0; e < hd; e++) {
            double o = 0;
            for (int j = 0; j < T; j++)
              o += s[j] * qkv[((size_t)b * T + j) * 3 * A + 2 * A + hh * hd + e];
            ao[((size_t)b * T + i) * A + hh * hd + e] = o;
          }
        }
    r_lin(pr, ao, prm(c, bl->proj_w), prm(c, bl->proj_b), N, A, D);
    }
    memcpy(outs + (size_t)l * N * D, pr, sizeof(double) * N * D);
    for (int i = 0; i < N; i++)
      for (int d = 0; d < D; d++)
        x[(size_t)i * D + d] +=
            dp1[i / T] * (bl->ls1 ? prm(c, bl->ls1)[d] : 1.0) * pr[(size_t)i * D + d];
    r_norm(c, bl->norm2, h, x, N, D);
    r_lin(f1, h, prm(c, bl->fc1_w), prm(c, bl->fc1_b), N, D, Hm);
    for (size_t i = 0; i < (size_t)N * Hm; i++) f1[i] = 0.5 * f1[i] * (1 + erf(f1[i] / sqrt(2.0)));
    r_lin(f2, f1, prm(c, bl->fc2_w), prm(c, bl->fc2_b), N, Hm, D);
    for (int i = 0; i < N; i++)
      for (int d = 0; d < D; d++)
        x[(size_t)i * D + d] +=
            dp2[i / T] * (bl->ls2 ? prm(c, bl->ls2)[d] : 1.0) * f2[(size_t)i * D + d];
  }
  double *pool = calloc((size_t)B * D, 8), *nf = calloc((size_t)B * D, 8);
  for (int b = 0; b < B; b++)
    for (int d = 0; d < D; d++) {
      if (!cf->avg_pool) {
        pool[(size_t)b * D + d] = x[(size_t)b * T * D + d];
      } else {
        double s = 0;
        for (int t = pre; t < T; t++) s += x[((size_t)b * T + t) * D + d];
        pool[(size_t)b * D + d] = s / (T - pre);
      }
    }
  r_norm(c, m->final_norm, nf, pool, B, D);
  double *lg = calloc((size_t)B * K, 8);
  r_lin(lg, nf, prm(c, m->head_w), prm(c, m->head_b), B, D, K);
  double ce = 0, kl = 0;
  for (int b = 0; b < B; b++) {
    const double *s = lg + (size_t)b * K;
    double mx = -1e300, z = 0;
    for (int k = 0; k < K; k++) mx = fmax(mx, s[k]);
    for (int k = 0; k < K; k++) z += exp(s[k] - mx);
    ce += -(s[c->y[b]] - mx - log(z));
    if (c->teacher) {
      const float *tl = c->teacher + (size_t)b * K;
      double ms = -1e300, mt = -1e300, zs = 0, zt = 0;
      for (int k = 0; k < K; k++) ms = fmax(ms, s[k] / c->tau), mt = fmax(mt, tl[k] / c->tau);
      for (int k = 0; k < K; k++) zs += exp(s[k] / c->tau - ms), zt += exp(tl[k] / c->tau - mt);
      for (int k = 0; k < K; k++) {
        double lt = tl[k] / c->tau - mt - log(zt), ls = s[k] / c->tau - ms - log(zs);
        kl += exp(lt) * (lt - ls);
      }
    }
  }
  ce /= B;
  kl /= B;
  free(x), free(h), free(qkv), free(ao), free(pr), free(f1), free(f2), free(pool), free(nf);
  free(lg), free(probs), free(outs);
  if (!c->teacher) return ce;
  return (1 - c->lambda) * ce + c->lambda * c->tau * c->tau * kl;
}

/* ---------------- whole-model gradient check ---------------- */

static void fill_images(float *img, int32_t *y, int B, int S, int K, nl_rng *r) {
  for (int i = 0; i < B * S * S; i++) img[i] = (float)(2.0 * nl_rng_uniform(r) - 1.0);
  for (int b = 0; b < B; b++) y[b] = (int32_t)nl_rng_below(r, (uint64_t)K);
}

static void grad_check_model(const small_cfg *sc, int distill, int plan) {
  nl_vit m, teacher;
  load_small(&m, sc, 11);
  set_kinds(&m);
  if (plan) { /* 1 <- 0 probabilities, 2 <- 1 linear TB, 3 <- 2 mlp TB of 5 */
    nl_error e;
    m.reuse = nl_reuse_plan_new(sc->depth, sc->dim);
    assert_int_equal(nl_reuse_plan_set(m.reuse, 1, 0, NL_TB_NONE, 0, &e), 0);
    assert_int_equal(nl_reuse_plan_set(m.reuse, 2, 1, NL_TB_LINEAR, 0, &e), 0);
    assert_int_equal(nl_reuse_plan_set(m.reuse, 3, 2, NL_TB_MLP, 5, &e), 0);
    nl_rng tr;
    nl_rng_seed(&tr, 21);
    for (size_t i = 0; i < m.reuse->nparams; i++)
      m.reuse->params[i] = (float)(nl_rng_uniform(&tr) - 0.5);
  }
  if (distill) load_small(&teacher, sc, 12);
  const int B = 3;
  nl_vt_opts o;
  nl_vt_opts_default(&o);
  o.batch = B;
  o.drop_path = 0.6f; /* block 1 drops with p = 0.6: masks mix kept and dropped */
  nl_vit_trainer t;
  nl_error err;
  if (nl_vt_init(&t, &m, distill ? &teacher : NULL, &o, &err)) fail_msg("%s", err.msg);
  float img[3 * 64];
  int32_t y[3];
  nl_rng r;
  nl_rng_seed(&r, 5);
  fill_images(img, y, B, 8, sc->classes, &r);
  nl_rng dr;
  nl_rng_seed(&dr, 3);
  if (nl_vt_forward(&t, img, y, B, &dr, &err)) fail_msg("%s", err.msg);
  nl_vt_backward(&t, B);
  float *dp = malloc(sizeof(float) * 2 * sc->depth * B);
  for (int l = 0; l < sc->depth; l++) {
    memcpy(dp + (size_t)2 * l * B, t.layer[l].dp1, sizeof(float) * B);
    memcpy(dp + (size_t)(2 * l + 1) * B, t.layer[l].dp2, sizeof(float) * B);
  }
  ref_ctx c = {&m, malloc(m.nparams * sizeof(double)), malloc(m.nnorms * sizeof(double)),
               img, y, B, dp, distill ? t.tt->logits : NULL, o.tau, o.lambda, NULL};
  for (size_t i = 0; i < m.nparams; i++) c.P[i] = m.params[i];
  const size_t ntb = m.reuse ? m.reuse->nparams : 0;
  if (ntb) {
    c.TB = malloc(ntb * sizeof(double));
    for (size_t i = 0; i < ntb; i++) c.TB[i] = m.reuse->params[i];
  }
  for (int i = 0; i < m.nnorms; i++) c.alpha[i] = *m.norms[i].alpha;
  double L = ref_loss(&c);
  print_message("loss: engine %.9f reference %.9f\n", t.loss, L);
  assert_true(fabs(L - t.loss) <= 1e-5 * fmax(1.0, fabs(L)));
  /* collect (analytic, numeric) over sampled entries */
  enum { PER = 4 };
  int ntot = m.ntensors + m.nnorms + (ntb ? 8 : 0);
  double *an = calloc((size_t)ntot * PER, 8), *nu = calloc((size_t)ntot * PER, 8);
  int cnt = 0;
  const double hh = 1e-5;
  for (int i = 0; i < ntot; i++) {
    size_t n, off;
    double *base;
    const float *g;
    if (i < m.ntensors) {
      /* DyT alphas are listed as tensors too; they are checked below */
      if (nl_tr_default_group(m.tensors[i].name) == NL_TR_GROUP_ALPHA) continue;
      n = m.tensors[i].numel, off = m.tensors[i].offset, base = c.P + off, g = t.grad + off;
    } else if (i < m.ntensors + m.nnorms) {
      nl_norm *nm = &m.norms[i - m.ntensors];
      if (nm->kind != NL_NORM_DYT) continue;
      n = 1, base = c.alpha + (i - m.ntensors), g = nl_vt_alpha_grad(&t, nm);
    } else { /* TB tensors: linear w, b of block 2, mlp fc1/fc2 w, b of block 3 */
      const nl_vit_reuse *R = m.reuse;
      const int k = i - m.ntensors - m.nnorms, D = sc->dim;
      float *v[8] = {R->w1[2], R->b1[2], R->w1[3], R->b1[3], R->w2[3], R->b2[3], NULL, NULL};
      size_t nn[8] = {(size_t)D * D, (size_t)D, (size_t)5 * D, 5, (size_t)D * 5, (size_t)D, 0, 0};
      if (!v[k]) continue;
      n = nn[k], off = 0, base = c.TB + (v[k] - R->params), g = t.tbgrad + (v[k] - R->params);
    }
    for (int s = 0; s < PER && s < (int)n; s++) {
      size_t k = s == 0 ? 0 : s == 1 ? n - 1 : nl_rng_below(&r, n);
      double v = base[k];
      base[k] = v + hh;
      double lp = ref_loss(&c);
      base[k] = v - hh;
      double lm = ref_loss(&c);
      base[k] = v;
      an[cnt] = g[k];
      nu[cnt] = (lp - lm) / (2 * hh);
      cnt++;
    }
    (void)off;
  }
  double mx = 0;
  for (int i = 0; i < cnt; i++) mx = fmax(mx, fabs(nu[i]));
  double worst = 0;
  int bad = 0;
  for (int i = 0; i < cnt; i++) {
    double e = fabs(an[i] - nu[i]), lim = 1e-3 * fabs(nu[i]) + 1e-4 * mx;
    worst = fmax(worst, e / (fabs(nu[i]) + 1e-4 * mx));
    if (!(e <= lim)) {
      print_message("entry %d: analytic %.9g numeric %.9g\n", i, an[i], nu[i]);
      bad++;
    }
  }
  print_message("%s: %d entries over %d tensors + alphas, max|num| %.3g, worst rel %.3g\n",
                distill ? "distillation" : "cross entropy", cnt, m.ntensors, mx, worst);
  assert_int_equal(bad, 0);
  assert_true(mx > 1e-2);
  free(an), free(nu), free(c.P), free(c.alpha), free(dp), free(c.TB);
  nl_vt_free(&t);
  if (distill) nl_vit_free(&teacher);
  nl_vit_free(&m);
}

static const small_cfg SMALL = {8, 4, 8, 2, 2, 3, 16, 1, 0, 0};
static const small_cfg SMALL_AVG = {8, 4, 8, 2, 2, 3, 16, 0, 1, 0};
static const small_cfg SMALL4 = {8, 4, 8, 4, 2, 3, 16, 1, 0, 0};
static const small_cfg SMALL_HEADS = {8, 4, 8, 2, 2, 3, 16, 1, 0, 1}; /* block 1: 1 of 2 heads */

static void test_grad_reuse(void **s) {
  (void)s;
  grad_check_model(&SMALL4, 0, 1);
  grad_check_model(&SMALL4, 1, 1);
}

static void test_grad_ce(void **s) {
  (void)s;
  grad_check_model(&SMALL, 0, 0);
}
static void test_grad_kd(void **s) {
  (void)s;
  grad_check_model(&SMALL, 1, 0);
}
static void test_grad_avgpool(void **s) {
  (void)s;
  grad_check_model(&SMALL_AVG, 0, 0);
}

/* A head-pruned block (1 of 2 heads: qkv [12, 8], proj [8, 4]). */
static void test_grad_pruned_heads(void **s) {
  (void)s;
  nl_vit m;
  load_small(&m, &SMALL_HEADS, 11);
  assert_int_equal(nl_vit_heads(&m.cfg, 0), 2);
  assert_int_equal(nl_vit_heads(&m.cfg, 1), 1);
  nl_vit_free(&m);
  grad_check_model(&SMALL_HEADS, 0, 0);
  grad_check_model(&SMALL_HEADS, 1, 0);
}

/* ---------------- AdamW through the trainer ---------------- */

static void check_adamw(unsigned groups) {
  nl_vit m;
  load_small(&m, &SMALL, 21);
  set_kinds(&m);
  nl_vt_opts o;
  nl_vt_opts_default(&o);
  o.batch = 3;
  o.train_groups = groups;
  o.lr[0] = 0.01f, o.lr[1] = 0.02f, o.lr[2] = 0.05f;
  o.weight_decay = 0.1f;
  nl_vit_trainer t;
  nl_error err;
  if (nl_vt_init(&t, &m, NULL, &o, &err)) fail_msg("%s", err.msg);
  float *before = malloc(m.nparams * sizeof(float));
  memcpy(before, m.params, m.nparams * sizeof(float));
  float a0 = *m.blocks[0].norm2->alpha;
  float img[3 * 64];
  int32_t y[3];
  nl_rng r;
  nl_rng_seed(&r, 9);
  fill_images(img, y, 3, 8, 3, &r);
  const float mult = 0.5f;
  if (nl_vt_step(&t, img, y, 3, NULL, mult, &err)) fail_msg("%s", err.msg);
  /* first step: m_hat = g, v_hat = g^2, so w1 = w0 (1 - lr wd [decay]) - lr g / (|g| + eps) */
  const struct {
    const char *name;
    int decay;
    float lr;
    unsigned group;
  } cases[] = {
      {"blocks.1.attn.qkv.weight", 1, 0.01f, 1u}, {"pos_embed", 0, 0.01f, 1u},
      {"blocks.0.attn.qkv.bias", 0, 0.01f, 1u},   {"head.weight", 1, 0.01f, 1u},
      {"blocks.1.norm1.weight", 0, 0.02f, 2u},    {"norm.bias", 0, 0.02f, 2u},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const nl_param *p = NULL;
    for (int i = 0; i < m.ntensors; i++)
      if (strcmp(m.tensors[i].name, cases[c].name) == 0) p = &m.tensors[i];
    assert_non_null(p);
    int trained = (groups & cases[c].group) != 0;
    for (size_t k = 0; k < p->numel; k++) {
      double w0 = before[p->offset + k], g = t.grad[p->offset + k], lr = cases[c].lr * mult;
      double want = trained ? w0 * (cases[c].decay ? 1 - lr * 0.1 : 1) - lr * g / (fabs(g) + 1e-8)
                            : w0;
      assert_true(fabs(m.params[p->offset + k] - want) <= 1e-6 * fmax(1.0, fabs(want)));
    }
  }
  double ga = *nl_vt_alpha_grad(&t, m.blocks[0].norm2);
  double want = (groups & 4u) ? a0 - 0.05 * mult * ga / (fabs(ga) + 1e-8) : a0;
  assert_true(fabs(*m.blocks[0].norm2->alpha - want) <= 1e-6);
  if (groups & 4u) assert_true(fabs(ga) > 0);
  free(before);
  nl_vt_free(&t);
  nl_vit_free(&m);
}

static void test_adamw_full(void **s) {
  (void)s;
  check_adamw(NL_TR_GROUPS_ALL);
}
static void test_adamw_affine(void **s) {
  (void)s;
  check_adamw(NL_TR_GROUP_BIT(NL_TR_GROUP_AFFINE) | NL_TR_GROUP_BIT(NL_TR_GROUP_ALPHA));
}

/* ---------------- schedules of a run against the formula ---------------- */

static void test_schedule_points(void **s) {
  (void)s;
  const double pi = 3.14159265358979323846;
  nl_tr_sched c = nl_vt_schedule(1, 10, 110);
  /* warm-up: (step + 1) / warmup */
  assert_true(fabs(nl_tr_lr_mult(&c, 0) - 0.1) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&c, 4) - 0.5) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&c, 9) - 1.0) < 1e-12);
  /* cosine: 0.5 (1 + cos(pi (step - warmup) / (total - warmup))) */
  assert_true(fabs(nl_tr_lr_mult(&c, 10) - 1.0) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&c, 35) - 0.5 * (1 + cos(pi * 25 / 100))) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&c, 60) - 0.5) < 1e-12);
  assert_true(fabs(nl_tr_lr_mult(&c, 109) - 0.5 * (1 + cos(pi * 99 / 100))) < 1e-12);
  assert_true(nl_tr_lr_mult(&c, 110) == 0.0);
  nl_tr_sched k = nl_vt_schedule(0, 0, 100);
  assert_true(nl_tr_lr_mult(&k, 0) == 1.0 && nl_tr_lr_mult(&k, 99) == 1.0);
  nl_tr_sched kw = nl_vt_schedule(0, 4, 100);
  assert_true(fabs(nl_tr_lr_mult(&kw, 1) - 0.5) < 1e-12);
  assert_true((float)nl_tr_lr_mult(&kw, 4) == 1.0f && (float)nl_tr_lr_mult(&kw, 99999) == 1.0f);
}

/* ---------------- optimizer state round trip ---------------- */

static void test_state_roundtrip(void **s) {
  (void)s;
  nl_vit m;
  load_small(&m, &SMALL, 31);
  set_kinds(&m);
  nl_vt_opts o;
  nl_vt_opts_default(&o);
  o.batch = 3;
  nl_vit_trainer t, u;
  nl_error err;
  assert_int_equal(nl_vt_init(&t, &m, NULL, &o, &err), 0);
  float img[3 * 64];
  int32_t y[3];
  nl_rng r;
  nl_rng_seed(&r, 2);
  fill_images(img, y, 3, 8, 3, &r);
  assert_int_equal(nl_vt_step(&t, img, y, 3, NULL, 1.0f, &err), 0);
  char path[64];
  snprintf(path, sizeof path, "/tmp/nl_vt_state_%d.safetensors", (int)getpid());
  assert_int_equal(nl_vt_save_state(&t, path, "{\"epoch\": 3}", &err), 0);
  float a = *m.blocks[1].norm2->alpha;
  float *saved = malloc(m.nparams * sizeof(float));
  memcpy(saved, m.params, m.nparams * sizeof(float));
  *m.blocks[1].norm2->alpha = 9.0f;
  const float w5 = m.blocks[0].fc1_w[5];
  m.blocks[0].fc1_w[5] = 42.0f; /* the model moves on; the state keeps its step */
  m.head_b[1] = -7.0f;
  assert_int_equal(nl_vt_init(&u, &m, NULL, &o, &err), 0);
  char *meta = NULL;
  if (nl_vt_load_state(&u, path, &meta, &err)) fail_msg("%s", err.msg);
  assert_string_equal(meta, "{\"epoch\": 3}");
  assert_int_equal(u.opt.t, 1);
  assert_true(*m.blocks[1].norm2->alpha == a);
  assert_true(m.blocks[0].fc1_w[5] == w5);
  assert_memory_equal(m.params, saved, m.nparams * sizeof(float));
  free(saved);
  assert_memory_equal(u.opt.m, t.opt.m, t.opt.total * sizeof(float));
  assert_memory_equal(u.opt.v, t.opt.v, t.opt.total * sizeof(float));
  free(meta);
  unlink(path);
  nl_vt_free(&u);
  nl_vt_free(&t);
  nl_vit_free(&m);
}

/* ---------------- evaluation ---------------- */

/* Five 8x8 grey images with labels [1, 1, 0, 2, 1]. */
static void small_data(nl_dataset *d) {
  static uint8_t img[5 * 64];
  static int32_t lab[5] = {1, 1, 0, 2, 1};
  for (int i = 0; i < 5 * 64; i++) img[i] = (uint8_t)(i * 37 % 256);
  memset(d, 0, sizeof *d);
  snprintf(d->name, sizeof d->name, "five");
  d->n = 5, d->rows = d->cols = 8, d->classes = 3;
  d->images = img, d->labels = lab;
}

static void test_evaluate(void **s) {
  (void)s;
  nl_vit m;
  load_small(&m, &SMALL, 41);
  nl_dataset d;
  small_data(&d);
  /* head weight 0: every image's logits are the head bias */
  memset(m.head_w, 0, sizeof(float) * 3 * 8);
  m.head_b[0] = 0.1f, m.head_b[1] = 0.9f, m.head_b[2] = 0.5f;
  nl_eval_opts o;
  nl_eval_opts_default(&o);
  o.batch = 2; /* batches 2, 2, 1 */
  o.threads = 1;
  nl_eval_result r;
  nl_error err;
  if (nl_vit_evaluate(&m, &d, &o, &r, &err)) fail_msg("%s", err.msg);
  /* class 1 first: labels 1, 1, 1 right; top-5 of 3 classes: all */
  assert_int_equal(r.images, 5);
  assert_int_equal(r.top1, 3);
  assert_int_equal(r.top5, 5);
  assert_int_equal(r.stopped, 0);
  /* a tie counts against the later class: 0 and 1 tie, label 1 is second */
  m.head_b[0] = 0.9f;
  if (nl_vit_evaluate(&m, &d, NULL, &r, &err)) fail_msg("%s", err.msg);
  assert_int_equal(r.top1, 1); /* only the label 0 */
  /* a NaN parameter: refused, naming it */
  m.head_b[2] = NAN;
  assert_int_equal(nl_vit_evaluate(&m, &d, &o, &r, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "tensor head.bias has 1 non-finite value of 3 (1 NaN, 0 infinite)"));
  size_t nn, ni;
  int hb = -1;
  for (int i = 0; i < m.ntensors; i++)
    if (strcmp(m.tensors[i].name, "head.bias") == 0) hb = i;
  assert_int_equal(nl_vit_tensor_nonfinite(&m, hb, &nn, &ni), 1);
  assert_true(nn == 1 && ni == 0);
  /* finite parameters whose logits overflow: refused, naming the logits */
  m.head_b[2] = 0.5f;
  for (int i = 0; i < 3 * 8; i++) m.head_w[i] = 3e38f;
  assert_int_equal(nl_vit_evaluate(&m, &d, &o, &r, &err), -1);
  assert_non_null(strstr(err.msg, "tensor logits is"));
  assert_non_null(strstr(err.msg, "every norm layer's output is finite"));
  /* a dataset of another size */
  d.rows = d.cols = 28;
  assert_int_equal(nl_vit_evaluate(&m, &d, &o, &r, &err), -1);
  assert_non_null(strstr(err.msg, "expects 8x8 images but five has 28x28"));
  d.rows = d.cols = 8, d.classes = 4;
  assert_int_equal(nl_vit_check_data(&m, &d, "m", &err), -1);
  assert_non_null(strstr(err.msg, "m has 3 classes but five has labels up to 3"));
  nl_vit_free(&m);
}

/* ---------------- training settings ---------------- */

static void test_train_opts(void **s) {
  (void)s;
  nl_train_opts o;
  nl_error err;
  nl_train_opts_init(&o);
  assert_true(o.epochs == 1 && o.batch == 256 && o.lr == 0.0005 && o.augment && o.cosine);
  assert_int_equal(nl_train_opts_set(&o, "lr", "2e-3", &err), 0);
  assert_int_equal(nl_train_opts_set(&o, "eval_images", "300", &err), 0); /* _ for - */
  assert_int_equal(nl_train_opts_set(&o, "variant", "A", &err), 0);
  assert_int_equal(nl_train_opts_set(&o, "threads", "3", &err), 0);
  assert_int_equal(nl_train_opts_set(&o, "no-augment", NULL, &err), 0);
  assert_int_equal(nl_train_opts_set(&o, "output", "/tmp/x", &err), 0);
  assert_int_equal(nl_train_opts_finish(&o, &err), 0);
  assert_true(o.lr == 2e-3 && o.lr_affine == 2e-3 && o.lr_alpha == 2e-3);
  assert_true(o.eval_limit == 300 && o.affine && o.threads == 3 && !o.augment);
  /* messages: the command line's wording */
  assert_int_equal(nl_train_opts_set(&o, "lr", "0", &err), -1);
  assert_string_equal(err.msg, "--lr: expected a number in (0, 10], got 0");
  assert_int_equal(nl_train_opts_set(&o, "lr", "abc", &err), -1);
  assert_string_equal(err.msg, "--lr expects a finite number, got 'abc'");
  assert_int_equal(nl_train_opts_set(&o, "epochs", "0", &err), -1);
  assert_string_equal(err.msg, "--epochs must be between 1 and 100000, got 0");
  assert_int_equal(nl_train_opts_set(&o, "variant", "B", &err), -1);
  assert_string_equal(err.msg, "--variant expects one of affine|full|A|F|D|tb, got 'B'");
  assert_int_equal(nl_train_opts_set(&o, "nope", "1", &err), -1);
  assert_non_null(strstr(err.msg, "train has no option --nope"));
  assert_int_equal(nl_train_opts_set(&o, "imgaes", "5", &err), -1);
  assert_string_equal(err.msg, "train has no option --imgaes; did you mean --images?");
  /* the older names of --images and --eval-images still set them */
  assert_string_equal(nl_train_opts_renamed("limit"), "images");
  assert_string_equal(nl_train_opts_renamed("eval_limit"), "eval-images");
  assert_null(nl_train_opts_renamed("images"));
  assert_int_equal(nl_train_opts_set(&o, "limit", "40", &err), 0);
  assert_int_equal(nl_train_opts_set(&o, "eval-limit", "30", &err), 0);
  assert_true(o.limit == 40 && o.eval_limit == 30);
  assert_int_equal(nl_train_opts_set(&o, "variant", "D", &err), 0);
  assert_int_equal(nl_train_opts_finish(&o, &err), -1);
  assert_string_equal(err.msg, "variant D (distillation) needs --teacher");
  nl_train_opts_free(&o);
  /* the resume check: lr differs (named with both values), epochs and threads may */
  nl_train_opts a, b;
  nl_train_opts_init(&a);
  nl_train_opts_init(&b);
  nl_train_opts_set(&a, "output", "d", &err);
  nl_train_opts_set(&b, "output", "d", &err);
  nl_train_opts_set(&b, "epochs", "5", &err);
  nl_train_opts_set(&b, "threads", "2", &err);
  nl_train_opts_finish(&a, &err);
  nl_train_opts_finish(&b, &err);
  nl_vit m;
  load_small(&m, &SMALL, 43);
  json_t *ca = nl_train_config(&a, &m, NULL, 100, 50), *cb = nl_train_config(&b, &m, NULL, 100, 50);
  assert_int_equal(nl_train_config_check_resume(ca, cb, "d", &err), 0);
  json_decref(cb);
  nl_train_opts_set(&b, "seed", "9", &err);
  cb = nl_train_config(&b, &m, NULL, 100, 50);
  assert_int_equal(nl_train_config_check_resume(ca, cb, "d", &err), -1);
  assert_non_null(strstr(err.msg, "--seed: the run in d was started with 0, this command gives 9"));
  json_decref(cb);
  nl_train_opts_set(&b, "seed", "0", &err);
  /* the config records images / eval_images; a run recorded with the older
   * keys limit / eval_limit is still compared */
  cb = nl_train_config(&b, &m, NULL, 100, 50);
  assert_non_null(json_object_get(cb, "images"));
  assert_non_null(json_object_get(cb, "eval_images"));
  json_t *old = json_deep_copy(ca);
  json_object_del(old, "eval_images");
  json_object_set_new(old, "eval_limit", json_integer(0));
  assert_int_equal(nl_train_config_check_resume(old, cb, "d", &err), 0);
  json_object_set_new(old, "eval_limit", json_integer(500));
  assert_int_equal(nl_train_config_check_resume(old, cb, "d", &err), -1);
  assert_non_null(strstr(err.msg, "--eval-images: the run in d was started with 500, this command gives 0"));
  json_decref(old);
  json_decref(cb);
  m.head_b[0] += 1; /* another model */
  cb = nl_train_config(&b, &m, NULL, 100, 50);
  assert_int_equal(nl_train_config_check_resume(ca, cb, "d", &err), -1);
  assert_non_null(strstr(err.msg, "--model:"));
  json_decref(cb);
  json_decref(ca);
  nl_vit_free(&m);
  nl_train_opts_free(&a);
  nl_train_opts_free(&b);
}

/* ---------------- a short run on Fashion-MNIST lowers the loss ---------------- */

static const char *fixture(const char *name) {
  static char buf[512];
  const char *dir = getenv("NL_FIXTURES");
  snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "../shared/fixtures/timm", name);
  return buf;
}

static double eval_loss(nl_vit_trainer *t, const float *x, const int32_t *y, int n) {
  nl_error err;
  if (nl_vt_forward(t, x, y, n, NULL, &err)) fail_msg("%s", err.msg);
  return t->loss;
}

static void short_run(unsigned groups, int threads, float *params_out, double *l0, double *l1) {
  nl_vit m;
  nl_error err;
  if (nl_vit_load(&m, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err))
    fail_msg("%s", err.msg);
  for (int i = 0; i < m.nnorms; i++) nl_norm_set_dyt(&m, &m.norms[i], 0.5f);
  nl_dataset d;
  if (nl_dataset_load(&d, "fmnist:train", 0, 200, &err)) fail_msg("%s", err.msg);
  float *x = malloc(sizeof(float) * 200 * 784), *xa = malloc(sizeof(float) * 50 * 784);
  int32_t y[200];
  nl_dataset_normalize(&d, 0, 200, 1, m.cfg.nmean, m.cfg.mean, m.cfg.std, x);
  for (int i = 0; i < 200; i++) y[i] = d.labels[i];
  nl_vt_opts o;
  nl_vt_opts_default(&o);
  o.batch = 200;
  o.train_groups = groups;
  for (int g = 0; g < NL_TR_NGROUPS; g++) o.lr[g] = 2e-3f;
  o.threads = threads;
  nl_vit_trainer t;
  assert_int_equal(nl_vt_init(&t, &m, NULL, &o, &err), 0);
  *l0 = eval_loss(&t, x, y, 200);
  const float pad = nl_tr_pad_value(m.cfg.mean[0], m.cfg.std[0]);
  for (int step = 0; step < 12; step++) {
    int first = (step % 4) * 50;
    nl_rng ar, dr;
    nl_rng_stream(&ar, 7, (uint64_t)step);
    nl_rng_stream(&dr, 8, (uint64_t)step);
    nl_tr_aug aug[50];
    nl_tr_augment_draw(aug, 50, 2, 0.5f, &ar);
    nl_tr_augment_apply(xa, x + (size_t)first * 784, aug, 50, 1, 28, 28, 2, pad);
    if (nl_vt_step(&t, xa, y + first, 50, &dr, 1.0f, &err)) fail_msg("%s", err.msg);
  }
  *l1 = eval_loss(&t, x, y, 200);
  if (params_out) memcpy(params_out, m.params, m.nparams * sizeof(float));
  nl_vt_free(&t);
  free(x), free(xa);
  nl_dataset_free(&d);
  nl_vit_free(&m);
}

static int have_data(void) {
  const char *dir = getenv("NORMLAB_FMNIST_DIR");
  if (!dir) dir = getenv("NL_FMNIST_DIR"); /* its older name */
  char p[512];
  snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir ? dir : NL_FMNIST_DIR_DEFAULT);
  return access(p, R_OK) == 0 && access(fixture("vit_small_p7_fmnist.safetensors"), R_OK) == 0;
}

static void test_short_run(void **s) {
  (void)s;
  if (!have_data()) skip();
  double l0, l1;
  short_run(NL_TR_GROUPS_ALL, 2, NULL, &l0, &l1);
  print_message("full, 12 steps of 50: loss %.4f -> %.4f\n", l0, l1);
  assert_true(l1 < 0.8 * l0);
  short_run(NL_TR_GROUP_BIT(NL_TR_GROUP_AFFINE) | NL_TR_GROUP_BIT(NL_TR_GROUP_ALPHA), 2, NULL,
            &l0, &l1);
  print_message("affine, 12 steps of 50: loss %.4f -> %.4f\n", l0, l1);
  assert_true(l1 < l0);
}

/* Same seed, same result, bitwise: repeated at one thread count, and at another. */
static void test_determinism(void **s) {
  (void)s;
  if (!have_data()) skip();
  nl_vit m;
  nl_error err;
  assert_int_equal(nl_vit_load(&m, fixture("vit_small_p7_fmnist.safetensors"), NULL, &err), 0);
  size_t np = m.nparams;
  nl_vit_free(&m);
  float *a = malloc(np * 4), *b = malloc(np * 4), *c = malloc(np * 4);
  double l0, l1;
  short_run(NL_TR_GROUPS_ALL, 2, a, &l0, &l1);
  short_run(NL_TR_GROUPS_ALL, 2, b, &l0, &l1);
  short_run(NL_TR_GROUPS_ALL, 1, c, &l0, &l1);
  assert_memory_equal(a, b, np * 4);
  /* every product runs in fixed single-threaded blocks: bitwise equal */
  assert_memory_equal(a, c, np * 4);
  free(a), free(b), free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grad_ce),      cmocka_unit_test(test_grad_kd),
      cmocka_unit_test(test_grad_avgpool), cmocka_unit_test(test_grad_pruned_heads),
      cmocka_unit_test(test_grad_reuse),
      cmocka_unit_test(test_adamw_full),
      cmocka_unit_test(test_adamw_affine), cmocka_unit_test(test_state_roundtrip),
      cmocka_unit_test(test_schedule_points),
      cmocka_unit_test(test_evaluate),     cmocka_unit_test(test_train_opts),
      cmocka_unit_test(test_short_run),    cmocka_unit_test(test_determinism),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
