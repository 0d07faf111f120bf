/* A one-line live progress display for long commands on a terminal:
 *
 *   evolve blocks.0.norm1 [########........]  37/100  12.3 s  ETA 21 s  best 0.012
 *
 * redrawn in place (carriage return), at most ten times a second, and
 * erased when the job ends. Its callback has the nl_progress_fn shape and
 * returns non-zero after Ctrl-C, so the job stops at its next safe point. */
#ifndef NL_TUI_PROGRESS_LINE_H
#define NL_TUI_PROGRESS_LINE_H

#include <stdio.h>

#include "base/progress.h"

typedef struct nl_progress_line {
  FILE *out;
  int tty;        /* 0: draw nothing (output is not a terminal) */
  int width;      /* columns available */
  double last;    /* time of the last redraw */
  int shown;      /* a line is on screen */
} nl_progress_line;

/* width 0: $COLUMNS, else 80. */
void nl_progress_line_init(nl_progress_line *pl, FILE *out, int tty, int width);
/* The callback (user = the nl_progress_line). */
int nl_progress_line_cb(const nl_progress *p, void *user);
/* Erase the line (call when the job ends, also on failure). */
void nl_progress_line_done(nl_progress_line *pl);
/* Format one line into buf (no carriage return); for tests. */
void nl_progress_format(const nl_progress *p, int width, char *buf, size_t n);

#endif
