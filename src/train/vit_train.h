/* Whole-model training of an nl_vit: training-mode forward (drop path per
 * sample, timm's linear rate rule), backward through every layer and norm
 * kind (LayerNorm, DyT with alpha, expression norms with f' from the
 * expression engine), cross-entropy or logit distillation from a frozen
 * teacher, and AdamW over the trainable groups.
 *
 * Gradients live in one buffer parallel to nl_vit.params (grad[i] is
 * dL/dparams[i]); DyT alphas live in nl_vit.params too (see model/vit.h),
 * so their gradients are in that buffer at the same offsets (reached
 * through nl_vt_alpha and nl_vt_alpha_grad).
 *
 * Same inputs, same rng streams, same result for any thread count: every
 * layer splits its work in chunks fixed by the shapes (see layers.h).
 * Nothing is allocated per step. The library never prints. */
#ifndef NL_TRAIN_VIT_TRAIN_H
#define NL_TRAIN_VIT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/rng.h"
#include "expr/expr.h"
#include "model/vit.h"
#include "train/optim.h"

typedef struct nl_vt_opts {
  int batch;              /* largest batch a step takes */
  unsigned train_groups;  /* NL_TR_GROUP_BIT(...) of the trained groups */
  float lr[NL_TR_NGROUPS];/* base learning rate per group */
  float weight_decay;     /* decoupled, timm's rule (nl_tr_default_decay) */
  float drop_path;        /* timm drop_path_rate: block i drops with rate*i/(depth-1) */
  float tau, lambda;      /* distillation, used when a teacher is given */
  int threads;            /* worker threads (and BLAS threads) of the passes;
                           * 0: nl_threads_default() */
  int tb_only;            /* a model with a reuse plan: train its transformation blocks
                           * alone (model/reuse_plan.h); otherwise they train with the
                           * backbone group */
  nl_precision precision; /* NL_PREC_BF16: mixed precision. The products of the Linear
                           * layers (patch embedding, qkv, proj, fc1, fc2, head; forward
                           * out = x w^T, backward dx = dout w and dw = dout^T x) take
                           * BF16 operands, the FP32 values rounded to nearest-even, with
                           * FP32 sums (nl_sgemm_bf16, tensor/sgemm.h); master weights,
                           * gradients, AdamW moments, norms, attention (QK^T, PV),
                           * softmax, GELU, loss and reuse transformation blocks stay
                           * FP32. The weights are rounded as the products pack them,
                           * from the FP32 masters AdamW has just updated, so the BF16
                           * weights of a step are always those of its masters; no
                           * second copy is kept. A teacher's forward runs in the same
                           * precision. Needs AVX512-BF16 (nl_vt_init says). */
} nl_vt_opts;

/* Defaults: batch 256, every group trained at lr 1e-3, weight decay 0.05,
 * drop path 0.1, tau NL_TR_KD_TAU, lambda NL_TR_KD_LAMBDA, default threads. */
void nl_vt_opts_default(nl_vt_opts *o);

/* Saved activations of one block, [batch*tokens, dim] unless noted. */
typedef struct nl_vt_layer {
  float *res1;            /* block input (= norm1 input) */
  float *n1, *n1_mean, *n1_rstd, *n1_fx, *n1_dfx; /* norm1 out; LN stats; f, f' (expr) */
  float *qkv;             /* [BT, 3D] */
  float *att;             /* [B, heads, T, T] */
  float *atty;            /* attention output, proj input */
  float *proj;            /* proj output, before layer scale */
  float *res2;            /* norm2 input */
  float *n2, *n2_mean, *n2_rstd, *n2_fx, *n2_dfx;
  float *fc1;             /* [BT, mlp_hidden], GELU input */
  float *gelu;            /* [BT, mlp_hidden], GELU output = fc2 input */
  float *fc2;             /* fc2 output, before layer scale */
  float *dp1, *dp2;       /* drop-path scale per image [B] of the two branches */
  /* attention reuse (model/reuse_plan.h); NULL unless the plan needs them */
  float *tbh, *tba;       /* mlp TB: fc1 output and its GELU [BT, H] */
  float *dz;              /* a TB source: dL/d(proj output) from the TBs reading it */
  float *dpr;             /* a probability source: dL/dP from the blocks applying it */
} nl_vt_layer;

typedef struct nl_vit_trainer {
  nl_vit *m;
  const nl_vit *teacher;  /* NULL: cross entropy only */
  nl_vt_opts o;
  float *grad;            /* [m->nparams], parallel to m->params */
  char (*alpha_name)[64]; /* "<slot>.alpha" per slot, for the optimizer */
  nl_tr_adamw opt;
  /* activations */
  nl_vt_layer *layer;     /* depth entries */
  float *patches;         /* im2col [B*npatch, C*p*p] */
  float *out;             /* last block output [BT, D] */
  float *fin_in;          /* final norm input [B, D]: class token or mean of patch tokens */
  float *fin, *fin_mean, *fin_rstd, *fin_fx, *fin_dfx; /* final norm output [B, D] */
  float *logits, *dlogits;/* [B, classes] */
  /* backward scratch */
  float *dres, *dt1, *dt2, *dqkv, *dh1, *dh2, *dfin;
  struct nl_vit_trainer *tt; /* the teacher's forward (eval mode, never stepped): the same
                          * fixed-block kernels, so its logits do not depend on the
                          * thread count either; logits in tt->logits */
  nl_eval_ws ws;
  int32_t *labels;        /* [B] copy of the step's labels */
  size_t nbytes;          /* bytes of activations and scratch */
  /* expression constants (calibration): NULL unless the caller sets them;
   * then the backward also adds dL/dc of slot i's constants into
   * cgrad + cgrad_off[i] (nl_tr_exprnorm_const_backward), the caller
   * zeroing cgrad before each backward */
  float *cgrad;
  const int *cgrad_off;   /* [m->nnorms] */
  /* attention reuse: gradients parallel to m->reuse->params, and the
   * optimizer names of the TB tensors */
  float *tbgrad;
  char (*tb_name)[64];
  /* last step */
  double loss, ce, kl;
} nl_vit_trainer;

/* 0 when the training step can run in precision p here; NL_EINPUT
 * naming the missing instructions otherwise (nl_vt_init checks it too). */
int nl_vt_check_precision(nl_precision p, nl_error *err);

/* Prepare to train m (teacher may be NULL; it is never changed and must
 * have m's image size and classes). The norm kinds of m are read here:
 * set them (nl_norm_set_dyt, nl_norm_set_expr) before. Registers every
 * parameter tensor with AdamW: group nl_tr_default_group, decay
 * nl_tr_default_decay; DyT alphas as "<slot>.alpha" in the ALPHA group. */
int nl_vt_init(nl_vit_trainer *t, nl_vit *m, const nl_vit *teacher, const nl_vt_opts *o,
               nl_error *err);
void nl_vt_free(nl_vit_trainer *t);

/* The one place that reaches a norm slot's DyT alpha (value; gradient). */
float *nl_vt_alpha(nl_norm *n);
float *nl_vt_alpha_grad(nl_vit_trainer *t, const nl_norm *n);

/* Forward n <= batch normalised images [n, C, H, W] with labels [n];
 * dp_rng != NULL: training mode, drop-path masks drawn from it (block
 * order, attention branch then MLP branch, image order); NULL: eval mode.
 * Computes the loss (CE, or (1-lambda) CE + lambda tau^2 KL(teacher ||
 * student) with a teacher) into t->loss, t->ce, t->kl; logits in
 * t->logits. */
int nl_vt_forward(nl_vit_trainer *t, const float *images, const int32_t *labels, int n,
                  nl_rng *dp_rng, nl_error *err);
/* Backward of the last nl_vt_forward: zeroes, then fills t->grad,
 * DyT alphas included (only the trained groups' gradients are computed). */
void nl_vt_backward(nl_vit_trainer *t, int n);
/* forward (training mode) + backward + one AdamW update with the group
 * rates times lr_mult. Returns 0 or -1 (err set, also for a non-finite
 * loss, which leaves the parameters untouched). */
int nl_vt_step(nl_vit_trainer *t, const float *images, const int32_t *labels, int n,
               nl_rng *dp_rng, float lr_mult, nl_error *err);

/* Matrix FLOPs of one training step per image: 3x the forward's for
 * backbone training (forward, dX, dW), 2x plus the dW of nothing for
 * affine-only training (forward, dX). */
double nl_vt_flops_per_image(const nl_vit_trainer *t);

/* The per-step schedule of a run of `total` steps: cosine (linear warm-up,
 * then cosine to 0 at total) or constant (linear warm-up, then 1). */
nl_tr_sched nl_vt_schedule(int cosine, long warmup, long total);

/* timm's from-scratch init: trunc_normal(std .02, cut at +-2 std) for
 * linear and patch weights, pos_embed and cls_token; zero biases; norm
 * weight 1, bias 0; layer scale gamma 1e-5; DyT alpha kept. Seeded. */
void nl_vt_init_random(nl_vit *m, uint64_t seed);

/* The training state as one safetensors file, and back: AdamW moments
 * ("m.NAME", "v.NAME"), step count, DyT alphas ("value.NAME") and the
 * model's parameters ("param.TENSOR", every tensor of t->m), so that a
 * run resumes from this one file (written atomically) and never from a
 * model and a state of different steps. Loading checks that the tensor
 * table matches; after an error the trainer and model are to be discarded. */
int nl_vt_save_state(const nl_vit_trainer *t, const char *path, const char *meta_json,
                     nl_error *err);
/* meta_json (may be NULL) receives a malloc'd copy of the metadata string
 * "train" saved with the state. */
int nl_vt_load_state(nl_vit_trainer *t, const char *path, char **meta_json, nl_error *err);

#endif
