/* Expression norm forward (the backward is nl_tr_pwnorm_backward). */
#include "train/exprnorm.h"

#include "train/layers.h"

void nl_tr_exprnorm_forward(float *out, float *fx, float *dfx, const float *inp,
                            const nl_prog *prog, const float *w, const float *b, int N, int C,
                            nl_eval_ws *ws) {
  const size_t n = (size_t)N * C;
  if (dfx) {
    nl_eval_dx(prog, inp, fx, dfx, n, ws);
    nl_tr_pwnorm_forward(out, fx, w, b, N, C);
  } else {
    nl_eval(prog, inp, out, n, ws);
    nl_tr_pwnorm_forward(out, out, w, b, N, C);
  }
}
