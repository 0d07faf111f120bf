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
#include "plot/plot.h"

static const nl_opt opts[] = {
    {"fronts", NL_OPT_STR, "DIR", NULL, "directory of fronts CSV files", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {"x", NL_OPT_CHOICE, NULL, "flops", "front: horizontal axis", "flops|nodes", 0},
    {"y", NL_OPT_CHOICE, NULL, "val_mse", "front: vertical axis",
     "val_mse|val_r2|val_fitness|train_fitness", 0},
    {"term", NL_OPT_CHOICE, NULL, "auto",
     "where to draw: a window ($DISPLAY), a PNG file, or text", "auto|window|png|dumb", 0},
    {"output", NL_OPT_STR, "FILE", NULL, "PNG file (default: a fresh normlab-plot-N.png)", NULL,
     NL_OPTF_PATH},
    {"range", NL_OPT_STR, "A:B", "-4:4", "f(x): x range", NULL, 0},
    {"samples", NL_OPT_INT, "N", "400", "f(x): points along the range", NULL, 0},
    {"exprs", NL_OPT_STR, "FILE", NULL, "expression set holding LAYER", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {"maps", NL_OPT_STR, "FILE", NULL, "mappings: LAYER's points and its DyT fit", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {"dim", NL_OPT_INT, "D", "768", "cost: token width d (LayerNorm's (5d+2)/d FLOPs/elem)", NULL,
     0},
    {0},
};

static nl_plot_term term_of(const char *t) {
  if (strcmp(t, "png") == 0) return NL_PLOT_PNG;
  if (strcmp(t, "dumb") == 0) return NL_PLOT_DUMB;
  if (strcmp(t, "window") == 0) return NL_PLOT_WINDOW;
  return NL_PLOT_AUTO;
}

/* The members of one layer's front in the CSV files of `dir`: two numeric
 * columns named xcol and ycol. A layer without rows is an error. */
static int front_points(const char *dir, const char *layer, const char *xcol, const char *ycol,
                        float **x, float **y, size_t *n, nl_error *err) {
  nl_fronts fr;
  if (nl_fronts_read(dir, layer, &fr, err) != 0) return -1;
  const char *missing = !(fr.has & nl_front_col("layer"))  ? "layer"
                        : !(fr.has & nl_front_col(xcol)) ? xcol
                        : !(fr.has & nl_front_col(ycol)) ? ycol
                                                         : NULL;
  if (fr.n && missing) {
    nl_fronts_free(&fr);
    return nl_fail(err, NL_EINPUT, "%s: the header lacks a '%s' column", dir, missing);
  }
  if (fr.n == 0) {
    nl_fronts_free(&fr);
    return nl_fail(err, NL_EINPUT, "%s: no front members for layer '%s'", dir, layer);
  }
  *x = nl_xmalloc(sizeof(float) * fr.n);
  *y = nl_xmalloc(sizeof(float) * fr.n);
  for (size_t i = 0; i < fr.n; i++) {
    (*x)[i] = (float)nl_front_value(&fr.m[i], xcol);
    (*y)[i] = (float)nl_front_value(&fr.m[i], ycol);
  }
  *n = fr.n;
  nl_fronts_free(&fr);
  return 0;
}

static int plot_front(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (a->npos != 2) return nl_fail(err, NL_EINPUT, "expects 'plot front LAYER'");
  const char *layer = a->pos[1];
  const char *dir = nl_arg_str(a, "fronts");
  if (!dir)
    return nl_fail(err, NL_EINPUT, "no fronts: give --fronts DIR (or 'load fronts DIR' first)");
  const char *xc = nl_arg_str(a, "x"), *yc = nl_arg_str(a, "y");
  float *x = NULL, *y = NULL;
  size_t n = 0;
  if (front_points(dir, layer, xc, yc, &x, &y, &n, err) != 0) return -1;
  char title[512];
  snprintf(title, sizeof title, "Pareto front of %s (%zu members)", layer, n);
  nl_plot_opts po = {
      .term = term_of(nl_arg_str(a, "term")),
      .output = nl_arg_str(a, "output"),
      .title = title,
      .xlabel = strcmp(xc, "flops") == 0 ? "FLOPs per element" : "nodes",
      .ylabel = yc,
      .text_out = ctx->out,
  };
  nl_plot_series s = {.title = layer, .x = x, .y = y, .n = n, .points = 2};
  nl_plot_result res;
  int rc = nl_plot_draw(&po, &s, 1, &res, err);
  if (rc == 0 && res.term == NL_PLOT_PNG) fprintf(ctx->out, "wrote %s\n", res.path);
  free(x);
  free(y);
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
 * R^2 of each on all the points. */
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
    const char *epath = nl_arg_str(a, "exprs"), *mpath = nl_arg_str(a, "maps");
    if (ctx->session && !nl_arg_given(a, "exprs")) { /* the prompt's own set, as it is */
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
              "nothing to plot for '%s': no expression for it (--exprs, 'load exprs') and no "
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
    s[ns++] = (nl_plot_series){mtitle, sx, sy, k, 1};
    double alpha, r2;
    if (nl_dyt_fit(ml->x, ml->y, ml->n, &alpha, NULL, &r2) == 0) {
      dy = nl_xmalloc(sizeof(float) * (size_t)n);
      for (long i = 0; i < n; i++) dy[i] = (float)tanh(alpha * gx[i]);
      dtitle = nl_xmalloc(96);
      snprintf(dtitle, 96, "DyT tanh(%.4g x), R2 %.4f", alpha, r2);
      s[ns++] = (nl_plot_series){dtitle, gx, dy, (size_t)n, 0};
    }
  }
  if (have_prog) {
    gy = nl_xmalloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++) gy[i] = (float)nl_eval1(&p, gx[i]);
    char *printed = nl_print(&p, NL_PRINT_SHORT);
    size_t len = strlen(printed) + 64;
    ftitle = nl_xmalloc(len);
    if (ml) { /* R^2 of f on every point of the mapping */
      double sse = 0;
      for (size_t i = 0; i < ml->n; i++) {
        double d = nl_eval1(&p, ml->x[i]) - ml->y[i];
        sse += d * d;
      }
      double var = nl_variance(ml->y, ml->n);
      snprintf(ftitle, len, "f(x) = %s, R2 %.4f", printed,
               var > 0 ? 1.0 - sse / (double)ml->n / var : NAN);
    } else {
      snprintf(ftitle, len, "f(x) = %s", printed);
    }
    free(printed);
    s[ns++] = (nl_plot_series){ftitle, gx, gy, (size_t)n, 0};
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
  if (a->npos != 1) return nl_fail(err, NL_EINPUT, "expects 'plot cost' (with --exprs FILE)");
  long d;
  if (nl_arg_int_range(a, "dim", 1, 1L << 20, &d, err) != 0) return -1;
  const char *path = nl_arg_str(a, "exprs");
  if (!path)
    return nl_fail(err, NL_EINPUT,
                   "no expression set: give --exprs FILE (or 'load exprs FILE' / 'set' first)");
  nl_exprset set;
  nl_exprset_init(&set);
  if (nl_exprset_load(path, &set, err) != 0) {
    nl_exprset_free(&set);
    return -1;
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
  snprintf(title, sizeof title, "FLOPs per element, %zu layer%s (d = %ld)", n, n == 1 ? "" : "s",
           d);
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

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (strcmp(a->pos[0], "front") == 0) return plot_front(ctx, a, err);
  if (strcmp(a->pos[0], "cost") == 0) return plot_cost(ctx, a, err);
  return plot_fx(ctx, a, err);
}

const nl_cmd nl_cmd_plot = {
    .name = "plot",
    .args = "expr|front|cost|LAYER [EXPR|LAYER]",
    .summary = "plot f(x) of an expression or a layer, a layer's Pareto front, or costs (gnuplot)",
    .help = "'plot expr EXPR' draws f(x) = EXPR; 'plot LAYER' the layer's expression from\n"
            "the expression set; 'plot front LAYER' the layer's Pareto front; 'plot cost'\n"
            "the FLOPs per element of each layer of the set (--exprs, at the prompt the\n"
            "session's) as bars beside LayerNorm ((5d+2)/d) and DyT (24).\n"
            "A window opens when $DISPLAY is set and gnuplot has a window terminal,\n"
            "otherwise a PNG file is written and its name printed; --term dumb draws\n"
            "text in the terminal. Fails with status 1 when gnuplot is missing.\n"
            "Example: plot front blocks.0.norm1 --fronts runs/fronts --term dumb",
    .opts = opts,
    .min_pos = 1,
    .max_pos = -1,
    .run = run,
};
