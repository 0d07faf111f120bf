/* Shared by the files of the session commands (src/app: *_cmds.c,
 * pipeline.c, jobs.c, workbench.c); not for other folders. */
#ifndef NL_APP_WB_LOCAL_H
#define NL_APP_WB_LOCAL_H

#include "app/workbench.h"
#include "expr/expr.h"

/* The tables, NULL-terminated: load, status, save, ... (session_cmds.c);
 * set, edit, simplify (expr_cmds.c); score, refit, fold, impact, front,
 * pick (fit_cmds.c); the shell commands taking the session's state, which
 * shadow the shell's command of the same name (pipeline.c); jobs, stop
 * (jobs.c). */
extern const nl_cmd *const nl_wb_session_commands[];
extern const nl_cmd *const nl_wb_expr_commands[];
extern const nl_cmd *const nl_wb_fit_commands[];
extern const nl_cmd *const nl_wb_pipeline_commands[];
extern const nl_cmd *const nl_wb_job_commands[];

/* The front-end (workbench.c). */
const nl_wb_frontend *nl_wb_fe(void);

/* Run after every command: after 'evolve' (finished or interrupted) its
 * fronts are loaded and the session autosaved when it has a directory. */
void nl_wb_after_command(nl_ctx *ctx, const nl_cmd *cmd, const nl_args *a, int rc,
                         const nl_error *cmd_err);
/* Load the fronts a search wrote to outdir into the session and autosave
 * it when it has a directory. */
void nl_wb_fronts_arrived(nl_ctx *ctx, const char *outdir);

/* 'evolve ... &' (jobs.c). */
int nl_wb_job_start(nl_ctx *ctx, int argc, char **argv, nl_error *err);
/* Wait for the background search to end (stop: ask it to stop first). */
void nl_wb_job_end(nl_ctx *ctx, int stop);

/* Release the mappings the fit commands keep loaded (fit_cmds.c). */
void nl_wb_fit_cleanup(void);
/* Details of an expression for 'show': its tree and cost (expr_cmds.c). */
void nl_wb_show_details(nl_ctx *ctx, const nl_prog *p);

/* The table of 'cost' for a set: FLOPs and bytes per layer at width d
 * for L tokens, beside LayerNorm and DyT, as text or one JSON object
 * (cmd_cost.c). */
int nl_cost_report(nl_ctx *ctx, const nl_exprset *set, long d, long L, int as_json);

#endif
