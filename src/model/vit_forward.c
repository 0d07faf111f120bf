/* ViT inference forward pass over the shared layer functions, activations
 * kept in nl_vit_acts. */
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "base/timer.h"
#include "model/norm.h"
#include "model/quant.h"
#include "model/reuse_plan.h"
#include "model/vit.h"
#include "tensor/bf16.h"
#include "tensor/gemm.h"
#include "tensor/layers.h"

/* ---- activations ---- */

int nl_vit_acts_init(nl_vit_acts *a, const nl_vit_config *c, int batch, int keep_all,
                     nl_error *err) {
  memset(a, 0, sizeof *a);
  if (batch < 1) return nl_fail(err, NL_EINPUT, "batch size %d must be at least 1", batch);
  size_t B = (size_t)batch, T = (size_t)c->tokens, D = (size_t)c->dim, Hm = (size_t)c->mlp_hidden;
  size_t H = (size_t)c->heads;
  size_t BTD = B * T * D, BT = B * T;
  /* sizes rounded to 16 floats to keep each array 64-byte aligned */
#define R(n) (((n) + 15) / 16 * 16)
  size_t per_layer = R(BTD) * 7 + R(BT) * 4 + R(B * T * 3 * D) + R(B * H * T * T) + R(B * T * Hm) * 2;
  size_t nl = keep_all ? (size_t)c->depth : 1;
  size_t total = R(B * (size_t)c->npatch * c->in_chans * c->patch * c->patch) + nl * per_layer +
                 R(BTD) * 2 + R(BT) * 2 + R(B * D) + R(B * (size_t)c->classes);
  a->mem = nl_try_alloc(total, sizeof(float));
  if (!a->mem)
    return nl_fail(err, NL_ENOMEM, "cannot allocate %.1f MB of activations for batch %d",
                   total * 4.0 / 1e6, batch);
  a->batch = batch;
  a->keep_all = keep_all;
  float *p = a->mem;
#define TAKE(dst, n) \
  do {               \
    dst = p;         \
    p += R(n);       \
  } while (0)
  TAKE(a->patches, B * (size_t)c->npatch * c->in_chans * c->patch * c->patch);
  a->layer = nl_xcalloc((size_t)c->depth, sizeof(nl_vit_layer_acts));
  for (size_t l = 0; l < nl; l++) {
    nl_vit_layer_acts *L = &a->layer[l];
    TAKE(L->res1, BTD);
    TAKE(L->ln1, BTD);
    TAKE(L->ln1_mean, BT);
    TAKE(L->ln1_rstd, BT);
    TAKE(L->qkv, B * T * 3 * D);
    TAKE(L->att, B * H * T * T);
    TAKE(L->atty, BTD);
    TAKE(L->proj, BTD);
    TAKE(L->res2, BTD);
    TAKE(L->ln2, BTD);
    TAKE(L->ln2_mean, BT);
    TAKE(L->ln2_rstd, BT);
    TAKE(L->fc1, B * T * Hm);
    TAKE(L->gelu, B * T * Hm);
    TAKE(L->fc2, BTD);
  }
  for (size_t l = nl; l < (size_t)c->depth; l++) a->layer[l] = a->layer[0];
  TAKE(a->out, BTD);
  TAKE(a->normed, BTD);
  TAKE(a->norm_mean, BT);
  TAKE(a->norm_rstd, BT);
  TAKE(a->pooled, B * D);
  TAKE(a->logits, B * (size_t)c->classes);
#undef TAKE
#undef R
  return 0;
}

void nl_vit_acts_free(nl_vit_acts *a) {
  if (!a) return;
  for (int l = 0; l < NL_VIT_MAX_DEPTH && (a->reuse_att || a->reuse_out); l++) {
    if (a->reuse_att) nl_afree(a->reuse_att[l]);
    if (a->reuse_out) nl_afree(a->reuse_out[l]);
  }
  free(a->reuse_att);
  free(a->reuse_out);
  nl_afree(a->reuse_hid);
  nl_afree(a->reuse_act);
  free(a->mem);
  free(a->layer);
  nl_afree(a->wpack_mem);
  free(a->wpack);
  memset(a, 0, sizeof *a);
}

int nl_vit_acts_pack(nl_vit_acts *a, const nl_vit *m, nl_error *err) {
  nl_afree(a->wpack_mem);
  free(a->wpack);
  a->wpack_mem = NULL, a->wpack = NULL, a->wpack_model = NULL;
  if (!nl_gemm_available()) return 0; /* OpenBLAS reads the weights as they are */
  const nl_vit_config *c = &m->cfg;
  const int D = c->dim;
  size_t total = 0;
  for (int pass = 0; pass < 2; pass++) {
    size_t off = 0;
    for (int l = 0; l < c->depth; l++) {
      const nl_vit_block *B = &m->blocks[l];
      const int Hm = nl_vit_mlp_width(c, l), A = nl_vit_attn_width(c, l);
      const float *w[4] = {B->qkv_w, B->proj_w, B->fc1_w, B->fc2_w};
      const int oc[4] = {3 * A, D, Hm, D}, ic[4] = {D, A, D, Hm};
      for (int i = 0; i < 4; i++) {
        if (!w[i] || B->q[i]) continue; /* quantized: its own integer product */
        if (pass) {
          a->wpack[4 * l + i] = a->wpack_mem + off;
          nl_gemm_pack(a->wpack_mem + off, w[i], oc[i], ic[i], 0,
                       (oc[i] + NL_GEMM_NR - 1) / NL_GEMM_NR);
        }
        off += nl_gemm_pack_floats(oc[i], ic[i]);
      }
    }
    total = off;
    if (!pass) {
      void *mem = NULL;
      if (total && posix_memalign(&mem, 64, total * sizeof(float)))
        return nl_fail(err, NL_ENOMEM, "cannot allocate %.1f MB of packed weights",
                       total * 4.0 / 1e6);
      a->wpack_mem = mem;
      a->wpack = nl_xcalloc((size_t)4 * c->depth, sizeof(float *));
    }
  }
  a->wpack_model = m;
  return 0;
}

/* ---- the pass ----
 * Every layer is a forward function of tensor/layers.h (norm slots:
 * nl_norm_forward), the same the trainer runs (train/vit_train.c); this
 * driver adds the norm taps and keeps every token of the final norm for
 * them. */

static int tap_call(nl_norm_tap_fn tap, void *user, const nl_vit *m, const nl_norm *nm,
                    const float *x, const float *y, int n, int tokens, nl_error *err) {
  if (!tap) return 0;
  if (tap(nm->name, (int)(nm - m->norms), x, y, n, tokens, m->cfg.dim, user))
    return nl_fail(err, NL_EINTR, "forward pass stopped at %s", nm->name);
  return 0;
}

/* out = x + gamma * y (gamma may be NULL); scratch [rows, d] when gamma */
static void branch_add(float *out, const float *x, const float *y, const float *gamma,
                       float *scratch, int rows, int d) {
  if (gamma) {
    nl_layerscale_forward(scratch, y, gamma, rows, d);
    y = scratch;
  }
  nl_residual_forward(out, x, y, (size_t)rows * d);
}

static const char *const site_names[] = {"norm1.in", "attn.qkv.in", "attn.proj.in", "norm2.in",
                                         "mlp.fc1.in", "mlp.fc2.in", "in", "head.in"};

const char *nl_vit_site_name(nl_vit_site s) {
  return (int)s >= 0 && s <= NL_SITE_HEAD_IN ? site_names[s] : "?";
}

/* Observer hooks: one pointer test each when there is no observer. */
static int observe(const nl_vit_observer *o, int block, nl_vit_site site, const float *x,
                   int rows, int width, nl_error *err) {
  if (!o || !o->act) return 0;
  if (o->act(block, site, x, rows, width, o->user))
    return nl_fail(err, NL_EINTR, "forward pass stopped by its observer");
  return 0;
}

/* Part timing: with ps (a part_s array) add the time since *t to
 * ps[index] and restart *t. */
static void part_done(double *ps, size_t index, double *t) {
  if (!ps) return;
  double now = nl_now();
  ps[index] += now - *t;
  *t = now;
}

/* A block's Linear: FP32 (over the packed weight wp when the activations
 * carry one: nl_vit_acts_pack), its quantized layer's integer product (q),
 * or the BF16 product when m has BF16 copies of its weights (nl_vit.bf16);
 * then e's element-wise layer (NULL: none), fused into the FP32 product's
 * tiles. */
static int lin(const nl_vit *m, float *out, const float *inp, const float *w, const float *wp,
               const float *b, const nl_qlinear *q, int rows, int IC, int OC,
               const nl_lin_epilogue *e, nl_error *err) {
  char eb[200] = "";
  if (!q && !m->bf16) {
    if (OC != 3 * IC || nl_gemm_available()) {
      nl_linear_forward_ex(out, inp, w, wp, b, rows, IC, OC, e);
      return 0;
    }
    /* qkv on OpenBLAS: the tiles of the values-only product a reusing block
     * makes (nl_qkv_forward), so that both give the same bits; the AVX-512
     * kernel gives them for any split */
    nl_qkv_forward(out, inp, w, b, rows, IC, 0);
  } else if (!q) {
    if (nl_linear_forward_bf16(out, inp, m->bf16 + (w - m->params), b, rows, IC, OC, eb,
                               sizeof eb))
      return nl_fail(err, NL_EINTERNAL, "BF16 product: %s", eb);
  } else {
    if (nl_qlinear_forward_ex(out, inp, q, b, rows, e, eb, sizeof eb))
      return nl_fail(err, NL_EINTERNAL, "quantized layer: %s", eb);
    return 0;
  }
  if (e && e->then == NL_LIN_GELU)
    nl_gelu_forward(e->out2, out, (size_t)rows * OC);
  else if (e && e->then == NL_LIN_ADD)
    nl_residual_forward(e->out2, e->res, out, (size_t)rows * OC);
  return 0;
}

/* A block's qkv Linear, inp [rows, D] -> out [rows, 3A] (A = D unless heads
 * were pruned): lin, except that on OpenBLAS a head-pruned block runs
 * nl_qkv_forward_ex, as lin runs nl_qkv_forward for a full block, so that a
 * reusing block's values-only product gives the same bits. */
static int lin_qkv(const nl_vit *m, float *out, const float *inp, const float *w,
                   const float *wp, const float *b, const nl_qlinear *q, int rows, int D, int A,
                   nl_error *err) {
  if (!q && !m->bf16 && A != D && !nl_gemm_available()) {
    nl_qkv_forward_ex(out, inp, w, b, rows, D, A, 0);
    return 0;
  }
  return lin(m, out, inp, w, wp, b, q, rows, D, 3 * A, NULL, err);
}

/* Packed weight of block l's Linear i (NL_QL_QKV ..), NULL when none. */
static const float *packed(const nl_vit_acts *a, const nl_vit *m, int l, int i) {
  if (m->wpack && m->wpack[4 * l + i]) return m->wpack[4 * l + i]; /* packed at load */
  return a && a->wpack && a->wpack_model == m ? a->wpack[4 * l + i] : NULL;
}

/* Block l on `in` (L->res1 in the plain pass; any [n, T, D] array, out may
 * be in). */
/* ---- attention reuse (model/reuse_plan.h) ---- */

/* The block that computed the probabilities block l applies. */
static int att_root(const nl_vit_reuse *R, int l) {
  while (R->src[l] >= 0 && R->tb[l] == NL_TB_NONE) l = R->src[l];
  return l;
}

/* 1 when a later block applies the probabilities block s computes. */
static int att_kept(const nl_vit_reuse *R, int s) {
  if (R->src[s] >= 0) return 0;
  for (int l = s + 1; l < R->depth; l++)
    if (R->src[l] >= 0 && R->tb[l] == NL_TB_NONE && att_root(R, l) == s) return 1;
  return 0;
}

/* Slot l of a per-block keep array (allocated on first use). */
static float *keep_slot(float ***arr, int l, size_t n, nl_error *err) {
  if (!*arr) *arr = nl_xcalloc(NL_VIT_MAX_DEPTH, sizeof(float *));
  if (!(*arr)[l]) {
    (*arr)[l] = nl_try_alloc((n + 15) / 16 * 16, sizeof(float));
    if (!(*arr)[l])
      nl_fail(err, NL_ENOMEM, "cannot allocate %.1f MB for attention reuse", n * 4.0 / 1e6);
  }
  return (*arr)[l];
}

void nl_vit_acts_reuse_move(nl_vit_acts *a, const nl_vit *m, int to, int from) {
  if (!m->reuse || to == from) return;
  const nl_vit_config *c = &m->cfg;
  const size_t O = (size_t)c->tokens * c->dim;
  for (int l = 0; l < c->depth; l++) {
    const size_t P = (size_t)nl_vit_heads(c, l) * c->tokens * c->tokens;
    if (a->reuse_att && a->reuse_att[l])
      memmove(a->reuse_att[l] + to * P, a->reuse_att[l] + from * P, P * sizeof(float));
    if (a->reuse_out && a->reuse_out[l])
      memmove(a->reuse_out[l] + to * O, a->reuse_out[l] + from * O, O * sizeof(float));
  }
}

static int block_forward(const nl_vit *m, nl_vit_acts *a, int l, nl_vit_layer_acts *L,
                         const float *in, float *out, float *scratch, int n, nl_norm_tap_fn tap,
                         void *user, double *ps, const nl_vit_observer *obs, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  const nl_vit_reuse *R = m->reuse;
  const int src = R ? R->src[l] : -1;
  const nl_vit_block *B = &m->blocks[l];
  const int T = c->tokens, D = c->dim, Hm = nl_vit_mlp_width(c, l), rows = n * T;
  const int NH = nl_vit_heads(c, l), A = nl_vit_attn_width(c, l); /* per block: head-pruned */
  double t = ps ? nl_now() : 0;
#define DONE(part) part_done(ps, nl_vit_part_index(part, l), &t)
#define OBSERVE(site, x, w)                                         \
  do {                                                              \
    if (obs) {                                                      \
      if (observe(obs, l, site, x, rows, w, err)) return -1;        \
      if (ps) t = nl_now();                                         \
    }                                                               \
  } while (0)
  /* attention branch */
  const int fuse = !ps; /* GELU and the residual adds fused into the products, unless the
                          * parts are timed one by one (the same bits either way) */
  int added = 0;         /* the attention branch's residual add done by proj's product */
  if (src >= 0 && R->tb[l] != NL_TB_NONE) {
    /* a transformation block on the source's attention output */
    if ((size_t)rows * R->hidden[l] > a->reuse_hid_cap) {
      nl_afree(a->reuse_hid);
      nl_afree(a->reuse_act);
      a->reuse_hid_cap = (size_t)a->batch * T * R->hidden[l];
      a->reuse_hid = nl_aalloc(a->reuse_hid_cap * sizeof(float));
      a->reuse_act = nl_aalloc(a->reuse_hid_cap * sizeof(float));
    }
    if (!a->reuse_out || !a->reuse_out[src])
      return nl_fail(err, NL_EINTERNAL, "block %d: no attention output of block %d kept", l, src);
    nl_reuse_tb_forward(R, l, a->reuse_out[src], L->proj, a->reuse_hid, a->reuse_act, rows);
    DONE(NL_PART_PROJ);
  } else {
    OBSERVE(NL_SITE_NORM1_IN, in, D);
    nl_norm_forward(B->norm1, L->ln1, L->ln1_mean, L->ln1_rstd, NULL, NULL, in, rows, D,
                    c->eps, NULL);
    DONE(NL_PART_NORM1);
    if (tap_call(tap, user, m, B->norm1, in, L->ln1, n, T, err)) return -1;
    if (ps) t = nl_now();
    OBSERVE(NL_SITE_QKV_IN, L->ln1, D);
    if (src < 0) {
      if (lin_qkv(m, L->qkv, L->ln1, B->qkv_w, packed(a, m, l, NL_QL_QKV), B->qkv_b,
                  B->q[NL_QL_QKV], rows, D, A, err))
        return -1;
      DONE(NL_PART_QKV);
      nl_attention_forward(L->atty, L->att, L->qkv, n, T, A, NH);
      if (R && att_kept(R, l)) {
        const size_t na = (size_t)a->batch * NH * T * T;
        float *k = keep_slot(&a->reuse_att, l, na, err);
        if (!k) return -1;
        memcpy(k, L->att, (size_t)n * NH * T * T * sizeof(float));
      }
    } else {
      /* the values only (a quantized or BF16 qkv: all three, v read in place) */
      if (B->q[NL_QL_QKV] || m->bf16) {
        if (lin(m, L->qkv, L->ln1, B->qkv_w, NULL, B->qkv_b, B->q[NL_QL_QKV], rows, D, 3 * A,
                NULL, err))
          return -1;
      } else {
        nl_qkv_forward_ex(L->qkv, L->ln1, B->qkv_w, B->qkv_b, rows, D, A, 2);
      }
      const float *v = L->qkv + 2 * A;
      const int ldv = 3 * A;
      DONE(NL_PART_QKV);
      const int r = att_root(R, l);
      if (nl_vit_heads(c, r) != NH) return nl_reuse_plan_check_heads(R, c, err);
      if (!a->reuse_att || !a->reuse_att[r])
        return nl_fail(err, NL_EINTERNAL, "block %d: no attention of block %d kept", l, r);
      nl_attention_apply(L->atty, a->reuse_att[r], v, ldv, n, T, A, NH);
    }
    DONE(NL_PART_ATTN);
    OBSERVE(NL_SITE_PROJ_IN, L->atty, A);
    const nl_lin_epilogue add1 = {NL_LIN_ADD, L->res2, in};
    added = fuse && !B->ls1;
    if (lin(m, L->proj, L->atty, B->proj_w, packed(a, m, l, NL_QL_PROJ), B->proj_b,
            B->q[NL_QL_PROJ], rows, A, D, added ? &add1 : NULL, err))
      return -1;
    DONE(NL_PART_PROJ);
  }
  if (R && nl_reuse_plan_is_source(R, l)) {
    int tbread = 0;
    for (int k = l + 1; k < R->depth; k++) tbread |= R->src[k] == l && R->tb[k] != NL_TB_NONE;
    if (tbread) {
      float *k = keep_slot(&a->reuse_out, l, (size_t)a->batch * T * D, err);
      if (!k) return -1;
      memcpy(k, L->proj, (size_t)rows * D * sizeof(float));
    }
  }
  if (!added) branch_add(L->res2, in, L->proj, B->ls1, scratch, rows, D);
  DONE(NL_PART_RESIDUAL);
  /* MLP branch */
  OBSERVE(NL_SITE_NORM2_IN, L->res2, D);
  nl_norm_forward(B->norm2, L->ln2, L->ln2_mean, L->ln2_rstd, NULL, NULL, L->res2, rows, D,
                  c->eps, NULL);
  DONE(NL_PART_NORM2);
  if (tap_call(tap, user, m, B->norm2, L->res2, L->ln2, n, T, err)) return -1;
  if (ps) t = nl_now();
  OBSERVE(NL_SITE_FC1_IN, L->ln2, D);
  const nl_lin_epilogue gelu = {NL_LIN_GELU, L->gelu, NULL};
  if (lin(m, L->fc1, L->ln2, B->fc1_w, packed(a, m, l, NL_QL_FC1), B->fc1_b, B->q[NL_QL_FC1], rows,
          D, Hm, fuse ? &gelu : NULL, err))
    return -1;
  DONE(NL_PART_FC1);
  if (!fuse) nl_gelu_forward(L->gelu, L->fc1, (size_t)rows * Hm);
  DONE(NL_PART_GELU);
  OBSERVE(NL_SITE_FC2_IN, L->gelu, Hm);
  const nl_lin_epilogue add2 = {NL_LIN_ADD, out, L->res2};
  if (lin(m, L->fc2, L->gelu, B->fc2_w, packed(a, m, l, NL_QL_FC2), B->fc2_b, B->q[NL_QL_FC2], rows,
          Hm, D, fuse && !B->ls2 ? &add2 : NULL, err))
    return -1;
  DONE(NL_PART_FC2);
  if (!fuse || B->ls2) branch_add(out, L->res2, L->fc2, B->ls2, scratch, rows, D);
  DONE(NL_PART_RESIDUAL);
#undef OBSERVE
#undef DONE
  return 0;
}

/* Patch embedding and tokens of n images into x [n, T, D]. a->normed is
 * free until the final norm: scratch for the patch projection ([n * npatch,
 * D] fits in [B, T, D]) and, in the blocks, the layer scales. */
static int embed(const nl_vit *m, nl_vit_acts *a, const float *images, int n, float *x,
                 nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  const int D = c->dim, NP = c->npatch, KP = c->in_chans * c->patch * c->patch;
  nl_im2col(a->patches, images, n, c->in_chans, c->img_size, c->img_size, c->patch);
  if (lin(m, a->normed, a->patches, m->patch_w, NULL, m->patch_b, NULL, n * NP, KP, D, NULL, err))
    return -1;
  nl_tokens_forward(x, a->normed, c->class_token ? m->cls_token : NULL, m->pos_embed, n, NP, D);
  return 0;
}

static int forward_pass(const nl_vit *m, nl_vit_acts *a, const float *images, int n,
                        nl_norm_tap_fn tap, void *user, const nl_vit_observer *obs,
                        nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  if (n < 1 || n > a->batch)
    return nl_fail(err, NL_EINTERNAL, "forward of %d images with activations for %d", n, a->batch);
  const int T = c->tokens, D = c->dim;
  double *ps = a->part_s, t = ps ? nl_now() : 0;
  if (embed(m, a, images, n, a->layer[0].res1, err)) return -1;
  part_done(ps, nl_vit_part_index(NL_PART_PATCH, -1), &t);
  for (int l = 0; l < c->depth; l++) {
    float *out = l + 1 < c->depth ? a->layer[l + 1].res1 : a->out;
    if (block_forward(m, a, l, &a->layer[l], a->layer[l].res1, out, a->normed, n, tap, user,
                      ps, obs, err))
      return -1;
  }
  const nl_norm *fn = m->final_norm;
  if (!c->avg_pool) {
    /* every token through the final norm (the taps see them all), then the
     * class token; row-wise, so token 0 is what the trainer computes */
    if (observe(obs, -1, NL_SITE_FINAL_IN, a->out, n * T, D, err)) return -1;
    if (ps) t = nl_now();
    nl_norm_forward(fn, a->normed, a->norm_mean, a->norm_rstd, NULL, NULL, a->out, n * T, D,
                    c->eps, NULL);
    part_done(ps, nl_vit_part_index(NL_PART_NORM, -1), &t);
    if (tap_call(tap, user, m, fn, a->out, a->normed, n, T, err)) return -1;
    if (ps) t = nl_now();
    nl_pool_forward(a->pooled, a->normed, NL_POOL_TOKEN, 0, n, T, D);
    if (obs) {
      if (observe(obs, -1, NL_SITE_HEAD_IN, a->pooled, n, D, err)) return -1;
      if (ps) t = nl_now();
    }
    if (lin(m, a->logits, a->pooled, m->head_w, NULL, m->head_b, NULL, n, D, c->classes, NULL, err))
      return -1;
    part_done(ps, nl_vit_part_index(NL_PART_HEAD, -1), &t);
  } else {
    if (ps) t = nl_now();
    nl_pool_forward(a->pooled, a->out, NL_POOL_AVG, c->class_token, n, T, D);
    part_done(ps, nl_vit_part_index(NL_PART_HEAD, -1), &t);
    if (obs) {
      if (observe(obs, -1, NL_SITE_FINAL_IN, a->pooled, n, D, err)) return -1;
      if (ps) t = nl_now();
    }
    nl_norm_forward(fn, a->normed, a->norm_mean, a->norm_rstd, NULL, NULL, a->pooled, n, D,
                    c->eps, NULL);
    part_done(ps, nl_vit_part_index(NL_PART_NORM, -1), &t);
    if (tap_call(tap, user, m, fn, a->pooled, a->normed, n, 1, err)) return -1;
    if (observe(obs, -1, NL_SITE_HEAD_IN, a->normed, n, D, err)) return -1;
    if (ps) t = nl_now();
    if (lin(m, a->logits, a->normed, m->head_w, NULL, m->head_b, NULL, n, D, c->classes, NULL, err))
      return -1;
    part_done(ps, nl_vit_part_index(NL_PART_HEAD, -1), &t);
  }
  return 0;
}

/* The pass runs on a->threads workers (its own BLAS count included). */
int nl_vit_forward_observed(const nl_vit *m, nl_vit_acts *a, const float *images, int n,
                            nl_norm_tap_fn tap, void *user, const nl_vit_observer *obs,
                            nl_error *err) {
  int outer = nl_threads_enter(a->threads);
  int rc = forward_pass(m, a, images, n, tap, user, obs, err);
  nl_threads_leave(outer);
  return rc;
}

int nl_vit_forward(const nl_vit *m, nl_vit_acts *a, const float *images, int n,
                   nl_norm_tap_fn tap, void *user, nl_error *err) {
  return nl_vit_forward_observed(m, a, images, n, tap, user, NULL, err);
}

/* ---- the pass in stages (model/vit.h) ---- */

int nl_vit_embed(const nl_vit *m, nl_vit_acts *a, const float *images, int n, float *x,
                 nl_error *err) {
  if (n < 1 || n > a->batch)
    return nl_fail(err, NL_EINTERNAL, "embedding of %d images with activations for %d", n,
                   a->batch);
  int outer = nl_threads_enter(a->threads);
  int rc = embed(m, a, images, n, x, err);
  nl_threads_leave(outer);
  return rc;
}

int nl_vit_block_run(const nl_vit *m, nl_vit_acts *a, int l, float *x, int n, nl_error *err) {
  if (n < 1 || n > a->batch || l < 0 || l >= m->cfg.depth)
    return nl_fail(err, NL_EINTERNAL, "block %d of %d images with activations for %d", l, n,
                   a->batch);
  int outer = nl_threads_enter(a->threads);
  int rc =
      block_forward(m, a, l, &a->layer[l], x, x, a->normed, n, NULL, NULL, NULL, NULL, err);
  nl_threads_leave(outer);
  return rc;
}
