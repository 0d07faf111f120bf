/* The dispatcher of a session and its command tables (see workbench.h). */
#define _POSIX_C_SOURCE 200809L
#include "app/workbench.h"

#include <stdlib.h>
#include <string.h>

#include "app/wb_local.h"
#include "base/interrupt.h"
#include "base/timer.h"
#include "session/job.h"

static nl_wb_frontend g_fe;
static nl_wb_block g_block;
static int g_exec_depth = 0; /* commands running (source and blocks nest them) */

/* Session commands that front-ends own, registered by src/cli. */
#define NL_WB_MAX_EXTRA 8
static const nl_cmd *g_extra[NL_WB_MAX_EXTRA + 1];

const nl_wb_frontend *nl_wb_fe(void) { return &g_fe; }
int nl_wb_interactive(void) { return g_fe.interactive; }

void nl_wb_begin(nl_ctx *ctx, nl_session *s, const nl_wb_frontend *fe) {
  g_fe = *fe;
  g_exec_depth = 0;
  ctx->session = s;
  ctx->context = nl_session_context;
}

void nl_wb_end(nl_ctx *ctx, int stop) {
  /* a script that ran to its end waits for its background search; the
   * prompt, and a script stopped by an error, stop it */
  if (nl_job_running()) {
    if (stop) fprintf(ctx->err, "[evolve] stopping the background search\n");
    nl_wb_job_end(ctx, stop);
  }
  nl_wb_fit_cleanup();
  if (g_block.close) g_block.close();
  memset(&g_fe, 0, sizeof g_fe);
}

/* ---- tables ---- */

void nl_wb_register(const nl_cmd *cmd) {
  int i = 0;
  for (; g_extra[i]; i++)
    if (g_extra[i] == cmd) return;
  if (i >= NL_WB_MAX_EXTRA) {
    fprintf(stderr, "normlab: internal error: more than %d front-end commands\n",
            NL_WB_MAX_EXTRA);
    abort();
  }
  g_extra[i] = cmd;
}

const nl_cmd *nl_wb_command(int i) {
  const nl_cmd *const *tables[] = {nl_wb_session_commands, g_extra,
                                   nl_wb_expr_commands,    nl_wb_fit_commands,
                                   nl_wb_pipeline_commands, nl_wb_job_commands};
  for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
    int k = 0;
    while (tables[t][k]) k++;
    if (i < k) return tables[t][i];
    i -= k;
  }
  return NULL;
}

const nl_cmd *nl_wb_find(const char *name) {
  const nl_cmd *c;
  for (int i = 0; (c = nl_wb_command(i)) != NULL; i++)
    if (strcmp(c->name, name) == 0) return c;
  return nl_cmd_find(name);
}

static int is_session_only(const nl_cmd *cmd) {
  const nl_cmd *c;
  for (int i = 0; (c = nl_wb_command(i)) != NULL; i++)
    if (c == cmd) return 1;
  return 0;
}

void nl_wb_help_command(FILE *out, const nl_cmd *cmd, int session_only) {
  if (!session_only) {
    nl_help_command(out, cmd);
    return;
  }
  /* The shell's usage line says "normlab CMD"; session commands exist
   * only at the prompt, so their usage omits it. */
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  if (!mem) return;
  nl_help_command(mem, cmd);
  fclose(mem);
  const char *p = buf;
  if (strncmp(p, "usage: normlab ", 15) == 0) {
    fputs("usage: ", out);
    p += 15;
  }
  fputs(p, out);
  free(buf);
}

/* Edit distance, for suggestions (short strings only). */
static int distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 30 || m > 30) return 99;
  int d[31][31];
  for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
      d[i][j] = c;
    }
  return d[n][m];
}

/* The command closest to a mistyped name, or NULL. */
static const char *suggest(const char *name) {
  const char *best = NULL;
  int bd = 3;
  const nl_cmd *c;
  for (int i = 0; (c = nl_wb_command(i)) != NULL; i++) {
    int d = distance(name, c->name);
    if (d < bd) bd = d, best = c->name;
  }
  for (int i = 0; nl_commands[i]; i++) {
    int d = distance(name, nl_commands[i]->name);
    if (d < bd) bd = d, best = nl_commands[i]->name;
  }
  return bd <= (strlen(name) > 4 ? 2 : 1) ? best : NULL;
}

/* ---- the dispatcher ---- */

int nl_wb_exec(nl_ctx *ctx, int argc, char **argv) {
  /* "normlab CMD ARGS" pasted from a shell line works too */
  if (argc > 1 && strcmp(argv[0], "normlab") == 0) {
    argc--;
    argv++;
  }
  if (argc < 1) return 0;
  nl_wb_job_poll(ctx);
  if (argc > 1 && strcmp(argv[argc - 1], "&") == 0) { /* a background job */
    nl_error err;
    nl_error_clear(&err);
    if (nl_wb_job_start(ctx, argc - 1, argv, &err) != 0) {
      fprintf(ctx->err, "normlab %s: %s\n", argv[0], err.msg);
      return nl_error_exit_status(&err);
    }
    return 0;
  }
  if (nl_job_running()) {
    /* commands that set the thread count or run BLAS on every core would
     * race the search's thread pool: they wait for it */
    static const char *const heavy[] = {"evolve", "eval", "forward", "extract", "bench", "train",
                                        NULL};
    for (int i = 0; heavy[i]; i++)
      if (strcmp(argv[0], heavy[i]) == 0) {
        fprintf(ctx->err,
                "normlab %s: a background evolve is running; wait for it or 'stop' it first "
                "('jobs' shows it)\n",
                argv[0]);
        return 2;
      }
  }
  const nl_cmd *cmd = nl_wb_find(argv[0]);
  if (!cmd) {
    const char *near = suggest(argv[0]);
    if (near)
      fprintf(ctx->err, "normlab: unknown command '%s'; did you mean '%s'?\n", argv[0], near);
    else
      fprintf(ctx->err, "normlab: unknown command '%s' (type 'help')\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (cmd->rest_positional && argv[i][0] != '-') break;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      nl_wb_help_command(ctx->out, cmd, is_session_only(cmd));
      return 0;
    }
  }
  nl_error err;
  nl_error_clear(&err);
  nl_args a;
  /* Only the outermost command (not those of a sourced script) clears the
   * interrupt flag, so a Ctrl-C stops the whole script. */
  int top = g_exec_depth == 0;
  g_exec_depth++;
  double t0 = nl_now();
  int rc = nl_args_parse(&a, cmd, argc - 1, argv + 1, ctx, &err);
  if (rc == 0) {
    rc = cmd->run(ctx, &a, &err);
    nl_wb_after_command(ctx, cmd, &a, rc, &err);
  }
  g_exec_depth--;
  free(a.pos);
  fflush(ctx->out);
  const char *timer = ctx->session ? nl_session_get_setting(ctx->session, "timer") : NULL;
  if (timer && strcmp(timer, "on") == 0)
    fprintf(ctx->err, "time: %.3f s\n", nl_now() - t0);
  int interrupted = nl_interrupted();
  if (top) nl_interrupt_clear();
  if (rc == 0 && interrupted && (!g_fe.interactive || !top)) {
    /* a script stops when interrupted, even between a command's steps */
    rc = nl_fail(&err, NL_EINTR, "interrupted");
  }
  if (rc != 0) {
    if (err.code == NL_OK) err.code = interrupted ? NL_EINTR : NL_EINTERNAL;
    fprintf(ctx->err, "normlab %s: %s\n", cmd->name, err.msg[0] ? err.msg : "failed");
    return nl_error_exit_status(&err);
  }
  if (interrupted && g_fe.interactive) fprintf(ctx->err, "normlab %s: interrupted\n", cmd->name);
  return 0;
}

/* ---- blocks ---- */

void nl_wb_set_block(const nl_wb_block *b) { g_block = *b; }

int nl_wb_block_opens(const char *line) { return g_block.opens && g_block.opens(line); }

int nl_wb_block_incomplete(const char *text) {
  return g_block.incomplete && g_block.incomplete(text);
}

int nl_wb_block_run(nl_ctx *ctx, const char *text, const char *where) {
  if (!g_block.run) return 0;
  g_exec_depth++;
  int rc = g_block.run(ctx, text, where);
  if (--g_exec_depth == 0) nl_interrupt_clear();
  return rc;
}
