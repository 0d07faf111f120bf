/* Expression norm for training: out = f(x) * w + b with f an expression
 * program (src/expr), f and f' evaluated by the expression engine. */
#ifndef NL_TRAIN_EXPRNORM_H
#define NL_TRAIN_EXPRNORM_H

#include "expr/expr.h"

/* inp, out [N, C]; w, b [C]. For training pass fx and dfx [N*C]: the
 * forward saves f(x) and f'(x) there for nl_tr_pwnorm_backward
 * (layers.h). For inference pass fx = dfx = NULL. ws must have max_len >=
 * prog->len. */
void nl_tr_exprnorm_forward(float *out, float *fx, float *dfx, const float *inp,
                            const nl_prog *prog, const float *w, const float *b, int N, int C,
                            nl_eval_ws *ws);

#endif
