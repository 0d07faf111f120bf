/* The GP search of one layer-seed: initialisation, variation, evaluation,
 * constant refinement, NSGA-II survival, the archive and the final front. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/interrupt.h"
#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "base/timer.h"
#include "search/gp.h"
#include "search/gp_local.h"

const nl_op nl_gp_ops[NL_GP_NOPS] = {NL_OP_ADD,     NL_OP_MUL,  NL_OP_NEG,  NL_OP_TANH,
                                     NL_OP_SIGMOID, NL_OP_CLIP, NL_OP_CLIP3};

static const char *const origin_names[] = {"search", "seed", "injected"};

const char *nl_gp_origin_name(int origin) {
  return origin >= 0 && origin <= NL_GP_ORIGIN_INJECTED ? origin_names[origin] : "search";
}

int nl_gp_origin_parse(const char *s) {
  for (int k = 0; k <= NL_GP_ORIGIN_INJECTED; k++)
    if (strcmp(s, origin_names[k]) == 0) return k;
  return -1;
}

double nl_gp_limit(double limit, int width) {
  if (limit != NL_GP_LN) return limit;
  return width > 0 ? 5.0 + 2.0 / width : 5.0;
}

void nl_gp_config_default(nl_gp_config *c) {
  memset(c, 0, sizeof *c);
  c->pop = 500;
  c->gens = 50;
  c->max_nodes = 20;
  c->init_depth = 4;
  c->tournament = 7;
  c->penalty = 0.005;
  c->delta_scale = 2.0;
  c->const_steps = 10;
  c->const_top = 100;
  c->const_lr = 0.1;
  c->const_points = 4096;
  c->val_frac = 0.1;
  c->p_cross = 0.9;
  c->p_mut = 0.3;
  const double w[NL_GP_NOPS] = {0.28, 0.26, 0.08, 0.20, 0.10, 0.08, 0.0};
  for (int k = 0; k < NL_GP_NOPS; k++) c->op_weight[k] = w[k];
  c->p_leaf_x = 0.5;
  c->complexity = NL_GP_NODES;
  c->select = NL_GP_MINVAL;
  c->budget = NL_GP_LN;
  c->max_flops = 0;
  c->seed = 0;
}

int nl_gp_config_check(const nl_gp_config *c, nl_error *err) {
#define NEED(cond, ...) \
  if (!(cond)) return nl_fail(err, NL_EINPUT, __VA_ARGS__)
  NEED(c->pop >= 4 && c->pop <= 1000000, "population must be between 4 and 1000000, got %d",
       c->pop);
  NEED(c->gens >= 0 && c->gens <= 1000000, "generations must be between 0 and 1000000, got %d",
       c->gens);
  NEED(c->max_nodes >= 1 && c->max_nodes <= 1000, "max-nodes must be between 1 and 1000, got %d",
       c->max_nodes);
  NEED(c->init_depth >= 1 && c->init_depth <= 30, "init-depth must be between 1 and 30, got %d",
       c->init_depth);
  NEED(c->tournament >= 1 && c->tournament <= c->pop,
       "tournament must be between 1 and the population (%d), got %d", c->pop, c->tournament);
  NEED(c->penalty >= 0 && isfinite(c->penalty), "penalty must be >= 0, got %g", c->penalty);
  NEED(c->delta_scale >= 0 && isfinite(c->delta_scale), "delta scale must be >= 0");
  NEED(c->const_steps >= 0 && c->const_steps <= 100000, "const-steps must be >= 0, got %d",
       c->const_steps);
  NEED(c->const_top >= 0, "const-top must be >= 0, got %d", c->const_top);
  NEED(c->const_lr > 0 && isfinite(c->const_lr), "const-lr must be > 0, got %g", c->const_lr);
  NEED(c->const_points >= 0, "const-points must be >= 0, got %d", c->const_points);
  NEED(c->val_frac > 0 && c->val_frac < 1, "validation share must be in (0, 1), got %g",
       c->val_frac);
  NEED(c->p_cross >= 0 && c->p_cross <= 1, "crossover probability must be in [0, 1]");
  NEED(c->p_mut >= 0 && c->p_mut <= 1, "mutation probability must be in [0, 1]");
  NEED(c->p_leaf_x >= 0 && c->p_leaf_x <= 1, "leaf probability must be in [0, 1]");
  double s = 0;
  for (int k = 0; k < NL_GP_NOPS; k++) {
    NEED(c->op_weight[k] >= 0 && isfinite(c->op_weight[k]), "operator weights must be >= 0");
    s += c->op_weight[k];
  }
  NEED(s > 0, "operator weights must not all be 0");
  NEED(c->select != NL_GP_BUDGET || c->budget == NL_GP_LN || (c->budget > 0 && isfinite(c->budget)),
       "the budget must be > 0 FLOPs per element or ln, got %g", c->budget);
  NEED(c->max_flops == NL_GP_LN || (c->max_flops >= 0 && isfinite(c->max_flops)),
       "max-flops must be > 0 FLOPs per element or ln, got %g", c->max_flops);
  NEED(c->width >= 0, "the layer width must be >= 0, got %d", c->width);
  NEED(c->threads >= 0 && c->threads <= NL_THREADS_MAX, "threads must be between 1 and %d, got %d",
       NL_THREADS_MAX, c->threads);
#undef NEED
  return 0;
}

void nl_gp_result_free(nl_gp_result *r) {
  for (int i = 0; i < r->nfront; i++) nl_prog_free(&r->front[i].prog);
  free(r->front);
  memset(r, 0, sizeof *r);
}

/* ---- fitness ---- */

double nl_gp_penalty(const nl_prog *p, double gamma, double delta, nl_eval_ws *ws) {
  if (gamma == 0) return 0.0;
  float xs[2] = {(float)-delta, (float)delta}, f[2];
  nl_eval(p, xs, f, 2, ws);
  return gamma * 0.5 * ((double)f[0] * f[0] + (double)f[1] * f[1]);
}

double nl_gp_fitness(const nl_prog *p, const float *x, const float *y, size_t n, double gamma,
                     double delta, nl_eval_ws *ws) {
  double f = nl_mse_grad(p, x, y, n, NULL, ws) + nl_gp_penalty(p, gamma, delta, ws);
  return isfinite(f) ? f : INFINITY;
}

double nl_gp_fitness_grad(const nl_prog *p, const float *x, const float *y, size_t n,
                           double gamma, double delta, float *g, nl_eval_ws *ws) {
  double f = nl_mse_grad(p, x, y, n, g, ws);
  if (gamma != 0) {
    int nc = nl_prog_nconst(p);
    float xs[2] = {(float)-delta, (float)delta}, fv[2];
    float jac[2 * 64], *J = nc <= 64 ? jac : nl_xmalloc(sizeof(float) * 2 * (size_t)nc);
    nl_eval_jac(p, xs, fv, J, 2, ws);
    for (int k = 0; k < nc; k++)
      g[k] += (float)(gamma * ((double)fv[0] * J[2 * k] + (double)fv[1] * J[2 * k + 1]));
    f += gamma * 0.5 * ((double)fv[0] * fv[0] + (double)fv[1] * fv[1]);
    if (J != jac) free(J);
  }
  return isfinite(f) ? f : INFINITY;
}

/* ---- random trees ---- */

/* The search-time FLOP limit (0: none). */
static double flop_limit(const nl_gp_config *c) {
  return c->max_flops == 0 ? 0 : nl_gp_limit(c->max_flops, c->width);
}

/* The weight operator k is drawn with: none for an operator that alone
 * costs more than the FLOP limit; clip(a, lo, hi) 0.15 under a limit when
 * its weight is 0. */
static double opw(const nl_gp_config *c, int k) {
  double lim = flop_limit(c);
  if (lim > 0 && nl_ops[nl_gp_ops[k]].cost > lim) return 0;
  if (nl_gp_ops[k] == NL_OP_CLIP3 && lim > 0 && c->op_weight[k] == 0) return 0.15;
  return c->op_weight[k];
}

static nl_op pick_op(const nl_gp_config *c, nl_rng *r, int max_arity) {
  double s = 0;
  for (int k = 0; k < NL_GP_NOPS; k++)
    if (nl_ops[nl_gp_ops[k]].arity <= max_arity) s += opw(c, k);
  if (s <= 0) return NL_OP_COUNT;
  double u = nl_rng_uniform(r) * s;
  nl_op last = NL_OP_COUNT;
  for (int k = 0; k < NL_GP_NOPS; k++) {
    double w = opw(c, k);
    if (nl_ops[nl_gp_ops[k]].arity > max_arity || w <= 0) continue;
    last = nl_gp_ops[k];
    if (u < w) return last;
    u -= w;
  }
  return last;
}

/* Two sorted N(0, 2) constants: the bounds of a new clip(a, lo, hi). */
static void push_bounds(nl_rng *r, nl_prog *p) {
  float a = (float)(2.0 * nl_rng_normal(r)), b = (float)(2.0 * nl_rng_normal(r));
  nl_prog_push(p, NL_OP_CONST, a < b ? a : b, 0);
  nl_prog_push(p, NL_OP_CONST, a < b ? b : a, 0);
}

static void push_leaf(const nl_gp_config *c, nl_rng *r, nl_prog *p) {
  if (nl_rng_uniform(r) < c->p_leaf_x)
    nl_prog_push(p, NL_OP_X, 0, 0);
  else
    nl_prog_push(p, NL_OP_CONST, (float)nl_rng_normal(r), 0);
}

/* Append a random tree of depth <= depth (a leaf has depth 1) and at most
 * budget nodes; full: operators down to the last level. Returns nodes used. */
static int gen_tree(const nl_gp_config *c, nl_rng *r, nl_prog *p, int depth, int full,
                    int budget) {
  int leaf = depth <= 1 || budget < 2;
  if (!leaf && !full) {
    /* grow: a leaf with the share of terminals among all primitives */
    leaf = nl_rng_uniform(r) < 0.3;
  }
  nl_op op = leaf ? NL_OP_COUNT : pick_op(c, r, budget >= 4 ? 3 : budget >= 3 ? 2 : 1);
  if (op == NL_OP_COUNT) {
    push_leaf(c, r, p);
    return 1;
  }
  if (op == NL_OP_CLIP3) { /* constant bounds */
    int used = gen_tree(c, r, p, depth - 1, full, budget - 3);
    push_bounds(r, p);
    nl_prog_push(p, op, 0, 0);
    return used + 3;
  }
  int arity = nl_ops[op].arity, used = 0;
  for (int k = 0; k < arity; k++) {
    int b = budget - 1 - used - (arity - 1 - k);
    used += gen_tree(c, r, p, depth - 1, full, b);
  }
  nl_prog_push(p, op, 0, 0);
  return used + 1;
}

/* ---- variation on postfix slices ---- */

/* dst = a with the subtree at [s, e] (e = root index) replaced by
 * b's slice [bs, be]. */
static void splice(nl_prog *dst, const nl_prog *a, int ai, const nl_prog *b, int bi) {
  int as = ai - a->nodes[ai].size + 1, bs = bi - b->nodes[bi].size + 1;
  int blen = b->nodes[bi].size, tail = a->len - ai - 1;
  int len = as + blen + tail;
  nl_node *nn = nl_xmalloc(sizeof(nl_node) * (size_t)len);
  memcpy(nn, a->nodes, sizeof(nl_node) * (size_t)as);
  memcpy(nn + as, b->nodes + bs, sizeof(nl_node) * (size_t)blen);
  memcpy(nn + as + blen, a->nodes + ai + 1, sizeof(nl_node) * (size_t)tail);
  free(dst->nodes);
  dst->nodes = nn;
  dst->len = dst->cap = len;
  nl_prog_fix_sizes(dst);
}

/* A node index, internal nodes preferred 90% of the time (Koza). */
static int pick_node(nl_rng *r, const nl_prog *p) {
  int internal = 0;
  for (int i = 0; i < p->len; i++) internal += p->nodes[i].arity > 0;
  int want_internal = internal > 0 && nl_rng_uniform(r) < 0.9;
  int count = want_internal ? internal : p->len - internal;
  if (count == 0) return p->len - 1;
  int k = (int)nl_rng_below(r, (uint64_t)count);
  for (int i = 0; i < p->len; i++) {
    if ((p->nodes[i].arity > 0) != want_internal) continue;
    if (k-- == 0) return i;
  }
  return p->len - 1;
}

static void crossover(const nl_gp_config *c, nl_rng *r, nl_prog *child, const nl_prog *a,
                      const nl_prog *b) {
  for (int tries = 0; tries < 8; tries++) {
    int ai = pick_node(r, a), bi = pick_node(r, b);
    int len = a->len - a->nodes[ai].size + b->nodes[bi].size;
    if (len > c->max_nodes) continue;
    splice(child, a, ai, b, bi);
    return;
  }
  nl_prog_copy(child, a);
}

static void mutate_subtree(const nl_gp_config *c, nl_rng *r, nl_prog *p) {
  int i = (int)nl_rng_below(r, (uint64_t)p->len);
  int budget = c->max_nodes - (p->len - p->nodes[i].size);
  if (budget < 1) return;
  nl_prog sub;
  nl_prog_init(&sub);
  gen_tree(c, r, &sub, 1 + (int)nl_rng_below(r, 3), nl_rng_uniform(r) < 0.5, budget);
  nl_prog tmp;
  nl_prog_init(&tmp);
  splice(&tmp, p, i, &sub, sub.len - 1);
  nl_prog_free(p);
  *p = tmp;
  nl_prog_free(&sub);
}

static void mutate_point(const nl_gp_config *c, nl_rng *r, nl_prog *p) {
  int i = (int)nl_rng_below(r, (uint64_t)p->len);
  nl_node *n = &p->nodes[i];
  if (n->arity == 0) {
    if (n->op == NL_OP_X) {
      n->op = NL_OP_CONST;
      n->val = (float)nl_rng_normal(r);
    } else {
      n->op = NL_OP_X;
      n->val = 0;
    }
    return;
  }
  /* another operator of the same arity, by weight */
  double s = 0;
  for (int k = 0; k < NL_GP_NOPS; k++)
    if (nl_ops[nl_gp_ops[k]].arity == n->arity && nl_gp_ops[k] != n->op) s += opw(c, k);
  if (s <= 0) return;
  double u = nl_rng_uniform(r) * s;
  int last = -1;
  for (int k = 0; k < NL_GP_NOPS; k++) {
    if (nl_ops[nl_gp_ops[k]].arity != n->arity || nl_gp_ops[k] == n->op || opw(c, k) <= 0)
      continue;
    last = k;
    if (u < opw(c, k)) break;
    u -= opw(c, k);
  }
  if (last >= 0) n->op = (uint8_t)nl_gp_ops[last];
}

/* Hoist: the tree becomes one of its own subtrees. */
static void mutate_hoist(nl_rng *r, nl_prog *p) {
  if (p->len < 2) return;
  int i = (int)nl_rng_below(r, (uint64_t)(p->len - 1));
  int s = i - p->nodes[i].size + 1, len = p->nodes[i].size;
  memmove(p->nodes, p->nodes + s, sizeof(nl_node) * (size_t)len);
  p->len = len;
  nl_prog_fix_sizes(p);
}

/* Shrink: an operator's subtree becomes a leaf. */
static void mutate_shrink(const nl_gp_config *c, nl_rng *r, nl_prog *p) {
  int internal = 0;
  for (int i = 0; i < p->len; i++) internal += p->nodes[i].arity > 0;
  if (!internal) return;
  int k = (int)nl_rng_below(r, (uint64_t)internal), i = 0;
  for (i = 0; i < p->len; i++)
    if (p->nodes[i].arity > 0 && k-- == 0) break;
  nl_prog leaf;
  nl_prog_init(&leaf);
  push_leaf(c, r, &leaf);
  nl_prog tmp;
  nl_prog_init(&tmp);
  splice(&tmp, p, i, &leaf, 0);
  nl_prog_free(p);
  *p = tmp;
  nl_prog_free(&leaf);
}

static void mutate_consts(nl_rng *r, nl_prog *p) {
  int any = 0;
  for (int i = 0; i < p->len; i++)
    if (p->nodes[i].op == NL_OP_CONST && nl_rng_uniform(r) < 0.5) {
      p->nodes[i].val += (float)(0.1 * nl_rng_normal(r) * (1.0 + fabsf(p->nodes[i].val)));
      any = 1;
    }
  if (!any)
    for (int i = 0; i < p->len; i++)
      if (p->nodes[i].op == NL_OP_CONST) {
        p->nodes[i].val += (float)nl_rng_normal(r) * 0.5f;
        return;
      }
}

static void mutate(const nl_gp_config *c, nl_rng *r, nl_prog *p) {
  double u = nl_rng_uniform(r);
  if (u < 0.25)
    mutate_point(c, r, p);
  else if (u < 0.5)
    mutate_subtree(c, r, p);
  else if (u < 0.6)
    mutate_hoist(r, p);
  else if (u < 0.7)
    mutate_shrink(c, r, p);
  else if (nl_prog_nconst(p) > 0)
    mutate_consts(r, p);
  else
    mutate_point(c, r, p);
}

void nl_gp_random_tree(const nl_gp_config *c, nl_rng *r, nl_prog *p, int depth, int full) {
  p->len = 0;
  gen_tree(c, r, p, depth, full, c->max_nodes);
}

void nl_gp_vary(const nl_gp_config *c, nl_rng *r, const nl_prog *a, const nl_prog *b,
                nl_prog *child) {
  if (nl_rng_uniform(r) < c->p_cross) {
    crossover(c, r, child, a, b);
    if (nl_rng_uniform(r) < c->p_mut) mutate(c, r, child);
  } else {
    nl_prog_copy(child, a);
    mutate(c, r, child);
  }
}

/* ---- the search ---- */

typedef struct ind {
  nl_prog prog;
  int origin;   /* nl_gp_origin */
  double fit;
  int cx;       /* complexity objective */
  int rank;
  double crowd;
  int evaluated;
} ind;

typedef struct search {
  const nl_gp_config *c;
  const float *xt, *yt, *xs, *ys; /* training points, constant-step subsample */
  size_t nt, ns;
  double delta;
  nl_eval_ws *ws;  /* one per worker */
  float **gbuf;    /* per worker: gradient scratch (3 * max_nodes floats) */
  ind *v;          /* individuals to work on */
  int *todo;
  double *node_evals; /* per worker */
} search;

/* The complexity objective counts the program as written: cheap, and it
 * keeps penalising dead code that simplification would remove. The front
 * is simplified before it is reported (see nl_gp_run). */
static int complexity(const nl_gp_config *c, const nl_prog *p) {
  if (c->complexity == NL_GP_FLOPS) {
    nl_cost_opts o = {1};
    return nl_cost_written(p, &o);
  }
  return p->len;
}

/* Does every clip(a, lo, hi) of p have bounds without x? */
static int const_bounds(const nl_prog *p) {
  for (int i = 0; i < p->len; i++) {
    if (p->nodes[i].op != NL_OP_CLIP3) continue;
    int hi = i - 1, lo = hi - p->nodes[hi].size; /* roots of the bound subtrees */
    int start = lo - p->nodes[lo].size + 1;
    for (int j = start; j < i; j++)
      if (p->nodes[j].op == NL_OP_X) return 0;
  }
  return 1;
}

/* Within the search-time FLOP limit (always, without one)? */
static int feasible(const nl_gp_config *c, const nl_prog *p) {
  double lim = flop_limit(c);
  if (lim <= 0) return 1;
  if (!const_bounds(p)) return 0;
  nl_cost_opts rep = {0};
  return nl_cost(p, &rep) <= lim;
}

static void eval_task(size_t i, int w, void *u) {
  search *s = u;
  ind *d = &s->v[s->todo[i]];
  d->fit = feasible(s->c, &d->prog) ? nl_gp_fitness(&d->prog, s->xt, s->yt, s->nt,
                                                    s->c->penalty, s->delta, &s->ws[w])
                                    : INFINITY;
  d->cx = complexity(s->c, &d->prog);
  d->evaluated = 1;
  s->node_evals[w] += (double)d->prog.len * (double)s->nt;
}

/* Adam on the constants; written back when the full F improves. */
static void const_task(size_t i, int w, void *u) {
  search *s = u;
  const nl_gp_config *c = s->c;
  ind *d = &s->v[s->todo[i]];
  int nc = nl_prog_nconst(&d->prog);
  if (nc == 0 || c->const_steps == 0) return;
  float *cst = s->gbuf[w], *g = cst + nc, *best = g + nc;
  double *m = nl_xcalloc(2 * (size_t)nc, sizeof(double)), *v = m + nc;
  nl_prog q;
  nl_prog_init(&q);
  nl_prog_copy(&q, &d->prog);
  nl_prog_get_consts(&q, cst);
  nl_prog_get_consts(&q, best);
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  double p1 = 1, p2 = 1;
  int ok = 1;
  for (int t = 0; t < c->const_steps; t++) {
    double f = nl_gp_fitness_grad(&q, s->xs, s->ys, s->ns, c->penalty, s->delta, g, &s->ws[w]);
    s->node_evals[w] += 2.0 * q.len * (double)s->ns;
    if (!isfinite(f)) {
      ok = t > 0;
      break;
    }
    p1 *= b1;
    p2 *= b2;
    int finite = 1;
    for (int k = 0; k < nc; k++) {
      if (!isfinite(g[k])) finite = 0;
    }
    if (!finite) break;
    for (int k = 0; k < nc; k++) {
      m[k] = b1 * m[k] + (1 - b1) * g[k];
      v[k] = b2 * v[k] + (1 - b2) * (double)g[k] * g[k];
      double mh = m[k] / (1 - p1), vh = v[k] / (1 - p2);
      cst[k] = (float)(cst[k] - c->const_lr * mh / (sqrt(vh) + eps));
    }
    nl_prog_set_consts(&q, cst);
  }
  if (ok) {
    double f = nl_gp_fitness(&q, s->xt, s->yt, s->nt, c->penalty, s->delta, &s->ws[w]);
    s->node_evals[w] += (double)q.len * (double)s->nt;
    if (f < d->fit) {
      d->fit = f;
      nl_prog_set_consts(&d->prog, cst);
    }
  }
  nl_prog_free(&q);
  free(m);
}

static void run_parallel(search *s, ind *v, int *todo, int n, nl_task_fn fn) {
  s->v = v;
  s->todo = todo;
  nl_parallel_for_n((size_t)n, s->c->threads, fn, s);
}

/* Tournament: lowest rank, then largest crowding, then first drawn. */
static int tournament(const nl_gp_config *c, nl_rng *r, const ind *pop, int n) {
  int best = (int)nl_rng_below(r, (uint64_t)n);
  for (int k = 1; k < c->tournament; k++) {
    int j = (int)nl_rng_below(r, (uint64_t)n);
    if (pop[j].rank < pop[best].rank ||
        (pop[j].rank == pop[best].rank && pop[j].crowd > pop[best].crowd))
      best = j;
  }
  return best;
}

/* Ranks and crowding of v[0..n). */
static void rank_crowd(ind *v, int n) {
  double *obj = nl_xmalloc(sizeof(double) * 2 * (size_t)n);
  int *rank = nl_xmalloc(sizeof(int) * (size_t)n), *idx = nl_xmalloc(sizeof(int) * (size_t)n);
  double *cr = nl_xmalloc(sizeof(double) * (size_t)n);
  for (int i = 0; i < n; i++) {
    obj[2 * i] = v[i].fit;
    obj[2 * i + 1] = v[i].cx;
  }
  int nf = nl_nsga2_rank(obj, n, 2, rank);
  for (int f = 1; f <= nf; f++) {
    int k = 0;
    for (int i = 0; i < n; i++)
      if (rank[i] == f) idx[k++] = i;
    nl_nsga2_crowding(obj, 2, idx, k, cr);
    for (int t = 0; t < k; t++) {
      v[idx[t]].rank = f;
      v[idx[t]].crowd = cr[t];
    }
  }
  free(obj);
  free(rank);
  free(idx);
  free(cr);
}

typedef struct {
  int rank;
  double crowd;
  int i;
} order;

static int cmp_order(const void *a, const void *b) {
  const order *x = a, *y = b;
  if (x->rank != y->rank) return x->rank - y->rank;
  if (x->crowd > y->crowd) return -1;
  if (x->crowd < y->crowd) return 1;
  return x->i - y->i;
}

/* Survival: the best n of v[0..m) by (rank, crowding) moved to the front. */
static void survive(ind *v, int m, int n) {
  /* Duplicates of an earlier (F, complexity) pair rank after every
   * distinct individual, so copies of one program cannot fill the
   * population. */
  int *uniq = nl_xmalloc(sizeof(int) * (size_t)m), nu = 0;
  uint8_t *dup = nl_xcalloc((size_t)m, 1);
  for (int i = 0; i < m; i++) {
    for (int j = 0; j < nu; j++) {
      const ind *u = &v[uniq[j]];
      if (u->cx == v[i].cx && (u->fit == v[i].fit || (isinf(u->fit) && isinf(v[i].fit)))) {
        dup[i] = 1;
        break;
      }
    }
    if (!dup[i]) uniq[nu++] = i;
  }
  ind *w = nl_xmalloc(sizeof(ind) * (size_t)(nu ? nu : 1));
  for (int j = 0; j < nu; j++) w[j] = v[uniq[j]];
  rank_crowd(w, nu);
  int worst = 0;
  for (int j = 0; j < nu; j++) {
    v[uniq[j]].rank = w[j].rank;
    v[uniq[j]].crowd = w[j].crowd;
    if (w[j].rank > worst) worst = w[j].rank;
  }
  for (int i = 0; i < m; i++)
    if (dup[i]) {
      v[i].rank = worst + 1;
      v[i].crowd = 0;
    }
  free(w);
  free(uniq);
  free(dup);
  order *o = nl_xmalloc(sizeof(order) * (size_t)m);
  for (int i = 0; i < m; i++) o[i] = (order){v[i].rank, v[i].crowd, i};
  qsort(o, (size_t)m, sizeof(order), cmp_order);
  ind *tmp = nl_xmalloc(sizeof(ind) * (size_t)m);
  for (int i = 0; i < m; i++) tmp[i] = v[o[i].i];
  memcpy(v, tmp, sizeof(ind) * (size_t)m);
  free(tmp);
  free(o);
  /* ranks and crowding among the survivors, for the next tournaments */
  rank_crowd(v, n);
}

/* Archive: non-dominated (fit, cx) pairs seen, one program per pair. */
typedef struct archive {
  ind *a;
  int n, cap;
} archive;

static void archive_add(archive *ar, const ind *cand) {
  if (!isfinite(cand->fit)) return;
  for (int i = 0; i < ar->n; i++) {
    const ind *e = &ar->a[i];
    if (e->fit <= cand->fit && e->cx <= cand->cx) return; /* dominated or equal */
  }
  int k = 0;
  for (int i = 0; i < ar->n; i++) {
    ind *e = &ar->a[i];
    if (cand->fit <= e->fit && cand->cx <= e->cx) {
      nl_prog_free(&e->prog);
    } else {
      ar->a[k++] = *e;
    }
  }
  ar->n = k;
  if (ar->n == ar->cap) {
    ar->cap = ar->cap ? 2 * ar->cap : 32;
    ar->a = nl_xrealloc(ar->a, sizeof(ind) * (size_t)ar->cap);
  }
  ind *e = &ar->a[ar->n++];
  *e = *cand;
  nl_prog_init(&e->prog);
  nl_prog_copy(&e->prog, &cand->prog);
}

static uint64_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
  return h;
}

/* Sort the indices idx[0..n) by fitness (ties by index): insertion sort,
 * n is a population. */
static void sort_by_fit(int *idx, int n, const ind *v) {
  for (int i = 1; i < n; i++) {
    int t = idx[i], j = i - 1;
    while (j >= 0 && (v[idx[j]].fit > v[t].fit || (v[idx[j]].fit == v[t].fit && idx[j] > t))) {
      idx[j + 1] = idx[j];
      j--;
    }
    idx[j + 1] = t;
  }
}

void nl_gp_split(const nl_gp_config *c, const char *layer, size_t n, size_t *perm,
                 size_t *ntrain) {
  nl_rng r;
  nl_rng_stream(&r, c->seed, name_hash(layer) ^ 0x5b1175b1175ULL);
  for (size_t i = 0; i < n; i++) perm[i] = i;
  for (size_t i = n - 1; i > 0; i--) {
    size_t j = (size_t)nl_rng_below(&r, i + 1);
    size_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  size_t nv = (size_t)llround(c->val_frac * (double)n);
  if (nv < 1) nv = 1;
  if (nv >= n) nv = n - 1;
  *ntrain = n - nv;
}

/* Is y constant on the points idx[0..k) (all of them when idx is NULL)? */
static int constant_y(const float *y, const size_t *idx, size_t k) {
  for (size_t i = 1; i < k; i++)
    if (y[idx ? idx[i] : i] != y[idx ? idx[0] : 0]) return 0;
  return 1;
}

int nl_gp_check_points(const nl_gp_config *c, const char *layer, const float *x, const float *y,
                       size_t n, nl_error *err) {
  if (n < 10) return nl_fail(err, NL_EINPUT, "layer '%s': %zu points, at least 10 needed", layer, n);
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i]) || !isfinite(y[i]))
      return nl_fail(err, NL_EINPUT, "layer '%s': point %zu is not finite (x %g, y %g)", layer, i,
                     (double)x[i], (double)y[i]);
  if (constant_y(y, NULL, n))
    return nl_fail(err, NL_EINPUT,
                   "layer '%s': y is constant (%g at all %zu points): R^2 is undefined and there "
                   "is no function to search; leave the layer out (--layer)",
                   layer, (double)y[0], n);
  size_t *perm = nl_xmalloc(sizeof(size_t) * n), nt;
  nl_gp_split(c, layer, n, perm, &nt);
  int flat = constant_y(y, perm + nt, n - nt);
  double v = y[perm[nt]];
  free(perm);
  if (flat)
    return nl_fail(err, NL_EINPUT,
                   "layer '%s': y is constant (%g) on all %zu validation points: the validation "
                   "R^2 is undefined",
                   layer, v, n - nt);
  return 0;
}

int nl_gp_run(const nl_gp_config *c, const char *layer, const float *x, const float *y, size_t n,
              int seed_index, nl_gp_progress_fn cb, void *user, nl_gp_result *res,
              nl_error *err) {
  return nl_gp_run_with(c, NULL, layer, x, y, n, seed_index, cb, user, res, err);
}

/* Same operators and x leaves at every node (constants may differ)? */
static int same_tree(const nl_prog *a, const nl_prog *b) {
  if (a->len != b->len) return 0;
  for (int i = 0; i < a->len; i++)
    if (a->nodes[i].op != b->nodes[i].op || a->nodes[i].ival != b->nodes[i].ival) return 0;
  return 1;
}

/* Take the injected programs into the population: each replaces one of
 * the last individuals (the worst after survival), evaluated at once. */
static void take_injected(const nl_gp_extra *x, const char *layer, search *s, ind *v, int N,
                          archive *ar) {
  if (!x || !x->inject) return;
  nl_prog p;
  nl_prog_init(&p);
  int slot = N - 1;
  while (slot >= 0 && x->inject(layer, &p, x->inject_user)) {
    if (p.len < 1 || p.len > s->c->max_nodes) continue;
    ind *d = &v[slot--];
    nl_prog_copy(&d->prog, &p);
    d->origin = NL_GP_ORIGIN_INJECTED;
    int one = (int)(d - v);
    s->v = v;
    s->todo = &one;
    eval_task(0, 0, s);
    archive_add(ar, d);
  }
  if (slot < N - 1) rank_crowd(v, N);
  nl_prog_free(&p);
}

int nl_gp_run_with(const nl_gp_config *c, const nl_gp_extra *xtra, const char *layer,
                   const float *x, const float *y, size_t n, int seed_index,
                   nl_gp_progress_fn cb, void *user, nl_gp_result *res, nl_error *err) {
  memset(res, 0, sizeof *res);
  if (nl_gp_config_check(c, err) != 0) return -1;
  if (nl_gp_check_points(c, layer, x, y, n, err) != 0) return -1;
  double t0 = nl_now();
  /* split */
  size_t *perm = nl_xmalloc(sizeof(size_t) * n), nt;
  nl_gp_split(c, layer, n, perm, &nt);
  size_t nv = n - nt;
  float *xt = nl_aalloc(sizeof(float) * nt), *yt = nl_aalloc(sizeof(float) * nt);
  float *xv = nl_aalloc(sizeof(float) * nv), *yv = nl_aalloc(sizeof(float) * nv);
  double amax = 0;
  for (size_t i = 0; i < nt; i++) {
    xt[i] = x[perm[i]];
    yt[i] = y[perm[i]];
    if (fabs(xt[i]) > amax) amax = fabs(xt[i]);
  }
  for (size_t i = 0; i < nv; i++) {
    xv[i] = x[perm[nt + i]];
    yv[i] = y[perm[nt + i]];
  }
  free(perm);
  nl_rng r;
  nl_rng_stream(&r, c->seed, name_hash(layer) * 1000003ULL + (uint64_t)seed_index);
  /* constant-step subsample */
  size_t ns = c->const_points > 0 && (size_t)c->const_points < nt ? (size_t)c->const_points : nt;
  float *xs = xt, *ys = yt;
  if (ns < nt) {
    xs = nl_aalloc(sizeof(float) * ns);
    ys = nl_aalloc(sizeof(float) * ns);
    size_t *pi = nl_xmalloc(sizeof(size_t) * nt);
    for (size_t i = 0; i < nt; i++) pi[i] = i;
    for (size_t i = 0; i < ns; i++) {
      size_t j = i + (size_t)nl_rng_below(&r, nt - i);
      size_t t = pi[i];
      pi[i] = pi[j];
      pi[j] = t;
      xs[i] = xt[pi[i]];
      ys[i] = yt[pi[i]];
    }
    free(pi);
  }
  int nw = nl_threads_count(c->threads);
  search s = {.c = c, .xt = xt, .yt = yt, .xs = xs, .ys = ys, .nt = nt, .ns = ns,
              .delta = c->delta_scale * amax};
  s.ws = nl_xmalloc(sizeof(nl_eval_ws) * (size_t)nw);
  s.gbuf = nl_xmalloc(sizeof(float *) * (size_t)nw);
  s.node_evals = nl_xcalloc((size_t)nw, sizeof(double));
  for (int w = 0; w < nw; w++) {
    nl_eval_ws_init(&s.ws[w], c->max_nodes + 4);
    s.gbuf[w] = nl_xmalloc(sizeof(float) * 3 * (size_t)(c->max_nodes + 4));
  }
  int N = c->pop;
  ind *v = nl_xcalloc(2 * (size_t)N, sizeof(ind)); /* parents, then offspring */
  int *todo = nl_xmalloc(sizeof(int) * 2 * (size_t)N);
  /* ramped half-and-half */
  int dmin = c->init_depth >= 2 ? 2 : 1, nd = c->init_depth - dmin + 1;
  for (int i = 0; i < N; i++) {
    nl_prog_init(&v[i].prog);
    int depth = dmin + (i / 2) % nd;
    gen_tree(c, &r, &v[i].prog, depth, i % 2 == 0, c->max_nodes);
    todo[i] = i;
  }
  /* the given seeds take the first places */
  for (int k = 0, i = 0; xtra && k < xtra->nseeds && i < N; k++) {
    const nl_prog *sp = &xtra->seeds[k];
    if (sp->len < 1 || sp->len > c->max_nodes) continue;
    nl_prog_copy(&v[i].prog, sp);
    v[i++].origin = NL_GP_ORIGIN_SEED;
  }
  for (int i = N; i < 2 * N; i++) nl_prog_init(&v[i].prog);
  run_parallel(&s, v, todo, N, eval_task);
  archive ar = {0};
  for (int i = 0; i < N; i++) archive_add(&ar, &v[i]);
  rank_crowd(v, N);
  int gen = 0, stopped = 0;
  for (gen = 0; gen < c->gens; gen++) {
    if (nl_interrupted()) {
      stopped = 1;
      break;
    }
    take_injected(xtra, layer, &s, v, N, &ar);
    /* offspring */
    for (int k = 0; k < N; k++) {
      ind *o = &v[N + k];
      const ind *a = &v[tournament(c, &r, v, N)];
      const ind *b = &v[tournament(c, &r, v, N)];
      nl_gp_vary(c, &r, &a->prog, &b->prog, &o->prog);
      /* a copy of a seed or an injected member with other constants
       * keeps its origin */
      o->origin = same_tree(&o->prog, &a->prog)   ? a->origin
                  : same_tree(&o->prog, &b->prog) ? b->origin
                                                  : NL_GP_ORIGIN_SEARCH;
      o->evaluated = 0;
      o->fit = a->fit;
      o->cx = a->cx;
    }
    int nt2 = 0;
    for (int k = 0; k < N; k++)
      if (!v[N + k].evaluated) todo[nt2++] = N + k;
    run_parallel(&s, v, todo, nt2, eval_task);
    /* constants of the best const_top offspring */
    int K = c->const_top < N ? c->const_top : N;
    if (K > 0 && c->const_steps > 0) {
      for (int k = 0; k < N; k++) todo[k] = N + k;
      sort_by_fit(todo, N, v);
      int m = 0;
      for (int k = 0; k < K; k++)
        if (isfinite(v[todo[k]].fit) && nl_prog_nconst(&v[todo[k]].prog) > 0) todo[m++] = todo[k];
      run_parallel(&s, v, todo, m, const_task);
    }
    for (int k = 0; k < N; k++) archive_add(&ar, &v[N + k]);
    survive(v, 2 * N, N);
    double best = INFINITY, ne = 0;
    for (int i = 0; i < N; i++)
      if (v[i].fit < best) best = v[i].fit;
    for (int w = 0; w < nw; w++) ne += s.node_evals[w];
    if (cb) {
      double el = nl_now() - t0;
      nl_gp_progress pr = {layer, seed_index, gen + 1, c->gens, best, ar.n,
                           el > 0 ? ne / el : 0, el, 0, 1};
      if (cb(&pr, user)) {
        gen++;
        stopped = 1;
        break;
      }
    }
  }
  if (!stopped && nl_interrupted()) stopped = 1;
  /* the front: archive members on validation */
  double vy = 0, my = 0;
  for (size_t i = 0; i < nv; i++) my += yv[i];
  my /= (double)nv;
  for (size_t i = 0; i < nv; i++) vy += (yv[i] - my) * (yv[i] - my);
  vy /= (double)nv;
  /* the front as it will be written: simplified (constant subtrees folded,
   * cancellations removed), measured on the simplified form; a member
   * that simplifies to an earlier one's program is dropped */
  {
    int k = 0;
    for (int i = 0; i < ar.n; i++) {
      ind *e = &ar.a[i];
      nl_simplify(&e->prog);
      e->cx = complexity(c, &e->prog);
      int dup = -1;
      for (int j = 0; j < k && dup < 0; j++)
        if (ar.a[j].prog.len == e->prog.len &&
            memcmp(ar.a[j].prog.nodes, e->prog.nodes, sizeof(nl_node) * (size_t)e->prog.len) == 0)
          dup = j;
      if (dup < 0) {
        ar.a[k++] = *e;
      } else {
        nl_prog_free(&e->prog);
      }
    }
    ar.n = k;
  }
  res->nfront = ar.n;
  res->front = nl_xcalloc((size_t)(ar.n ? ar.n : 1), sizeof(nl_gp_member));
  /* order by complexity, then fitness */
  for (int i = 1; i < ar.n; i++) {
    ind t = ar.a[i];
    int j = i - 1;
    while (j >= 0 && (ar.a[j].cx > t.cx || (ar.a[j].cx == t.cx && ar.a[j].fit > t.fit))) {
      ar.a[j + 1] = ar.a[j];
      j--;
    }
    ar.a[j + 1] = t;
  }
  nl_cost_opts rep = {0};
  double *obj = nl_xmalloc(sizeof(double) * 2 * (size_t)(ar.n ? ar.n : 1));
  int *rank = nl_xmalloc(sizeof(int) * (size_t)(ar.n ? ar.n : 1));
  for (int i = 0; i < ar.n; i++) {
    nl_gp_member *m = &res->front[i];
    m->prog = ar.a[i].prog;
    m->origin = ar.a[i].origin;
    m->nodes = m->prog.len;
    m->flops = nl_cost(&m->prog, &rep);
    m->train_fitness = ar.a[i].fit;
    m->val_mse = nl_mse_grad(&m->prog, xv, yv, nv, NULL, &s.ws[0]);
    if (!isfinite(m->val_mse)) m->val_mse = INFINITY;
    m->val_fitness = m->val_mse + nl_gp_penalty(&m->prog, c->penalty, s.delta, &s.ws[0]);
    if (!isfinite(m->val_fitness)) m->val_fitness = INFINITY;
    m->val_r2 = vy > 0 ? 1.0 - m->val_mse / vy : NAN;
    obj[2 * i] = m->val_fitness;
    obj[2 * i + 1] = ar.a[i].cx;
  }
  nl_nsga2_rank(obj, ar.n, 2, rank);
  for (int i = 0; i < ar.n; i++) res->front[i].rank = rank[i];
  free(obj);
  free(rank);
  free(ar.a);
  res->chosen = c->select == NL_GP_BUDGET
                    ? nl_gp_select_within(res->front, res->nfront,
                                          nl_gp_limit(c->budget, c->width), NULL)
                    : nl_gp_select(res->front, res->nfront, c->select);
  res->gens_done = gen;
  res->finished = !stopped;
  res->seconds = nl_now() - t0;
  for (int w = 0; w < nw; w++) res->node_evals += s.node_evals[w];
  for (int i = 0; i < 2 * N; i++) nl_prog_free(&v[i].prog);
  free(v);
  free(todo);
  for (int w = 0; w < nw; w++) {
    nl_eval_ws_free(&s.ws[w]);
    free(s.gbuf[w]);
  }
  free(s.ws);
  free(s.gbuf);
  free(s.node_evals);
  if (xs != xt) {
    nl_afree(xs);
    nl_afree(ys);
  }
  nl_afree(xt);
  nl_afree(yt);
  nl_afree(xv);
  nl_afree(yv);
  return 0;
}

int nl_gp_select(const nl_gp_member *m, int n, nl_gp_selection how) {
  if (n <= 0) return -1;
  int best = 0;
  for (int i = 1; i < n; i++)
    if (m[i].val_fitness < m[best].val_fitness ||
        (m[i].val_fitness == m[best].val_fitness && m[i].nodes < m[best].nodes))
      best = i;
  if (how != NL_GP_KNEE) return best;
  /* the (flops, val_mse) non-dominated set */
  double *obj = nl_xmalloc(sizeof(double) * 2 * (size_t)n);
  int *rank = nl_xmalloc(sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++) {
    obj[2 * i] = m[i].flops;
    obj[2 * i + 1] = m[i].val_mse;
  }
  nl_nsga2_rank(obj, n, 2, rank);
  int lo = -1, hi = -1; /* cheapest and most accurate ends */
  for (int i = 0; i < n; i++) {
    if (rank[i] != 1 || !isfinite(obj[2 * i + 1])) continue;
    if (lo < 0 || obj[2 * i] < obj[2 * lo] ||
        (obj[2 * i] == obj[2 * lo] && obj[2 * i + 1] < obj[2 * lo + 1]))
      lo = i;
    if (hi < 0 || obj[2 * i + 1] < obj[2 * hi + 1] ||
        (obj[2 * i + 1] == obj[2 * hi + 1] && obj[2 * i] < obj[2 * hi]))
      hi = i;
  }
  int knee = hi >= 0 ? hi : best;
  if (lo >= 0 && hi >= 0 && lo != hi) {
    double x0 = obj[2 * lo], y0 = obj[2 * lo + 1], x1 = obj[2 * hi], y1 = obj[2 * hi + 1];
    double sx = fabs(x1 - x0) > 0 ? fabs(x1 - x0) : 1, sy = fabs(y1 - y0) > 0 ? fabs(y1 - y0) : 1;
    double dx = (x1 - x0) / sx, dy = (y1 - y0) / sy, len = sqrt(dx * dx + dy * dy);
    double far = -1;
    for (int i = 0; i < n; i++) {
      if (rank[i] != 1 || !isfinite(obj[2 * i + 1])) continue;
      double px = (obj[2 * i] - x0) / sx, py = (obj[2 * i + 1] - y0) / sy;
      double d = fabs(px * dy - py * dx) / len;
      if (d > far + 1e-12) {
        far = d;
        knee = i;
      }
    }
  }
  free(obj);
  free(rank);
  return knee;
}

int nl_gp_select_within(const nl_gp_member *m, int n, double max_flops, int *cheapest) {
  int best = -1, low = -1;
  nl_cost_opts rep = {0};
  for (int i = 0; i < n; i++) {
    int cost = nl_cost(&m[i].prog, &rep); /* on the simplified tree, whatever m[i].flops says */
    if (low < 0 || cost < low) low = cost;
    if (cost > max_flops) continue;
    if (best < 0 || m[i].val_fitness < m[best].val_fitness ||
        (m[i].val_fitness == m[best].val_fitness && m[i].nodes < m[best].nodes))
      best = i;
  }
  if (cheapest) *cheapest = low;
  return best;
}

int nl_gp_selection_parse(const char *text, const char *what, nl_gp_selection *how,
                          double *budget, nl_error *err) {
  if (strcmp(text, "minval") == 0 || strcmp(text, "knee") == 0) {
    *how = text[0] == 'm' ? NL_GP_MINVAL : NL_GP_KNEE;
    return 0;
  }
  if (strncmp(text, "budget=", 7) == 0) {
    const char *v = text + 7;
    if (strcmp(v, "ln") == 0) {
      *how = NL_GP_BUDGET;
      *budget = NL_GP_LN;
      return 0;
    }
    char *end;
    double b = strtod(v, &end);
    if (*v && *end == '\0' && isfinite(b) && b > 0) {
      *how = NL_GP_BUDGET;
      *budget = b;
      return 0;
    }
    return nl_fail(err, NL_EINPUT,
                   "%s: budget expects a number of FLOPs per element > 0 or 'ln' "
                   "(LayerNorm's 5 + 2/d), got '%s'",
                   what, v);
  }
  return nl_fail(err, NL_EINPUT, "%s expects one of minval|knee|budget=F|budget=ln, got '%s'",
                 what, text);
}

void nl_gp_selection_format(nl_gp_selection how, double budget, char *buf, size_t n) {
  if (how == NL_GP_KNEE) snprintf(buf, n, "knee");
  else if (how != NL_GP_BUDGET) snprintf(buf, n, "minval");
  else if (budget == NL_GP_LN) snprintf(buf, n, "budget=ln");
  else snprintf(buf, n, "budget=%g", budget);
}
