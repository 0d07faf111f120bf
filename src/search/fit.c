/* Levenberg-Marquardt on an expression's constants; node paths; folding
 * a subtree to its best constant. */
#define _POSIX_C_SOURCE 200809L
#include "search/fit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/linalg.h"
#include "base/mem.h"
#include "search/dyt.h"
#include "tensor/kernels.h"

static double objective(const nl_prog *p, const nl_fit_pts *d, nl_eval_ws *ws) {
  double f = nl_mse_grad(p, d->x, d->y, d->n, NULL, ws);
  if (d->gamma != 0) {
    float xs[2] = {(float)-d->delta, (float)d->delta}, v[2];
    nl_eval(p, xs, v, 2, ws);
    f += d->gamma * 0.5 * ((double)v[0] * v[0] + (double)v[1] * v[1]);
  }
  return isfinite(f) ? f : INFINITY;
}

double nl_fit_objective(const nl_prog *p, const nl_fit_pts *d) {
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, p->len);
  double f = objective(p, d, &ws);
  nl_eval_ws_free(&ws);
  return f;
}

double nl_fit_consts(nl_prog *p, const nl_fit_pts *d, const unsigned char *mask, int iters) {
  int nc = nl_prog_nconst(p);
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, p->len);
  double fcur = objective(p, d, &ws);
  int *free_idx = nl_xmalloc(sizeof(int) * (size_t)(nc + 1));
  int k = 0;
  for (int c = 0; c < nc; c++)
    if (!mask || mask[c]) free_idx[k++] = c;
  if (k == 0 || !isfinite(fcur) || d->n == 0) {
    free(free_idx);
    nl_eval_ws_free(&ws);
    return fcur;
  }
  size_t n = d->n, rows = n + (d->gamma != 0 ? 2 : 0);
  float *cst = nl_xmalloc(sizeof(float) * (size_t)nc);
  float *trial = nl_xmalloc(sizeof(float) * (size_t)nc);
  float *fv = nl_xmalloc(sizeof(float) * rows);
  float *jac = nl_xmalloc(sizeof(float) * (size_t)nc * n);
  float jpen[2 * 64], *jp = nc <= 64 ? jpen : nl_xmalloc(sizeof(float) * 2 * (size_t)nc);
  double *A = nl_xmalloc(sizeof(double) * (size_t)k * (size_t)k * 2), *A0 = A + (size_t)k * k;
  double *g = nl_xmalloc(sizeof(double) * (size_t)k * 2), *z = g + k;
  nl_prog_get_consts(p, cst);
  double lambda = 1e-3;
  /* residual weights: the MSE rows 1/sqrt(n), the penalty rows sqrt(gamma/2) */
  double wm = 1.0 / sqrt((double)n), wp = sqrt(d->gamma * 0.5);
  for (int it = 0; it < iters; it++) {
    nl_eval_jac(p, d->x, fv, jac, n, &ws);
    if (d->gamma != 0) {
      float xs[2] = {(float)-d->delta, (float)d->delta};
      nl_eval_jac(p, xs, fv + n, jp, 2, &ws);
    }
    /* A0 = J^T J, g = J^T r over the free constants */
    memset(A0, 0, sizeof(double) * (size_t)k * k);
    memset(g, 0, sizeof(double) * (size_t)k);
    int finite = 1;
    for (int a = 0; a < k && finite; a++) {
      const float *ja = jac + (size_t)free_idx[a] * n;
      double ga = 0;
      for (size_t i = 0; i < n; i++) ga += (double)ja[i] * ((double)fv[i] - d->y[i]);
      ga *= wm * wm;
      if (d->gamma != 0)
        ga += wp * wp *
              ((double)jp[2 * free_idx[a]] * fv[n] + (double)jp[2 * free_idx[a] + 1] * fv[n + 1]);
      g[a] = ga;
      for (int b = 0; b <= a; b++) {
        const float *jb = jac + (size_t)free_idx[b] * n;
        double s = 0;
        for (size_t i = 0; i < n; i++) s += (double)ja[i] * jb[i];
        s *= wm * wm;
        if (d->gamma != 0)
          s += wp * wp *
               ((double)jp[2 * free_idx[a]] * jp[2 * free_idx[b]] +
                (double)jp[2 * free_idx[a] + 1] * jp[2 * free_idx[b] + 1]);
        A0[a * k + b] = A0[b * k + a] = s;
      }
      if (!isfinite(ga)) finite = 0;
    }
    if (!finite) break;
    int improved = 0;
    for (int tries = 0; tries < 12 && !improved; tries++) {
      memcpy(A, A0, sizeof(double) * (size_t)k * k);
      for (int a = 0; a < k; a++) {
        A[a * k + a] += lambda * (A0[a * k + a] > 1e-30 ? A0[a * k + a] : 1e-30);
        z[a] = -g[a];
      }
      if (nl_cholesky(A, k) != 0) {
        lambda *= 10;
        continue;
      }
      nl_cholesky_solve(A, z, k, 1);
      memcpy(trial, cst, sizeof(float) * (size_t)nc);
      for (int a = 0; a < k; a++) trial[free_idx[a]] = (float)(cst[free_idx[a]] + z[a]);
      nl_prog_set_consts(p, trial);
      double ft = objective(p, d, &ws);
      if (ft < fcur) {
        double gain = fcur - ft;
        memcpy(cst, trial, sizeof(float) * (size_t)nc);
        fcur = ft;
        improved = 1;
        lambda = lambda / 3 > 1e-12 ? lambda / 3 : 1e-12;
        if (gain <= 1e-12 * (fcur + 1e-30)) it = iters; /* converged */
      } else {
        nl_prog_set_consts(p, cst);
        lambda *= 4;
      }
    }
    if (!improved) break;
  }
  nl_prog_set_consts(p, cst);
  if (jp != jpen) free(jp);
  free(A);
  free(g);
  free(jac);
  free(fv);
  free(trial);
  free(cst);
  free(free_idx);
  nl_eval_ws_free(&ws);
  return fcur;
}

/* ---- paths ---- */

int nl_fit_children(const nl_prog *p, int i, int *ch) {
  int k = p->nodes[i].arity;
  int end = i - 1;
  for (int c = k - 1; c >= 0; c--) {
    ch[c] = end;
    end -= p->nodes[end].size;
  }
  return k;
}

int nl_fit_path_node(const nl_prog *p, const char *path, int *node, nl_error *err) {
  const char *s = path;
  if (p->len == 0) return nl_fail(err, NL_EINPUT, "empty expression");
  if (s[0] != '0' || (s[1] && s[1] != '.'))
    return nl_fail(err, NL_EINPUT, "bad path '%s': paths start at the root, 0 (see 'show')",
                   path);
  int i = p->len - 1;
  s++;
  while (*s) {
    if (*s != '.' || !(s[1] >= '0' && s[1] <= '9'))
      return nl_fail(err, NL_EINPUT, "bad path '%s': expected digits joined by '.', as 0.1.0",
                     path);
    int upto = (int)(s - path); /* the path of the current node */
    s++;
    long c = 0;
    while (*s >= '0' && *s <= '9') {
      if (c < 100) c = c * 10 + (*s - '0');
      s++;
    }
    int ch[3];
    int k = nl_fit_children(p, i, ch);
    if (c >= k)
      return nl_fail(err, NL_EINPUT, "bad path '%s': node %.*s has %d operand%s", path, upto,
                     path, k, k == 1 ? "" : "s");
    i = ch[c];
  }
  *node = i;
  return 0;
}

char *nl_fit_node_path(const nl_prog *p, int node) {
  /* walk down from the root to the node */
  char buf[2 * NL_EXPR_MAX_DEPTH + 8];
  size_t len = 0;
  buf[len++] = '0';
  int i = p->len - 1;
  while (i != node && len + 3 < sizeof buf) {
    int ch[3];
    int k = nl_fit_children(p, i, ch), c;
    for (c = 0; c < k; c++)
      if (node <= ch[c] && node > ch[c] - p->nodes[ch[c]].size) break;
    if (c == k) break; /* not below i: cannot happen for a valid node */
    buf[len++] = '.';
    buf[len++] = (char)('0' + c);
    i = ch[c];
  }
  buf[len] = '\0';
  return nl_xstrdup(buf);
}

/* ---- fold ---- */

double nl_fit_fold(const nl_prog *p, int node, const nl_fit_pts *d, nl_prog *out, float *value) {
  int size = p->nodes[node].size, start = node - size + 1;
  /* the subtree alone is a program: its mean value starts the fit */
  nl_prog sub;
  nl_prog_init(&sub);
  for (int i = start; i <= node; i++)
    nl_prog_push(&sub, (nl_op)p->nodes[i].op, p->nodes[i].val, p->nodes[i].ival);
  double mean = 0;
  {
    nl_eval_ws ws;
    nl_eval_ws_init(&ws, sub.len);
    float buf[NL_EVAL_CHUNK];
    size_t cnt = 0;
    for (size_t off = 0; off < d->n; off += NL_EVAL_CHUNK) {
      size_t m = d->n - off < NL_EVAL_CHUNK ? d->n - off : NL_EVAL_CHUNK;
      nl_eval(&sub, d->x + off, buf, m, &ws);
      for (size_t i = 0; i < m; i++)
        if (isfinite(buf[i])) {
          mean += buf[i];
          cnt++;
        }
    }
    mean = cnt ? mean / (double)cnt : 0;
    nl_eval_ws_free(&ws);
  }
  nl_prog_free(&sub);
  nl_prog_init(out);
  int kconst = 0; /* index of the new constant among the constants */
  for (int i = 0; i < start; i++) {
    if (p->nodes[i].op == NL_OP_CONST) kconst++;
    nl_prog_push(out, (nl_op)p->nodes[i].op, p->nodes[i].val, p->nodes[i].ival);
  }
  nl_prog_push(out, NL_OP_CONST, (float)mean, 0);
  for (int i = node + 1; i < p->len; i++)
    nl_prog_push(out, (nl_op)p->nodes[i].op, p->nodes[i].val, p->nodes[i].ival);
  int nc = nl_prog_nconst(out);
  unsigned char *mask = nl_xcalloc((size_t)nc, 1);
  mask[kconst] = 1;
  double f = nl_fit_consts(out, d, mask, 50);
  free(mask);
  float *c = nl_xmalloc(sizeof(float) * (size_t)nc);
  nl_prog_get_consts(out, c);
  *value = c[kconst];
  free(c);
  return f;
}

double nl_fit_r2(const nl_prog *p, const float *x, const float *y, size_t n) {
  double var = nl_variance(y, n);
  if (!(var > 0)) return NAN;
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, p->len);
  double mse = nl_mse_grad(p, x, y, n, NULL, &ws);
  nl_eval_ws_free(&ws);
  return 1.0 - mse / var;
}

/* ---- re-fit after simplification (the chosen member of a budget) ---- */

int nl_fit_polish(nl_prog *p, const nl_gp_config *c, const char *layer, const float *x,
                  const float *y, size_t n, int iters, nl_fit_polish_info *info) {
  memset(info, 0, sizeof *info);
  nl_simplify(p);
  if (n < 2) return 0;
  size_t *perm = nl_xmalloc(sizeof(size_t) * n), nt;
  nl_gp_split(c, layer, n, perm, &nt);
  size_t nv = n - nt;
  float *xt = nl_xmalloc(sizeof(float) * n), *yt = nl_xmalloc(sizeof(float) * n);
  double amax = 0;
  for (size_t i = 0; i < n; i++) {
    xt[i] = x[perm[i]];
    yt[i] = y[perm[i]];
    if (i < nt && fabs(xt[i]) > amax) amax = fabs(xt[i]);
  }
  free(perm);
  /* the search's F: MSE plus its pull-to-zero term, delta from the training points */
  nl_fit_pts tr = {xt, yt, nt, c->penalty, c->delta_scale * amax};
  nl_fit_pts va = {xt + nt, yt + nt, nv, c->penalty, c->delta_scale * amax};
  info->val_before = nl_fit_objective(p, &va);
  nl_prog q;
  nl_prog_init(&q);
  nl_prog_copy(&q, p);
  nl_fit_consts(&q, &tr, NULL, iters);
  info->val_after = nl_fit_objective(&q, &va);
  if (info->val_after <= info->val_before && nl_prog_nconst(&q) > 0) {
    info->kept = memcmp(q.nodes, p->nodes, sizeof(nl_node) * (size_t)p->len) != 0;
    nl_prog_copy(p, &q);
  } else {
    info->val_after = info->val_before;
  }
  nl_prog_free(&q);
  info->val_r2 = nl_fit_r2(p, xt + nt, yt + nt, nv);
  nl_fit_pts mse = {xt + nt, yt + nt, nv, 0, 0};
  info->val_mse = nl_fit_objective(p, &mse);
  free(xt);
  free(yt);
  return info->kept;
}
