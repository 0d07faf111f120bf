/* The DyT baseline of a norm layer's mapping and the best any scalar
 * function can do on it.
 *
 * nl_dyt_fit: the least-squares alpha of tanh(alpha * x) against y over
 * alpha > 0, in double precision. The exact MSE is scanned on a log grid
 * (factors of 2, widened while the best point sits on an edge), then the
 * minimum is polished by safeguarded Newton on dMSE/dalpha inside the
 * bracket the grid found (golden-section search where the derivative gives
 * no bracket). R^2 = 1 - MSE / Var(y), Var(y) the population variance.
 *
 * nl_bound_r2: an estimate of the R^2 of E[y|x], the best any scalar
 * function f(x) can reach. x is cut into `bins` equal-count (quantile) bins,
 * equal x values kept in one bin, and within each bin y is fitted by a
 * straight line in x: E[y|x] is estimated as a piecewise-linear function.
 * Two biases pull in opposite directions:
 *  - overfit: with P fitted parameters the in-sample R^2 overstates the
 *    truth by about (1 - R^2) P / n. The estimate is the adjusted R^2,
 *    1 - [SS_res / (n - P)] / [SS_tot / (n - 1)], which removes it;
 *  - discretisation: E[y|x] bends inside a bin, which only lowers the
 *    estimate. Bin means (a step function) leave a first-order term that is
 *    large in the wide tail bins (on vit_tiny_p4_fmnist the mean bound rises
 *    from 0.922 at 64 bins to 0.950 at 1024); a line per bin leaves only the
 *    curvature (0.9499 at 64 bins, 0.9504 at 256, 0.9505 at 512).
 * NL_BOUND_BINS = 256 lines over 50,000 points: ~195 points per bin, 512
 * parameters. With far more bins the estimate starts to track duplicate
 * points (mappings are sampled with replacement from a finite set of
 * positions) and its variance grows. */
#ifndef NL_SEARCH_DYT_H
#define NL_SEARCH_DYT_H

#include <stddef.h>

#include "base/error.h"

struct nl_maps;

#define NL_BOUND_BINS 256

/* Fit alpha; mse and r2 may be NULL. Returns 0, or -1 when n < 2, a value
 * is not finite or y is constant (R^2 undefined). */
int nl_dyt_fit(const float *x, const float *y, size_t n, double *alpha, double *mse, double *r2);

/* Mean squared error of tanh(alpha * x) against y, in double precision. */
double nl_dyt_mse(const float *x, const float *y, size_t n, double alpha);

/* Population variance of y (two passes, double precision). */
double nl_variance(const float *y, size_t n);

/* Bound R^2 with `bins` quantile bins of x (see above). Returns NAN when
 * bins < 1, n < 2 * bins, a value is not finite or y is constant. Never
 * below the R^2 of any f(x) fitted on the same points, up to its noise
 * (about 1e-3 with 50,000 points). */
double nl_bound_r2(const float *x, const float *y, size_t n, int bins);

/* One row per layer of a mappings file. */
typedef struct nl_dyt_row {
  const char *name;  /* the layer's name (borrowed from the mappings) */
  size_t points;
  double alpha, mse, r2, bound_r2, var_y;
} nl_dyt_row;

/* Fit every layer (layers in parallel on `threads` workers, 0: the
 * default; the result does not depend on it); rows holds m->nlayers
 * entries. Fails with an error naming the layer when a fit is undefined or
 * a layer has fewer than 2 * bins points. */
int nl_dyt_table(const struct nl_maps *m, int bins, int threads, nl_dyt_row *rows,
                 nl_error *err);

#endif
