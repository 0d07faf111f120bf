/* AdamW over a table of parameter tensors, with per-group learning rates,
 * frozen groups and timm's weight-decay convention; learning-rate schedules.
 *
 * Each parameter tensor is registered once with its value and gradient
 * buffers (owned by the caller, e.g. slices of one model buffer), a group
 * and a decay flag. The optimizer owns the moment buffers m, v (one
 * allocation, zero on the first step).
 *
 * One step, for every parameter of a trained group, with t the step count
 * after increment and lr = lr_group * lr_mult (PyTorch's AdamW):
 *   w <- w * (1 - lr * weight_decay)            (only if decay flag set)
 *   m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
 *   w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * Parameters of frozen groups are left untouched (values and moments).
 */
#ifndef NL_TRAIN_OPTIM_H
#define NL_TRAIN_OPTIM_H

#include <stddef.h>

typedef enum {
  NL_TR_GROUP_BACKBONE = 0, /* linear weights/biases, patch embed, cls, pos, layer scale, head */
  NL_TR_GROUP_AFFINE = 1,   /* norm weights and biases (w, b of f(x)*w + b, LayerNorm, DyT) */
  NL_TR_GROUP_ALPHA = 2,    /* DyT alpha (scalar per norm) */
  NL_TR_NGROUPS = 3
} nl_tr_group;

#define NL_TR_GROUP_BIT(g) (1u << (g))
#define NL_TR_GROUPS_ALL 0x7u

typedef struct nl_tr_param {
  const char *name; /* not owned; for messages */
  float *w;         /* values [n] */
  float *g;         /* gradients [n] */
  size_t n;
  int group;        /* nl_tr_group */
  int decay;        /* apply decoupled weight decay */
  size_t off;       /* offset into the moment buffers */
} nl_tr_param;

typedef struct nl_tr_adamw {
  nl_tr_param *p;
  int np, cap;
  size_t total;       /* sum of n */
  float *m, *v;       /* [total], allocated on the first step */
  float lr[NL_TR_NGROUPS];
  unsigned train_groups; /* bit g set: group g is trained; others frozen */
  float beta1, beta2, eps, weight_decay;
  long t;             /* steps taken */
} nl_tr_adamw;

/* Defaults: beta 0.9 / 0.999, eps 1e-8, all groups trained, lr of every
 * group = lr, the given weight decay. */
void nl_tr_adamw_init(nl_tr_adamw *o, float lr, float weight_decay);
void nl_tr_adamw_free(nl_tr_adamw *o);
/* Register a tensor; all registrations come before the first step. */
void nl_tr_adamw_add(nl_tr_adamw *o, const char *name, float *w, float *g, size_t n,
                     nl_tr_group group, int decay);
/* One update with lr_group * lr_mult (lr_mult from nl_tr_lr_mult). */
void nl_tr_adamw_step(nl_tr_adamw *o, float lr_mult);
/* Zero the gradients of every registered tensor. */
void nl_tr_adamw_zero_grad(nl_tr_adamw *o);
/* Global L2 norm of the gradients of the trained groups; if max_norm > 0 and
 * the norm exceeds it, scale those gradients by max_norm / norm. Returns the
 * norm before clipping. */
double nl_tr_clip_grad_norm(nl_tr_adamw *o, double max_norm);

/* timm's weight-decay rule (param_groups_weight_decay): no decay for
 * tensors with ndim <= 1 (biases, norm weights, layer-scale gamma, DyT
 * alpha), for names ending in ".bias", and for pos_embed, cls_token,
 * dist_token, reg_token. Returns 1 if the tensor decays. */
int nl_tr_default_decay(const char *name, int ndim);
/* Group by name: names ending ".alpha" -> ALPHA; weights/biases of modules
 * whose last component starts with "norm" or is "fc_norm" -> AFFINE;
 * everything else -> BACKBONE. */
nl_tr_group nl_tr_default_group(const char *name);

/* ---- learning-rate schedules (multiplier of the base lr, per step) ---- */
typedef enum {
  NL_TR_SCHED_CONSTANT = 0,
  NL_TR_SCHED_WARMUP_COSINE = 1,
} nl_tr_sched_kind;

typedef struct nl_tr_sched {
  nl_tr_sched_kind kind;
  long warmup; /* warm-up steps (0: none) */
  long total;  /* total steps, warm-up included */
} nl_tr_sched;

/* Multiplier for 0-based update `step`:
 *  constant: 1.
 *  warmup-cosine: (step + 1) / warmup for step < warmup (linear, reaching 1
 *  at the last warm-up step), then 0.5 * (1 + cos(pi * (step - warmup) /
 *  (total - warmup))) for warmup <= step < total (1 at the first step after
 *  warm-up, tending to 0 at total), and 0 from total on. */
double nl_tr_lr_mult(const nl_tr_sched *s, long step);

#endif
