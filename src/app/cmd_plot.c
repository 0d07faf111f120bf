/* plot: pictures through gnuplot. 'plot expr EXPR' and 'plot LAYER' draw
 * f(x); 'plot front LAYER' draws a layer's Pareto front (complexity
 * against fit) from the fronts CSV files. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/session.h"
#include "base/mem.h"
#include "expr/expr.h"
#include "plot/plot.h"

static const nl_opt opts[] = {
    {"fronts", NL_OPT_STR, "DIR", NULL, "directory of fronts CSV files", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {"x", NL_OPT_CHOICE, NULL, "flops", "front: horizontal axis", "flops|nodes", 0},
    {"y", NL_OPT_CHOICE, NULL, "val_r2", "front: vertical axis",
     "val_r2|val_mse|val_fitness|train_fitness", 0},
    {"term", NL_OPT_CHOICE, NULL, "auto",
     "where to draw: a window ($DISPLAY), a PNG file, or text", "auto|window|png|dumb", 0},
    {"output", NL_OPT_STR, "FILE", NULL, "PNG file (default: a fresh normlab-plot-N.png)", NULL,
     NL_OPTF_PATH},
    {"range", NL_OPT_STR, "A:B", "-4:4", "f(x): x range", NULL, 0},
    {"samples", NL_OPT_INT, "N", "400", "f(x): points along the range", NULL, 0},
    {"exprs", NL_OPT_STR, "FILE", NULL, "expression set holding LAYER", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {0},
};

static nl_plot_term term_of(const char *t) {
  if (strcmp(t, "png") == 0) return NL_PLOT_PNG;
  if (strcmp(t, "dumb") == 0) return NL_PLOT_DUMB;
  if (strcmp(t, "window") == 0) return NL_PLOT_WINDOW;
  return NL_PLOT_AUTO;
}

static int plot_front(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (a->npos != 2) return nl_fail(err, NL_EINPUT, "expects 'plot front LAYER'");
  const char *layer = a->pos[1];
  const char *dir = nl_arg_str(a, "fronts");
  if (!dir)
    return nl_fail(err, NL_EINPUT, "no fronts: give --fronts DIR (or 'load fronts DIR' first)");
  const char *xc = nl_arg_str(a, "x"), *yc = nl_arg_str(a, "y");
  float *x, *y;
  size_t n;
  if (nl_sess_front_points(dir, layer, xc, yc, &x, &y, &n, err) != 0) return -1;
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

/* plot expr EXPR | plot LAYER: f(x) of the expression or of the layer's
 * expression in the set. */
static int plot_fx(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long n;
  if (nl_arg_int_range(a, "samples", 2, 1000000, &n, err) != 0) return -1;
  double lo, hi;
  if (nl_plot_parse_range(nl_arg_str(a, "range"), &lo, &hi, err) != 0) return -1;
  nl_prog p;
  nl_prog_init(&p);
  int rc = -1;
  char title[512];
  char *ftitle = NULL;
  float *gx = NULL, *gy = NULL;
  if (strcmp(a->pos[0], "expr") == 0) {
    if (a->npos < 2) return nl_fail(err, NL_EINPUT, "expects 'plot expr EXPR'");
    char *text = join_words(a, 1);
    int prc = nl_parse(text, 1, &p, err);
    free(text);
    if (prc != 0) goto out;
    snprintf(title, sizeof title, "f(x)");
  } else {
    const char *layer = a->pos[0];
    if (a->npos > 1) {
      nl_fail(err, NL_EINPUT, "unexpected argument '%s' (plot LAYER, or plot expr EXPR)",
              a->pos[1]);
      goto out;
    }
    const char *epath = nl_arg_str(a, "exprs");
    if (!epath) {
      nl_fail(err, NL_EINPUT,
              "plot LAYER needs an expression set: --exprs FILE, or 'load exprs FILE' first");
      goto out;
    }
    nl_exprset set;
    nl_exprset_init(&set);
    if (nl_exprset_load(epath, &set, err) != 0) goto out;
    const nl_exprset_entry *e = nl_exprset_find(&set, layer);
    if (e) nl_prog_copy(&p, &e->prog);
    nl_exprset_free(&set);
    if (!e) {
      nl_fail(err, NL_EINPUT, "no expression for layer '%s' in the set", layer);
      goto out;
    }
    snprintf(title, sizeof title, "%s", layer);
  }
  gx = nl_xmalloc(sizeof(float) * (size_t)n);
  gy = nl_xmalloc(sizeof(float) * (size_t)n);
  for (long i = 0; i < n; i++) {
    gx[i] = (float)(lo + (hi - lo) * (double)i / (double)(n - 1));
    gy[i] = (float)nl_eval1(&p, gx[i]);
  }
  char *printed = nl_print(&p, NL_PRINT_SHORT);
  size_t len = strlen(printed) + 16;
  ftitle = nl_xmalloc(len);
  snprintf(ftitle, len, "f(x) = %s", printed);
  free(printed);
  nl_plot_series s = {ftitle, gx, gy, (size_t)n, 0};
  nl_plot_opts po = {
      .term = term_of(nl_arg_str(a, "term")),
      .output = nl_arg_str(a, "output"),
      .title = title,
      .xlabel = "x",
      .ylabel = "f(x)",
      .text_out = ctx->out,
  };
  nl_plot_result res;
  rc = nl_plot_draw(&po, &s, 1, &res, err);
  if (rc == 0 && res.term == NL_PLOT_PNG) fprintf(ctx->out, "wrote %s\n", res.path);
out:
  free(gx);
  free(gy);
  free(ftitle);
  nl_prog_free(&p);
  return rc;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (strcmp(a->pos[0], "front") == 0) return plot_front(ctx, a, err);
  return plot_fx(ctx, a, err);
}

const nl_cmd nl_cmd_plot = {
    .name = "plot",
    .args = "expr|front|LAYER [EXPR|LAYER]",
    .summary = "plot f(x) of an expression or a layer, or a layer's Pareto front (gnuplot)",
    .help = "'plot expr EXPR' draws f(x) = EXPR; 'plot LAYER' the layer's expression from\n"
            "the expression set; 'plot front LAYER' the layer's Pareto front. A window opens when $DISPLAY is set and gnuplot has a window terminal,\n"
            "otherwise a PNG file is written and its name printed; --term dumb draws\n"
            "text in the terminal. Fails with status 1 when gnuplot is missing.\n"
            "Example: plot front blocks.0.norm1 --fronts runs/fronts --term dumb",
    .opts = opts,
    .min_pos = 1,
    .max_pos = -1,
    .run = run,
};
