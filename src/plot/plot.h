/* Plots through gnuplot: a pipe to a gnuplot process, data written inline
 * as datablocks ($d0 << EOD ... EOD), names quoted so that no title can
 * inject gnuplot commands. */
#ifndef NL_PLOT_PLOT_H
#define NL_PLOT_PLOT_H

#include <stddef.h>
#include <stdio.h>

#include "base/error.h"

typedef enum {
  NL_PLOT_AUTO,   /* $GNUTERM when it names a terminal below; else a window
                     when $DISPLAY is set, else a PNG file */
  NL_PLOT_WINDOW, /* gnuplot's interactive terminal */
  NL_PLOT_PNG,    /* pngcairo (or png) into a file */
  NL_PLOT_DUMB,   /* text, written to a stream */
} nl_plot_term;

typedef struct nl_plot_series {
  const char *title;  /* legend entry (quoted; control characters rejected) */
  const float *x, *y;
  size_t n;
  int points;         /* 0: lines, 1: small dots (dense data), 2: marks,
                         3: bars (boxes of width 0.25 centred on x),
                         4: marks joined by lines (a front, in x order),
                         5: large marks (points singled out on others) */
  int pt;             /* style 5: gnuplot's point type (a letter in text plots:
                         11 K, 13 M); 0: an open circle */
} nl_plot_series;

typedef struct nl_plot_opts {
  nl_plot_term term;
  const char *output;   /* PNG file; NULL: a fresh name normlab-plot-N.png */
  const char *title;
  const char *xlabel, *ylabel;
  int width, height;    /* pixels (PNG) or characters (dumb); 0: defaults (900 x 600
                           pixels; text: nl_plot_text_size of text_out) */
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

/* A terminal by name: ours (auto, window, png, dumb) or gnuplot's (qt,
 * wxt, x11, aqua, windows: window; png, pngcairo: png; dumb), the first
 * word of `name` only ("dumb size 100,30" is dumb). -1 when unknown. */
int nl_plot_term_parse(const char *name, nl_plot_term *t);
/* "auto", "window", "png" or "dumb". */
const char *nl_plot_term_name(nl_plot_term t);

/* The size to give gnuplot's text terminal for a terminal of $COLUMNS x
 * $LINES when set, else the size of the terminal on fd (or on standard
 * output or error): the plot leaves the last column and the last line
 * (the cursor's) free; 79 x 24 when there is no terminal. */
void nl_plot_text_size(int fd, int *width, int *height);

/* Parse "A:B" (finite, A < B). */
int nl_plot_parse_range(const char *s, double *a, double *b, nl_error *err);

#endif
