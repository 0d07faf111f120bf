/* Evaluation of programs: double-precision scalar reference (nl_eval1) and
 * batched float evaluation over chunks of NL_EVAL_CHUNK points, with
 * forward-mode derivatives in x and reverse-mode derivatives in the
 * constants. Every node owns one chunk-sized slot of values (and one of
 * adjoints or tangents); each operator runs its vectorised kernel from the
 * registry over the whole chunk. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "expr/expr.h"
#include "expr/kern.h"

#define C NL_EVAL_CHUNK

typedef struct aux {
  const float **vp; /* value pointer per node for the current chunk */
  int *child;       /* 3 per node */
  int *kidx;        /* constant index per node (-1: not a constant) */
  uint8_t *varies;  /* subtree depends on x */
} aux;

void nl_eval_ws_init(nl_eval_ws *ws, int max_len) {
  if (max_len < 1) max_len = 1;
  ws->max_len = max_len;
  ws->buf = nl_aalloc(sizeof(float) * (size_t)(max_len + 4) * C * 2);
  aux *a = nl_xmalloc(sizeof *a);
  a->vp = nl_xmalloc(sizeof(*a->vp) * (size_t)max_len);
  a->child = nl_xmalloc(sizeof(int) * 3 * (size_t)max_len);
  a->kidx = nl_xmalloc(sizeof(int) * (size_t)max_len);
  a->varies = nl_xmalloc((size_t)max_len);
  ws->aux = a;
}

void nl_eval_ws_free(nl_eval_ws *ws) {
  if (ws->aux) {
    aux *a = ws->aux;
    free(a->vp);
    free(a->child);
    free(a->kidx);
    free(a->varies);
    free(a);
  }
  if (ws->buf) nl_afree(ws->buf);
  ws->buf = NULL;
  ws->aux = NULL;
  ws->max_len = 0;
}

/* Make room for a program of len nodes and fill the per-node tables. */
static aux *prepare(const nl_prog *p, nl_eval_ws *ws) {
  if (!ws->buf || p->len > ws->max_len) {
    int len = p->len;
    if (ws->buf) {
      if (len < 2 * ws->max_len) len = 2 * ws->max_len;
      nl_eval_ws_free(ws);
    }
    nl_eval_ws_init(ws, len);
  }
  aux *a = ws->aux;
  int k = 0;
  for (int i = 0; i < p->len; i++) {
    const nl_node *n = &p->nodes[i];
    int j = i - 1;
    for (int c = n->arity - 1; c >= 0; c--) {
      a->child[3 * i + c] = j;
      j -= p->nodes[j].size;
    }
    a->kidx[i] = n->op == NL_OP_CONST ? k++ : -1;
    uint8_t v = n->op == NL_OP_X;
    for (int c = 0; c < n->arity; c++) v |= a->varies[a->child[3 * i + c]];
    a->varies[i] = v;
  }
  return a;
}

/* Slot s of the workspace: values 0..len-1, second bank len+4.. */
static inline float *slot(nl_eval_ws *ws, int s) { return ws->buf + (size_t)s * C; }

static void fill_consts(const nl_prog *p, nl_eval_ws *ws, aux *a) {
  for (int i = 0; i < p->len; i++)
    if (p->nodes[i].op == NL_OP_CONST) {
      float *s = slot(ws, i);
      for (int k = 0; k < C; k++) s[k] = p->nodes[i].val;
      a->vp[i] = s;
    }
}

static int overlaps(const float *a, const float *b, size_t n) {
  uintptr_t x = (uintptr_t)a, y = (uintptr_t)b, len = n * sizeof(float);
  return x < y + len && y < x + len;
}

/* Values of every node over points x[0..m); the root's values go to
 * `root_out` when not NULL. */
static void forward_chunk(const nl_prog *p, nl_eval_ws *ws, aux *a, const float *x, int m,
                          float *root_out) {
  for (int i = 0; i < p->len; i++) {
    const nl_node *n = &p->nodes[i];
    if (n->op == NL_OP_X) {
      a->vp[i] = x;
      continue;
    }
    if (n->op == NL_OP_CONST) continue;
    float *o = (root_out && i == p->len - 1) ? root_out : slot(ws, i);
    const float *args[3];
    for (int c = 0; c < n->arity; c++) args[c] = a->vp[a->child[3 * i + c]];
    nl_ops[n->op].vf(o, args, m, n->ival);
    a->vp[i] = o;
  }
}

void nl_eval(const nl_prog *p, const float *x, float *out, size_t n, nl_eval_ws *ws) {
  if (n == 0 || p->len == 0) return;
  aux *a = prepare(p, ws);
  fill_consts(p, ws, a);
  const nl_node *root = &p->nodes[p->len - 1];
  if (root->op == NL_OP_CONST) {
    for (size_t i = 0; i < n; i++) out[i] = root->val;
    return;
  }
  if (root->op == NL_OP_X) {
    memmove(out, x, n * sizeof(float));
    return;
  }
  int direct = !overlaps(x, out, n);
  for (size_t off = 0; off < n; off += C) {
    int m = (int)(n - off < C ? n - off : C);
    forward_chunk(p, ws, a, x + off, m, direct ? out + off : NULL);
    if (!direct) memcpy(out + off, a->vp[p->len - 1], sizeof(float) * (size_t)m);
  }
}

void nl_eval_dx(const nl_prog *p, const float *x, float *out, float *dx, size_t n,
                nl_eval_ws *ws) {
  if (n == 0 || p->len == 0) return;
  aux *a = prepare(p, ws);
  fill_consts(p, ws, a);
  int len = p->len, bank = len + 4;
  float *ones = slot(ws, len), *zeros = slot(ws, len + 1), *tmp = slot(ws, len + 2);
  float *xin = slot(ws, len + 3);
  for (int k = 0; k < C; k++) {
    ones[k] = 1.0f;
    zeros[k] = 0.0f;
  }
  for (size_t off = 0; off < n; off += C) {
    int m = (int)(n - off < C ? n - off : C);
    memcpy(xin, x + off, sizeof(float) * (size_t)m);
    forward_chunk(p, ws, a, xin, m, NULL);
    const float *tan_root = zeros;
    for (int i = 0; i < len; i++) {
      const nl_node *nd = &p->nodes[i];
      const float *ti;
      if (!a->varies[i]) {
        ti = zeros;
      } else if (nd->op == NL_OP_X) {
        ti = ones;
      } else {
        float *t = slot(ws, bank + i);
        const float *args[3];
        for (int c = 0; c < nd->arity; c++) args[c] = a->vp[a->child[3 * i + c]];
        int first = 1;
        for (int c = 0; c < nd->arity; c++) {
          int ch = a->child[3 * i + c];
          if (!a->varies[ch]) continue;
          const float *tch = p->nodes[ch].op == NL_OP_X ? ones : slot(ws, bank + ch);
          nl_ops[nd->op].vdf(tmp, c, args, a->vp[i], m, nd->ival);
          if (first) {
            nl_k_vmul(t, tmp, tch, m);
            first = 0;
          } else {
            nl_k_vmuladd(t, tmp, tch, m);
          }
        }
        ti = t;
      }
      if (i == len - 1) tan_root = ti;
    }
    memcpy(out + off, a->vp[len - 1], sizeof(float) * (size_t)m);
    memcpy(dx + off, tan_root, sizeof(float) * (size_t)m);
  }
}

/* Reverse sweep over one chunk: adjoints start from adj_root at the root;
 * for each constant k, visit(k, adjoint array). */
typedef void (*const_visit)(void *ctx, int k, const float *adj, int m);

static void reverse_chunk(const nl_prog *p, nl_eval_ws *ws, aux *a, int m, const float *adj_root,
                          const_visit visit, void *ctx) {
  int len = p->len, bank = len + 4;
  float *tmp = slot(ws, len + 2);
  if (p->nodes[len - 1].op == NL_OP_CONST) {
    visit(ctx, a->kidx[len - 1], adj_root, m);
    return;
  }
  /* the root's adjoint lives in its own adjoint slot */
  memcpy(slot(ws, bank + len - 1), adj_root, sizeof(float) * (size_t)m);
  for (int i = len - 1; i >= 0; i--) {
    const nl_node *nd = &p->nodes[i];
    if (nd->arity == 0) continue;
    const float *ai = slot(ws, bank + i);
    const float *args[3];
    for (int c = 0; c < nd->arity; c++) args[c] = a->vp[a->child[3 * i + c]];
    for (int c = 0; c < nd->arity; c++) {
      int ch = a->child[3 * i + c];
      if (p->nodes[ch].op == NL_OP_X) continue;
      nl_ops[nd->op].vdf(tmp, c, args, a->vp[i], m, nd->ival);
      float *ac = slot(ws, bank + ch);
      nl_k_vmul(ac, ai, tmp, m);
      if (p->nodes[ch].op == NL_OP_CONST) visit(ctx, a->kidx[ch], ac, m);
    }
  }
}

typedef struct grad_ctx {
  double *g;
} grad_ctx;

static void grad_visit(void *vctx, int k, const float *adj, int m) {
  grad_ctx *g = vctx;
  g->g[k] += nl_k_sum(adj, m);
}

double nl_mse_grad(const nl_prog *p, const float *x, const float *y, size_t n, float *grad,
                   nl_eval_ws *ws) {
  int nc = nl_prog_nconst(p);
  if (grad)
    for (int k = 0; k < nc; k++) grad[k] = 0.0f;
  if (n == 0 || p->len == 0) return 0.0;
  aux *a = prepare(p, ws);
  fill_consts(p, ws, a);
  int len = p->len;
  float *xin = slot(ws, len + 3), *adj = slot(ws, len + 1);
  double *g = grad ? nl_xcalloc((size_t)(nc ? nc : 1), sizeof(double)) : NULL;
  grad_ctx gc = {g};
  double sse = 0.0;
  const float scale = (float)(2.0 / (double)n);
  for (size_t off = 0; off < n; off += C) {
    int m = (int)(n - off < C ? n - off : C);
    memcpy(xin, x + off, sizeof(float) * (size_t)m);
    forward_chunk(p, ws, a, xin, m, NULL);
    const float *f = p->nodes[len - 1].op == NL_OP_X ? xin : a->vp[len - 1];
    sse += nl_k_sqerr(f, y + off, adj, scale, m);
    if (g) reverse_chunk(p, ws, a, m, adj, grad_visit, &gc);
  }
  if (grad) {
    for (int k = 0; k < nc; k++) grad[k] = (float)g[k];
    free(g);
  }
  return sse / (double)n;
}

typedef struct jac_ctx {
  float *jac;
  size_t n, off;
} jac_ctx;

static void jac_visit(void *vctx, int k, const float *adj, int m) {
  jac_ctx *j = vctx;
  memcpy(j->jac + (size_t)k * j->n + j->off, adj, sizeof(float) * (size_t)m);
}

void nl_eval_jac(const nl_prog *p, const float *x, float *out, float *jac, size_t n,
                 nl_eval_ws *ws) {
  if (n == 0 || p->len == 0) return;
  aux *a = prepare(p, ws);
  fill_consts(p, ws, a);
  int len = p->len;
  float *xin = slot(ws, len + 3), *ones = slot(ws, len + 1);
  for (int k = 0; k < C; k++) ones[k] = 1.0f;
  jac_ctx jc = {jac, n, 0};
  for (size_t off = 0; off < n; off += C) {
    int m = (int)(n - off < C ? n - off : C);
    memcpy(xin, x + off, sizeof(float) * (size_t)m);
    forward_chunk(p, ws, a, xin, m, NULL);
    const float *f = p->nodes[len - 1].op == NL_OP_X ? xin : a->vp[len - 1];
    if (out) memcpy(out + off, f, sizeof(float) * (size_t)m);
    jc.off = off;
    if (jac) reverse_chunk(p, ws, a, m, ones, jac_visit, &jc);
  }
}

double nl_eval1(const nl_prog *p, double x) {
  if (p->len <= 0) return NAN;
  double small[64];
  double *st = p->len <= 64 ? small : nl_xmalloc(sizeof(double) * (size_t)p->len);
  int sp = 0;
  for (int i = 0; i < p->len; i++) {
    const nl_node *n = &p->nodes[i];
    if (n->op == NL_OP_CONST) {
      st[sp++] = n->val;
    } else if (n->op == NL_OP_X) {
      st[sp++] = x;
    } else {
      sp -= n->arity;
      st[sp] = nl_ops[n->op].f(st + sp, n->ival);
      sp++;
    }
  }
  double r = st[sp - 1];
  if (st != small) free(st);
  return r;
}
