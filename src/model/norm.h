/* Norm slots (see model/vit.h): switching kinds, and the one forward of a
 * slot, whatever its kind, that inference (vit_forward.c) and training
 * (train/vit_train.c) both run. The backward halves are in train/layers.h
 * (LayerNorm, DyT; nl_tr_pwnorm_backward for expressions). */
#ifndef NL_MODEL_NORM_H
#define NL_MODEL_NORM_H

#include <stddef.h>

#include "expr/expr.h"
#include "model/vit.h"

/* Free the slot's expression and its text, if any (kind is left to the
 * caller). */
void nl_norm_expr_release(nl_norm *n);
/* List (on = 1) or unlist (on = 0) the slot's "<slot>.alpha" view in
 * m->tensors, right after "<slot>.bias"; no-op when already so. */
void nl_vit_alpha_view(nl_vit *m, const nl_norm *n, int on);

/* ---- expression norm: out = f(x) * w + b, f an expression program ----
 * inp, out [N, C]; w, b [C]. For training pass fx and dfx [N*C]: the
 * forward saves f(x) and f'(x) there (for nl_tr_pwnorm_backward); for
 * inference pass fx = dfx = NULL. f is evaluated by the expression engine
 * in fixed chunks over the thread pool (element-wise: the result does not
 * depend on the thread count). ws: a workspace for the calling thread, or
 * NULL (one is made for the call); chunks on other threads get their own. */
void nl_exprnorm_forward(float *out, float *fx, float *dfx, const float *inp,
                         const nl_prog *prog, const float *w, const float *b, int N, int C,
                         nl_eval_ws *ws);

/* ---- a norm slot's forward over N rows of width C ----
 * LayerNorm (nl_layernorm_forward, eps; saves mean, rstd, either may be
 * NULL), DyT (nl_dyt_forward with *n->alpha) or expression
 * (nl_exprnorm_forward with fx, dfx, ws as there). */
void nl_norm_forward(const nl_norm *n, float *out, float *mean, float *rstd, float *fx,
                     float *dfx, const float *x, int N, int C, float eps, nl_eval_ws *ws);

#endif
