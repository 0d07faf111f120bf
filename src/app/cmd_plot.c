/* plot: pictures through gnuplot. 'plot expr EXPR' and 'plot LAYER' draw
 * f(x) (for a layer with mappings also its points and DyT fit); 'plot
 * front LAYER' draws a layer's Pareto front (complexity against fit) from
 * the fronts CSV files. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "search/fronts.h"
#include "session/session.h"
#include "base/mem.h"
#include "expr/expr.h"
#include "model/safetensors.h"
#include "search/dyt.h"
#include "search/gp.h"
#include "plot/plot.h"
#include "app/model_path.h"
#include "data/dataset.h"
#include "model/vit.h"
#include "train/exits.h"

static const nl_opt opts[] = {
    {"fronts", NL_OPT_STR, "DIR", NULL, "directory of fronts CSV files", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {"x", NL_OPT_CHOICE, NULL, "flops", "front: horizontal axis", "flops|nodes", 0},
    {"y", NL_OPT_CHOICE, NULL, "val_mse", "front: vertical axis",
     "val_mse|val_r2|val_fitness|train_fitness", 0},
    {"term", NL_OPT_CHOICE, NULL, "auto",
     "where to draw: $GNUTERM, else a window ($DISPLAY), else a PNG file; or text",
     "auto|window|png|dumb", NL_OPTF_SESSION},
    {"output", NL_OPT_STR, "FILE", NULL, "PNG file (default: a fresh normlab-plot-N.png)", NULL,
     NL_OPTF_PATH},
    {"range", NL_OPT_STR, "A:B", "-4:4", "f(x): x range", NULL, 0},
    {"samples", NL_OPT_INT, "N", "400", "f(x): points along the range", NULL, 0},
    {"set", NL_OPT_STR, "FILE", NULL, "expression set (LAYER's expression; plot cost)", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {"maps", NL_OPT_STR, "FILE", NULL, "mappings: LAYER's points and its DyT fit", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {"dim", NL_OPT_INT, "D", "768",
     "cost: token width d (LayerNorm's (5d+2)/d FLOPs/elem; at the prompt the model's)", NULL,
     0},
    {"model", NL_OPT_STR, "FILE", NULL, "exits: the model", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"exits", NL_OPT_STR, "FILE", NULL, "exits: exit heads (from exits fit)", NULL, NL_OPTF_PATH},
    {"eval-images", NL_OPT_INT, "N", "0", "exits: the first N test images (0: all)", NULL, 0},
    {"dump", NL_OPT_FLAG, NULL, NULL, "exits: print the points as CSV instead of drawing", NULL, 0},
    {"holdout", NL_OPT_INT, "N", "5000", "exits: the last N images of fmnist:train, where the predictor's q and tau are picked", NULL, 0},
    {0},
};

static nl_plot_term term_of(const char *t) {
  if (strcmp(t, "png") == 0) return NL_PLOT_PNG;
  if (strcmp(t, "dumb") == 0) return NL_PLOT_DUMB;
  if (strcmp(t, "window") == 0) return NL_PLOT_WINDOW;
  return NL_PLOT_AUTO;
}

/* What an axis of the front shows. */
static const char *axis_label(const char *col) {
  if (strcmp(col, "flops") == 0) return "FLOPs per element";
  if (strcmp(col, "nodes") == 0) return "nodes";
  if (strcmp(col, "val_mse") == 0) return "validation MSE";
  if (strcmp(col, "val_r2") == 0) return "validation R2 (higher is better)";
  if (strcmp(col, "val_fitness") == 0) return "validation fitness";
  return "training fitness";
}

static const nl_front_member *g_sort_m; /* the rows front_order sorts indices of */
static const char *g_sort_x, *g_sort_y;

static int front_order(const void *pa, const void *pb) {
  const nl_front_member *a = &g_sort_m[*(const int *)pa], *b = &g_sort_m[*(const int *)pb];
  double xa = nl_front_value(a, g_sort_x), xb = nl_front_value(b, g_sort_x);
  if (xa != xb) return xa < xb ? -1 : 1;
  double ya = nl_front_value(a, g_sort_y), yb = nl_front_value(b, g_sort_y);
  return ya < yb ? -1 : ya > yb;
}

/* plot front LAYER: the layer's members of all seeds that no other
 * member beats on both axes (fewer FLOPs or nodes, and a better figure:
 * lower error, higher R2), joined in order, with the knee and minval
 * members (as 'pick' and evolve --select choose them) marked. */
static int plot_front(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (a->npos != 2) return nl_fail(err, NL_EINPUT, "expects 'plot front LAYER'");
  const char *layer = a->pos[1];
  const char *dir = nl_arg_str(a, "fronts");
  if (!dir)
    return nl_fail(err, NL_EINPUT, "no fronts: give --fronts DIR (or 'load fronts DIR' first)");
  const char *xc = nl_arg_str(a, "x"), *yc = nl_arg_str(a, "y");
  nl_fronts fr;
  if (nl_fronts_read(dir, layer, &fr, err) != 0) return -1;
  const char *missing = !(fr.has & nl_front_col("layer")) ? "layer"
                        : !(fr.has & nl_front_col(xc))  ? xc
                        : !(fr.has & nl_front_col(yc))  ? yc
                                                         : NULL;
  if (fr.n && missing) {
    nl_fronts_free(&fr);
    return nl_fail(err, NL_EINPUT, "%s: the header lacks a '%s' column", dir, missing);
  }
  if (fr.n == 0) {
    nl_fronts_free(&fr);
    return nl_fail(err, NL_EINPUT, "%s: no front members for layer '%s'", dir, layer);
  }
  size_t n = fr.n;
  /* both objectives minimised (R2 is maximised); rows without both
   * figures are not drawn */
  int maximise = strcmp(yc, "val_r2") == 0;
  double *obj = nl_xmalloc(sizeof(double) * 2 * n);
  int *rank = nl_xmalloc(sizeof(int) * n), *idx = nl_xmalloc(sizeof(int) * n);
  for (size_t i = 0; i < n; i++) {
    double x = nl_front_value(&fr.m[i], xc), y = nl_front_value(&fr.m[i], yc);
    obj[2 * i] = isfinite(x) ? x : NAN;
    obj[2 * i + 1] = isfinite(y) ? (maximise ? -y : y) : NAN;
  }
  nl_nsga2_rank(obj, (int)n, 2, rank);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (rank[i] == 1 && !isnan(obj[2 * i]) && !isnan(obj[2 * i + 1])) idx[k++] = (int)i;
  int rc = -1;
  float *v = nl_xmalloc(sizeof(float) * 2 * (k + 2));
  if (k == 0) {
    nl_fail(err, NL_EINPUT, "%s: no member of layer '%s' has both %s and %s", dir, layer, xc, yc);
    goto out;
  }
  g_sort_m = fr.m, g_sort_x = xc, g_sort_y = yc;
  qsort(idx, k, sizeof(int), front_order);
  for (size_t i = 0; i < k; i++) {
    v[i] = (float)nl_front_value(&fr.m[idx[i]], xc);
    v[k + 2 + i] = (float)nl_front_value(&fr.m[idx[i]], yc);
  }
  int knee = nl_fronts_select(fr.m, n, NL_GP_KNEE);
  int minval = nl_fronts_select(fr.m, n, NL_GP_MINVAL);
  char title[512], ktitle[96], mtitle[96];
  snprintf(title, sizeof title, "Pareto front of %s (%zu non-dominated of %zu members)", layer, k,
           n);
  nl_plot_series s[3];
  int ns = 0;
  s[ns++] = (nl_plot_series){.title = layer, .x = v, .y = v + k + 2, .n = k, .points = 4};
  const int pick[2] = {knee, minval};
  char *ptitle[2] = {ktitle, mtitle};
  for (int p = 0; p < 2; p++) {
    int m = pick[p];
    if (m < 0 || (p == 1 && minval == knee)) continue;
    double x = nl_front_value(&fr.m[m], xc), y = nl_front_value(&fr.m[m], yc);
    if (!isfinite(x) || !isfinite(y)) continue;
    v[k + p] = (float)x;
    v[2 * k + 2 + p] = (float)y;
    snprintf(ptitle[p], 96, "%s%s: %s %g, %s %.4g", p == 0 ? "knee" : "minval",
             p == 0 && minval == knee ? " and minval" : "", xc, x, yc, y);
    /* K and M in a text plot */
    s[ns++] = (nl_plot_series){.title = ptitle[p], .x = v + k + p, .y = v + 2 * k + 2 + p, .n = 1,
                               .points = 5, .pt = p == 0 ? 11 : 13};
  }
  nl_plot_opts po = {
      .term = term_of(nl_arg_str(a, "term")),
      .output = nl_arg_str(a, "output"),
      .title = title,
      .xlabel = axis_label(xc),
      .ylabel = axis_label(yc),
      .text_out = ctx->out,
  };
  nl_plot_result res;
  rc = nl_plot_draw(&po, s, ns, &res, err);
  if (rc == 0 && res.term == NL_PLOT_PNG) fprintf(ctx->out, "wrote %s\n", res.path);
out:
  free(v);
  free(obj);
  free(rank);
  free(idx);
  nl_fronts_free(&fr);
  return rc;
}

/* Expression text from the positional words after "expr". */
static char *join_words(const nl_args *a, int from) {
  size_t len = 1;
  for (int i = from; i < a->npos; i++) len += strlen(a->pos[i]) + 1;
  char *text = nl_xmalloc(len);
  text[0] = '\0';
  for (int i = from; i < a->npos; i++) {
    if (i > from) strcat(text, " ");
    strcat(text, a->pos[i]);
  }
  return text;
}

#define NL_PLOT_MAX_DOTS 4000

/* One layer's mapping points. */
typedef struct mapping {
  float *x, *y;
  size_t n;
} mapping;

/* Read a layer's points from a mappings file: tensors "<layer>.x" and
 * "<layer>.y", or "map_x.<layer>" and "map_y.<layer>" (reference files). */
static int read_mapping(const char *path, const char *layer, mapping *m, nl_error *err) {
  nl_st_file f;
  if (nl_st_open(&f, path, err) != 0) return -1;
  size_t len = strlen(layer) + 8;
  char *kx = nl_xmalloc(len), *ky = nl_xmalloc(len);
  snprintf(kx, len, "%s.x", layer);
  snprintf(ky, len, "%s.y", layer);
  if (!nl_st_find(&f, kx) || !nl_st_find(&f, ky)) {
    snprintf(kx, len, "map_x.%s", layer);
    snprintf(ky, len, "map_y.%s", layer);
  }
  int rc = 0;
  size_t nx = 0, ny = 0;
  m->x = m->y = NULL;
  if (!nl_st_find(&f, kx) || !nl_st_find(&f, ky)) {
    rc = nl_fail(err, NL_EINPUT, "%s: no mapping for layer '%s' (tensors '%s.x' and '%s.y')",
                 path, layer, layer, layer);
  } else if (!(m->x = nl_st_read_f32(&f, kx, &nx, err)) ||
             !(m->y = nl_st_read_f32(&f, ky, &ny, err))) {
    rc = -1;
  } else if (nx != ny || nx < 2) {
    rc = nl_fail(err, NL_EINPUT, "%s: '%s' and '%s' hold %zu and %zu points", path, kx, ky, nx,
                 ny);
  } else {
    for (size_t i = 0; i < nx && rc == 0; i++)
      if (!isfinite(m->x[i]) || !isfinite(m->y[i]))
        rc = nl_fail(err, NL_EINPUT, "%s: point %zu of layer '%s' is not finite", path, i, layer);
  }
  m->n = nx;
  if (rc != 0) {
    free(m->x);
    free(m->y);
    m->x = m->y = NULL;
  }
  free(kx);
  free(ky);
  nl_st_close(&f);
  return rc;
}

/* plot expr EXPR | plot LAYER: f(x) of the expression or of the layer's
 * expression in the set; for a layer with mappings also the mapping's
 * points (subsampled) and the fitted DyT curve tanh(alpha x), with the
 * R² of each on all the points. */
static int plot_fx(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long n;
  if (nl_arg_int_range(a, "samples", 2, 1000000, &n, err) != 0) return -1;
  nl_prog p;
  nl_prog_init(&p);
  int have_prog = 0, rc = -1;
  char *ftitle = NULL, *dtitle = NULL, *mtitle = NULL;
  char title[512];
  mapping mp = {NULL, NULL, 0};
  const mapping *ml = NULL;
  float *gx = NULL, *gy = NULL, *dy = NULL, *sx = NULL, *sy = NULL;
  const char *layer = NULL;
  if (strcmp(a->pos[0], "expr") == 0) {
    if (a->npos < 2) return nl_fail(err, NL_EINPUT, "expects 'plot expr EXPR'");
    char *text = join_words(a, 1);
    int prc = nl_parse(text, 1, &p, err);
    free(text);
    if (prc != 0) goto out;
    have_prog = 1;
    snprintf(title, sizeof title, "f(x)");
  } else {
    layer = a->pos[0];
    if (a->npos > 1) {
      nl_fail(err, NL_EINPUT, "unexpected argument '%s' (plot LAYER, or plot expr EXPR)",
              a->pos[1]);
      goto out;
    }
    const char *epath = nl_arg_str(a, "set"), *mpath = nl_arg_str(a, "maps");
    if (ctx->session && !nl_arg_given(a, "set")) { /* the prompt's own set, as it is */
      const nl_exprset_entry *e = nl_session_find(ctx->session, layer);
      if (e) {
        nl_prog_copy(&p, &e->prog);
        have_prog = 1;
      }
    } else if (epath) {
      nl_exprset set;
      nl_exprset_init(&set);
      if (nl_exprset_load(epath, &set, err) != 0) goto out;
      const nl_exprset_entry *e = nl_exprset_find(&set, layer);
      if (e) {
        nl_prog_copy(&p, &e->prog);
        have_prog = 1;
      }
      nl_exprset_free(&set);
    }
    if (mpath) {
      if (read_mapping(mpath, layer, &mp, err) != 0) goto out;
      ml = &mp;
    }
    if (!have_prog && !ml) {
      nl_fail(err, NL_EINPUT,
              "nothing to plot for '%s': no expression for it (--set, 'load exprs') and no "
              "mappings (--maps, 'load maps')",
              layer);
      goto out;
    }
    snprintf(title, sizeof title, "%s", layer);
  }
  /* the x range: --range, else the mapping's, else -4:4 */
  double lo, hi;
  if (nl_arg_given(a, "range") || !ml) {
    if (nl_plot_parse_range(nl_arg_str(a, "range"), &lo, &hi, err) != 0) goto out;
  } else {
    lo = hi = ml->x[0];
    for (size_t i = 1; i < ml->n; i++) {
      if (ml->x[i] < lo) lo = ml->x[i];
      if (ml->x[i] > hi) hi = ml->x[i];
    }
    if (!(lo < hi)) hi = lo + 1;
  }
  gx = nl_xmalloc(sizeof(float) * (size_t)n);
  for (long i = 0; i < n; i++) gx[i] = (float)(lo + (hi - lo) * (double)i / (double)(n - 1));
  nl_plot_series s[3];
  int ns = 0;
  if (ml) {
    size_t stride = (ml->n + NL_PLOT_MAX_DOTS - 1) / NL_PLOT_MAX_DOTS, k = 0;
    sx = nl_xmalloc(sizeof(float) * (ml->n / stride + 1));
    sy = nl_xmalloc(sizeof(float) * (ml->n / stride + 1));
    for (size_t i = 0; i < ml->n; i += stride, k++) {
      sx[k] = ml->x[i];
      sy[k] = ml->y[i];
    }
    size_t len = 96;
    mtitle = nl_xmalloc(len);
    snprintf(mtitle, len, "mapping (%zu of %zu points)", k, ml->n);
    s[ns++] = (nl_plot_series){mtitle, sx, sy, k, 1, 0};
    double alpha, r2;
    if (nl_dyt_fit(ml->x, ml->y, ml->n, &alpha, NULL, &r2) == 0) {
      dy = nl_xmalloc(sizeof(float) * (size_t)n);
      for (long i = 0; i < n; i++) dy[i] = (float)tanh(alpha * gx[i]);
      dtitle = nl_xmalloc(96);
      snprintf(dtitle, 96, "DyT tanh(%.4g x), R² %.4f", alpha, r2);
      s[ns++] = (nl_plot_series){dtitle, gx, dy, (size_t)n, 0, 0};
    }
  }
  if (have_prog) {
    gy = nl_xmalloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++) gy[i] = (float)nl_eval1(&p, gx[i]);
    char *printed = nl_print(&p, NL_PRINT_SHORT);
    size_t len = strlen(printed) + 64;
    ftitle = nl_xmalloc(len);
    if (ml) { /* R² of f on every point of the mapping */
      double sse = 0;
      for (size_t i = 0; i < ml->n; i++) {
        double d = nl_eval1(&p, ml->x[i]) - ml->y[i];
        sse += d * d;
      }
      double var = nl_variance(ml->y, ml->n);
      snprintf(ftitle, len, "f(x) = %s, R² %.4f", printed,
               var > 0 ? 1.0 - sse / (double)ml->n / var : NAN);
    } else {
      snprintf(ftitle, len, "f(x) = %s", printed);
    }
    free(printed);
    s[ns++] = (nl_plot_series){ftitle, gx, gy, (size_t)n, 0, 0};
  }
  nl_plot_opts po = {
      .term = term_of(nl_arg_str(a, "term")),
      .output = nl_arg_str(a, "output"),
      .title = title,
      .xlabel = "x",
      .ylabel = ml ? "y (pre-affine)" : "f(x)",
      .text_out = ctx->out,
  };
  nl_plot_result res;
  rc = nl_plot_draw(&po, s, ns, &res, err);
  if (rc == 0 && res.term == NL_PLOT_PNG) fprintf(ctx->out, "wrote %s\n", res.path);
out:
  free(gx);
  free(gy);
  free(dy);
  free(sx);
  free(sy);
  free(ftitle);
  free(dtitle);
  free(mtitle);
  free(mp.x);
  free(mp.y);
  nl_prog_free(&p);
  return rc;
}

/* Per-layer FLOPs per element of a set beside LayerNorm and DyT, as bars. */
static int plot_cost(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (a->npos != 1) return nl_fail(err, NL_EINPUT, "expects 'plot cost' (with --set FILE)");
  nl_session *sess = ctx->session;
  long d;
  const char *dfrom;
  if (!nl_arg_given(a, "dim") && sess && sess->model_width > 0) { /* the prompt's model */
    d = sess->model_width;
    dfrom = "model";
  } else {
    if (nl_arg_int_range(a, "dim", 1, 1L << 20, &d, err) != 0) return -1;
    dfrom = nl_arg_given(a, "dim") ? "--dim" : "default: ViT-B/16";
  }
  const char *path = nl_arg_str(a, "set");
  nl_exprset set;
  nl_exprset_init(&set);
  if (sess && !nl_arg_given(a, "set") && sess->set.n > 0) { /* the prompt's own set, as it is */
    nl_exprset_copy(&set, &sess->set);
    path = "the session's set";
  } else {
    if (!path)
      return nl_fail(err, NL_EINPUT,
                     "no expression set: give --exprs FILE (or 'load exprs FILE' / 'set' first)");
    if (nl_exprset_load(path, &set, err) != 0) {
      nl_exprset_free(&set);
      return -1;
    }
  }
  if (set.n == 0) {
    nl_exprset_free(&set);
    return nl_fail(err, NL_EINPUT, "%s: no expressions in the set", path);
  }
  size_t n = (size_t)set.n;
  float *v = nl_xmalloc(sizeof(float) * 6 * n);
  float *xs = v, *ys = v + n, *xl = v + 2 * n, *yl = v + 3 * n, *xd = v + 4 * n, *yd = v + 5 * n;
  const char **names = nl_xmalloc(sizeof(char *) * n);
  nl_cost_opts co = {.clip_cost = 0};
  for (size_t i = 0; i < n; i++) {
    names[i] = set.e[i].name;
    xs[i] = (float)i - 0.27f;
    ys[i] = (float)nl_cost(&set.e[i].prog, &co);
    xl[i] = (float)i;
    yl[i] = (float)(nl_cost_layernorm_token((int)d).flops / (double)d);
    xd[i] = (float)i + 0.27f;
    yd[i] = (float)(nl_cost_dyt_token((int)d).flops / (double)d);
  }
  char title[160];
  snprintf(title, sizeof title, "FLOPs per element, %zu layer%s; d = %ld (%s)", n,
           n == 1 ? "" : "s", d, dfrom);
  nl_plot_series s[3] = {
      {.title = "this set", .x = xs, .y = ys, .n = n, .points = 3},
      {.title = "LayerNorm", .x = xl, .y = yl, .n = n, .points = 3},
      {.title = "DyT", .x = xd, .y = yd, .n = n, .points = 3},
  };
  nl_plot_opts po = {
      .term = term_of(nl_arg_str(a, "term")),
      .output = nl_arg_str(a, "output"),
      .title = title,
      .xlabel = "layer",
      .ylabel = "FLOPs per element",
      .text_out = ctx->out,
      .xtics = names,
      .nxtics = n,
  };
  nl_plot_result res;
  int rc = nl_plot_draw(&po, s, 3, &res, err);
  if (rc == 0 && res.term == NL_PLOT_PNG) fprintf(ctx->out, "wrote %s\n", res.path);
  free(names);
  free(v);
  nl_exprset_free(&set);
  return rc;
}

/* plot exits: top-1 against FLOPs per image of the threshold rule over
 * nl_exits_tau_grid, the complexity predictor alone over nl_exits_q_grid
 * (tau 0), the predictor with the rule at the (q, tau) picked on the
 * held-out training images for each budget of nl_exits_drop_grid, the
 * block policy, the oracle and full depth, on one per-image table of every
 * exit's decisions (train/exits.h); the policy from its own pass. */
typedef struct {
  const char *name;
  float *x, *y;
  int n;
} exit_series;

static void put_point(exit_series *s, FILE *dump, double q, double tau, double mflops,
                      double top1, double blocks) {
  s->x[s->n] = (float)mflops;
  s->y[s->n] = (float)top1;
  s->n++;
  if (!dump) return;
  fprintf(dump, "%s,", s->name);
  if (tau >= 0) fprintf(dump, "%.10g", tau);
  fprintf(dump, ",%.6f,%.4f,%.4f,", mflops, top1, blocks);
  if (q >= 0) fprintf(dump, "%.10g", q);
  fprintf(dump, "\n");
}

static int plot_exits(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (a->npos != 1) return nl_fail(err, NL_EINPUT, "expects 'plot exits' (with --exits FILE)");
  long evn, holdout;
  if (nl_arg_int_range(a, "eval-images", 0, 1000000000, &evn, err) ||
      nl_arg_int_range(a, "holdout", 1, 1000000, &holdout, err))
    return -1;
  const char *epath = nl_arg_need(a, "exits", err);
  if (!epath) return -1;
  const char *path = nl_model_path(ctx, a);
  if (!path) return nl_fail(err, NL_EINPUT, "no model: give --model FILE");
  nl_vit m;
  if (nl_vit_load(&m, path, NULL, err)) return -1;
  nl_exits e;
  if (nl_exits_load(&e, epath, err)) {
    nl_vit_free(&m);
    return -1;
  }
  nl_dataset d, hd;
  memset(&d, 0, sizeof d);
  memset(&hd, 0, sizeof hd);
  nl_exits_table t, ht;
  memset(&t, 0, sizeof t);
  memset(&ht, 0, sizeof ht);
  exit_series sr[6] = {{"rule", 0, 0, 0}, {"predictor", 0, 0, 0}, {"predictor+rule", 0, 0, 0},
                       {"policy", 0, 0, 0}, {"oracle", 0, 0, 0}, {"full", 0, 0, 0}};
  int rc = nl_exits_check(&e, &m, epath, 0, err);
  if (!rc) rc = nl_dataset_load(&d, "fmnist:test", 0, evn, err);
  if (!rc) rc = nl_exits_table_make(&m, &e, &d, 100, ctx->threads, &t, err);
  if (!rc && e.predictor) {
    nl_dataset all;
    rc = nl_dataset_load(&all, "fmnist:train", 0, 0, err);
    long ntrain = rc ? 0 : all.n;
    if (!rc) nl_dataset_free(&all);
    if (!rc && strcmp(e.data, "fmnist:train") == 0 && e.images > ntrain - holdout)
      rc = nl_fail(err, NL_EINPUT, "%s: fitted on the first %ld training images, which overlap "
                   "the last %ld held out to pick the predictor's q and tau (lower --holdout)",
                   epath, e.images, holdout);
    if (!rc && holdout > ntrain)
      rc = nl_fail(err, NL_EINPUT, "--holdout %ld: fmnist:train has only %ld images", holdout, ntrain);
    if (!rc) rc = nl_dataset_load(&hd, "fmnist:train", (int)(ntrain - holdout), (int)holdout, err);
    if (!rc) rc = nl_exits_table_make(&m, &e, &hd, 100, ctx->threads, &ht, err);
  }
  if (rc) goto out;
  const nl_vit_config *c = &m.cfg;
  double g[256], qg[64], dg[32];
  int ng = nl_exits_tau_grid(g, 256), nq = nl_exits_q_grid(qg, 64), nd = nl_exits_drop_grid(dg, 32);
  const int cap = ng + nq + nd + 8;
  for (int i = 0; i < 6; i++) {
    sr[i].x = nl_xmalloc(sizeof(float) * (size_t)cap);
    sr[i].y = nl_xmalloc(sizeof(float) * (size_t)cap);
  }
  const double n = t.n ? t.n : 1;
  nl_exits_stats s;
  int dump = nl_arg_flag(a, "dump");
  FILE *df = dump ? ctx->out : NULL;
  if (dump) fprintf(ctx->out, "series,tau,mflops,top1,mean_blocks,quantile\n");
  for (int q = 0; q < ng; q++) {
    nl_exits_rule(&t, g[q], &s, NULL);
    put_point(&sr[0], df, -1, g[q], nl_exits_flops(c, s.mean_blocks, s.mean_heads) * 1e-6,
              100.0 * s.top1 / n, s.mean_blocks);
  }
  if (e.predictor) {
    for (int q = 0; q < nq; q++) {
      nl_exits_pred_rule(&t, qg[q], 0, &s, NULL);
      put_point(&sr[1], df, qg[q], 0,
                (nl_exits_flops(c, s.mean_blocks, s.mean_heads) + nl_exits_pred_flops(&e)) * 1e-6,
                100.0 * s.top1 / n, s.mean_blocks);
    }
    /* picked on the held-out images, in order of FLOPs (the budgets give
     * fewer FLOPs as they grow) */
    for (int q = nd - 1; q >= 0; q--) {
      double pq, pt;
      nl_exits_stats hs;
      nl_exits_pick_pred(&ht, dg[q], &pq, &pt, &hs);
      nl_exits_pred_rule(&t, pq, pt, &s, NULL);
      put_point(&sr[2], df, pq, pt,
                (nl_exits_flops(c, s.mean_blocks, s.mean_heads) + (pt < 1 ? nl_exits_pred_flops(&e) : 0)) * 1e-6,
                100.0 * s.top1 / n, s.mean_blocks);
    }
  }
  if (e.policy) { /* its own pass over the test images */
    const int B = 100, C = c->classes;
    nl_exits_ws w;
    rc = nl_exits_ws_init(&w, &m, B, ctx->threads, err);
    float *img = nl_aalloc(sizeof(float) * B * c->in_chans * c->img_size * c->img_size);
    float *lg = nl_xmalloc(sizeof(float) * B * C);
    int bl[100];
    long right = 0;
    double sb = 0;
    for (int i = 0; !rc && i < d.n; i += B) {
      int nb = d.n - i < B ? d.n - i : B;
      nl_dataset_normalize(&d, i, nb, c->in_chans, c->nmean, c->mean, c->std, img);
      rc = nl_exits_policy_forward(&m, &e, &w, img, nb, lg, bl, err);
      for (int r = 0; !rc && r < nb; r++) {
        int am = 0;
        for (int j = 1; j < C; j++)
          if (lg[r * C + j] > lg[r * C + am]) am = j;
        right += am == d.labels[i + r];
        sb += bl[r];
      }
    }
    if (!rc)
      put_point(&sr[3], df, -1, -1,
                (nl_exits_flops(c, sb / n, 1) + nl_exits_policy_flops(&e)) * 1e-6,
                100.0 * right / n, sb / n);
    free(lg);
    nl_afree(img);
    nl_exits_ws_free(&w);
    if (rc) goto out;
  }
  nl_exits_oracle(&t, &s, NULL);
  put_point(&sr[4], df, -1, -1, nl_exits_flops(c, s.mean_blocks, 1) * 1e-6, 100.0 * s.top1 / n,
            s.mean_blocks);
  nl_exits_full(&t, &s);
  put_point(&sr[5], df, -1, 1, nl_vit_flops_per_image(c) * 1e-6, 100.0 * s.top1 / n,
            s.mean_blocks);
  if (!dump) {
    char title[512];
    snprintf(title, sizeof title, "early exit on %d test images", t.n);
    static const char *titles[6] = {"threshold rule (max prob > tau)", "predictor alone (over q)",
                                    "predictor + rule (picked on held-out)", "block policy",
                                    "oracle", "full depth"};
    static const int style[6] = {4, 4, 4, 5, 5, 5}, pts[6] = {0, 0, 0, 7, 13, 11};
    nl_plot_series ps[6];
    int np = 0;
    for (int i = 0; i < 6; i++)
      if (sr[i].n)
        ps[np++] = (nl_plot_series){.title = titles[i], .x = sr[i].x, .y = sr[i].y,
                                    .n = (size_t)sr[i].n, .points = style[i], .pt = pts[i]};
    nl_plot_opts po = {
        .term = term_of(nl_arg_str(a, "term")),
        .output = nl_arg_str(a, "output"),
        .title = title,
        .xlabel = "MFLOPs per image",
        .ylabel = "top-1 (%)",
        .text_out = ctx->out,
    };
    nl_plot_result res;
    rc = nl_plot_draw(&po, ps, np, &res, err);
    if (rc == 0 && res.term == NL_PLOT_PNG) fprintf(ctx->out, "wrote %s\n", res.path);
  }
out:
  for (int i = 0; i < 6; i++) {
    free(sr[i].x);
    free(sr[i].y);
  }
  nl_exits_table_free(&t);
  nl_exits_table_free(&ht);
  nl_dataset_free(&d);
  nl_dataset_free(&hd);
  nl_exits_free(&e);
  nl_vit_free(&m);
  return rc;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (strcmp(a->pos[0], "exits") == 0) return plot_exits(ctx, a, err);
  if (strcmp(a->pos[0], "front") == 0) return plot_front(ctx, a, err);
  if (strcmp(a->pos[0], "cost") == 0) return plot_cost(ctx, a, err);
  return plot_fx(ctx, a, err);
}

/* old option names (normlab(1), OPTION NAMES) */
static const nl_opt_alias aliases[] = {{"exprs", "set"}, {NULL, NULL}};

const nl_cmd nl_cmd_plot = {
    .name = "plot",
    .args = "expr|front|cost|exits|LAYER [EXPR|LAYER]",
    .summary = "plot f(x) of an expression or a layer, a layer's Pareto front, or costs (gnuplot)",
    .help = "'plot expr EXPR' draws f(x) = EXPR; 'plot LAYER' the layer's expression from\n"
            "the expression set; 'plot front LAYER' the layer's Pareto front: the members\n"
            "of all seeds no other beats on both axes (--x, --y), joined, with the knee\n"
            "and minval members marked (as 'pick' chooses them); 'plot cost' the FLOPs per\n"
            "element of each layer of the set (--set, at the prompt the session's) as\n"
            "bars beside LayerNorm ((5d+2)/d, d from --dim, at the prompt the model's)\n"
            "and DyT (24); 'plot exits' top-1 against MFLOPs per image of early exit\n"
            "(exits eval) over a sweep of tau, with the oracle and the full-depth point,\n"
            "on --eval-images test images (--dump: the points as CSV, no gnuplot); with\n"
            "a complexity predictor in the exits file also the predictor alone over its\n"
            "quantile q and the predictor with the rule at the q and tau picked on the\n"
            "last --holdout training images for a range of max-drop budgets; with a\n"
            "block policy its point.\n"
            "--term auto follows $GNUTERM (window, png, dumb or gnuplot's names), else\n"
            "opens a window when $DISPLAY is set and gnuplot has a window terminal,\n"
            "otherwise writes a PNG file and prints its name; --term dumb draws text the\n"
            "size of the terminal ($COLUMNS x $LINES, else the terminal's own). At the\n"
            "prompt --term defaults to 'setting term'. Fails with status 1 when gnuplot\n"
            "is missing.\n"
            "Example: plot front blocks.0.norm1 --fronts runs/fronts --term dumb",
    .opts = opts,
    .min_pos = 1,
    .max_pos = -1,
    .run = run,
    .aliases = aliases,
};
