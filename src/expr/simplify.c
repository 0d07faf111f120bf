/* Simplification: constant folding, identities, cancellations and the
 * collection of like terms, repeated to a fixed point.
 *
 * The program is copied into a hash-consed tree (every distinct subtree is
 * stored once, so two subtrees are equal exactly when their ids are), each
 * node carrying its size, depth, cost and an interval enclosing every value
 * the engine's float evaluation can give it for finite float x (with the
 * float rounding of every operation and the error of the vectorised tanh,
 * sigmoid and exp, and a flag for a possible NaN). Nodes are never changed
 * once made: a rewrite makes new nodes, and `simp` maps every node to its
 * simplified form (memoised, so equal subtrees are rewritten alike). A pass
 * simplifies the root bottom up; passes repeat until the root stays.
 *
 * The rules, each applied to a node whose children are already simplified:
 *  - a subtree without x is evaluated in double precision (as nl_eval1
 *    does) and rounded once to float, the way constants are stored; it
 *    stays unfolded when the value is not finite or would lose its value to
 *    underflow (nonzero, below FLT_MIN and not exactly a float);
 *  - sums (+, -, unary minus) are flattened into coefficient * factors
 *    terms and a constant; like terms (the same factors) are collected,
 *    a*e + b*e -> (a+b)*e, terms whose coefficients cancel are dropped
 *    (x - x, x + (-x)), constants are summed, and a constant times a sum is
 *    distributed when that is cheaper (x + 2*(x + 1) -> 3*x + 2);
 *  - products (*, division by a nonzero constant, unary minus) are
 *    flattened into one coefficient times the other factors:
 *    c1*(c2*e) -> (c1 c2)*e, 1*e -> e, -1*e -> -e, 0*e -> 0;
 *  - e*c -> c*e, -(c*e) -> (-c)*e, --e -> e, e/e -> 1, 0/e -> 0,
 *    (-a)/b -> -(a/b), e^0 -> 1, e^1 -> e, (-e)^2k and abs(e)^2k -> e^2k,
 *    tanh(-e) -> -tanh(e), abs(abs(e)), abs(-e), clip(clip(e)),
 *    clip(e, -5, 5) -> clip(e), and clip or abs dropped or folded to a
 *    bound where the interval of their argument decides them.
 * A rewrite is kept only when it costs no more FLOPs (clip charged 0 and 1)
 * and has no more nodes, and when it is cheaper or smaller; only the exact
 * rewrites above (a swap, a sign moved into a constant or out of tanh,
 * x^n, a division) are taken at equal cost. So the result never costs more
 * than the input, never has more nodes, and a sum or product is not
 * re-associated for its own sake.
 *
 * Values: the simplified program has the value of the original at every
 * finite x up to float rounding: merged constants are rounded once, and
 * sums and products whose terms are collected are re-associated (where the
 * written form cancels catastrophically, or an intermediate overflows,
 * the results may differ accordingly). A rule that drops a subtree (e*0,
 * e - e, e/e, 0/e, clip or abs of a bounded e) applies only when the
 * interval analysis proves that the subtree is never NaN, and never
 * infinite where inf*0 or inf - inf would be NaN, in float evaluation: so
 * exp(x)*0, x^30*0, (1/x)*0, x/x and exp(x) - exp(x) stay. Such a pair of
 * like terms of both signs stays as written, as one subterm of its sum
 * (A + (e - e) does not become (A + e) - e, which would lose A to rounding
 * where e is large), and a term that is not collected keeps its own
 * subtree, so that copies of a subtree are computed alike. The sign of a
 * zero is kept where it is known (x - x is +0, 0*e takes the sign of e
 * where that has one) and otherwise not, so a division by an exact zero
 * may change which infinity results. At x = NaN or infinity a program
 * that folds to a constant no longer propagates them. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "expr/expr.h"

#define MAX_PASSES 32
/* Deeper programs (never parsed, never bred) are left as they are: the
 * rewriting recurses over the tree. */
#define MAX_DEPTH_IN (2 * NL_EXPR_MAX_DEPTH)
/* A rewrite may deepen a subtree up to this depth (sums are rebuilt as
 * left-leaning chains). */
#define FREE_DEPTH 64

/* ---- intervals of float evaluation ---- */

typedef struct ival {
  double lo, hi; /* every non-NaN value lies in [lo, hi] (infinities included) */
  int nan;       /* NaN possible */
} ival;

/* Smallest float >= v (as a double), +inf above FLT_MAX: an upper bound of
 * the float rounding of any real number whose double rounding is v. */
static double fup(double v) {
  if (isnan(v) || v == -INFINITY) return v;
  if (v > FLT_MAX) return INFINITY;
  if (v < -FLT_MAX) return -FLT_MAX;
  float f = (float)v;
  if ((double)f < v) f = nextafterf(f, INFINITY);
  return f;
}
static double fdown(double v) { return -fup(-v); }

static int has0(ival a) { return a.lo <= 0 && a.hi >= 0; }
static int hasinf(ival a) { return a.lo == -INFINITY || a.hi == INFINITY; }
static int finite_iv(ival a) { return !a.nan && !hasinf(a); }

static ival iv(double lo, double hi, int nan) {
  ival r = {lo, hi, nan};
  if (isnan(r.lo)) r.lo = -INFINITY;
  if (isnan(r.hi)) r.hi = INFINITY;
  return r;
}

/* Bounds of one correctly rounded float operation whose exact result lies
 * between the doubles lo and hi. */
static ival rounded(double lo, double hi, int nan) { return iv(fdown(lo), fup(hi), nan); }

/* Bounds of the vectorised approximations (relative error below 2^-21),
 * with results near zero flushed. */
static ival approx(double lo, double hi, int nan) {
  const double w = 0x1p-20;
  double l = lo - fabs(lo) * w, h = hi + fabs(hi) * w;
  if (l > 0 && l < 1e-36) l = 0;
  if (h < 0 && h > -1e-36) h = 0;
  return rounded(l, h, nan);
}

/* min and max of the non-NaN values among n candidates */
static ival hull(const double *v, int n, int nan) {
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < n; i++) {
    if (isnan(v[i])) continue;
    if (v[i] < lo) lo = v[i];
    if (v[i] > hi) hi = v[i];
  }
  if (lo > hi) return iv(-INFINITY, INFINITY, 1);
  return rounded(lo, hi, nan);
}

static double powd(double a, int n) {
  double r = 1;
  for (int k = 0; k < n; k++) r *= a;
  return r;
}

static double clampd(double a, double lo, double hi) {
  double v = a < lo ? lo : a;
  return v > hi ? hi : v;
}

/* Interval of an operator over its operands' intervals. */
static ival interval_op(int op, int32_t n, const ival *a) {
  switch (op) {
    case NL_OP_ADD:
    case NL_OP_SUB: {
      ival b = a[1];
      if (op == NL_OP_SUB) b = iv(-a[1].hi, -a[1].lo, a[1].nan);
      int nan = a[0].nan || b.nan || (a[0].hi == INFINITY && b.lo == -INFINITY) ||
                (a[0].lo == -INFINITY && b.hi == INFINITY);
      return rounded(a[0].lo + b.lo, a[0].hi + b.hi, nan);
    }
    case NL_OP_MUL: {
      int nan = a[0].nan || a[1].nan || (has0(a[0]) && hasinf(a[1])) ||
                (has0(a[1]) && hasinf(a[0]));
      double p[4] = {a[0].lo * a[1].lo, a[0].lo * a[1].hi, a[0].hi * a[1].lo, a[0].hi * a[1].hi};
      return hull(p, 4, nan);
    }
    case NL_OP_DIV: {
      int nan = a[0].nan || a[1].nan || (hasinf(a[0]) && hasinf(a[1]));
      if (has0(a[1])) return iv(-INFINITY, INFINITY, nan || has0(a[0]));
      double p[4] = {a[0].lo / a[1].lo, a[0].lo / a[1].hi, a[0].hi / a[1].lo, a[0].hi / a[1].hi};
      return hull(p, 4, nan);
    }
    case NL_OP_NEG:
      return iv(-a[0].hi, -a[0].lo, a[0].nan);
    case NL_OP_POW: {
      if (n <= 0) return iv(1, 1, 0); /* the engine gives 1 for every operand */
      /* n-1 roundings of relative error 2^-24 each */
      double w = (double)n * 0x1p-23;
      double l = powd(a[0].lo, n), h = powd(a[0].hi, n), lo, hi;
      if (n % 2 == 1) {
        lo = l;
        hi = h;
      } else if (a[0].lo >= 0) {
        lo = l;
        hi = h;
      } else if (a[0].hi <= 0) {
        lo = h;
        hi = l;
      } else {
        lo = 0;
        hi = l > h ? l : h;
      }
      return rounded(lo - fabs(lo) * w, hi + fabs(hi) * w, a[0].nan);
    }
    case NL_OP_TANH: { /* (1 - e)/(1 + e) with e >= 0 never leaves [-1, 1] */
      ival r = approx(tanh(a[0].lo), tanh(a[0].hi), a[0].nan);
      return iv(fmax(r.lo, -1), fmin(r.hi, 1), r.nan);
    }
    case NL_OP_SIGMOID: { /* 1/(1 + e) with e >= 0 never leaves [0, 1] */
      ival r = approx(1 / (1 + exp(-a[0].lo)), 1 / (1 + exp(-a[0].hi)), a[0].nan);
      return iv(fmax(r.lo, 0), fmin(r.hi, 1), r.nan);
    }
    case NL_OP_EXP:
      return approx(exp(a[0].lo), exp(a[0].hi), a[0].nan);
    case NL_OP_ABS:
      if (a[0].lo >= 0) return a[0];
      if (a[0].hi <= 0) return iv(-a[0].hi, -a[0].lo, a[0].nan);
      return iv(0, -a[0].lo > a[0].hi ? -a[0].lo : a[0].hi, a[0].nan);
    case NL_OP_CLIP:
      return iv(clampd(a[0].lo, -5, 5), clampd(a[0].hi, -5, 5), a[0].nan);
    case NL_OP_CLIP3: {
      /* min(max(a, lo), hi); a NaN bound never makes the result NaN */
      if (a[1].nan || a[2].nan) {
        double l = fmin(a[0].lo, fmin(a[1].lo, a[2].lo));
        double h = fmax(a[0].hi, fmax(a[1].hi, a[2].hi));
        return iv(l, h, a[0].nan);
      }
      double vl = fmax(a[0].lo, a[1].lo), vh = fmax(a[0].hi, a[1].hi);
      return iv(fmin(vl, a[2].lo), fmin(vh, a[2].hi), a[0].nan);
    }
    default:
      return iv(-INFINITY, INFINITY, 1);
  }
}

/* ---- the hash-consed tree ---- */

typedef struct tnode {
  uint8_t op;
  uint8_t arity;
  int32_t ival; /* exponent of NL_OP_POW */
  float val;    /* NL_OP_CONST */
  int k[3];     /* children */
  int size, depth;
  int cost;     /* FLOPs with clip charged 1 */
  int nclip;    /* clip nodes (cost with clip charged 0: cost - nclip) */
  int hasx;
  ival r;
  uint64_t h;
} tnode;

typedef struct arena {
  tnode *n;
  int len, cap;
  int *memo;    /* simplified form of each node; -1: not yet known */
  int *tab;     /* open-addressing table of node ids; -1: empty */
  size_t tcap;  /* power of two, at least twice len */
} arena;

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

static uint32_t fbits(float v) {
  uint32_t b;
  memcpy(&b, &v, sizeof b);
  return b;
}

static uint64_t node_hash(int op, int32_t n, float v, const int *k, int arity) {
  uint64_t h = mix(0x12345ull, (uint64_t)op);
  h = mix(h, (uint64_t)(uint32_t)n);
  h = mix(h, fbits(v));
  for (int i = 0; i < arity; i++) h = mix(h, (uint64_t)(uint32_t)k[i]);
  return h;
}

static int same_node(const tnode *t, int op, int32_t n, float v, const int *k, int arity) {
  if (t->op != op || t->ival != n || fbits(t->val) != fbits(v)) return 0;
  for (int i = 0; i < arity; i++)
    if (t->k[i] != k[i]) return 0;
  return 1;
}

static void table_insert(arena *A, int id) {
  size_t m = A->tcap - 1, j = (size_t)A->n[id].h & m;
  while (A->tab[j] >= 0) j = (j + 1) & m;
  A->tab[j] = id;
}

static void grow(arena *A) {
  int cap = A->cap ? A->cap * 2 : 64;
  A->n = nl_xrealloc(A->n, sizeof(tnode) * (size_t)cap);
  A->memo = nl_xrealloc(A->memo, sizeof(int) * (size_t)cap);
  for (int i = A->cap; i < cap; i++) A->memo[i] = -1;
  A->cap = cap;
  free(A->tab);
  A->tcap = (size_t)cap * 2;
  A->tab = nl_xmalloc(sizeof(int) * A->tcap);
  for (size_t j = 0; j < A->tcap; j++) A->tab[j] = -1;
  for (int i = 0; i < A->len; i++) table_insert(A, i);
}

static int op_cost(int op, int32_t n) {
  if (op == NL_OP_POW) return n > 1 ? n - 1 : 0;
  if (op == NL_OP_CLIP || op == NL_OP_CLIP3) return 1;
  return nl_ops[op].cost;
}

/* The node (op, n, v, k): the existing one when there is one. */
static int mk(arena *A, int op, int32_t n, float v, int k0, int k1, int k2) {
  int k[3] = {k0, k1, k2}, arity = nl_ops[op].arity;
  if (op != NL_OP_POW) n = 0;
  if (op != NL_OP_CONST) v = 0.0f;
  uint64_t h = node_hash(op, n, v, k, arity);
  if (A->tcap) {
    size_t m = A->tcap - 1, j = (size_t)h & m;
    for (; A->tab[j] >= 0; j = (j + 1) & m) {
      const tnode *t = &A->n[A->tab[j]];
      if (t->h == h && same_node(t, op, n, v, k, arity)) return A->tab[j];
    }
  }
  if (A->len == A->cap) grow(A);
  int id = A->len++;
  tnode *t = &A->n[id];
  memset(t, 0, sizeof *t);
  t->op = (uint8_t)op;
  t->arity = (uint8_t)arity;
  t->ival = n;
  t->val = v;
  t->h = h;
  long size = 1;
  int depth = 0, cost = op_cost(op, n), nclip = op == NL_OP_CLIP || op == NL_OP_CLIP3;
  int hasx = op == NL_OP_X;
  ival a[3];
  for (int i = 0; i < arity; i++) {
    const tnode *c = &A->n[k[i]];
    t->k[i] = k[i];
    size += c->size;
    if (c->depth > depth) depth = c->depth;
    cost += c->cost;
    nclip += c->nclip;
    hasx |= c->hasx;
    a[i] = c->r;
  }
  t->size = size > INT32_MAX / 2 ? INT32_MAX / 2 : (int)size;
  t->depth = depth + 1;
  t->cost = cost;
  t->nclip = nclip;
  t->hasx = hasx;
  if (op == NL_OP_CONST)
    t->r = iv(v, v, 0);
  else if (op == NL_OP_X)
    t->r = iv(-FLT_MAX, FLT_MAX, 0);
  else
    t->r = interval_op(op, n, a);
  table_insert(A, id);
  return id;
}

static int mkc(arena *A, float v) { return mk(A, NL_OP_CONST, 0, v, -1, -1, -1); }
static int mk1(arena *A, int op, int a) { return mk(A, op, 0, 0, a, -1, -1); }
static int mk2(arena *A, int op, int a, int b) { return mk(A, op, 0, 0, a, b, -1); }

static int is_const(const arena *A, int id) { return A->n[id].op == NL_OP_CONST; }

/* ---- constants ---- */

/* A value becomes a stored constant when it is finite as a float and does
 * not lose its value to underflow (nonzero below FLT_MIN and not exactly a
 * float, e.g. 1e-50 -> 0). */
static int storable(double v, float *out) {
  if (!isfinite(v)) return 0;
  float f = (float)v;
  if (!isfinite(f)) return 0;
  if (v != 0 && fabs(v) < FLT_MIN && (double)f != v) return 0;
  *out = f;
  return 1;
}

/* Double-precision value of a subtree without x. */
static double eval_d(const arena *A, int id) {
  const tnode *t = &A->n[id];
  if (t->op == NL_OP_CONST) return t->val;
  double a[3] = {0, 0, 0};
  for (int i = 0; i < t->arity; i++) a[i] = eval_d(A, t->k[i]);
  return nl_ops[t->op].f(a, t->ival);
}

/* The subtree folded to a constant, or -1. */
static int fold(arena *A, int id) {
  float f;
  if (!storable(eval_d(A, id), &f)) return -1;
  return mkc(A, f);
}

/* ---- growable arrays ---- */

typedef struct ivec {
  int *v;
  int n, cap;
} ivec;

static void ivec_push(ivec *a, int x) {
  if (a->n == a->cap) {
    a->cap = a->cap ? a->cap * 2 : 16;
    a->v = nl_xrealloc(a->v, sizeof(int) * (size_t)a->cap);
  }
  a->v[a->n++] = x;
}

/* ---- products ---- */

/* Flatten a product: num/den times the factors, in their order. Looks
 * through *, unary minus and division by a constant. */
static void split(const arena *A, int id, double *num, double *den, ivec *f) {
  const tnode *t = &A->n[id];
  switch (t->op) {
    case NL_OP_CONST:
      *num *= t->val;
      return;
    case NL_OP_MUL:
      split(A, t->k[0], num, den, f);
      split(A, t->k[1], num, den, f);
      return;
    case NL_OP_NEG:
      *num = -*num;
      split(A, t->k[0], num, den, f);
      return;
    case NL_OP_DIV: /* e/0 stays a factor of its own */
      if (is_const(A, t->k[1]) && A->n[t->k[1]].val != 0.0f) {
        split(A, t->k[0], num, den, f);
        *den *= A->n[t->k[1]].val;
        return;
      }
      break;
    default:
      break;
  }
  ivec_push(f, id);
}

/* f[0]*f[1]*...*f[n-1], left-leaning; the first factor negated when neg. */
static int chain(arena *A, const int *f, int n, int first) {
  int acc = first;
  for (int i = 1; i < n; i++) acc = mk2(A, NL_OP_MUL, acc, f[i]);
  return acc;
}

/* (num/den) * f[0]*...*f[n-1] in canonical form: "c*f0*f1", "-f0*f1",
 * "f0*f1/d" (a lone division by a constant stays a division), or -1 when
 * a constant cannot be stored. */
static int build_prod(arena *A, double num, double den, const int *f, int n) {
  float c;
  if (den < 0) {
    num = -num;
    den = -den;
  }
  if (n == 0) return storable(num / den, &c) ? mkc(A, c) : -1;
  if (den != 1 && fabs(num) == 1) {
    float d;
    if (!storable(den, &d)) return -1;
    int first = num < 0 ? mk1(A, NL_OP_NEG, f[0]) : f[0];
    return mk2(A, NL_OP_DIV, chain(A, f, n, first), mkc(A, d));
  }
  if (!storable(num / den, &c)) return -1;
  int first;
  if (c == 1.0f)
    first = f[0];
  else if (c == -1.0f)
    first = mk1(A, NL_OP_NEG, f[0]);
  else
    first = mk2(A, NL_OP_MUL, mkc(A, c), f[0]);
  return chain(A, f, n, first);
}

/* -e with the grouping of e kept (the sign goes into a constant, a
 * negation or a numerator): exact in float. -1 when there is no place. */
static int negate(arena *A, int id) {
  const tnode t = A->n[id];
  switch (t.op) {
    case NL_OP_CONST:
      return mkc(A, -t.val);
    case NL_OP_NEG:
      return t.k[0];
    case NL_OP_MUL:
    case NL_OP_DIV: {
      int a = negate(A, t.k[0]);
      if (a >= 0) return mk2(A, t.op, a, t.k[1]);
      int b = negate(A, t.k[1]);
      return b >= 0 ? mk2(A, t.op, t.k[0], b) : -1;
    }
    default:
      return -1;
  }
}

/* z (a zero) times or over a value in r: the sign of the zero where r
 * has one sign, else +0. */
static float zero_times(double z, ival r) {
  int neg = signbit(z) != 0;
  if (r.lo > 0) return neg ? -0.0f : 0.0f;
  if (r.hi < 0) return neg ? 0.0f : -0.0f;
  return 0.0f;
}

static int product_rule(arena *A, int id) {
  double num = 1, den = 1;
  ivec f = {0};
  split(A, id, &num, &den, &f);
  int r = -1;
  if (num == 0 && f.n > 0 && isfinite(den) && den != 0) {
    int p = chain(A, f.v, f.n, f.v[0]);
    ival rp = A->n[p].r;
    if (finite_iv(rp)) /* the zero's sign where the factors' sign is known */
      r = mkc(A, zero_times(num / den, rp));
  }
  if (r < 0) r = build_prod(A, num, den, f.v, f.n);
  free(f.v);
  return r;
}

/* ---- sums ---- */

typedef struct term {
  int f0, nf;   /* factors: fv[f0 .. f0+nf) in order, fs[..] sorted */
  double n, d;  /* coefficient n/d, d > 0 */
  int pos;      /* order of appearance */
  int node;     /* the subtree it came from, added with sign sgn */
  int sgn;      /* +1 or -1; 0 when scaled by a distributed constant */
  int merged;   /* other terms were collected into this one */
} term;

typedef struct sum {
  term *t;
  int nt, ct;
  ivec fv, fs;
  double c;     /* constant part */
} sum;

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

static void add_term(sum *s, const ivec *f, double n, double d, int node, double mult) {
  if (s->nt == s->ct) {
    s->ct = s->ct ? 2 * s->ct : 8;
    s->t = nl_xrealloc(s->t, sizeof(term) * (size_t)s->ct);
  }
  if (d < 0) {
    n = -n;
    d = -d;
  }
  term *t = &s->t[s->nt];
  t->f0 = s->fv.n;
  t->nf = f->n;
  t->n = n;
  t->d = d;
  t->pos = s->nt++;
  t->node = node;
  t->sgn = mult == 1 ? 1 : mult == -1 ? -1 : 0;
  t->merged = 0;
  for (int i = 0; i < f->n; i++) {
    ivec_push(&s->fv, f->v[i]);
    ivec_push(&s->fs, f->v[i]);
  }
  qsort(s->fs.v + t->f0, (size_t)t->nf, sizeof(int), cmp_int);
}

/* Add mult * (subtree id) to the sum; with expand, a constant times a sum
 * is distributed. */
static void collect(const arena *A, int id, double mult, int expand, sum *s) {
  const tnode *t = &A->n[id];
  switch (t->op) {
    case NL_OP_ADD:
      collect(A, t->k[0], mult, expand, s);
      collect(A, t->k[1], mult, expand, s);
      return;
    case NL_OP_SUB:
      collect(A, t->k[0], mult, expand, s);
      collect(A, t->k[1], -mult, expand, s);
      return;
    case NL_OP_NEG:
      collect(A, t->k[0], -mult, expand, s);
      return;
    case NL_OP_CONST:
      s->c += mult * t->val;
      return;
    default:
      break;
  }
  double num = 1, den = 1;
  ivec f = {0};
  split(A, id, &num, &den, &f);
  if (f.n == 0) {
    s->c += mult * num / den;
  } else if (expand && f.n == 1 && (A->n[f.v[0]].op == NL_OP_ADD || A->n[f.v[0]].op == NL_OP_SUB) &&
             (num != 1 || den != 1)) {
    collect(A, f.v[0], mult * num / den, expand, s);
  } else {
    add_term(s, &f, mult * num, den, id, mult);
  }
  free(f.v);
}

/* Order of terms by their sorted factors, then by appearance. */
static int term_cmp(const sum *s, int a, int b) {
  const term *x = &s->t[a], *y = &s->t[b];
  if (x->nf != y->nf) return x->nf < y->nf ? -1 : 1;
  for (int i = 0; i < x->nf; i++) {
    int u = s->fs.v[x->f0 + i], v = s->fs.v[y->f0 + i];
    if (u != v) return u < v ? -1 : 1;
  }
  return (x->pos > y->pos) - (x->pos < y->pos);
}

static void sort_terms(const sum *s, int *idx, int *tmp, int n) {
  if (n < 2) return;
  int h = n / 2;
  sort_terms(s, idx, tmp, h);
  sort_terms(s, idx + h, tmp, n - h);
  int i = 0, j = h, k = 0;
  while (i < h && j < n) tmp[k++] = term_cmp(s, idx[i], idx[j]) <= 0 ? idx[i++] : idx[j++];
  while (i < h) tmp[k++] = idx[i++];
  while (j < n) tmp[k++] = idx[j++];
  memcpy(idx, tmp, sizeof(int) * (size_t)n);
}

static int same_factors(const sum *s, int a, int b) {
  const term *x = &s->t[a], *y = &s->t[b];
  if (x->nf != y->nf) return 0;
  return memcmp(s->fs.v + x->f0, s->fs.v + y->f0, sizeof(int) * (size_t)x->nf) == 0;
}

/* Term i of the sum as a subtree: with its sign when it comes first
 * (*neg = 0), else its magnitude and *neg set when it is subtracted. A
 * term that was not collected or scaled keeps its own subtree. -1 when a
 * coefficient cannot be stored. */
static int signed_term(arena *A, const sum *s, int i, int first, int *neg) {
  const term *t = &s->t[i];
  int own = !t->merged && t->sgn != 0;
  *neg = 0;
  if (first) {
    if (!own) return build_prod(A, t->n, t->d, s->fv.v + t->f0, t->nf);
    if (t->sgn > 0) return t->node;
    int r = negate(A, t->node);
    return r >= 0 ? r : mk1(A, NL_OP_NEG, t->node);
  }
  if (own) {
    *neg = t->sgn < 0;
    return t->node;
  }
  *neg = t->n < 0;
  return build_prod(A, *neg ? -t->n : t->n, t->d, s->fv.v + t->f0, t->nf);
}

/* The sum rebuilt with like terms collected, or -1. */
static int sum_build(arena *A, int id, int expand) {
  sum s = {0};
  collect(A, id, 1.0, expand, &s);
  int r = -1;
  int *idx = nl_xmalloc(sizeof(int) * (size_t)(s.nt + 1));
  int *tmp = nl_xmalloc(sizeof(int) * (size_t)(s.nt + 1));
  char *dead = nl_xcalloc((size_t)s.nt + 1, 1);
  for (int i = 0; i < s.nt; i++) idx[i] = i;
  sort_terms(&s, idx, tmp, s.nt);
  /* Collect each group of like terms into its first member. Terms that
   * may be infinite or NaN are collected only when all have one sign.
   * With both signs (exp(x) - exp(x), inf - inf) the group stays as
   * written, as one subterm in the place of its first member: so that
   * A + (e - e) does not become (A + e) - e, which loses A to rounding
   * where e is large. grp[i]: the first member of i's kept group, or -1. */
  int *grp = nl_xmalloc(sizeof(int) * (size_t)(s.nt + 1));
  for (int i = 0; i < s.nt; i++) grp[i] = -1;
  for (int g = 0; g < s.nt;) {
    int e = g + 1;
    while (e < s.nt && same_factors(&s, idx[g], idx[e])) e++;
    const term *t0 = &s.t[idx[g]];
    int p = chain(A, s.fv.v + t0->f0, t0->nf, s.fv.v[t0->f0]);
    int fin = finite_iv(A->n[p].r), pos = 0, neg = 0;
    for (int i = g; i < e; i++) {
      pos |= s.t[idx[i]].n > 0;
      neg |= s.t[idx[i]].n < 0;
    }
    if (!fin && pos && neg) {
      int first = idx[g]; /* lowest position: sorted by position within a group */
      for (int i = g; i < e; i++) grp[idx[i]] = first;
      g = e;
      continue;
    }
    int into = -1;
    for (int i = g; i < e; i++) {
      term *t = &s.t[idx[i]];
      if (!fin && t->n == 0) continue; /* 0*exp(x) stays */
      if (into < 0) {
        into = idx[i];
        continue;
      }
      term *u = &s.t[into];
      u->n = u->n / u->d + t->n / t->d;
      u->d = 1;
      u->merged = 1;
      dead[idx[i]] = 1;
    }
    if (fin && into >= 0 && s.t[into].n == 0) dead[into] = 1;
    g = e;
  }
  /* rebuild in the order of appearance, the constant last. A term that
   * was not collected or scaled keeps its own subtree (so that it stays
   * bit for bit the twin of its copies elsewhere); the others are built
   * as coefficient times factors. */
  int acc = -1, ok = 1;
  for (int i = 0; i < s.nt && ok; i++) {
    if (dead[i] || (grp[i] >= 0 && grp[i] != i)) continue;
    int b, neg;
    if (grp[i] == i) { /* a kept group: its members in order, one subterm */
      b = -1;
      for (int j = i; j < s.nt && ok; j++) {
        if (grp[j] != i) continue;
        int nj;
        int tj = signed_term(A, &s, j, b < 0, &nj);
        if (tj < 0) ok = 0;
        else b = b < 0 ? tj : mk2(A, nj ? NL_OP_SUB : NL_OP_ADD, b, tj);
      }
      neg = 0;
    } else {
      b = signed_term(A, &s, i, acc < 0, &neg);
    }
    if (b < 0) ok = 0;
    else acc = acc < 0 ? b : mk2(A, neg ? NL_OP_SUB : NL_OP_ADD, acc, b);
  }
  free(grp);
  float c;
  if (ok && storable(s.c, &c)) {
    if (acc < 0)
      r = mkc(A, c);
    else if (c == 0.0f)
      r = acc;
    else
      r = mk2(A, c < 0 ? NL_OP_SUB : NL_OP_ADD, acc, mkc(A, c < 0 ? -c : c));
  }
  free(idx);
  free(tmp);
  free(dead);
  free(s.t);
  free(s.fv.v);
  free(s.fs.v);
  return r;
}

/* ---- choosing among forms ---- */

/* Is candidate c to replace n: no more FLOPs (clip charged 1 or 0), no more
 * nodes, not much deeper; better in one of them, or equal and preferred. */
static int better(const arena *A, int c, int n, int prefer) {
  if (c < 0 || c == n) return 0;
  const tnode *a = &A->n[c], *b = &A->n[n];
  if (a->cost > b->cost || a->cost - a->nclip > b->cost - b->nclip || a->size > b->size)
    return 0;
  if (a->depth > b->depth && a->depth > FREE_DEPTH) return 0;
  if (a->cost < b->cost || a->cost - a->nclip < b->cost - b->nclip || a->size < b->size)
    return 1;
  return prefer;
}

static int pick(const arena *A, int n, int c, int prefer) {
  return better(A, c, n, prefer) ? c : n;
}

/* A sum is rewritten only when that saves FLOPs or nodes: re-associating
 * it for its own sake would only move rounding around. */
static int sum_rule(arena *A, int id) {
  int r = pick(A, id, sum_build(A, id, 0), 0);
  return pick(A, r, sum_build(A, id, 1), 0);
}

/* ---- the rules of one node (children simplified) ---- */

static int rules(arena *A, int id) {
  const tnode *t = &A->n[id];
  int a = t->arity > 0 ? t->k[0] : -1;
  ival ra = a >= 0 ? A->n[a].r : iv(0, 0, 0);
  switch (t->op) {
    case NL_OP_ADD:
    case NL_OP_SUB: {
      /* e + 0, e - 0, 0 + e, 0 - e: also where the sum as a whole stays */
      int b = t->k[1];
      if (is_const(A, b) && A->n[b].val == 0.0f) return a;
      if (is_const(A, a) && A->n[a].val == 0.0f)
        return t->op == NL_OP_ADD ? b : mk1(A, NL_OP_NEG, b);
      return sum_rule(A, id);
    }
    case NL_OP_NEG: {
      int op = A->n[a].op;
      if (op == NL_OP_NEG) return A->n[a].k[0];
      if (op == NL_OP_ADD || op == NL_OP_SUB) return sum_rule(A, id);
      int r = pick(A, id, negate(A, a), 1); /* -(2*x) -> -2*x */
      return pick(A, r, product_rule(A, id), 0);
    }
    case NL_OP_MUL: {
      /* e*c -> c*e (exact) */
      int r = id;
      if (is_const(A, t->k[1]) && !is_const(A, a)) r = mk2(A, NL_OP_MUL, t->k[1], a);
      return pick(A, r, product_rule(A, r), 0);
    }
    case NL_OP_DIV: {
      int b = t->k[1];
      ival rb = A->n[b].r;
      if (is_const(A, b)) return pick(A, id, product_rule(A, id), 0);
      if (is_const(A, a) && A->n[a].val == 0.0f && !rb.nan && !has0(rb))
        return mkc(A, zero_times(A->n[a].val, rb));
      if (a == b && finite_iv(rb) && !has0(rb)) return mkc(A, 1.0f);
      if (A->n[a].op == NL_OP_NEG)
        return pick(A, id, mk1(A, NL_OP_NEG, mk2(A, NL_OP_DIV, A->n[a].k[0], b)), 1);
      if (A->n[b].op == NL_OP_NEG)
        return pick(A, id, mk1(A, NL_OP_NEG, mk2(A, NL_OP_DIV, a, A->n[b].k[0])), 1);
      return id;
    }
    case NL_OP_POW: {
      int32_t n = t->ival;
      if (n <= 0) return mkc(A, 1.0f);
      if (n == 1) return a;
      int op = A->n[a].op;
      if ((op == NL_OP_NEG || op == NL_OP_ABS) && n % 2 == 0)
        return mk(A, NL_OP_POW, n, 0, A->n[a].k[0], -1, -1);
      if (op == NL_OP_NEG)
        return pick(A, id, mk1(A, NL_OP_NEG, mk(A, NL_OP_POW, n, 0, A->n[a].k[0], -1, -1)), 1);
      return id;
    }
    case NL_OP_TANH:
      if (A->n[a].op == NL_OP_NEG)
        return pick(A, id, mk1(A, NL_OP_NEG, mk1(A, NL_OP_TANH, A->n[a].k[0])), 1);
      return id;
    case NL_OP_ABS: {
      int op = A->n[a].op;
      if (op == NL_OP_ABS) return a;
      if (op == NL_OP_NEG) return mk1(A, NL_OP_ABS, A->n[a].k[0]);
      if (ra.lo >= 0) return a;
      return id;
    }
    case NL_OP_CLIP:
      if (A->n[a].op == NL_OP_CLIP) return a;
      if (ra.lo >= -5 && ra.hi <= 5) return a;
      if (!ra.nan && ra.lo >= 5) return mkc(A, 5.0f);
      if (!ra.nan && ra.hi <= -5) return mkc(A, -5.0f);
      return id;
    case NL_OP_CLIP3: {
      int l = t->k[1], h = t->k[2];
      if (!is_const(A, l) || !is_const(A, h)) return id;
      float lo = A->n[l].val, hi = A->n[h].val;
      if (lo == -5.0f && hi == 5.0f) return mk1(A, NL_OP_CLIP, a);
      if (!ra.nan && (lo > hi || ra.lo >= hi)) return h;
      if (!ra.nan && ra.hi <= lo) return l;
      if (lo <= hi && ra.lo >= lo && ra.hi <= hi) return a;
      return id;
    }
    default:
      return id;
  }
}

/* The simplified form of node id. */
static int simp(arena *A, int id) {
  if (A->memo[id] >= 0) return A->memo[id];
  const tnode t = A->n[id]; /* copy: mk may move the array */
  int r = id;
  if (t.arity > 0) {
    if (!t.hasx) r = fold(A, id);
    if (r < 0 || r == id) {
      int k[3] = {-1, -1, -1};
      for (int i = 0; i < t.arity; i++) k[i] = simp(A, t.k[i]);
      int m = mk(A, t.op, t.ival, t.val, k[0], k[1], k[2]);
      r = -1;
      if (!A->n[m].hasx) r = fold(A, m);
      if (r < 0) r = rules(A, m);
    }
  }
  A->memo[id] = r;
  return r;
}

/* ---- conversion ---- */

static int from_prog(arena *A, const nl_prog *p) {
  int *st = nl_xmalloc(sizeof(int) * (size_t)p->len);
  int sp = 0;
  for (int i = 0; i < p->len; i++) {
    const nl_node *n = &p->nodes[i];
    int k[3] = {-1, -1, -1};
    for (int j = n->arity - 1; j >= 0; j--) k[j] = st[--sp];
    st[sp++] = mk(A, n->op, n->ival, n->val, k[0], k[1], k[2]);
  }
  int root = st[sp - 1];
  free(st);
  return root;
}

static void emit(const arena *A, int id, nl_prog *q) {
  const tnode *t = &A->n[id];
  for (int i = 0; i < t->arity; i++) emit(A, t->k[i], q);
  nl_prog_push(q, (nl_op)t->op, t->val, t->ival);
}

static int written_cost(const nl_prog *p, int clip) {
  nl_cost_opts o = {clip};
  return nl_cost_written(p, &o);
}

void nl_simplify(nl_prog *p) {
  if (p->len <= 1) return;
  int depth0 = nl_prog_depth(p);
  if (depth0 > MAX_DEPTH_IN) return;
  arena A = {0};
  int root = from_prog(&A, p);
  for (int pass = 0; pass < MAX_PASSES; pass++) {
    int r = simp(&A, root);
    if (r == root) break;
    root = r;
  }
  const tnode *t = &A.n[root];
  /* the rules never make a program costlier, larger or too deep; checked
   * here once more so that no rule can break that promise */
  if (t->size <= p->len && t->cost <= written_cost(p, 1) &&
      t->cost - t->nclip <= written_cost(p, 0) &&
      (t->depth <= depth0 || t->depth <= NL_EXPR_MAX_DEPTH)) {
    nl_prog q;
    nl_prog_init(&q);
    emit(&A, root, &q);
    free(p->nodes);
    *p = q;
  }
  free(A.n);
  free(A.memo);
  free(A.tab);
}
