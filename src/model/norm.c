/* Norm slots: kinds and their forward. */
#include "model/norm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "expr/expr.h"
#include "tensor/kernels.h"
#include "tensor/layers.h"

/* ---- the DyT alpha tensor in the model's tensor list ---- */

static int tensor_index(const nl_vit *m, const char *name) {
  for (int i = 0; i < m->ntensors; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return i;
  return -1;
}

void nl_vit_alpha_view(nl_vit *m, const nl_norm *n, int on) {
  if (!m || !m->tensors || !n->alpha) return;
  char nm[96];
  snprintf(nm, sizeof nm, "%s.alpha", n->name);
  int at = tensor_index(m, nm);
  if (!on && at >= 0) {
    memmove(&m->tensors[at], &m->tensors[at + 1], sizeof(nl_param) * (size_t)(m->ntensors - at - 1));
    m->ntensors--;
  } else if (on && at < 0 && m->ntensors < m->tensors_cap) {
    snprintf(nm, sizeof nm, "%s.bias", n->name);
    int b = tensor_index(m, nm);
    at = b >= 0 ? b + 1 : m->ntensors;
    memmove(&m->tensors[at + 1], &m->tensors[at], sizeof(nl_param) * (size_t)(m->ntensors - at));
    m->ntensors++;
    nl_param *p = &m->tensors[at];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%.41s.alpha", n->name);
    p->ndim = 1;
    p->shape[0] = 1;
    p->numel = 1;
    p->offset = (size_t)(n->alpha - m->params);
  }
}


void nl_norm_expr_release(nl_norm *n) {
  if (n->prog) {
    nl_prog_free(n->prog);
    free(n->prog);
  }
  n->prog = NULL;
  free(n->expr);
  n->expr = NULL;
}

void nl_norm_set_layernorm(nl_vit *m, nl_norm *n) {
  nl_norm_expr_release(n);
  nl_vit_alpha_view(m, n, 0);
  n->kind = NL_NORM_LAYERNORM;
}

void nl_norm_set_dyt(nl_vit *m, nl_norm *n, float alpha) {
  nl_norm_expr_release(n);
  nl_vit_alpha_view(m, n, 1);
  n->kind = NL_NORM_DYT;
  *n->alpha = alpha;
}

int nl_norm_set_expr(nl_vit *m, nl_norm *n, const struct nl_prog *p, nl_error *err) {
  nl_prog c;
  nl_prog_init(&c);
  if (p) nl_prog_copy(&c, p);
  if (!p || p->len < 1 || nl_prog_fix_sizes(&c) != 0) {
    nl_prog_free(&c);
    return nl_fail(err, NL_EINPUT, "%s: not a well-formed expression", n->name);
  }
  for (int k = 0; k < c.len; k++)
    if (c.nodes[k].op == NL_OP_CONST && !isfinite(c.nodes[k].val)) {
      nl_prog_free(&c);
      return nl_fail(err, NL_EINPUT, "%s: the expression has a constant that is not finite",
                     n->name);
    }
  /* the canonical form: what a saved checkpoint parses back */
  char *text = nl_print(&c, NL_PRINT_EXACT);
  nl_prog *q = nl_xmalloc(sizeof *q);
  nl_prog_init(q);
  nl_error e2;
  if (nl_parse(text, 1, q, &e2) != 0) {
    nl_prog_free(&c);
    nl_prog_free(q);
    free(q);
    free(text);
    return nl_fail(err, NL_EINPUT, "%s: the expression does not print back to text: %s", n->name,
                   e2.msg);
  }
  nl_prog_free(&c);
  nl_norm_expr_release(n);
  nl_vit_alpha_view(m, n, 0);
  n->prog = q;
  n->expr = text;
  n->kind = NL_NORM_EXPR;
  return 0;
}

const char *nl_norm_kind_name(nl_norm_kind k) {
  switch (k) {
    case NL_NORM_LAYERNORM: return "layernorm";
    case NL_NORM_DYT: return "dyt";
    case NL_NORM_EXPR: return "expr";
  }
  return "?";
}

/* ---- forward ---- */

/* The slot runs in chunks of whole rows, about EXPR_CHUNK elements each
 * (over the thread pool when large, one evaluation workspace per worker):
 * each chunk is evaluated and its affine applied while it is still in
 * cache, so the slot is one pass over memory (x read once, out written
 * once; fx and dfx written once when training). Element-wise: the result
 * does not depend on the chunks or the thread count. */
#define EXPR_CHUNK 16384
#define EXPR_PAR_MIN 65536

typedef struct {
  const nl_prog *prog;
  const float *inp, *w, *b;
  float *out, *fx, *dfx;
  size_t N, rows; /* rows in all, rows per chunk */
  int C;
  nl_eval_ws *ws;
} ex_job;

/* Chunk i: f (and f') of its rows into fx (dfx), then out = fx * w + b;
 * without fx, f goes into out and the affine is in place. */
static void ex_chunk(const ex_job *j, size_t i, nl_eval_ws *ws) {
  size_t r0 = i * j->rows, nr = j->N - r0 < j->rows ? j->N - r0 : j->rows;
  size_t a = r0 * (size_t)j->C, len = nr * (size_t)j->C;
  float *f = j->fx ? j->fx + a : j->out + a;
  if (j->dfx)
    nl_eval_dx(j->prog, j->inp + a, f, j->dfx + a, len, ws);
  else
    nl_eval(j->prog, j->inp + a, f, len, ws);
  nl_affine_rows(j->out + a, f, j->w, j->b, nr, j->C);
}

static void ex_task(size_t i, int worker, void *user) {
  const ex_job *j = user;
  ex_chunk(j, i, &j->ws[worker]);
}

void nl_exprnorm_forward(float *out, float *fx, float *dfx, const float *inp,
                         const nl_prog *prog, const float *w, const float *b, int N, int C,
                         nl_eval_ws *ws) {
  if (N < 1 || C < 1) return;
  const size_t n = (size_t)N * C, rows = EXPR_CHUNK / (size_t)C ? EXPR_CHUNK / (size_t)C : 1;
  ex_job j = {prog, inp, w, b, out, dfx ? fx : NULL, dfx, (size_t)N, rows, C, NULL};
  const size_t nch = ((size_t)N + rows - 1) / rows;
  int nw = nl_threads_count(0);
  if (n < EXPR_PAR_MIN || nw <= 1 || nch == 1) {
    nl_eval_ws own;
    if (!ws) nl_eval_ws_init(ws = &own, prog->len);
    for (size_t i = 0; i < nch; i++) ex_chunk(&j, i, ws);
    if (ws == &own) nl_eval_ws_free(&own);
    return;
  }
  nl_eval_ws *wk = nl_xcalloc((size_t)nw, sizeof *wk);
  for (int k = 0; k < nw; k++) nl_eval_ws_init(&wk[k], prog->len);
  j.ws = wk;
  nl_parallel_for(nch, ex_task, &j);
  for (int k = 0; k < nw; k++) nl_eval_ws_free(&wk[k]);
  free(wk);
}

void nl_norm_forward(const nl_norm *n, float *out, float *mean, float *rstd, float *fx,
                     float *dfx, const float *x, int N, int C, float eps, nl_eval_ws *ws) {
  switch (n->kind) {
    case NL_NORM_LAYERNORM:
      nl_layernorm_forward(out, mean, rstd, x, n->w, n->b, N, C, eps);
      break;
    case NL_NORM_DYT:
      nl_dyt_forward(out, x, *n->alpha, n->w, n->b, N, C);
      break;
    case NL_NORM_EXPR:
      nl_exprnorm_forward(out, fx, dfx, x, n->prog, n->w, n->b, N, C, ws);
      break;
  }
}
