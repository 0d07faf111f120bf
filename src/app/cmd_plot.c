/* plot: pictures through gnuplot. 'plot front LAYER' draws a layer's
 * Pareto front (complexity against fit) from the fronts CSV files. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/session.h"
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

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (strcmp(a->pos[0], "front") == 0) return plot_front(ctx, a, err);
  return nl_fail(err, NL_EINPUT, "unknown plot '%s' (expected: front LAYER)", a->pos[0]);
}

const nl_cmd nl_cmd_plot = {
    .name = "plot",
    .args = "front LAYER",
    .summary = "plot through gnuplot (a layer's Pareto front)",
    .help = "A window opens when $DISPLAY is set and gnuplot has a window terminal,\n"
            "otherwise a PNG file is written and its name printed; --term dumb draws\n"
            "text in the terminal. Fails with status 1 when gnuplot is missing.\n"
            "Example: plot front blocks.0.norm1 --fronts runs/fronts --term dumb",
    .opts = opts,
    .min_pos = 1,
    .max_pos = 2,
    .run = run,
};
