/* The interactive prompt and batch runner: every command of the table
 * (src/app/commands.c) plus the session commands below, with GNU readline
 * editing, history and completion when input is a terminal. */
#ifndef NL_REPL_REPL_H
#define NL_REPL_REPL_H

#include <stdio.h>

#include "app/cmd.h"
#include "session/session.h"

typedef struct nl_repl_opts {
  const char *file;     /* -f FILE: run commands from FILE ("-": stdin) */
  const char *commands; /* -c "CMD; CMD": run these and exit */
  int keep_going;       /* -k: do not stop at the first failing command */
} nl_repl_opts;

/* Run the prompt (stdin a terminal), a script (-f or piped input) or -c
 * commands. Returns the process exit status: 0, or the status of the
 * first failing command (2 bad input, 1 other failure, 130 interrupted). */
int nl_repl_main(nl_ctx *ctx, const nl_repl_opts *o);

/* Commands that exist only in the REPL (load, status, save, ...), in the
 * same table format; NULL-terminated. The expression commands (set, edit,
 * simplify) are a second table, in expr_cmds.c. */
extern const nl_cmd *const nl_repl_commands[];
extern const nl_cmd *const nl_repl_expr_commands[];
/* Commands fitting expressions to the mappings and reading fronts (score,
 * refit, fold, impact, front, pick), in fit_cmds.c. */
extern const nl_cmd *const nl_repl_fit_commands[];
/* Shell commands taking the session's state ('cost' of the current set),
 * in pipeline.c; they shadow the shell's command of the same name. */
extern const nl_cmd *const nl_repl_pipeline_commands[];
/* Run after every command at the prompt: after 'evolve' (finished or
 * interrupted) its fronts are loaded and the session is autosaved when it
 * has a directory. */
void nl_repl_after_command(nl_ctx *ctx, const nl_cmd *cmd, const nl_args *a, int rc,
                           const nl_error *cmd_err);
/* Load the fronts a search wrote to outdir into the session and autosave
 * it when it has a directory (after every finished or stopped search). */
void nl_repl_fronts_arrived(nl_ctx *ctx, const char *outdir);
/* The background search (jobs.c): 'evolve ... &', 'jobs', 'stop'. */
extern const nl_cmd *const nl_repl_job_commands[];
int nl_repl_job_start(nl_ctx *ctx, int argc, char **argv, nl_error *err);
int nl_repl_job_running(void);
int nl_repl_job_ended(void); /* running, and its thread has finished */
/* One line describing the job into buf; 0 when there is none. */
int nl_repl_job_line(char *buf, size_t n);
/* Join the job if it has ended (report, load fronts, autosave); 1 if so. */
int nl_repl_job_poll(nl_ctx *ctx);
/* Wait for the job to end (stop: ask it to stop first). */
void nl_repl_job_end(nl_ctx *ctx, int stop);
/* A layer's front as a small text plot (val MSE against FLOPs/elem) for
 * the dashboard; NULL without fronts. Caller frees. */
char *nl_repl_front_plot(const char *layer, int width, int height);
/* Release the mappings those commands keep loaded. */
void nl_repl_fit_cleanup(void);
/* A layer's validation R^2 of its current expression, DyT R^2 and bound
 * R^2 on the session's mappings (NAN where unknown); -1 without mappings
 * or when the layer has none. */
int nl_repl_layer_scores(nl_session *s, const char *layer, double *val_r2, double *dyt_r2,
                         double *bound_r2);
/* All session commands in help order: i = 0, 1, ... until NULL. */
const nl_cmd *nl_repl_command(int i);

/* Find a command: REPL commands first, then the shell's table. */
const nl_cmd *nl_repl_find(const char *name);

/* Run one command given as words (argv[0] the command name) in the
 * session; prints errors as "normlab CMD: message". Returns the exit
 * status of the command. */
int nl_repl_exec(nl_ctx *ctx, int argc, char **argv);

/* State shared with the REPL commands. */
nl_session *nl_repl_session(void);
void nl_repl_request_quit(void);
int nl_repl_is_interactive(void);
const char *nl_repl_history_path(void);

/* Run the commands of a script file in the current session, stopping at
 * the first failing command (the 'source' command). */
int nl_repl_source(const char *path, nl_error *err);

/* Usage of one command in the REPL's words ("usage: CMD [OPTIONS] ARGS"). */
void nl_repl_help_command(FILE *out, const nl_cmd *cmd, int repl_only);

/* Read one line with readline, pre-filled with `initial` (edit command).
 * Returns NULL on end of input or Ctrl-C; caller frees. Interactive only. */
char *nl_repl_read_prefilled(const char *prompt, const char *initial);

/* Details of an expression for 'show': its tree drawn in text and its
 * cost (per element, and per token when the model's width is known). */
int nl_repl_show_details(nl_ctx *ctx, const char *expr, nl_error *err);
/* Check every expression of an expression-set file (errors name the
 * file, line and column). */
int nl_repl_check_exprs(const char *path, nl_error *err);
/* FLOPs per element of an expression, -1 when it does not parse. */
int nl_repl_expr_cost(const char *expr);
/* Hook the expression engine into the full-screen views. */
void nl_repl_expr_init(void);

#endif
