/* Internals shared by the GP files. */
#ifndef NL_SEARCH_GP_LOCAL_H
#define NL_SEARCH_GP_LOCAL_H

#include <stddef.h>

#include "base/rng.h"
#include "search/gp.h"

/* F and its gradient with respect to the constants (g: nconst floats),
 * the pull-to-zero term's gradient included. */
double nl_gp_fitness_grad(const nl_prog *p, const float *x, const float *y, size_t n,
                          double gamma, double delta, float *g, nl_eval_ws *ws);

/* A random tree of depth <= depth (a leaf has depth 1), full or grown,
 * at most c->max_nodes nodes (p is overwritten). */
void nl_gp_random_tree(const nl_gp_config *c, nl_rng *r, nl_prog *p, int depth, int full);
/* One offspring of parents a and b: crossover with probability p_cross
 * (then mutation with p_mut), else a mutated copy of a. */
void nl_gp_vary(const nl_gp_config *c, nl_rng *r, const nl_prog *a, const nl_prog *b,
                nl_prog *child);

#endif
