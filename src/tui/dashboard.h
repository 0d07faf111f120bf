/* Full-screen views (ncursesw). */
#ifndef NL_TUI_DASHBOARD_H
#define NL_TUI_DASHBOARD_H

#include <stddef.h>

#include "session/session.h"
#include "base/error.h"

/* The layer table of a session: layer, current expression, cost columns
 * where known; arrows move, Enter opens a layer's detail, q leaves. The
 * terminal is restored on return. */
int nl_dashboard_run(nl_session *s, nl_error *err);

/* Optional details for a layer (the expression engine fills them): cost
 * per element (-1 unknown) and a text drawing of the tree (may be NULL;
 * freed by the caller). */
typedef struct nl_dash_info {
  int flops;     /* FLOPs per element, -1 unknown */
  char *tree;    /* multi-line drawing, or NULL */
  char *error;   /* problem with the expression, or NULL */
} nl_dash_info;
typedef void (*nl_dash_info_fn)(const char *expr, nl_dash_info *out);
void nl_dashboard_set_info(nl_dash_info_fn fn);

/* Optional fit figures of a layer (validation R2 of its expression, DyT
 * R2, bound R2; NAN where unknown); returns -1 when there are none (no
 * mappings). */
typedef int (*nl_dash_scores_fn)(nl_session *s, const char *layer, double *val_r2,
                                 double *dyt_r2, double *bound_r2);
void nl_dashboard_set_scores(nl_dash_scores_fn fn);
/* Optional one-line status, e.g. a background search's progress (layer,
 * generation, best fitness, node-evals/s); the view redraws it four times a
 * second. Returns 0 when there is nothing to show. */
typedef int (*nl_dash_status_fn)(char *buf, size_t n);
void nl_dashboard_set_status(nl_dash_status_fn fn);
/* Optional text plot of a layer's front for the detail view: lines of at
 * most `width` characters, at most `height` lines; NULL when there is no
 * front. The caller frees it. */
typedef char *(*nl_dash_front_fn)(const char *layer, int width, int height);
void nl_dashboard_set_front(nl_dash_front_fn fn);

#endif
