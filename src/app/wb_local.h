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
 * fronts are loaded and recorded in the session's directory when it has
 * one (nl_session_record_fronts: the set's edits are left to 'save'). */
void nl_wb_after_command(nl_ctx *ctx, const nl_cmd *cmd, const nl_args *a, int rc,
                         const nl_error *cmd_err);
/* Load the fronts a search wrote to outdir into the session and record
 * them in its directory when it has one. */
void nl_wb_fronts_arrived(nl_ctx *ctx, const char *outdir);

/* The settings of an 'evolve' command line (or of the session), through
 * the campaign's one parser; threads not given: ctx->threads (cmd_evolve.c). */
struct nl_gp_campaign_opts;
int nl_evolve_opts_parse(nl_ctx *ctx, const nl_args *a, struct nl_gp_campaign_opts *o,
                         nl_error *err);

/* 'evolve ... &' (jobs.c). */
int nl_wb_job_start(nl_ctx *ctx, int argc, char **argv, nl_error *err);
/* Wait for the background search to end (stop: ask it to stop first). */
void nl_wb_job_end(nl_ctx *ctx, int stop);

/* Release the mappings the fit commands keep loaded (fit_cmds.c). */
void nl_wb_fit_cleanup(void);
/* Details of an expression for 'show': its tree and cost (expr_cmds.c). */
void nl_wb_show_details(nl_ctx *ctx, const nl_prog *p);

/* 'cost' (cmd_cost.c), on the shell line and at the prompt: the set of
 * the positional arguments (a file or expressions), else `set` (the
 * session's; NULL: none); d from --dim, else model_d when positive, else
 * 768; tokens from --tokens, else model_tokens when positive, else 197
 * (ViT-B/16). The output says where each came from. */
int nl_cost_command(nl_ctx *ctx, const nl_args *a, const nl_exprset *set, long model_d,
                    long model_tokens, nl_error *err);

#endif
