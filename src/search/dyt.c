#include "search/dyt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "model/maps.h"

double nl_variance(const float *y, size_t n) {
  if (n == 0) return NAN;
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += y[i];
  double mean = s / (double)n, ss = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = y[i] - mean;
    ss += d * d;
  }
  return ss / (double)n;
}

double nl_dyt_mse(const float *x, const float *y, size_t n, double alpha) {
  if (n == 0) return NAN;
  double s = 0.0;
  for (size_t i = 0; i < n; i++) {
    double r = tanh(alpha * x[i]) - y[i];
    s += r * r;
  }
  return s / (double)n;
}

/* MSE and its first two derivatives in alpha:
 *   g = 2/n sum (t - y)(1 - t^2) x
 *   h = 2/n sum x^2 (1 - t^2) [(1 - t^2) - 2 t (t - y)]   with t = tanh(alpha x). */
typedef struct {
  double alpha, mse, g, h;
} point;

static point eval3(const float *x, const float *y, size_t n, double alpha) {
  double s = 0.0, sg = 0.0, sh = 0.0;
  for (size_t i = 0; i < n; i++) {
    double xi = x[i], t = tanh(alpha * xi), r = t - y[i], d = 1.0 - t * t;
    s += r * r;
    sg += r * d * xi;
    sh += xi * xi * d * (d - 2.0 * t * r);
  }
  point p = {alpha, s / (double)n, 2.0 * sg / (double)n, 2.0 * sh / (double)n};
  return p;
}

/* Golden-section search for the minimum of the MSE over log(alpha) in
 * [lo, hi]: the fallback when the derivative gives no sign change. */
static point golden(const float *x, const float *y, size_t n, double lo, double hi) {
  const double r = 0.6180339887498949;
  double a = log(lo), b = log(hi);
  double c = b - r * (b - a), d = a + r * (b - a);
  double fc = nl_dyt_mse(x, y, n, exp(c)), fd = nl_dyt_mse(x, y, n, exp(d));
  for (int it = 0; it < 200 && b - a > 1e-13; it++) {
    if (fc <= fd) {
      b = d;
      d = c;
      fd = fc;
      c = b - r * (b - a);
      fc = nl_dyt_mse(x, y, n, exp(c));
    } else {
      a = c;
      c = d;
      fc = fd;
      d = a + r * (b - a);
      fd = nl_dyt_mse(x, y, n, exp(d));
    }
  }
  return eval3(x, y, n, exp(0.5 * (a + b)));
}

/* Root of g between lo (g < 0) and hi (g > 0), starting at p: a Newton
 * step where it lands inside the bracket and at least halves the step
 * before last, bisection otherwise. */
static point newton(const float *x, const float *y, size_t n, point lo, point hi, point p) {
  double a = lo.alpha, b = hi.alpha;
  double dx = b - a, dx_old = dx;
  for (int it = 0; it < 200; it++) {
    if (p.g < 0)
      a = p.alpha;
    else if (p.g > 0)
      b = p.alpha;
    else
      return p;
    double next = 0.0;
    int ok = 0;
    if (p.h > 0) {
      double step = p.g / p.h;
      next = p.alpha - step;
      ok = next > a && next < b && fabs(step) < 0.5 * fabs(dx_old);
    }
    if (!ok) next = 0.5 * (a + b);
    dx_old = dx;
    dx = next - p.alpha;
    if (fabs(dx) <= 1e-13 * p.alpha || b - a <= 1e-13 * b) return p;
    p = eval3(x, y, n, next);
  }
  return p;
}

int nl_dyt_fit(const float *x, const float *y, size_t n, double *alpha, double *mse, double *r2) {
  if (n < 2) return -1;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i]) || !isfinite(y[i])) return -1;
  double var = nl_variance(y, n);
  if (!(var > 0)) return -1;

  /* Grid alpha = 2^k, k in [kmin, kmax], widened (up to 2^+-40) while the
   * best point is on an edge. */
  enum { KLIM = 40 };
  point grid[2 * KLIM + 1];
  int kmin = -12, kmax = 12;
  for (int k = kmin; k <= kmax; k++) {
    grid[k + KLIM] = eval3(x, y, n, ldexp(1.0, k));
  }
  int best;
  for (;;) {
    best = kmin;
    for (int k = kmin; k <= kmax; k++)
      if (grid[k + KLIM].mse < grid[best + KLIM].mse) best = k;
    if (best == kmax && kmax < KLIM) {
      kmax++;
      grid[kmax + KLIM] = eval3(x, y, n, ldexp(1.0, kmax));
    } else if (best == kmin && kmin > -KLIM) {
      kmin--;
      grid[kmin + KLIM] = eval3(x, y, n, ldexp(1.0, kmin));
    } else {
      break;
    }
  }
  point p = grid[best + KLIM];
  if (best > kmin && best < kmax) {
    point l = grid[best - 1 + KLIM], r = grid[best + 1 + KLIM];
    if (p.g <= 0 && r.g > 0)
      p = newton(x, y, n, p, r, p);
    else if (p.g >= 0 && l.g < 0)
      p = newton(x, y, n, l, p, p);
    else
      p = golden(x, y, n, l.alpha, r.alpha);
  }
  if (alpha) *alpha = p.alpha;
  if (mse) *mse = p.mse;
  if (r2) *r2 = 1.0 - p.mse / var;
  return 0;
}

typedef struct {
  float x, y;
} pair;

static int pair_cmp(const void *pa, const void *pb) {
  const pair *a = pa, *b = pb;
  if (a->x < b->x) return -1;
  if (a->x > b->x) return 1;
  return (a->y > b->y) - (a->y < b->y);
}

double nl_bound_r2(const float *x, const float *y, size_t n, int bins) {
  if (bins < 1 || n < 2 * (size_t)bins) return NAN;
  pair *p = nl_try_alloc(n, sizeof *p);
  if (!p) return NAN;
  double sy = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(x[i]) || !isfinite(y[i])) {
      free(p);
      return NAN;
    }
    p[i].x = x[i];
    p[i].y = y[i];
    sy += y[i];
  }
  double mean = sy / (double)n, sst = 0.0;
  for (size_t i = 0; i < n; i++) sst += (p[i].y - mean) * (p[i].y - mean);
  if (!(sst > 0)) {
    free(p);
    return NAN;
  }
  qsort(p, n, sizeof *p, pair_cmp);
  /* Bin j nominally holds [j n / B, (j + 1) n / B); an edge that would split
   * equal x values moves up past them, so a bin may end up empty. In each
   * bin y is fitted by a straight line in x (2 parameters), or by its mean
   * when all x in the bin are equal (1 parameter). */
  double ssw = 0.0;
  size_t params = 0, begin = 0;
  for (int j = 1; j <= bins && begin < n; j++) {
    size_t end = (size_t)((double)n * j / bins + 0.5);
    if (j == bins || end > n) end = n;
    while (end < n && end > begin && p[end].x == p[end - 1].x) end++;
    if (end <= begin) continue;
    double k = (double)(end - begin), mx = 0.0, my = 0.0;
    for (size_t i = begin; i < end; i++) {
      mx += p[i].x;
      my += p[i].y;
    }
    mx /= k;
    my /= k;
    double sxx = 0.0, sxy = 0.0, syy = 0.0;
    for (size_t i = begin; i < end; i++) {
      double dx = p[i].x - mx, dy = p[i].y - my;
      sxx += dx * dx;
      sxy += dx * dy;
      syy += dy * dy;
    }
    if (sxx > 0 && end - begin > 2) {
      double res = syy - sxy * sxy / sxx;
      ssw += res > 0 ? res : 0.0;
      params += 2;
    } else {
      ssw += syy;
      params += 1;
    }
    begin = end;
  }
  free(p);
  if (n <= params) return NAN;
  return 1.0 - (ssw / (double)(n - params)) / (sst / (double)(n - 1));
}

typedef struct {
  const nl_maps *m;
  int bins;
  nl_dyt_row *rows;
  int *failed;
} table_job;

static void table_task(size_t i, int worker, void *user) {
  (void)worker;
  table_job *j = user;
  const nl_maps_layer *l = &j->m->layers[i];
  nl_dyt_row *r = &j->rows[i];
  r->name = l->name;
  r->points = l->n;
  r->var_y = nl_variance(l->y, l->n);
  if (nl_dyt_fit(l->x, l->y, l->n, &r->alpha, &r->mse, &r->r2) != 0) {
    j->failed[i] = 1;
    return;
  }
  r->bound_r2 = nl_bound_r2(l->x, l->y, l->n, j->bins);
  if (isnan(r->bound_r2)) j->failed[i] = 2;
}

int nl_dyt_table(const nl_maps *m, int bins, int threads, nl_dyt_row *rows, nl_error *err) {
  if (bins < 1) return nl_fail(err, NL_EINPUT, "bins must be at least 1, got %d", bins);
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].n < 2 * (size_t)bins)
      return nl_fail(err, NL_EINPUT,
                     "layer '%s' has %zu points, too few for %d bins (at least %d needed)",
                     m->layers[i].name, m->layers[i].n, bins, 2 * bins);
  int *failed = nl_xcalloc((size_t)m->nlayers, sizeof *failed);
  memset(rows, 0, sizeof *rows * (size_t)m->nlayers);
  table_job j = {m, bins, rows, failed};
  nl_parallel_for_n((size_t)m->nlayers, threads, table_task, &j);
  int rc = 0;
  for (int i = 0; i < m->nlayers && rc == 0; i++)
    if (failed[i])
      rc = nl_fail(err, NL_EINPUT, "layer '%s': %s", m->layers[i].name,
                   failed[i] == 1 ? "no DyT fit: y is constant or a value is not finite"
                                  : "no bound estimate: y is constant or a value is not finite");
  free(failed);
  return rc;
}
