/* NSGA-II building blocks (Deb et al. 2002): fast non-dominated sorting
 * and crowding distance. */
#include <math.h>
#include <stdlib.h>

#include "base/mem.h"
#include "search/gp.h"

static double val(const double *obj, int i, int m, int j) {
  double v = obj[(size_t)i * m + j];
  return isnan(v) ? INFINITY : v;
}

/* a dominates b: no worse in every objective, better in one. */
static int dominates(const double *obj, int m, int a, int b) {
  int better = 0;
  for (int j = 0; j < m; j++) {
    double x = val(obj, a, m, j), y = val(obj, b, m, j);
    if (x > y) return 0;
    if (x < y) better = 1;
  }
  return better;
}

typedef struct {
  double a, b;
  int i;
} pt2;

static int cmp_pt2(const void *x, const void *y) {
  const pt2 *p = x, *q = y;
  if (p->a != q->a) return p->a < q->a ? -1 : 1;
  if (p->b != q->b) return p->b < q->b ? -1 : 1;
  return p->i - q->i;
}

/* Two objectives: sort by (f1, f2); each point joins the first front whose
 * last member (the one with the least f2 so far) does not dominate it
 * (efficient non-dominated sort with sequential search). O(n log n + n F). */
static int rank2(const double *obj, int n, int *rank) {
  pt2 *p = nl_xmalloc(sizeof(pt2) * (size_t)n);
  for (int i = 0; i < n; i++) p[i] = (pt2){val(obj, i, 2, 0), val(obj, i, 2, 1), i};
  qsort(p, (size_t)n, sizeof(pt2), cmp_pt2);
  int *last = nl_xmalloc(sizeof(int) * (size_t)n), nf = 0;
  for (int k = 0; k < n; k++) {
    int f = 0;
    for (; f < nf; f++) {
      const pt2 *q = &p[last[f]];
      int dom = q->b <= p[k].b && (q->a < p[k].a || q->b < p[k].b);
      if (!dom) break;
    }
    if (f == nf) nf++;
    last[f] = k;
    rank[p[k].i] = f + 1;
  }
  free(p);
  free(last);
  return nf;
}

int nl_nsga2_rank(const double *obj, int n, int m, int *rank) {
  if (n <= 0) return 0;
  if (m == 2) return rank2(obj, n, rank);
  int *count = nl_xcalloc((size_t)n, sizeof(int));   /* how many dominate i */
  int *nd = nl_xcalloc((size_t)n, sizeof(int));      /* how many i dominates */
  int *list = nl_xmalloc(sizeof(int) * (size_t)n * (size_t)n);
  for (int a = 0; a < n; a++)
    for (int b = a + 1; b < n; b++) {
      if (dominates(obj, m, a, b)) {
        list[(size_t)a * n + nd[a]++] = b;
        count[b]++;
      } else if (dominates(obj, m, b, a)) {
        list[(size_t)b * n + nd[b]++] = a;
        count[a]++;
      }
    }
  int *cur = nl_xmalloc(sizeof(int) * (size_t)n), *next = nl_xmalloc(sizeof(int) * (size_t)n);
  int nc = 0, fronts = 0;
  for (int i = 0; i < n; i++)
    if (count[i] == 0) {
      rank[i] = 1;
      cur[nc++] = i;
    }
  while (nc > 0) {
    fronts++;
    int nn = 0;
    for (int k = 0; k < nc; k++) {
      int a = cur[k];
      for (int t = 0; t < nd[a]; t++) {
        int b = list[(size_t)a * n + t];
        if (--count[b] == 0) {
          rank[b] = fronts + 1;
          next[nn++] = b;
        }
      }
    }
    int *tmp = cur;
    cur = next;
    next = tmp;
    nc = nn;
  }
  free(count);
  free(nd);
  free(list);
  free(cur);
  free(next);
  return fronts;
}

typedef struct {
  double v;
  int k;
} keyed;

static int cmp_keyed(const void *a, const void *b) {
  const keyed *x = a, *y = b;
  if (x->v < y->v) return -1;
  if (x->v > y->v) return 1;
  return x->k - y->k;
}

void nl_nsga2_crowding(const double *obj, int m, const int *idx, int k, double *crowd) {
  for (int i = 0; i < k; i++) crowd[i] = 0.0;
  if (k <= 0) return;
  keyed *s = nl_xmalloc(sizeof(keyed) * (size_t)k);
  for (int j = 0; j < m; j++) {
    for (int i = 0; i < k; i++) {
      s[i].v = val(obj, idx[i], m, j);
      s[i].k = i;
    }
    qsort(s, (size_t)k, sizeof(keyed), cmp_keyed);
    crowd[s[0].k] = INFINITY;
    crowd[s[k - 1].k] = INFINITY;
    double range = s[k - 1].v - s[0].v;
    if (!(range > 0) || !isfinite(range)) continue;
    for (int i = 1; i < k - 1; i++) {
      double gap = (s[i + 1].v - s[i - 1].v) / range;
      if (isfinite(gap)) crowd[s[i].k] += gap;
    }
  }
  free(s);
}
