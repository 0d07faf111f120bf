/* The workbench: the commands of a session (load, set, refit, evolve ...
 * &, ...) beside the shell's table, and the dispatcher that runs a command
 * line in a session. Front-ends drive it: the prompt (src/repl) reads
 * lines and hands them to nl_wb_exec, Lua's normlab.cmd() calls it at the
 * prompt, the dashboard (src/tui) reads the figures below.
 *
 * What only a front-end can do (read a line, run a script file, leave)
 * reaches the commands through an nl_wb_frontend; the front-ends that own
 * a session command or a block syntax at the prompt ('dashboard',
 * 'lua { ... }') are registered by src/cli at start-up. */
#ifndef NL_APP_WORKBENCH_H
#define NL_APP_WORKBENCH_H

#include <stddef.h>
#include <stdio.h>

#include "app/cmd.h"
#include "expr/expr.h"
#include "session/session.h"

/* ---- the front-end running the session ---- */

typedef struct nl_wb_frontend {
  int interactive; /* a person at a terminal (not a script) */
  /* 'quit': leave after the current line. */
  void (*quit)(void);
  /* 'source FILE': run a script's commands in this session, stopping at
   * the first failing one. */
  int (*source)(const char *path, nl_error *err);
  /* 'edit': one line read pre-filled with `initial`; NULL at end of input
   * or on Ctrl-C. The caller frees. */
  char *(*read_prefilled)(const char *prompt, const char *initial);
  /* 'history': the `count` last lines. */
  void (*history)(FILE *out, long count);
} nl_wb_frontend;

/* Start a session run by `fe` (copied): ctx gets the session and its
 * context callback (NL_OPTF_SESSION options). */
void nl_wb_begin(nl_ctx *ctx, nl_session *s, const nl_wb_frontend *fe);
/* End it: a running background search is stopped (stop) or waited for,
 * the block language's state closed, caches released. The session
 * itself is the caller's. */
void nl_wb_end(nl_ctx *ctx, int stop);
/* Whether the front-end is interactive (0 outside a session). */
int nl_wb_interactive(void);

/* ---- commands ---- */

/* The session commands in help order: i = 0, 1, ... until NULL. */
const nl_cmd *nl_wb_command(int i);
/* Add a session command that a front-end owns ('dashboard'). */
void nl_wb_register(const nl_cmd *cmd);
/* A command by name: session commands first, then the shell's table. */
const nl_cmd *nl_wb_find(const char *name);
/* Run one command given as words (argv[0] the command name; a trailing
 * "&" runs 'evolve' in the background) in the session of ctx; prints
 * errors as "normlab CMD: message". Returns the exit status. */
int nl_wb_exec(nl_ctx *ctx, int argc, char **argv);
/* Usage of a command in the prompt's words: session-only commands omit
 * "normlab" in their usage line. */
void nl_wb_help_command(FILE *out, const nl_cmd *cmd, int session_only);

/* ---- blocks of another language at the prompt ('lua { ... }') ---- */

typedef struct nl_wb_block {
  int (*opens)(const char *line);      /* the line starts a block */
  int (*incomplete)(const char *text); /* the block still lacks its end */
  /* run a whole block; `where` names its first line (or NULL) */
  int (*run)(nl_ctx *ctx, const char *text, const char *where);
  void (*close)(void);                 /* at the session's end; may be NULL */
} nl_wb_block;
void nl_wb_set_block(const nl_wb_block *b);
/* 0 without a registered block language. */
int nl_wb_block_opens(const char *line);
int nl_wb_block_incomplete(const char *text);
/* Run a block as one command: Ctrl-C stops it and what it runs. */
int nl_wb_block_run(nl_ctx *ctx, const char *text, const char *where);

/* ---- the background search ('evolve ... &', 'jobs', 'stop') ---- */

/* Join the search if it has ended (report, load its fronts, autosave):
 * 1 if so. While it runs, load what it finished and save quietly. */
int nl_wb_job_poll(nl_ctx *ctx);

/* ---- figures for views of the session (the dashboard) ---- */

/* A layer's validation R2 of its current expression, DyT R2 and bound
 * R2 on the session's mappings (NAN where unknown); -1 without mappings
 * or when the layer has none. */
int nl_wb_layer_scores(nl_session *s, const char *layer, double *val_r2, double *dyt_r2,
                       double *bound_r2);
/* A layer's front as a small text plot (val MSE against FLOPs/elem), at
 * most width x height characters; NULL without fronts. Caller frees. */
char *nl_wb_front_plot(nl_session *s, const char *layer, int width, int height);
/* FLOPs per element of an expression (clip counted as 0). */
int nl_wb_expr_cost(const nl_prog *p);
/* The tree of an expression drawn in text, one node a line with its path
 * ("[0.1]", as fold and impact address nodes). Caller frees. */
char *nl_wb_expr_tree(const nl_prog *p);

#endif
