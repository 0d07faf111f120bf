/* Plots through gnuplot: a pipe to a gnuplot process, data written inline
 * as datablocks ($d0 << EOD ... EOD), names quoted so that no title can
 * inject gnuplot commands. */
#ifndef NL_PLOT_PLOT_H
#define NL_PLOT_PLOT_H

#include <stddef.h>
#include <stdio.h>

#include "base/error.h"

typedef enum {
  NL_PLOT_AUTO,   /* a window when $DISPLAY is set, else a PNG file */
  NL_PLOT_WINDOW, /* gnuplot's interactive terminal */
  NL_PLOT_PNG,    /* pngcairo (or png) into a file */
  NL_PLOT_DUMB,   /* text, written to a stream */
} nl_plot_term;

typedef struct nl_plot_series {
  const char *title;  /* legend entry (quoted; control characters rejected) */
  const float *x, *y;
  size_t n;
  int points;         /* 0: lines, 1: small dots (dense data), 2: marks,
                         3: bars (boxes of width 0.25 centred on x) */
} nl_plot_series;

typedef struct nl_plot_opts {
  nl_plot_term term;
  const char *output;   /* PNG file; NULL: a fresh name normlab-plot-N.png */
  const char *title;
  const char *xlabel, *ylabel;
  int width, height;    /* pixels (PNG) or characters (dumb); 0: defaults */
  FILE *text_out;       /* where the dumb terminal's text goes */
  const char *const *xtics; /* labels at x = 0, 1, ... (quoted like titles); NULL: none */
  size_t nxtics;
} nl_plot_opts;

typedef struct nl_plot_result {
  nl_plot_term term;    /* the terminal used */
  char path[4096];      /* PNG written (term PNG) */
} nl_plot_result;

/* Draw the series. Errors: gnuplot missing (NL_EIO: "gnuplot not found"),
 * a title with control characters (NL_EINPUT), gnuplot failing (NL_EIO
 * with its message). $NORMLAB_GNUPLOT (formerly $NL_GNUPLOT) names the gnuplot program (default:
 * gnuplot on $PATH). */
int nl_plot_draw(const nl_plot_opts *o, const nl_plot_series *s, int ns, nl_plot_result *res,
                 nl_error *err);

/* Quote a string for gnuplot: single quotes, a quote doubled; control
 * characters (newlines included) are an NL_EINPUT error. Caller frees. */
char *nl_plot_quote(const char *s, nl_error *err);

/* Parse "A:B" (finite, A < B). */
int nl_plot_parse_range(const char *s, double *a, double *b, nl_error *err);

#endif
