/* Expression norm forward (the backward is nl_tr_pwnorm_backward). Large
 * inputs are evaluated in fixed chunks over the thread pool, one
 * evaluation workspace per worker; the result is element-wise, so it does
 * not depend on the thread count. */
#include "train/exprnorm.h"

#include <stdlib.h>

#include "base/mem.h"
#include "base/threads.h"
#include "train/layers.h"

#define EXPR_CHUNK 16384
#define EXPR_PAR_MIN 65536

typedef struct {
  const nl_prog *prog;
  const float *inp;
  float *fx, *dfx;
  size_t n;
  nl_eval_ws *ws;
} ex_job;

static void ex_task(size_t i, int worker, void *user) {
  const ex_job *j = user;
  size_t a = i * EXPR_CHUNK, len = j->n - a < EXPR_CHUNK ? j->n - a : EXPR_CHUNK;
  if (j->dfx)
    nl_eval_dx(j->prog, j->inp + a, j->fx + a, j->dfx + a, len, &j->ws[worker]);
  else
    nl_eval(j->prog, j->inp + a, j->fx + a, len, &j->ws[worker]);
}

static void eval_all(const nl_prog *prog, const float *inp, float *fx, float *dfx, size_t n,
                     nl_eval_ws *ws) {
  int nw = nl_threads_count(0);
  if (n < EXPR_PAR_MIN || nw <= 1) {
    if (dfx)
      nl_eval_dx(prog, inp, fx, dfx, n, ws);
    else
      nl_eval(prog, inp, fx, n, ws);
    return;
  }
  nl_eval_ws *w = nl_xcalloc((size_t)nw, sizeof *w);
  for (int k = 0; k < nw; k++) nl_eval_ws_init(&w[k], prog->len);
  ex_job j = {prog, inp, fx, dfx, n, w};
  nl_parallel_for((n + EXPR_CHUNK - 1) / EXPR_CHUNK, ex_task, &j);
  for (int k = 0; k < nw; k++) nl_eval_ws_free(&w[k]);
  free(w);
}

void nl_tr_exprnorm_forward(float *out, float *fx, float *dfx, const float *inp,
                            const nl_prog *prog, const float *w, const float *b, int N, int C,
                            nl_eval_ws *ws) {
  const size_t n = (size_t)N * C;
  if (dfx) {
    eval_all(prog, inp, fx, dfx, n, ws);
    nl_tr_pwnorm_forward(out, fx, w, b, N, C);
  } else {
    eval_all(prog, inp, out, NULL, n, ws);
    nl_tr_pwnorm_forward(out, out, w, b, N, C);
  }
}
