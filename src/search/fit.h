/* Fitting an expression's constants to a layer's mapping points, for the
 * workbench commands refit, fold and impact (HeuristicLab's simplifier:
 * re-fit, fold a subtree to a constant, node impacts).
 *
 * Constants are fitted by Levenberg-Marquardt on the least-squares
 * objective F = mean((f(x) - y)^2) + gamma/2 (f(-delta)^2 + f(delta)^2)
 * (the search's fitness; gamma = 0 gives the plain MSE), with the
 * Jacobian of f with respect to the constants from the expression engine
 * (nl_eval_jac); the normal equations are solved in double precision.
 *
 * Nodes are addressed by paths as 'show' draws the tree: "0" is the root,
 * "0.1" its second operand, "0.1.0" that node's first operand. */
#ifndef NL_SEARCH_FIT_H
#define NL_SEARCH_FIT_H

#include <stddef.h>

#include "base/error.h"
#include "expr/expr.h"
#include "search/gp.h"

/* Points and the penalty of one fit. */
typedef struct nl_fit_pts {
  const float *x, *y;
  size_t n;
  double gamma, delta; /* pull-to-zero term; gamma 0: none */
} nl_fit_pts;

/* Fit the constants of p on the points (in place). mask[k] != 0 marks the
 * constants (nl_prog_get_consts order) that may move; NULL: all. At most
 * `iters` iterations. Returns the final F (never above the starting F;
 * +inf when even the start is not finite). */
double nl_fit_consts(nl_prog *p, const nl_fit_pts *d, const unsigned char *mask, int iters);

/* F of p on the points (+inf when not finite). */
double nl_fit_objective(const nl_prog *p, const nl_fit_pts *d);

/* Node index of a path ("0", "0.1.0"); NL_EINPUT naming the path when it
 * is malformed or leads past a leaf. */
int nl_fit_path_node(const nl_prog *p, const char *path, int *node, nl_error *err);
/* Path of node i (caller frees). */
char *nl_fit_node_path(const nl_prog *p, int node);
/* Operands of node i, in order; returns their count. */
int nl_fit_children(const nl_prog *p, int node, int *ch);

/* Replace the subtree rooted at `node` by its best constant: started at
 * the subtree's mean value over the points, then least squares on that
 * one constant (the others stay). out receives the new program; *value
 * the constant. Returns F of the result. */
double nl_fit_fold(const nl_prog *p, int node, const nl_fit_pts *d, nl_prog *out, float *value);

/* The polish of a chosen member (evolve --select budget=...): p is
 * simplified (constants folded, nl_simplify), then its constants are
 * re-fitted by Levenberg-Marquardt (nl_fit_consts, at most `iters`
 * iterations) on the layer's training points of the search's split
 * (nl_gp_split with c's seed and validation share) on the search's F (c's
 * penalty, delta = c->delta_scale * max|x_train|). The re-fitted constants
 * are kept only when F on the validation points does not get worse.
 * info: validation F before and after, and the final validation MSE and
 * R^2. Returns 1 when the constants changed. */
typedef struct nl_fit_polish_info {
  double val_before, val_after, val_mse, val_r2;
  int kept;
} nl_fit_polish_info;
int nl_fit_polish(nl_prog *p, const nl_gp_config *c, const char *layer, const float *x,
                  const float *y, size_t n, int iters, nl_fit_polish_info *info);

/* R^2 = 1 - MSE / Var(y) of p on n points (NAN when Var(y) is 0). */
double nl_fit_r2(const nl_prog *p, const float *x, const float *y, size_t n);

#endif
