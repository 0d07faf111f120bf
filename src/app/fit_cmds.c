/* Session commands that fit expressions to the loaded mappings: score,
 * refit, fold, impact; and the fronts: front, pick.
 *
 * Points: the layer's points of the session's mappings file, split as the
 * search splits them (nl_gp_split with the session's 'seed' setting,
 * default 0): constants are fitted on the training part, R² reported on
 * the validation part, so the figures compare with the fronts' val_r2. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "session/session.h"
#include "base/mem.h"
#include "expr/expr.h"
#include "model/maps.h"
#include "search/fit.h"
#include "search/fronts.h"
#include "app/wb_local.h"
#include "search/dyt.h"
#include "search/gp.h"

/* ---- the mappings, loaded once per file ---- */

typedef struct lpts {
  const nl_maps_layer *l;
  int split_done;
  float *xt, *yt, *xv, *yv;
  size_t nt, nv;
  double delta; /* 2 max|x_train|: the search's pull-to-zero points */
  int dyt_done;
  double alpha, dyt_r2, bound_r2;
} lpts;

static struct {
  char *path;
  struct stat st;
  unsigned long seed;
  nl_maps m;
  lpts *l;
} C;

void nl_wb_fit_cleanup(void) {
  if (C.l)
    for (int i = 0; i < C.m.nlayers; i++) {
      free(C.l[i].xt);
      free(C.l[i].xv);
    }
  free(C.l);
  if (C.path) nl_maps_free(&C.m);
  free(C.path);
  memset(&C, 0, sizeof C);
}

static unsigned long session_seed(const nl_session *s) {
  const char *v = nl_session_get_setting(s, "seed");
  return v ? strtoul(v, NULL, 10) : 0;
}

static const nl_maps *maps_of(nl_session *s, nl_error *err) {
  if (!s->maps_path) {
    nl_fail(err, NL_EINPUT, "no mappings: 'load maps FILE' first");
    return NULL;
  }
  struct stat st;
  if (stat(s->maps_path, &st) != 0) {
    nl_fail(err, NL_EINPUT, "%s: cannot read the mappings", s->maps_path);
    return NULL;
  }
  unsigned long seed = session_seed(s);
  if (C.path && strcmp(C.path, s->maps_path) == 0 && C.st.st_mtime == st.st_mtime &&
      C.st.st_size == st.st_size && C.st.st_ino == st.st_ino && C.seed == seed)
    return &C.m;
  nl_wb_fit_cleanup();
  nl_maps m;
  if (nl_maps_load(&m, s->maps_path, err) != 0) return NULL;
  C.m = m;
  C.path = nl_xstrdup(s->maps_path);
  C.st = st;
  C.seed = seed;
  C.l = nl_xcalloc((size_t)(m.nlayers ? m.nlayers : 1), sizeof(lpts));
  for (int i = 0; i < m.nlayers; i++) C.l[i].l = &C.m.layers[i];
  return &C.m;
}

static lpts *points_of(nl_session *s, const char *layer, nl_error *err) {
  const nl_maps *m = maps_of(s, err);
  if (!m) return NULL;
  int i = nl_maps_index(m, layer);
  if (i < 0) {
    nl_fail(err, NL_EINPUT, "%s: no layer '%s' in the mappings (see 'layers')", C.path, layer);
    return NULL;
  }
  lpts *p = &C.l[i];
  if (!p->split_done) {
    size_t n = p->l->n;
    if (n < 10) {
      nl_fail(err, NL_EINPUT, "%s: layer '%s' has %zu points, at least 10 needed", C.path,
              layer, n);
      return NULL;
    }
    nl_gp_config c;
    nl_gp_config_default(&c);
    c.seed = C.seed;
    size_t *perm = nl_xmalloc(sizeof(size_t) * n), nt;
    nl_gp_split(&c, layer, n, perm, &nt);
    p->nt = nt;
    p->nv = n - nt;
    p->xt = nl_xmalloc(sizeof(float) * 2 * nt);
    p->yt = p->xt + nt;
    p->xv = nl_xmalloc(sizeof(float) * 2 * p->nv);
    p->yv = p->xv + p->nv;
    double mx = 0;
    for (size_t k = 0; k < n; k++) {
      float x = p->l->x[perm[k]], y = p->l->y[perm[k]];
      if (k < nt) {
        p->xt[k] = x;
        p->yt[k] = y;
        if (fabs(x) > mx) mx = fabs(x);
      } else {
        p->xv[k - nt] = x;
        p->yv[k - nt] = y;
      }
    }
    p->delta = c.delta_scale * mx;
    free(perm);
    p->split_done = 1;
  }
  if (!p->dyt_done) {
    if (nl_dyt_fit(p->l->x, p->l->y, p->l->n, &p->alpha, NULL, &p->dyt_r2) != 0) {
      p->alpha = NAN;
      p->dyt_r2 = NAN;
    }
    p->bound_r2 = nl_bound_r2(p->l->x, p->l->y, p->l->n, NL_BOUND_BINS);
    p->dyt_done = 1;
  }
  return p;
}

/* A copy of an entry's tree (the caller frees it). */
static void entry_prog(const nl_exprset_entry *e, nl_prog *p) {
  nl_prog_init(p);
  nl_prog_copy(p, &e->prog);
}

/* The layer's current expression (a copy). */
static int current(nl_session *s, const char *layer, nl_prog *p, nl_error *err) {
  const nl_exprset_entry *e = nl_session_find(s, layer);
  if (!e)
    return nl_fail(err, NL_EINPUT, "layer '%s' has no expression ('set %s = EXPR' or 'pick')",
                   layer, layer);
  entry_prog(e, p);
  return 0;
}

static int cost_of(const nl_prog *p) {
  nl_cost_opts co = {.clip_cost = 0};
  return nl_cost(p, &co);
}

/* Shorten a printed subtree for a table column. */
static void clip_text(char *t, size_t max) {
  if (strlen(t) > max && max > 4) strcpy(t + max - 4, " ...");
}

/* Fit figures of one layer, for 'layers' and 'score'. */
int nl_wb_layer_scores(nl_session *s, const char *layer, double *val_r2, double *dyt_r2,
                         double *bound_r2) {
  nl_error err;
  nl_error_clear(&err);
  *val_r2 = *dyt_r2 = *bound_r2 = NAN;
  if (!s->maps_path) return -1;
  lpts *p = points_of(s, layer, &err);
  if (!p) return -1;
  *dyt_r2 = p->dyt_r2;
  *bound_r2 = p->bound_r2;
  const nl_exprset_entry *e = nl_session_find(s, layer);
  if (e) *val_r2 = nl_fit_r2(&e->prog, p->xv, p->yv, p->nv);
  return 0;
}

/* ---- score ---- */

static const nl_opt no_opts[] = {{0}};

static void score_row(nl_ctx *ctx, int w, const char *layer, lpts *p, const nl_prog *pr,
                      double *sum_val, double *sum_dyt, int *cnt) {
  fprintf(ctx->out, "%-*s %7zu ", w, layer, p->nv);
  if (pr) {
    nl_eval_ws ws;
    nl_eval_ws_init(&ws, pr->len);
    double mse = nl_mse_grad(pr, p->xv, p->yv, p->nv, NULL, &ws);
    nl_eval_ws_free(&ws);
    double r2v = nl_fit_r2(pr, p->xv, p->yv, p->nv);
    double r2a = nl_fit_r2(pr, p->l->x, p->l->y, p->l->n);
    fprintf(ctx->out, "%11.6g %8.5f %8.5f ", mse, r2v, r2a);
    if (isfinite(r2v)) {
      *sum_val += r2v;
      *sum_dyt += p->dyt_r2;
      (*cnt)++;
    }
  } else {
    fprintf(ctx->out, "%11s %8s %8s ", "-", "-", "-");
  }
  fprintf(ctx->out, "%8.5f %8.5f %8.4f ", p->dyt_r2, p->bound_r2, p->alpha);
  if (pr) {
    char *t = nl_print(pr, NL_PRINT_SHORT);
    clip_text(t, 60);
    fprintf(ctx->out, "%5d  %s\n", cost_of(pr), t);
    free(t);
  } else {
    fprintf(ctx->out, "%5s  %s\n", "-", "(LayerNorm)");
  }
}

static int run_score(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  const nl_maps *m = maps_of(s, err);
  if (!m) return -1;
  int all = strcmp(a->pos[0], "all") == 0;
  nl_prog one;
  if (!all) {
    if (!points_of(s, a->pos[0], err)) return -1;
    if (current(s, a->pos[0], &one, err) != 0) return -1;
    nl_prog_free(&one);
  }
  int w = 5;
  for (int i = 0; i < m->nlayers; i++)
    if ((all || strcmp(m->layers[i].name, a->pos[0]) == 0) &&
        (int)strlen(m->layers[i].name) > w)
      w = (int)strlen(m->layers[i].name);
  /* "R²" takes one byte more than its one column: widths + 1 */
  fprintf(ctx->out, "%-*s %7s %11s %9s %9s %9s %9s %8s %5s  %s\n", w, "layer", "val pts",
          "val MSE", "val R²", "R² all", "DyT R²", "bound R²", "alpha", "FLOPs", "expression");
  double sv = 0, sd = 0;
  int cnt = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const char *name = m->layers[i].name;
    if (!all && strcmp(name, a->pos[0]) != 0) continue;
    lpts *p = points_of(s, name, err);
    if (!p) return -1;
    const nl_exprset_entry *e = nl_session_find(s, name);
    score_row(ctx, w, name, p, e ? &e->prog : NULL, &sv, &sd, &cnt);
  }
  if (all)
    fprintf(ctx->out, "mean over %d layers with an expression: val R² %.5f, DyT R² %.5f\n", cnt,
            cnt ? sv / cnt : NAN, cnt ? sd / cnt : NAN);
  fprintf(ctx->out,
          "(val: the search's validation split, seed %lu; R² all, DyT and bound: all points)\n",
          C.seed);
  return 0;
}

static const nl_cmd cmd_score = {
    .name = "score",
    .args = "LAYER|all",
    .summary = "fit figures of the current expressions on the loaded mappings",
    .help = "Per layer: the validation split's size (the search's 90/10 split, seeded by\n"
            "the 'seed' setting), MSE and R² of the current expression there, its R² on all\n"
            "points, the DyT baseline tanh(alpha x) fitted on all points (as 'normlab dyt'),\n"
            "the bound R² (the best any f(x) can reach) and the expression's FLOPs/elem.\n"
            "Layers without an expression are listed with their DyT and bound figures.",
    .opts = no_opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run_score,
};

/* ---- refit ---- */

static const nl_opt refit_opts[] = {
    {"penalty", NL_OPT_NUM, "GAMMA", "0",
     "pull-to-zero weight (the search's F; 0: plain MSE)", NULL, 0},
    {"iters", NL_OPT_INT, "N", "100", "Levenberg-Marquardt iterations at most", NULL, 0},
    {0},
};

static int set_result(nl_ctx *ctx, const char *layer, const nl_prog *p, nl_error *err) {
  char *t = nl_print(p, NL_PRINT_EXACT);
  int rc = nl_session_set_expr(ctx->session, layer, t, NULL, err);
  if (rc == 0) fprintf(ctx->out, "%s = %s  (%d FLOPs/elem)\n", layer, t, cost_of(p));
  free(t);
  return rc;
}

static int run_refit(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  const char *layer = a->pos[0];
  long iters;
  if (nl_arg_int_range(a, "iters", 1, 100000, &iters, err) != 0) return -1;
  double gamma = nl_arg_num(a, "penalty");
  if (gamma < 0) return nl_fail(err, NL_EINPUT, "--penalty must be >= 0");
  lpts *pt = points_of(s, layer, err);
  if (!pt) return -1;
  nl_prog p;
  if (current(s, layer, &p, err) != 0) return -1;
  if (nl_prog_nconst(&p) == 0) {
    nl_prog_free(&p);
    return nl_fail(err, NL_EINPUT, "%s: the expression has no constants to fit", layer);
  }
  nl_fit_pts d = {pt->xt, pt->yt, pt->nt, gamma, pt->delta};
  double r2_before = nl_fit_r2(&p, pt->xv, pt->yv, pt->nv);
  double f0 = nl_fit_objective(&p, &d);
  double f1 = nl_fit_consts(&p, &d, NULL, (int)iters);
  double r2_after = nl_fit_r2(&p, pt->xv, pt->yv, pt->nv);
  if (!(f1 < f0)) {
    fprintf(ctx->out, "%s: the constants are already at their best (train %s %.6g)\n", layer,
            gamma > 0 ? "F" : "MSE", f0);
  } else if (set_result(ctx, layer, &p, err) != 0) {
    nl_prog_free(&p);
    return -1;
  } else {
    fprintf(ctx->out, "train %s %.6g -> %.6g; val R² %.5f -> %.5f\n", gamma > 0 ? "F" : "MSE",
            f0, f1, r2_before, r2_after);
  }
  nl_prog_free(&p);
  return 0;
}

static const nl_cmd cmd_refit = {
    .name = "refit",
    .args = "LAYER",
    .summary = "re-optimise the constants of a layer's expression on its points",
    .help = "Levenberg-Marquardt on the training split (the search's 90/10 split) with the\n"
            "expression engine's Jacobian; minimises the MSE, or with --penalty GAMMA the\n"
            "search's fitness F = MSE + GAMMA/2 (f(-delta)^2 + f(delta)^2). The result\n"
            "replaces the expression only when it fits better ('undo' restores it).",
    .opts = refit_opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run_refit,
};

/* ---- fold ---- */

static int run_fold(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  const char *layer = a->pos[0];
  lpts *pt = points_of(s, layer, err);
  if (!pt) return -1;
  nl_prog p;
  if (current(s, layer, &p, err) != 0) return -1;
  int node;
  if (nl_fit_path_node(&p, a->pos[1], &node, err) != 0) {
    nl_prog_free(&p);
    return -1;
  }
  nl_fit_pts d = {pt->xt, pt->yt, pt->nt, 0, pt->delta};
  double r2_before = nl_fit_r2(&p, pt->xv, pt->yv, pt->nv);
  nl_prog q;
  float v;
  nl_fit_fold(&p, node, &d, &q, &v);
  char *sub = nl_print_sub(&p, node, NL_PRINT_SHORT);
  fprintf(ctx->out, "folded %s (%s) to %.9g\n", a->pos[1], sub, (double)v);
  free(sub);
  int rc = set_result(ctx, layer, &q, err);
  if (rc == 0)
    fprintf(ctx->out, "val R² %.5f -> %.5f\n", r2_before, nl_fit_r2(&q, pt->xv, pt->yv, pt->nv));
  nl_prog_free(&q);
  nl_prog_free(&p);
  return rc;
}

static const nl_cmd cmd_fold = {
    .name = "fold",
    .args = "LAYER NODE",
    .summary = "replace a subtree by its best constant",
    .help = "NODE is a node's path as 'show' prints it: 0 is the root, 0.1 its second\n"
            "operand, 0.1.0 that node's first operand. The constant starts at the\n"
            "subtree's mean value on the training points and is fitted by least squares\n"
            "(the other constants stay). 'impact' shows what each fold would cost.",
    .opts = no_opts,
    .min_pos = 2,
    .max_pos = 2,
    .run = run_fold,
};

/* ---- impact ---- */

static void impact_walk(nl_ctx *ctx, const nl_prog *p, int node, lpts *pt, double r2,
                        const nl_fit_pts *d) {
  if (node != p->len - 1 && p->nodes[node].op != NL_OP_CONST) {
    nl_prog q;
    float v;
    nl_fit_fold(p, node, d, &q, &v);
    double r2f = nl_fit_r2(&q, pt->xv, pt->yv, pt->nv);
    char *path = nl_fit_node_path(p, node), *sub = nl_print_sub(p, node, NL_PRINT_SHORT);
    clip_text(sub, 40);
    fprintf(ctx->out, "%-10s %-40s %10.3g %9.5f %+10.5f\n", path, sub, (double)v, r2f, r2f - r2);
    free(path);
    free(sub);
    nl_prog_free(&q);
  }
  int ch[3];
  int k = nl_fit_children(p, node, ch);
  for (int c = 0; c < k; c++) impact_walk(ctx, p, ch[c], pt, r2, d);
}

static int run_impact(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  const char *layer = a->pos[0];
  lpts *pt = points_of(s, layer, err);
  if (!pt) return -1;
  nl_prog p;
  if (current(s, layer, &p, err) != 0) return -1;
  double r2 = nl_fit_r2(&p, pt->xv, pt->yv, pt->nv);
  fprintf(ctx->out, "%s: val R² %.5f now\n", layer, r2);
  fprintf(ctx->out, "%-10s %-40s %10s %10s %11s\n", "path", "subtree", "folded to", "R² fold",
          "dR²"); /* R²: a byte more than its column */
  nl_fit_pts d = {pt->xt, pt->yt, pt->nt, 0, pt->delta};
  impact_walk(ctx, &p, p.len - 1, pt, r2, &d);
  nl_prog_free(&p);
  return 0;
}

static const nl_cmd cmd_impact = {
    .name = "impact",
    .args = "LAYER",
    .summary = "each subtree's effect on the fit if folded to a constant",
    .help = "For every subtree below the root (constants left out), in the order 'show'\n"
            "draws them: its path, the constant 'fold' would put in its place, the\n"
            "validation R² after that fold and the change dR² (near 0: the subtree does\n"
            "not matter; very negative: it carries the fit). Nothing is changed.",
    .opts = no_opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run_impact,
};

/* ---- front / pick ---- */

static int cmp_member(const void *pa, const void *pb) {
  const nl_front_member *a = pa, *b = pb;
  if (a->flops != b->flops) return a->flops < b->flops ? -1 : 1;
  double x = isnan(a->val_mse) ? INFINITY : a->val_mse;
  double y = isnan(b->val_mse) ? INFINITY : b->val_mse;
  if (x != y) return x < y ? -1 : 1;
  if (a->seed != b->seed) return a->seed < b->seed ? -1 : 1;
  return strcmp(a->expr, b->expr);
}

/* The layer's members in listing order, with the knee and minval picks
 * (indices, 0-based). */
static int members_of(nl_session *s, const char *layer, nl_fronts *fr, int *knee, int *minval,
                      nl_error *err) {
  if (!s->fronts_dir) return nl_fail(err, NL_EINPUT, "no fronts: 'load fronts DIR' first");
  if (nl_fronts_read(s->fronts_dir, layer, fr, err) != 0) return -1;
  if (fr->n && !(fr->has & nl_front_col("expr"))) {
    nl_fronts_free(fr);
    return nl_fail(err, NL_EINPUT, "%s: the header has no 'expr' column", s->fronts_dir);
  }
  if (fr->n == 0) {
    nl_fronts_free(fr);
    return nl_fail(err, NL_EINPUT, "%s: no front members for layer '%s'", s->fronts_dir, layer);
  }
  qsort(fr->m, fr->n, sizeof *fr->m, cmp_member);
  *minval = nl_fronts_select(fr->m, fr->n, NL_GP_MINVAL);
  *knee = nl_fronts_select(fr->m, fr->n, NL_GP_KNEE);
  return 0;
}

static int run_front(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_fronts fr;
  int knee, minval;
  if (members_of(ctx->session, a->pos[0], &fr, &knee, &minval, err) != 0) return -1;
  nl_front_member *m = fr.m;
  size_t n = fr.n;
  fprintf(ctx->out, "%4s %4s %4s %5s %5s %11s %11s %9s  %-6s  %s\n", "#", "seed", "rank",
          "nodes", "flops", "val F", "val MSE", "val R²", "pick", "expression"); /* R²: +1 byte */
  for (size_t i = 0; i < n; i++) {
    const nl_front_member *x = &m[i];
    const char *mark = (int)i == knee && (int)i == minval ? "both" : (int)i == knee ? "knee"
                       : (int)i == minval                   ? "minval"
                                                            : "";
    fprintf(ctx->out, "%4zu %4d %4d %5d %5d %11.6g %11.6g %8.5f  %-6s  %s%s%s\n", i + 1, x->seed,
            x->rank, x->nodes, x->flops, x->val_fitness, x->val_mse, x->val_r2, mark, x->expr,
            x->origin ? "  # " : "", x->origin ? nl_gp_origin_name(x->origin) : "");
  }
  fprintf(ctx->out, "%zu members; 'pick %s N|knee|minval' sets the layer's expression\n", n,
          a->pos[0]);
  nl_fronts_free(&fr);
  return 0;
}

static const nl_cmd cmd_front = {
    .name = "front",
    .args = "LAYER",
    .summary = "list a layer's Pareto front from the loaded fronts directory",
    .help = "Members of all seeds, ordered by FLOPs then validation MSE, numbered from 1.\n"
            "'minval' marks the lowest validation fitness (ties: fewer nodes), 'knee' the\n"
            "knee of the (FLOPs, val MSE) non-dominated set: the member farthest from the\n"
            "line through its two ends, both axes scaled to [0, 1] (as evolve --select).\n"
            "Members given by evolve --init or sent by 'inject' end with '# seed' or\n"
            "'# injected'.",
    .opts = no_opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run_front,
};

static int run_pick(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  const char *layer = a->pos[0], *which = a->pos[1];
  nl_fronts fr;
  int knee, minval;
  if (members_of(s, layer, &fr, &knee, &minval, err) != 0) return -1;
  nl_front_member *m = fr.m;
  size_t n = fr.n;
  long idx = -1;
  double limit = 0;
  if (strcmp(which, "knee") == 0) {
    idx = knee;
  } else if (strcmp(which, "minval") == 0) {
    idx = minval;
  } else if (strncmp(which, "budget", 6) == 0) {
    nl_gp_selection how;
    double b = 0;
    if (nl_gp_selection_parse(which, "pick", &how, &b, err) != 0) {
      nl_fronts_free(&fr);
      return -1;
    }
    /* the width d for budget=ln: the session's model, else unknown (5) */
    int d = s->model_width;
    limit = nl_gp_limit(b, d);
    int cheapest = -1;
    idx = nl_fronts_select_within(m, n, limit, &cheapest, err);
    if (idx == -2) {
      nl_error_prefix(err, "%s", s->fronts_dir);
      nl_fronts_free(&fr);
      return -1;
    }
    if (idx < 0) {
      nl_fronts_free(&fr);
      return nl_fail(err, NL_EINPUT,
                     "pick: no member of %s's front costs at most %.4g FLOPs per element (the "
                     "cheapest costs %d)",
                     layer, limit, cheapest);
    }
  } else {
    char *end;
    long v = strtol(which, &end, 10);
    if (end == which || *end || v < 1 || (size_t)v > n) {
      nl_fronts_free(&fr);
      return nl_fail(err, NL_EINPUT,
                     "pick: '%s' is not knee, minval, budget=F, budget=ln or a member number "
                     "1..%zu",
                     which, n);
    }
    idx = v - 1;
  }
  char comment[128], bud[48] = "";
  if (limit > 0) snprintf(bud, sizeof bud, " budget %.4g", limit);
  snprintf(comment, sizeof comment, " front #%ld%s%s%s, val R² %.5f", idx + 1,
           idx == knee ? " knee" : "", idx == minval ? " minval" : "", bud, m[idx].val_r2);
  if (nl_session_set_expr(s, layer, m[idx].expr, comment, err) != 0) {
    nl_error_prefix(err, "%s: front member %ld: %s", s->fronts_dir, idx + 1, layer);
    nl_fronts_free(&fr);
    return -1;
  }
  fprintf(ctx->out, "%s = %s  (#%ld, %d FLOPs/elem, val R² %.5f)\n", layer, m[idx].expr, idx + 1,
          cost_of(&nl_session_find(s, layer)->prog), m[idx].val_r2);
  nl_fronts_free(&fr);
  return 0;
}

static const nl_cmd cmd_pick = {
    .name = "pick",
    .args = "LAYER N|knee|minval|budget=F|budget=ln",
    .summary = "set a layer's expression from its front",
    .help = "N is a member's number as 'front LAYER' lists it; knee and minval as marked\n"
            "there; budget=F the lowest validation fitness among the members costing at most\n"
            "F FLOPs per element on the simplified tree (as 'cost' counts), budget=ln at\n"
            "most LayerNorm's 5 + 2/d (d the loaded model's width; without a model 5), as\n"
            "evolve --select does. 'undo' restores the previous expression.",
    .opts = no_opts,
    .min_pos = 2,
    .max_pos = 2,
    .run = run_pick,
};

/* ---- the front as a text plot (the dashboard's detail view) ---- */

char *nl_wb_front_plot(nl_session *s, const char *layer, int width, int height) {
  nl_fronts fr;
  int knee, minval;
  nl_error err;
  nl_error_clear(&err);
  if (!s || !s->fronts_dir || width < 24 || height < 6) return NULL;
  if (members_of(s, layer, &fr, &knee, &minval, &err) != 0) return NULL;
  nl_front_member *m = fr.m;
  size_t n = fr.n;
  double f0 = INFINITY, f1 = -INFINITY, e0 = INFINITY, e1 = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(m[i].val_mse) || m[i].flops < 0) continue;
    if (m[i].flops < f0) f0 = m[i].flops;
    if (m[i].flops > f1) f1 = m[i].flops;
    if (m[i].val_mse < e0) e0 = m[i].val_mse;
    if (m[i].val_mse > e1) e1 = m[i].val_mse;
  }
  if (!(f0 <= f1)) {
    nl_fronts_free(&fr);
    return NULL;
  }
  /* MSEs spanning more than a decade are drawn on a log scale */
  int logy = e0 > 0 && e1 / e0 > 10;
  double l0 = logy ? log10(e0) : e0, l1 = logy ? log10(e1) : e1;
  int gw = width - 10, gh = height - 3;
  char *grid = nl_xmalloc((size_t)gw * (size_t)gh);
  memset(grid, ' ', (size_t)gw * (size_t)gh);
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(m[i].val_mse) || m[i].flops < 0) continue;
    int c = f1 > f0 ? (int)lround((m[i].flops - f0) / (f1 - f0) * (gw - 1)) : 0;
    double yv = logy ? log10(m[i].val_mse) : m[i].val_mse;
    int r = l1 > l0 ? (int)lround((1 - (yv - l0) / (l1 - l0)) * (gh - 1)) : gh - 1;
    char *cell = &grid[(size_t)r * (size_t)gw + (size_t)c];
    char mark = (int)i == knee ? 'K' : (int)i == minval ? 'M' : '*';
    if (*cell == ' ' || *cell == '*') *cell = mark;
  }
  char *buf = NULL;
  size_t len = 0;
  FILE *o = open_memstream(&buf, &len);
  if (!o) {
    free(grid);
    nl_fronts_free(&fr);
    return NULL;
  }
  fprintf(o, "front: val MSE%s against FLOPs/elem (K knee, M minval, %zu members)\n",
          logy ? " (log scale)" : "", n);
  for (int r = 0; r < gh; r++) {
    if (r == 0)
      fprintf(o, "%8.3g |", e1);
    else if (r == gh - 1)
      fprintf(o, "%8.3g |", e0);
    else
      fprintf(o, "%8s |", "");
    fprintf(o, "%.*s\n", gw, grid + (size_t)r * (size_t)gw);
  }
  fprintf(o, "%8s +", "");
  for (int c = 0; c < gw; c++) fputc('-', o);
  fprintf(o, "\n%9s %-*.0f%*.0f\n", "", gw / 2, f0, gw - gw / 2, f1);
  fclose(o);
  free(grid);
  nl_fronts_free(&fr);
  return buf;
}

const nl_cmd *const nl_wb_fit_commands[] = {
    &cmd_score, &cmd_refit, &cmd_fold, &cmd_impact, &cmd_front, &cmd_pick, NULL,
};
