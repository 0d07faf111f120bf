/* Simplification: constant folding and identities, bottom-up in one pass
 * over the postfix program. The simplified program is built in a second
 * buffer where each simplified subtree is a contiguous span; rewriting a
 * node only moves, drops or edits the spans of its children.
 *
 * Values are preserved at every finite float x (up to float rounding of
 * folded or merged constants). Identities that drop a subtree (e*0 -> 0,
 * 0/e -> 0, clip(e) -> e when e stays in [-5, 5], abs(e) -> e when e >= 0)
 * apply only when an interval analysis over x in [-FLT_MAX, FLT_MAX]
 * proves e finite in double precision: exp(x)*0 and (1/x)*0 are left alone
 * because they are NaN at some x. The sign of a zero result is not
 * preserved (x + 0 -> x, 0 - x -> -x, 0*e -> 0 differ at signed zeros). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "expr/expr.h"

typedef struct ival {
  double lo, hi;
  int fin; /* no inf or NaN anywhere in the range */
} ival;

static ival mk(double lo, double hi, int fin) {
  ival r = {lo, hi, fin && isfinite(lo) && isfinite(hi)};
  return r;
}

static double mind(double a, double b) { return a < b ? a : b; }
static double maxd(double a, double b) { return a > b ? a : b; }

static double powi(double a, int n) {
  double r = 1;
  for (int k = 0; k < n; k++) r *= a;
  return r;
}

/* Interval of one operator over its operands' intervals. */
static ival interval_op(const nl_node *n, const ival *a) {
  int fin = 1;
  for (int k = 0; k < n->arity; k++) fin &= a[k].fin;
  if (!fin) return mk(-INFINITY, INFINITY, 0);
  switch (n->op) {
    case NL_OP_ADD:
      return mk(a[0].lo + a[1].lo, a[0].hi + a[1].hi, 1);
    case NL_OP_SUB:
      return mk(a[0].lo - a[1].hi, a[0].hi - a[1].lo, 1);
    case NL_OP_MUL: {
      double p[4] = {a[0].lo * a[1].lo, a[0].lo * a[1].hi, a[0].hi * a[1].lo, a[0].hi * a[1].hi};
      return mk(mind(mind(p[0], p[1]), mind(p[2], p[3])), maxd(maxd(p[0], p[1]), maxd(p[2], p[3])),
                1);
    }
    case NL_OP_DIV: {
      if (a[1].lo <= 0 && a[1].hi >= 0) return mk(-INFINITY, INFINITY, 0);
      double p[4] = {a[0].lo / a[1].lo, a[0].lo / a[1].hi, a[0].hi / a[1].lo, a[0].hi / a[1].hi};
      return mk(mind(mind(p[0], p[1]), mind(p[2], p[3])), maxd(maxd(p[0], p[1]), maxd(p[2], p[3])),
                1);
    }
    case NL_OP_NEG:
      return mk(-a[0].hi, -a[0].lo, 1);
    case NL_OP_POW: {
      int e = n->ival;
      if (e <= 0) return mk(1, 1, 1);
      double l = powi(a[0].lo, e), h = powi(a[0].hi, e);
      if (e % 2 == 1) return mk(l, h, 1);
      if (a[0].lo <= 0 && a[0].hi >= 0) return mk(0, maxd(l, h), 1);
      return mk(mind(l, h), maxd(l, h), 1);
    }
    case NL_OP_TANH:
      return mk(tanh(a[0].lo), tanh(a[0].hi), 1);
    case NL_OP_SIGMOID:
      return mk(1 / (1 + exp(-a[0].lo)), 1 / (1 + exp(-a[0].hi)), 1);
    case NL_OP_EXP:
      return mk(exp(a[0].lo), exp(a[0].hi), 1);
    case NL_OP_ABS:
      if (a[0].lo >= 0) return a[0];
      if (a[0].hi <= 0) return mk(-a[0].hi, -a[0].lo, 1);
      return mk(0, maxd(-a[0].lo, a[0].hi), 1);
    case NL_OP_CLIP:
      return mk(maxd(-5, mind(5, a[0].lo)), maxd(-5, mind(5, a[0].hi)), 1);
    case NL_OP_CLIP3:
      /* the result is one of a, lo, hi */
      return mk(mind(a[0].lo, mind(a[1].lo, a[2].lo)), maxd(a[0].hi, maxd(a[1].hi, a[2].hi)), 1);
    default:
      return mk(-INFINITY, INFINITY, 0);
  }
}

/* Interval of the span [s, e) of q (one subtree). */
static ival interval_span(const nl_prog *q, int s, int e) {
  ival small[32];
  ival *st = e - s <= 32 ? small : nl_xmalloc(sizeof(ival) * (size_t)(e - s));
  int sp = 0;
  for (int i = s; i < e; i++) {
    const nl_node *n = &q->nodes[i];
    if (n->op == NL_OP_CONST) {
      st[sp++] = mk(n->val, n->val, 1);
    } else if (n->op == NL_OP_X) {
      st[sp++] = mk(-FLT_MAX, FLT_MAX, 1);
    } else {
      sp -= n->arity;
      st[sp] = interval_op(n, st + sp);
      sp++;
    }
  }
  ival r = st[sp - 1];
  if (st != small) free(st);
  return r;
}

static int is_const(const nl_prog *q, int s, int e, float *v) {
  if (e - s == 1 && q->nodes[s].op == NL_OP_CONST) {
    if (v) *v = q->nodes[s].val;
    return 1;
  }
  return 0;
}

/* Start of the child spans of the subtree [s, e): out[0..arity). */
static int child_starts(const nl_prog *q, int s, int e, int *out) {
  int r = e - 1, a = q->nodes[r].arity, j = r;
  for (int k = a - 1; k >= 0; k--) {
    j -= q->nodes[j - 1].size;
    out[k] = j;
  }
  (void)s;
  return a;
}

static void move_span(nl_prog *q, int to, int from, int end) {
  memmove(q->nodes + to, q->nodes + from, sizeof(nl_node) * (size_t)(end - from));
  q->len = to + (end - from);
}

static void set_const(nl_prog *q, int s, float v) {
  q->len = s;
  nl_prog_push(q, NL_OP_CONST, v, 0);
}

/* [s0, s1) a, [s1, e) b  ->  b, a */
static void swap_spans(nl_prog *q, int s0, int s1, int e) {
  int na = s1 - s0;
  nl_node *tmp = nl_xmalloc(sizeof(nl_node) * (size_t)na);
  memcpy(tmp, q->nodes + s0, sizeof(nl_node) * (size_t)na);
  memmove(q->nodes + s0, q->nodes + s1, sizeof(nl_node) * (size_t)(e - s1));
  memcpy(q->nodes + s0 + (e - s1), tmp, sizeof(nl_node) * (size_t)na);
  free(tmp);
}

static int finite_span(const nl_prog *q, int s, int e) { return interval_span(q, s, e).fin; }

/* Combine the top `nargs` spans (starts st[sp-nargs..sp-1], the last ending
 * at q->len) under operator op. Returns the new stack depth. */
static int combine(nl_prog *q, int *st, int sp, nl_op op, int32_t iv) {
  int nargs = nl_ops[op].arity;
  for (;;) {
    int *s = st + sp - nargs;
    int e = q->len;
    int s1 = nargs > 1 ? s[1] : e;
    float c0 = 0, c1 = 0;
    int k0 = is_const(q, s[0], s1, &c0);
    int k1 = nargs > 1 && is_const(q, s1, nargs > 2 ? s[2] : e, &c1);
    /* constant folding */
    int allc = 1;
    double args[3];
    for (int k = 0; k < nargs; k++) {
      float v;
      int end = k + 1 < nargs ? s[k + 1] : e;
      if (!is_const(q, s[k], end, &v)) {
        allc = 0;
        break;
      }
      args[k] = v;
    }
    if (allc) {
      float v = (float)nl_ops[op].f(args, iv);
      if (isfinite(v)) {
        set_const(q, s[0], v);
        sp -= nargs - 1;
        return sp;
      }
    }
    int done = 0;
    switch (op) {
      case NL_OP_ADD:
        if (k1 && c1 == 0.0f) { /* a + 0 */
          q->len = s1;
          done = 1;
        } else if (k0 && c0 == 0.0f) { /* 0 + a */
          move_span(q, s[0], s1, e);
          done = 1;
        } else if (k0) { /* c + a -> a + c */
          swap_spans(q, s[0], s1, e);
          s[1] = s[0] + (e - s1);
          continue;
        } else if (q->nodes[e - 1].op == NL_OP_NEG) { /* a + -b -> a - b */
          q->len--;
          op = NL_OP_SUB;
          continue;
        } else if (k1 && q->nodes[s1 - 1].op == NL_OP_ADD) {
          /* (a + c2) + c1 -> a + (c2 + c1) */
          int cs[3];
          child_starts(q, s[0], s1, cs);
          float c2;
          if (is_const(q, cs[1], s1 - 1, &c2)) {
            float m = (float)((double)c2 + (double)c1);
            if (isfinite(m)) {
              q->nodes[cs[1]].val = m;
              q->len = s1 - 1; /* drop c1 and the inner + */
              s[1] = cs[1];
              continue;
            }
          }
        }
        break;
      case NL_OP_SUB:
        if (k1 && c1 == 0.0f) { /* a - 0 */
          q->len = s1;
          done = 1;
        } else if (k0 && c0 == 0.0f) { /* 0 - a -> -a */
          move_span(q, s[0], s1, e);
          sp--;
          op = NL_OP_NEG;
          nargs = 1;
          continue;
        } else if (k1) { /* a - c -> a + (-c) */
          q->nodes[s1].val = -c1;
          op = NL_OP_ADD;
          continue;
        } else if (q->nodes[e - 1].op == NL_OP_NEG) { /* a - -b -> a + b */
          q->len--;
          op = NL_OP_ADD;
          continue;
        }
        break;
      case NL_OP_MUL:
        if (k1 && !k0) { /* a*c -> c*a */
          swap_spans(q, s[0], s1, e);
          s[1] = s[0] + 1;
          continue;
        }
        if (k0) {
          int cs[3];
          if (c0 == 1.0f) {
            move_span(q, s[0], s1, e);
            done = 1;
          } else if (c0 == -1.0f) {
            move_span(q, s[0], s1, e);
            sp--;
            op = NL_OP_NEG;
            nargs = 1;
            continue;
          } else if (c0 == 0.0f && finite_span(q, s1, e)) {
            set_const(q, s[0], 0.0f);
            sp -= 1;
            return sp;
          } else if (q->nodes[e - 1].op == NL_OP_NEG) { /* c*-a -> (-c)*a */
            q->len--;
            q->nodes[s[0]].val = -c0;
            continue;
          } else if (q->nodes[e - 1].op == NL_OP_MUL && child_starts(q, s1, e, cs) == 2 &&
                     is_const(q, cs[0], cs[1], &c1)) {
            /* c0*(c1*a) -> (c0 c1)*a */
            float m = (float)((double)c0 * (double)c1);
            if (isfinite(m) && m != 0.0f) {
              q->nodes[s1].val = m;
              move_span(q, s[0], s1, e - 1); /* drop c0 and the inner * */
              s[1] = s[0] + 1;
              continue;
            }
          }
        }
        break;
      case NL_OP_DIV:
        if (k1 && c1 == 1.0f) {
          q->len = s1;
          done = 1;
        } else if (k1 && c1 == -1.0f) {
          q->len = s1;
          sp--;
          op = NL_OP_NEG;
          nargs = 1;
          continue;
        } else if (k0 && c0 == 0.0f) {
          ival d = interval_span(q, s1, e);
          if (d.fin && (d.lo > 0 || d.hi < 0)) {
            set_const(q, s[0], 0.0f);
            sp -= 1;
            return sp;
          }
        }
        break;
      case NL_OP_NEG: {
        nl_op inner = (nl_op)q->nodes[e - 1].op;
        if (inner == NL_OP_NEG) { /* --a */
          q->len--;
          done = 1;
        } else if (inner == NL_OP_MUL) { /* -(c*a) -> (-c)*a */
          int cs[3];
          child_starts(q, s[0], e, cs);
          float c;
          if (is_const(q, cs[0], cs[1], &c)) {
            q->nodes[cs[0]].val = -c;
            done = 1;
          }
        }
        break;
      }
      case NL_OP_POW:
        if (iv == 0 && finite_span(q, s[0], e)) {
          set_const(q, s[0], 1.0f);
          return sp;
        }
        if (iv == 1) done = 1;
        break;
      case NL_OP_CLIP: {
        if (q->nodes[e - 1].op == NL_OP_CLIP) {
          done = 1;
          break;
        }
        ival a = interval_span(q, s[0], e);
        if (a.fin && a.lo >= -5 && a.hi <= 5) done = 1;
        break;
      }
      case NL_OP_CLIP3: {
        float lo, hi;
        if (is_const(q, s[1], s[2], &lo) && is_const(q, s[2], e, &hi) && lo == -5.0f &&
            hi == 5.0f) {
          q->len = s[1];
          sp -= 2;
          op = NL_OP_CLIP;
          nargs = 1;
          continue;
        }
        break;
      }
      case NL_OP_ABS: {
        nl_op inner = (nl_op)q->nodes[e - 1].op;
        if (inner == NL_OP_ABS) {
          done = 1;
        } else if (inner == NL_OP_NEG) {
          q->len--;
          continue;
        } else {
          ival a = interval_span(q, s[0], e);
          if (a.fin && a.lo >= 0) done = 1;
        }
        break;
      }
      default:
        break;
    }
    if (!done) nl_prog_push(q, op, 0, iv);
    return sp - nargs + 1;
  }
}

void nl_simplify(nl_prog *p) {
  if (p->len <= 0) return;
  nl_prog q;
  nl_prog_init(&q);
  int *st = nl_xmalloc(sizeof(int) * (size_t)p->len);
  int sp = 0;
  for (int i = 0; i < p->len; i++) {
    const nl_node *n = &p->nodes[i];
    if (n->arity == 0) {
      st[sp++] = q.len;
      nl_prog_push(&q, (nl_op)n->op, n->val, n->ival);
    } else {
      sp = combine(&q, st, sp, (nl_op)n->op, n->ival);
    }
  }
  free(st);
  free(p->nodes);
  *p = q;
}
