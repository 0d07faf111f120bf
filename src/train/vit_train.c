/* Whole-model ViT training built from the per-layer pairs of layers.h. */
#include "train/vit_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "model/norm.h"
#include "model/reuse_plan.h"
#include "model/safetensors.h"
#include "tensor/sgemm.h"
#include "train/layers.h"
#include "train/loss.h"

/* ---- alpha: the one accessor ---- */

float *nl_vt_alpha(nl_norm *n) { return n->alpha; }

float *nl_vt_alpha_grad(nl_vit_trainer *t, const nl_norm *n) {
  return t->grad + (n->alpha - t->m->params);
}

void nl_vt_opts_default(nl_vt_opts *o) {
  memset(o, 0, sizeof *o);
  o->batch = 256;
  o->train_groups = NL_TR_GROUPS_ALL;
  for (int g = 0; g < NL_TR_NGROUPS; g++) o->lr[g] = 1e-3f;
  o->weight_decay = 0.05f;
  o->drop_path = 0.1f;
  o->tau = NL_TR_KD_TAU;
  o->lambda = NL_TR_KD_LAMBDA;
}

/* ---- allocation: one aligned block, carved ---- */

typedef struct {
  float *base;
  size_t used; /* floats */
  int dry;
} carver;

static float *take(carver *c, size_t n) {
  float *p = c->dry ? NULL : c->base + c->used;
  c->used += (n + 15) / 16 * 16;
  return p;
}

static void carve(nl_vit_trainer *t, carver *c) {
  const nl_vit_config *cf = &t->m->cfg;
  const size_t B = (size_t)t->o.batch, T = (size_t)cf->tokens, D = (size_t)cf->dim;
  const size_t Hm = (size_t)cf->mlp_hidden, BT = B * T, BTD = BT * D;
  const size_t K = (size_t)cf->in_chans * cf->patch * cf->patch;
  t->patches = take(c, B * cf->npatch * K);
  for (int l = 0; l < cf->depth; l++) {
    nl_vt_layer *L = &t->layer[l];
    const nl_vit_block *bl = &t->m->blocks[l];
    L->res1 = take(c, BTD);
    L->n1 = take(c, BTD);
    L->n1_mean = take(c, BT);
    L->n1_rstd = take(c, BT);
    int e1 = bl->norm1->kind == NL_NORM_EXPR, e2 = bl->norm2->kind == NL_NORM_EXPR;
    L->n1_fx = e1 ? take(c, BTD) : NULL;
    L->n1_dfx = e1 ? take(c, BTD) : NULL;
    L->qkv = take(c, 3 * BTD);
    L->att = take(c, B * cf->heads * T * T);
    L->atty = take(c, BTD);
    L->proj = take(c, BTD);
    L->res2 = take(c, BTD);
    L->n2 = take(c, BTD);
    L->n2_mean = take(c, BT);
    L->n2_rstd = take(c, BT);
    L->n2_fx = e2 ? take(c, BTD) : NULL;
    L->n2_dfx = e2 ? take(c, BTD) : NULL;
    L->fc1 = take(c, BT * Hm);
    L->gelu = take(c, BT * Hm);
    L->fc2 = take(c, BTD);
    L->dp1 = take(c, B);
    L->dp2 = take(c, B);
    const nl_vit_reuse *R = t->m->reuse;
    int tbsrc = 0, psrc = 0;
    for (int k = l + 1; R && k < cf->depth; k++) {
      if (R->src[k] < 0) continue;
      int r = k;
      while (R->src[r] >= 0 && R->tb[r] == NL_TB_NONE) r = R->src[r];
      tbsrc |= R->src[k] == l && R->tb[k] != NL_TB_NONE;
      psrc |= R->tb[k] == NL_TB_NONE && r == l;
    }
    const int mlp = R && R->src[l] >= 0 && R->tb[l] == NL_TB_MLP;
    L->tbh = mlp ? take(c, BT * (size_t)R->hidden[l]) : NULL;
    L->tba = mlp ? take(c, BT * (size_t)R->hidden[l]) : NULL;
    L->dz = tbsrc ? take(c, BTD) : NULL;
    L->dpr = psrc ? take(c, B * cf->heads * T * T) : NULL;
  }
  int ef = t->m->final_norm->kind == NL_NORM_EXPR;
  t->out = take(c, BTD);
  t->fin_in = take(c, B * D);
  t->fin = take(c, B * D);
  t->fin_mean = take(c, B);
  t->fin_rstd = take(c, B);
  t->fin_fx = ef ? take(c, B * D) : NULL;
  t->fin_dfx = ef ? take(c, B * D) : NULL;
  t->logits = take(c, B * cf->classes);
  t->dlogits = take(c, B * cf->classes);
  t->dres = take(c, BTD);
  t->dt1 = take(c, BTD);
  t->dt2 = take(c, BTD);
  t->dqkv = take(c, 3 * BTD);
  t->dh1 = take(c, BT * Hm);
  t->dh2 = take(c, BT * Hm);
  t->dfin = take(c, B * D);
}

static float *mem_block(const nl_vit_trainer *t) { return t->patches; }

static int is_trained(const nl_vit_trainer *t, nl_tr_group g) {
  return (t->o.train_groups & NL_TR_GROUP_BIT(g)) != 0;
}

int nl_vt_check_precision(nl_precision p, nl_error *err) {
  if (p == NL_PREC_BF16 && !nl_sgemm_bf16_native())
    return nl_fail(err, NL_EINPUT,
                   "precision bf16 needs AVX512-BF16 instructions, which this CPU (or "
                   "NORMLAB_GEMM=blas) does not give normlab's kernel; use precision fp32");
  return 0;
}

int nl_vt_init(nl_vit_trainer *t, nl_vit *m, const nl_vit *teacher, const nl_vt_opts *o,
               nl_error *err) {
  memset(t, 0, sizeof *t);
  const nl_vit_config *c = &m->cfg;
  if (o->batch < 1 || o->batch > 65536)
    return nl_fail(err, NL_EINPUT, "batch size %d is outside [1, 65536]", o->batch);
  if (c->dim % c->heads)
    return nl_fail(err, NL_EINPUT, "width %d is not a multiple of %d heads", c->dim, c->heads);
  if (teacher) {
    const nl_vit_config *tc = &teacher->cfg;
    if (tc->img_size != c->img_size || tc->in_chans != c->in_chans || tc->classes != c->classes)
      return nl_fail(err, NL_EINPUT,
                     "teacher takes %dx%dx%d images into %d classes, the student %dx%dx%d into %d",
                     tc->in_chans, tc->img_size, tc->img_size, tc->classes, c->in_chans,
                     c->img_size, c->img_size, c->classes);
  }
  for (int i = 0; i < m->nnorms; i++)
    if (m->norms[i].kind == NL_NORM_EXPR && !m->norms[i].prog)
      return nl_fail(err, NL_EINTERNAL, "norm slot %s has no expression", m->norms[i].name);
  if (m->reuse)
    for (int l = 0; l < c->depth; l++)
      if (m->reuse->src[l] >= 0 && m->reuse->tb[l] == NL_TB_MLP &&
          m->reuse->hidden[l] > c->mlp_hidden)
        return nl_fail(err, NL_EINPUT, "block %d's mlp transformation block (%d units) is wider "
                       "than the model's MLP (%d)", l, m->reuse->hidden[l], c->mlp_hidden);
  if (nl_vt_check_precision(o->precision, err)) return -1;
  if (o->tb_only && !(m->reuse && m->reuse->nparams))
    return nl_fail(err, NL_EINPUT, "training the transformation blocks alone needs a model whose "
                   "reuse plan has some (normlab reuse --tb linear|mlp --output)");
  t->m = m;
  t->teacher = teacher;
  t->o = *o;
  t->layer = nl_xcalloc((size_t)c->depth, sizeof *t->layer);
  carver cv = {NULL, 0, 1};
  carve(t, &cv);
  float *mem = nl_try_alloc(cv.used + 16, sizeof(float));
  if (!mem) {
    free(t->layer);
    t->layer = NULL;
    return nl_fail(err, NL_ENOMEM, "cannot allocate %.1f MB of training activations for batch %d",
                   cv.used * 4.0 / 1e6, o->batch);
  }
  memset(mem, 0, (cv.used + 16) * sizeof(float));
  carver real = {mem, 0, 0};
  carve(t, &real); /* t->patches == mem */
  t->nbytes = cv.used * sizeof(float);
  t->grad = nl_try_alloc(m->nparams ? m->nparams : 1, sizeof(float));
  if (!t->grad) {
    nl_vt_free(t);
    return nl_fail(err, NL_ENOMEM, "cannot allocate gradients for %zu parameters", m->nparams);
  }
  memset(t->grad, 0, m->nparams * sizeof(float));
  t->alpha_name = nl_xcalloc((size_t)m->nnorms, sizeof *t->alpha_name);
  t->labels = nl_xcalloc((size_t)o->batch, sizeof(int32_t));
  if (teacher) {
    nl_vt_opts to = *o;
    to.train_groups = 0; /* forward only: no gradient is ever computed or applied */
    to.drop_path = 0.0f;
    t->tt = nl_xcalloc(1, sizeof *t->tt);
    /* the teacher is only read: its trainer never steps */
    if (nl_vt_init(t->tt, (nl_vit *)teacher, NULL, &to, err)) {
      free(t->tt);
      t->tt = NULL;
      nl_vt_free(t);
      return nl_error_prefix(err, "teacher");
    }
  }
  int maxlen = 1;
  for (int i = 0; i < m->nnorms; i++)
    if (m->norms[i].kind == NL_NORM_EXPR && m->norms[i].prog->len > maxlen)
      maxlen = m->norms[i].prog->len;
  nl_eval_ws_init(&t->ws, maxlen);
  /* optimizer */
  nl_tr_adamw_init(&t->opt, o->lr[0], o->weight_decay);
  t->opt.beta1 = 0.9f, t->opt.beta2 = 0.999f, t->opt.eps = 1e-8f;
  for (int g = 0; g < NL_TR_NGROUPS; g++) t->opt.lr[g] = o->lr[g];
  t->opt.train_groups = o->train_groups;
  const nl_vit_reuse *R = m->reuse;
  if (R && R->nparams) {
    t->tbgrad = nl_aalloc(R->nparams * sizeof(float));
    memset(t->tbgrad, 0, R->nparams * sizeof(float));
    t->tb_name = nl_xcalloc((size_t)c->depth * 4, sizeof *t->tb_name);
    for (int l = 0; l < c->depth; l++) {
      if (R->src[l] < 0 || R->tb[l] == NL_TB_NONE) continue;
      const size_t D = (size_t)c->dim, H = (size_t)R->hidden[l];
      float *v[4] = {R->w1[l], R->b1[l], R->w2[l], R->b2[l]};
      size_t nn[4] = {R->tb[l] == NL_TB_LINEAR ? D * D : H * D, R->tb[l] == NL_TB_LINEAR ? D : H,
                      D * H, D};
      const char *nm[4] = {"weight", "bias", "fc2.weight", "fc2.bias"};
      for (int k = 0; k < (R->tb[l] == NL_TB_LINEAR ? 2 : 4); k++) {
        char *name = t->tb_name[l * 4 + k];
        snprintf(name, 64, "reuse.%d.tb.%s%s", l, R->tb[l] == NL_TB_MLP && k < 2 ? "fc1." : "", nm[k]);
        nl_tr_adamw_add(&t->opt, name, v[k], t->tbgrad + (v[k] - R->params), nn[k],
                        NL_TR_GROUP_BACKBONE, !(k & 1));
      }
    }
  }
  for (int i = 0; i < m->ntensors && !o->tb_only; i++) {
    const nl_param *p = &m->tensors[i];
    if (nl_tr_default_group(p->name) == NL_TR_GROUP_ALPHA) continue; /* DyT alphas: below */
    nl_tr_adamw_add(&t->opt, p->name, m->params + p->offset, t->grad + p->offset, p->numel,
                    nl_tr_default_group(p->name), nl_tr_default_decay(p->name, p->ndim));
  }
  for (int i = 0; i < m->nnorms && !o->tb_only; i++) {
    nl_norm *n = &m->norms[i];
    if (n->kind != NL_NORM_DYT) continue;
    snprintf(t->alpha_name[i], sizeof t->alpha_name[i], "%s.alpha", n->name);
    nl_tr_adamw_add(&t->opt, t->alpha_name[i], nl_vt_alpha(n), nl_vt_alpha_grad(t, n), 1,
                    NL_TR_GROUP_ALPHA, 0);
  }
  /* moments now, so that no step allocates and a state can be saved at once */
  size_t mb = (t->opt.total ? t->opt.total : 1) * sizeof(float);
  t->opt.m = nl_aalloc(mb);
  t->opt.v = nl_aalloc(mb);
  memset(t->opt.m, 0, mb);
  memset(t->opt.v, 0, mb);
  return 0;
}

void nl_vt_free(nl_vit_trainer *t) {
  if (!t) return;
  if (t->layer) free(mem_block(t));
  free(t->layer);
  free(t->grad);
  free(t->alpha_name);
  free(t->labels);
  nl_afree(t->tbgrad);
  free(t->tb_name);
  if (t->tt) {
    nl_vt_free(t->tt);
    free(t->tt);
  }
  nl_eval_ws_free(&t->ws);
  nl_tr_adamw_free(&t->opt);
  memset(t, 0, sizeof *t);
}

/* ---- norms ---- */

/* the slot's forward, shared with inference (model/norm.h) */
static void norm_fwd(nl_vit_trainer *t, nl_norm *n, float *out, float *mean, float *rstd,
                     float *fx, float *dfx, const float *x, int N) {
  nl_norm_forward(n, out, mean, rstd, fx, dfx, x, N, t->m->cfg.dim, t->m->cfg.eps, &t->ws);
}

/* dinp += d norm / d x applied to dout; norm w, b (and alpha) gradients
 * when the affine (alpha) group is trained. */
static void norm_bwd(nl_vit_trainer *t, nl_norm *n, float *dinp, const float *dout,
                     const float *x, const float *mean, const float *rstd, const float *fx,
                     const float *dfx, int N) {
  const int D = t->m->cfg.dim;
  const int aff = is_trained(t, NL_TR_GROUP_AFFINE);
  float *dw = aff ? t->grad + (n->w - t->m->params) : NULL;
  float *db = aff ? t->grad + (n->b - t->m->params) : NULL;
  switch (n->kind) {
    case NL_NORM_LAYERNORM:
      nl_tr_layernorm_backward(dinp, dw, db, dout, x, n->w, mean, rstd, N, D);
      break;
    case NL_NORM_DYT:
      nl_tr_dyt_backward(dinp, is_trained(t, NL_TR_GROUP_ALPHA) ? nl_vt_alpha_grad(t, n) : NULL,
                         dw, db, dout, x, *nl_vt_alpha(n), n->w, N, D);
      break;
    case NL_NORM_EXPR:
      nl_tr_pwnorm_backward(dinp, dw, db, dout, fx, dfx, n->w, N, D);
      if (t->cgrad)
        nl_tr_exprnorm_const_backward(t->cgrad + t->cgrad_off[n - t->m->norms], dout, x, n->prog,
                                      n->w, N, D);
      break;
  }
}

/* ---- forward ---- */

/* The step's Linear products: FP32, or BF16 operands with FP32 sums
 * (nl_vt_opts.precision). */
static int bf16_ops(const nl_vit_trainer *t) { return t->o.precision == NL_PREC_BF16; }

static void lin_fwd(const nl_vit_trainer *t, float *out, const float *inp, const float *w,
                    const float *b, int N, int IC, int OC) {
  if (bf16_ops(t))
    nl_linear_forward_bf16ops(out, OC, inp, w, b, N, IC, OC);
  else
    nl_linear_forward(out, inp, w, b, N, IC, OC);
}

/* nl_qkv_forward_ex (q, k, v of width C each from `from` on, inputs IC)
 * in the step's precision */
static void qkv_fwd(const nl_vit_trainer *t, float *qkv, const float *inp, const float *w,
                    const float *b, int N, int IC, int C, int from) {
  if (bf16_ops(t))
    nl_linear_forward_bf16ops(qkv + (size_t)from * C, 3 * C, inp, w + (size_t)from * C * IC,
                              b ? b + (size_t)from * C : NULL, N, IC, (3 - from) * C);
  else
    nl_qkv_forward_ex(qkv, inp, w, b, N, IC, C, from);
}

/* The block whose probabilities block l applies (model/reuse_plan.h). */
static int reuse_root(const nl_vit_reuse *R, int l) {
  while (R->src[l] >= 0 && R->tb[l] == NL_TB_NONE) l = R->src[l];
  return l;
}

static int finite_loss(double v) { return isfinite(v); }

static int forward_pass(nl_vit_trainer *t, const float *images, const int32_t *labels, int n,
                        nl_rng *dp_rng, nl_error *err) {
  nl_vit *m = t->m;
  const nl_vit_config *c = &m->cfg;
  if (n < 1 || n > t->o.batch)
    return nl_fail(err, NL_EINTERNAL, "training step of %d images with room for %d", n,
                   t->o.batch);
  const int T = c->tokens, D = c->dim, K = c->classes;
  const int BT = n * T, NP = c->npatch, KP = c->in_chans * c->patch * c->patch;
  for (int b = 0; b < n; b++) {
    if (labels[b] < 0 || labels[b] >= K)
      return nl_fail(err, NL_EINPUT, "label %d of image %d is outside [0, %d)", (int)labels[b], b,
                     K);
    t->labels[b] = labels[b];
  }
  /* patch embedding: the patch projection lands in dt1 (scratch) */
  nl_im2col(t->patches, images, n, c->in_chans, c->img_size, c->img_size, c->patch);
  lin_fwd(t, t->dt1, t->patches, m->patch_w, m->patch_b, n * NP, KP, D);
  nl_tokens_forward(t->layer[0].res1, t->dt1, c->class_token ? m->cls_token : NULL,
                    m->pos_embed, n, NP, D);
  const size_t per = (size_t)T * D;
  for (int l = 0; l < c->depth; l++) {
    nl_vt_layer *L = &t->layer[l];
    const nl_vit_block *bl = &m->blocks[l];
    const int Hm = nl_vit_mlp_width(c, l), NH = nl_vit_heads(c, l), A = nl_vit_attn_width(c, l);
    float *out = l + 1 < c->depth ? t->layer[l + 1].res1 : t->out;
    float p = nl_tr_drop_path_rate(t->o.drop_path, l, c->depth);
    nl_tr_droppath_mask(L->dp1, n, p, dp_rng != NULL, dp_rng);
    nl_tr_droppath_mask(L->dp2, n, p, dp_rng != NULL, dp_rng);
    /* attention branch (under a reuse plan: a TB on the source's attention
     * output, or the source's probabilities on this block's values) */
    const nl_vit_reuse *R = m->reuse;
    const int src = R ? R->src[l] : -1;
    if (src >= 0 && R->tb[l] != NL_TB_NONE) {
      nl_reuse_tb_forward(R, l, t->layer[src].proj, L->proj, L->tbh, L->tba, BT);
    } else {
      norm_fwd(t, bl->norm1, L->n1, L->n1_mean, L->n1_rstd, L->n1_fx, L->n1_dfx, L->res1, BT);
      qkv_fwd(t, L->qkv, L->n1, bl->qkv_w, bl->qkv_b, BT, D, A, src >= 0 ? 2 : 0);
      if (src >= 0 && nl_reuse_plan_check_heads(R, c, err)) return -1;
      if (src < 0)
        nl_attention_forward(L->atty, L->att, L->qkv, n, T, A, NH);
      else
        nl_attention_apply(L->atty, t->layer[reuse_root(R, l)].att, L->qkv + 2 * A, 3 * A, n, T,
                           A, NH);
      lin_fwd(t, L->proj, L->atty, bl->proj_w, bl->proj_b, BT, A, D);
    }
    const float *br = L->proj;
    if (bl->ls1) {
      nl_layerscale_forward(t->dt1, L->proj, bl->ls1, BT, D);
      br = t->dt1;
    }
    nl_tr_droppath_forward(t->dt2, br, L->dp1, n, per);
    nl_residual_forward(L->res2, L->res1, t->dt2, (size_t)BT * D);
    /* MLP branch */
    norm_fwd(t, bl->norm2, L->n2, L->n2_mean, L->n2_rstd, L->n2_fx, L->n2_dfx, L->res2, BT);
    lin_fwd(t, L->fc1, L->n2, bl->fc1_w, bl->fc1_b, BT, D, Hm);
    nl_gelu_forward(L->gelu, L->fc1, (size_t)BT * Hm);
    lin_fwd(t, L->fc2, L->gelu, bl->fc2_w, bl->fc2_b, BT, Hm, D);
    br = L->fc2;
    if (bl->ls2) {
      nl_layerscale_forward(t->dt1, L->fc2, bl->ls2, BT, D);
      br = t->dt1;
    }
    nl_tr_droppath_forward(t->dt2, br, L->dp2, n, per);
    nl_residual_forward(out, L->res2, t->dt2, (size_t)BT * D);
  }
  /* pooling, final norm, head. The norms are row-wise, so the class-token
   * model normalises only the rows it keeps. */
  if (c->avg_pool)
    nl_pool_forward(t->fin_in, t->out, NL_POOL_AVG, c->class_token, n, T, D);
  else
    nl_pool_forward(t->fin_in, t->out, NL_POOL_TOKEN, 0, n, T, D);
  norm_fwd(t, m->final_norm, t->fin, t->fin_mean, t->fin_rstd, t->fin_fx, t->fin_dfx, t->fin_in,
           n);
  lin_fwd(t, t->logits, t->fin, m->head_w, m->head_b, n, D, K);
  /* loss */
  memset(t->dlogits, 0, (size_t)n * K * sizeof(float));
  if (t->teacher) {
    if (nl_vt_forward(t->tt, images, labels, n, NULL, err))
      return nl_error_prefix(err, "teacher");
    t->loss = nl_tr_kd_loss(t->dlogits, t->logits, t->tt->logits, t->labels, n, K, t->o.tau,
                            t->o.lambda, &t->ce, &t->kl);
  } else {
    t->loss = t->ce = nl_tr_ce_loss(t->dlogits, t->logits, t->labels, n, K);
    t->kl = 0.0;
  }
  if (!finite_loss(t->loss))
    return nl_fail(err, NL_EINPUT, "the loss is not finite (%g): lower the learning rate", t->loss);
  return 0;
}

/* ---- backward ---- */

#define GRAD(ptr) (t->grad + ((ptr) - m->params))

/* A TB's backward: dbr = dL/d(its output); dz += dL/d(its input z);
 * parameter gradients into t->tbgrad when trained. */
static void tb_backward(nl_vit_trainer *t, int l, const float *dbr, const float *z, float *dz,
                        int trained, int BT) {
  const nl_vit_reuse *R = t->m->reuse;
  const int D = t->m->cfg.dim, H = R->hidden[l];
#define TBG(ptr) (trained ? t->tbgrad + ((ptr) - R->params) : NULL)
  if (R->tb[l] == NL_TB_LINEAR) {
    nl_tr_linear_backward(dz, TBG(R->w1[l]), TBG(R->b1[l]), dbr, z, R->w1[l], BT, D, D);
    return;
  }
  nl_vt_layer *L = &t->layer[l];
  memset(t->dh1, 0, (size_t)BT * H * sizeof(float));
  nl_tr_linear_backward(t->dh1, TBG(R->w2[l]), TBG(R->b2[l]), dbr, L->tba, R->w2[l], BT, H, D);
  memset(t->dh2, 0, (size_t)BT * H * sizeof(float));
  nl_tr_gelu_backward(t->dh2, t->dh1, L->tbh, (size_t)BT * H);
  nl_tr_linear_backward(dz, TBG(R->w1[l]), TBG(R->b1[l]), t->dh2, z, R->w1[l], BT, D, H);
#undef TBG
}

static void backward_pass(nl_vit_trainer *t, int n) {
  nl_vit *m = t->m;
  const nl_vit_config *c = &m->cfg;
  const int T = c->tokens, D = c->dim, K = c->classes;
  const int BT = n * T, NP = c->npatch, KP = c->in_chans * c->patch * c->patch;
  const size_t BTD = (size_t)BT * D, per = (size_t)T * D;
  const int bb = is_trained(t, NL_TR_GROUP_BACKBONE) && !t->o.tb_only;
  const int tbt = is_trained(t, NL_TR_GROUP_BACKBONE) || t->o.tb_only;
  const nl_vit_reuse *R = m->reuse;
  const int bf16 = bf16_ops(t);
  memset(t->grad, 0, m->nparams * sizeof(float));
  if (t->tbgrad) memset(t->tbgrad, 0, R->nparams * sizeof(float));
  for (int l = 0; l < c->depth; l++) {
    if (t->layer[l].dz) memset(t->layer[l].dz, 0, BTD * sizeof(float));
    if (t->layer[l].dpr)
      memset(t->layer[l].dpr, 0, (size_t)n * c->heads * T * T * sizeof(float));
  }
  /* head */
  nl_tr_linear_backward_prec(t->dfin, 1, bb ? GRAD(m->head_w) : NULL,
                             bb ? GRAD(m->head_b) : NULL, t->dlogits, t->fin, m->head_w, n, D, K,
                             bf16);
  /* final norm into dt1 [n, D], then unpool into dres */
  memset(t->dt1, 0, (size_t)n * D * sizeof(float));
  norm_bwd(t, m->final_norm, t->dt1, t->dfin, t->fin_in, t->fin_mean, t->fin_rstd, t->fin_fx,
           t->fin_dfx, n);
  memset(t->dres, 0, BTD * sizeof(float));
  if (c->avg_pool)
    nl_tr_pool_backward(t->dres, t->dt1, NL_POOL_AVG, c->class_token, n, T, D);
  else
    nl_tr_pool_backward(t->dres, t->dt1, NL_POOL_TOKEN, 0, n, T, D);
  for (int l = c->depth - 1; l >= 0; l--) {
    nl_vt_layer *L = &t->layer[l];
    const nl_vit_block *bl = &m->blocks[l];
    const int Hm = nl_vit_mlp_width(c, l), NH = nl_vit_heads(c, l), A = nl_vit_attn_width(c, l);
    /* MLP branch: out = res2 + dp2 * ls2 * fc2(gelu(fc1(norm2(res2)))) */
    nl_tr_droppath_backward_set(t->dt1, t->dres, L->dp2, n, per);
    const float *dbr = t->dt1;
    if (bl->ls2) {
      memset(t->dt2, 0, BTD * sizeof(float));
      nl_tr_layerscale_backward(t->dt2, bb ? GRAD(bl->ls2) : NULL, t->dt1, L->fc2, bl->ls2, BT, D);
      dbr = t->dt2;
    }
    nl_tr_linear_backward_prec(t->dh1, 1, bb ? GRAD(bl->fc2_w) : NULL,
                               bb ? GRAD(bl->fc2_b) : NULL, dbr, L->gelu, bl->fc2_w, BT, Hm, D,
                               bf16);
    nl_tr_gelu_backward_set(t->dh2, t->dh1, L->fc1, L->gelu, (size_t)BT * Hm);
    float *dn = dbr == t->dt1 ? t->dt2 : t->dt1;
    nl_tr_linear_backward_prec(dn, 1, bb ? GRAD(bl->fc1_w) : NULL, bb ? GRAD(bl->fc1_b) : NULL,
                               t->dh2, L->n2, bl->fc1_w, BT, D, Hm, bf16);
    norm_bwd(t, bl->norm2, t->dres, dn, L->res2, L->n2_mean, L->n2_rstd, L->n2_fx, L->n2_dfx, BT);
    /* attention branch: res2 = res1 + dp1 * ls1 * proj(attn(qkv(norm1(res1)))) */
    nl_tr_droppath_backward_set(t->dt1, t->dres, L->dp1, n, per);
    dbr = t->dt1;
    if (bl->ls1) {
      memset(t->dt2, 0, BTD * sizeof(float));
      nl_tr_layerscale_backward(t->dt2, bb ? GRAD(bl->ls1) : NULL, t->dt1, L->proj, bl->ls1, BT,
                                D);
      dbr = t->dt2;
    }
    if (L->dz) /* the TBs reading this block's attention output */
      nl_residual_forward((float *)dbr, dbr, L->dz, BTD);
    const int src = R ? R->src[l] : -1;
    if (src >= 0 && R->tb[l] != NL_TB_NONE) {
      tb_backward(t, l, dbr, t->layer[src].proj, t->layer[src].dz, tbt, BT);
      continue; /* no norm1, qkv, attention or proj ran */
    }
    float *datty = dbr == t->dt1 ? t->dt2 : t->dt1;
    memset(datty, 0, BTD * sizeof(float));
    nl_tr_linear_backward_prec(datty, 0, bb ? GRAD(bl->proj_w) : NULL,
                               bb ? GRAD(bl->proj_b) : NULL, dbr, L->atty, bl->proj_w, BT, A, D,
                               bf16);
    memset(t->dqkv, 0, 3 * BTD * sizeof(float));
    if (src >= 0) {
      const int r = reuse_root(R, l);
      nl_tr_attention_backward_reuse(t->dqkv, datty, L->qkv, t->layer[r].att, n, T, A, NH,
                                     NULL, t->layer[r].dpr);
    } else {
      nl_tr_attention_backward_reuse(t->dqkv, datty, L->qkv, L->att, n, T, A, NH, L->dpr,
                                     NULL);
    }
    dn = datty == t->dt1 ? t->dt2 : t->dt1;
    nl_tr_linear_backward_prec(dn, 1, bb ? GRAD(bl->qkv_w) : NULL, bb ? GRAD(bl->qkv_b) : NULL,
                               t->dqkv, L->n1, bl->qkv_w, BT, D, 3 * A, bf16);
    norm_bwd(t, bl->norm1, t->dres, dn, L->res1, L->n1_mean, L->n1_rstd, L->n1_fx, L->n1_dfx, BT);
  }
  if (!bb) return;
  /* tokens and patch embedding */
  memset(t->dt1, 0, (size_t)n * NP * D * sizeof(float));
  nl_tr_tokens_backward(t->dt1, c->class_token ? GRAD(m->cls_token) : NULL, GRAD(m->pos_embed),
                        t->dres, c->class_token ? m->cls_token : NULL, n, NP, D);
  nl_tr_linear_backward_prec(NULL, 0, GRAD(m->patch_w), m->patch_b ? GRAD(m->patch_b) : NULL,
                             t->dt1, t->patches, m->patch_w, n * NP, KP, D, bf16);
}

/* Both passes run on t->o.threads workers (their own BLAS count included). */
int nl_vt_forward(nl_vit_trainer *t, const float *images, const int32_t *labels, int n,
                  nl_rng *dp_rng, nl_error *err) {
  int outer = nl_threads_enter(t->o.threads);
  int rc = forward_pass(t, images, labels, n, dp_rng, err);
  nl_threads_leave(outer);
  return rc;
}

void nl_vt_backward(nl_vit_trainer *t, int n) {
  int outer = nl_threads_enter(t->o.threads);
  backward_pass(t, n);
  nl_threads_leave(outer);
}

int nl_vt_step(nl_vit_trainer *t, const float *images, const int32_t *labels, int n,
               nl_rng *dp_rng, float lr_mult, nl_error *err) {
  if (nl_vt_forward(t, images, labels, n, dp_rng, err)) return -1;
  nl_vt_backward(t, n);
  nl_tr_adamw_step(&t->opt, lr_mult);
  return 0;
}

double nl_vt_flops_per_image(const nl_vit_trainer *t) {
  double f = nl_vit_flops_per_image(&t->m->cfg);
  return is_trained(t, NL_TR_GROUP_BACKBONE) ? 3.0 * f : 2.0 * f;
}

/* ---- schedule ---- */

nl_tr_sched nl_vt_schedule(int cosine, long warmup, long total) {
  nl_tr_sched s = {cosine ? NL_TR_SCHED_WARMUP_COSINE : NL_TR_SCHED_CONSTANT, warmup, total};
  /* constant after a warm-up: a cosine so long that it stays at 1 in float */
  if (!cosine && warmup > 0) s.kind = NL_TR_SCHED_WARMUP_COSINE, s.total = 1L << 52;
  return s;
}

/* ---- init ---- */

static float trunc_normal(nl_rng *r, double std) {
  for (;;) {
    double z = nl_rng_normal(r);
    if (z >= -2.0 && z <= 2.0) return (float)(z * std);
  }
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && strcmp(s + a - b, suf) == 0;
}

void nl_vt_init_random(nl_vit *m, uint64_t seed) {
  for (int i = 0; i < m->ntensors; i++) {
    const nl_param *p = &m->tensors[i];
    if (nl_tr_default_group(p->name) == NL_TR_GROUP_ALPHA) continue; /* DyT alpha kept */
    float *w = m->params + p->offset;
    nl_rng r;
    nl_rng_stream(&r, seed, (uint64_t)i);
    nl_tr_group g = nl_tr_default_group(p->name);
    if (g == NL_TR_GROUP_AFFINE) {
      float v = ends_with(p->name, ".weight") ? 1.0f : 0.0f;
      for (size_t k = 0; k < p->numel; k++) w[k] = v;
    } else if (ends_with(p->name, ".gamma")) {
      for (size_t k = 0; k < p->numel; k++) w[k] = 1e-5f;
    } else if (ends_with(p->name, ".bias")) {
      memset(w, 0, p->numel * sizeof(float));
    } else {
      for (size_t k = 0; k < p->numel; k++) w[k] = trunc_normal(&r, 0.02);
    }
  }
}

/* ---- optimizer state ---- */

int nl_vt_save_state(const nl_vit_trainer *t, const char *path, const char *meta_json,
                     nl_error *err) {
  const nl_tr_adamw *o = &t->opt;
  nl_st_writer *w = nl_st_writer_new();
  int rc = 0;
  for (int i = 0; i < o->np && !rc; i++) {
    const nl_tr_param *p = &o->p[i];
    char name[128];
    int64_t shape[1] = {(int64_t)p->n};
    snprintf(name, sizeof name, "m.%s", p->name);
    rc = nl_st_writer_add(w, name, o->m + p->off, 1, shape, err);
    if (rc) break;
    snprintf(name, sizeof name, "v.%s", p->name);
    rc = nl_st_writer_add(w, name, o->v + p->off, 1, shape, err);
    if (rc) break;
    if (p->group == NL_TR_GROUP_ALPHA || strncmp(p->name, "reuse.", 6) == 0) {
      /* DyT alphas and TB tensors are not among the model's tensors */
      snprintf(name, sizeof name, "value.%s", p->name);
      rc = nl_st_writer_add(w, name, p->w, 1, shape, err);
    }
  }
  /* the model's parameters: the state is the run's one commit point */
  for (int i = 0; i < t->m->ntensors && !rc; i++) {
    const nl_param *p = &t->m->tensors[i];
    char name[128];
    snprintf(name, sizeof name, "param.%s", p->name);
    rc = nl_st_writer_add(w, name, t->m->params + p->offset, p->ndim, p->shape, err);
  }
  if (!rc) {
    char steps[32];
    snprintf(steps, sizeof steps, "%ld", o->t);
    nl_st_writer_meta(w, "steps", steps);
    if (meta_json) nl_st_writer_meta(w, "train", meta_json);
    rc = nl_st_writer_save(w, path, err);
  }
  nl_st_writer_free(w);
  return rc;
}

int nl_vt_load_state(nl_vit_trainer *t, const char *path, char **meta_json, nl_error *err) {
  nl_tr_adamw *o = &t->opt;
  nl_st_file f;
  if (nl_st_open(&f, path, err)) return -1;
  int rc = 0;
  const char *steps = nl_st_meta_get(&f, "steps");
  char *end = NULL;
  long st = steps ? strtol(steps, &end, 10) : -1;
  if (!steps || *end || st < 0) rc = nl_fail(err, NL_EINPUT, "%s: no valid 'steps' metadata", path);
  for (int i = 0; i < o->np && !rc; i++) {
    const nl_tr_param *p = &o->p[i];
    const char *pre[3] = {"m.", "v.", "value."};
    float *dst[3] = {o->m + p->off, o->v + p->off, p->w};
    for (int k = 0; k < 3 && !rc; k++) {
      if (k == 2 && p->group != NL_TR_GROUP_ALPHA && strncmp(p->name, "reuse.", 6) != 0) break;
      char name[128];
      snprintf(name, sizeof name, "%s%s", pre[k], p->name);
      const nl_st_tensor *x = nl_st_find(&f, name);
      if (!x)
        rc = nl_fail(err, NL_EINPUT, "%s: tensor %s is missing (state of another model?)", path,
                     name);
      else if (x->numel != p->n)
        rc = nl_fail(err, NL_EINPUT, "%s: tensor %s has %zu values, the model's %zu", path, name,
                     x->numel, p->n);
      else
        nl_st_to_f32(x, dst[k]);
    }
  }
  /* the model's parameters, all present before any is copied */
  int nt = t->m->ntensors;
  const nl_st_tensor **src = nl_xcalloc((size_t)(nt ? nt : 1), sizeof *src);
  for (int i = 0; i < nt && !rc; i++) {
    const nl_param *p = &t->m->tensors[i];
    char name[128];
    snprintf(name, sizeof name, "param.%s", p->name);
    src[i] = nl_st_find(&f, name);
    if (!src[i])
      rc = nl_fail(err, NL_EINPUT,
                   "%s: tensor %s is missing (a state of another model, or written by a normlab "
                   "that kept the parameters only in last.safetensors: start a new run)",
                   path, name);
    else if (src[i]->numel != p->numel)
      rc = nl_fail(err, NL_EINPUT, "%s: tensor %s has %zu values, the model's %zu", path, name,
                   src[i]->numel, p->numel);
  }
  for (int i = 0; i < nt && !rc; i++) nl_st_to_f32(src[i], t->m->params + t->m->tensors[i].offset);
  free(src);
  if (!rc) {
    o->t = st;
    if (meta_json) {
      const char *mj = nl_st_meta_get(&f, "train");
      *meta_json = mj ? nl_xstrdup(mj) : NULL;
    }
  }
  nl_st_close(&f);
  return rc;
}
