/* Progress reporting from library code: a callback receives a small record;
 * front-ends render it (terminal line, REPL, ncurses, Lua). Returning
 * non-zero from the callback asks the job to stop at the next safe point. */
#ifndef NL_BASE_PROGRESS_H
#define NL_BASE_PROGRESS_H

typedef struct nl_progress {
  const char *task;    /* "extract", "eval", "evolve", "train" */
  const char *label;   /* e.g. layer name, may be NULL */
  long done, total;    /* units done / total (total 0: unknown) */
  double elapsed;      /* seconds since the job started */
  const char *detail;  /* free-form figures, may be NULL */
  int nvals;           /* named figures (e.g. loss, top1 of an epoch): */
  const char *const *keys; /* nvals names, */
  const double *vals;      /* nvals values; both NULL when nvals is 0 */
} nl_progress;

typedef int (*nl_progress_fn)(const nl_progress *p, void *user);

#endif
