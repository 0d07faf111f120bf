#define _POSIX_C_SOURCE 200809L
#include "repl/repl.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "base/interrupt.h"
#include "base/timer.h"
#include "base/mem.h"
#include "lua/nlua.h"
#include "repl/complete.h"
#include "app/split.h"

#include "config.h"

#define NL_HISTORY_MAX 1000

static struct {
  nl_session sess;
  nl_ctx *ctx;
  int quit;
  int interactive;
  char *hist_path;
  char *line;     /* line handed over by the readline callback */
  int line_ready; /* 1: line ready, 2: end of input */
} R;

static int g_exec_depth = 0;   /* commands running (source nests them) */
static int g_source_depth = 0; /* scripts being sourced */

nl_session *nl_repl_session(void) { return &R.sess; }
void nl_repl_request_quit(void) { R.quit = 1; }
int nl_repl_is_interactive(void) { return R.interactive; }
const char *nl_repl_history_path(void) { return R.hist_path; }

const nl_cmd *nl_repl_command(int i) {
  int n = 0;
  while (nl_repl_commands[n]) n++;
  if (i < n) return nl_repl_commands[i];
  int k;
  for (k = 0; nl_repl_expr_commands[k]; k++)
    if (k == i - n) return nl_repl_expr_commands[k];
  n += k;
  for (k = 0; nl_repl_fit_commands[k]; k++)
    if (k == i - n) return nl_repl_fit_commands[k];
  n += k;
  for (k = 0; nl_repl_pipeline_commands[k]; k++)
    if (k == i - n) return nl_repl_pipeline_commands[k];
  n += k;
  for (k = 0; nl_repl_job_commands[k]; k++)
    if (k == i - n) return nl_repl_job_commands[k];
  return NULL;
}

const nl_cmd *nl_repl_find(const char *name) {
  const nl_cmd *c;
  for (int i = 0; (c = nl_repl_command(i)) != NULL; i++)
    if (strcmp(c->name, name) == 0) return c;
  return nl_cmd_find(name);
}

static int is_repl_only(const nl_cmd *cmd) {
  const nl_cmd *c;
  for (int i = 0; (c = nl_repl_command(i)) != NULL; i++)
    if (c == cmd) return 1;
  return 0;
}

void nl_repl_help_command(FILE *out, const nl_cmd *cmd, int repl_only) {
  if (!repl_only) {
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
  for (int i = 0; (c = nl_repl_command(i)) != NULL; i++) {
    int d = distance(name, c->name);
    if (d < bd) bd = d, best = c->name;
  }
  for (int i = 0; nl_commands[i]; i++) {
    int d = distance(name, nl_commands[i]->name);
    if (d < bd) bd = d, best = nl_commands[i]->name;
  }
  return bd <= (strlen(name) > 4 ? 2 : 1) ? best : NULL;
}

int nl_repl_exec(nl_ctx *ctx, int argc, char **argv) {
  /* "normlab CMD ARGS" pasted from a shell line works too */
  if (argc > 1 && strcmp(argv[0], "normlab") == 0) {
    argc--;
    argv++;
  }
  if (argc < 1) return 0;
  nl_repl_job_poll(ctx);
  if (argc > 1 && strcmp(argv[argc - 1], "&") == 0) { /* a background job */
    nl_error err;
    nl_error_clear(&err);
    if (nl_repl_job_start(ctx, argc - 1, argv, &err) != 0) {
      fprintf(ctx->err, "normlab %s: %s\n", argv[0], err.msg);
      return nl_error_exit_status(&err);
    }
    return 0;
  }
  if (nl_repl_job_running()) {
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
  const nl_cmd *cmd = nl_repl_find(argv[0]);
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
      nl_repl_help_command(ctx->out, cmd, is_repl_only(cmd));
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
    nl_repl_after_command(ctx, cmd, &a, rc, &err);
  }
  g_exec_depth--;
  free(a.pos);
  fflush(ctx->out);
  const char *timer = nl_session_get_setting(&R.sess, "timer");
  if (timer && strcmp(timer, "on") == 0)
    fprintf(ctx->err, "time: %.3f s\n", nl_now() - t0);
  int interrupted = nl_interrupted();
  if (top) nl_interrupt_clear();
  if (rc == 0 && interrupted && (!R.interactive || !top)) {
    /* a script stops when interrupted, even between a command's steps */
    rc = nl_fail(&err, NL_EINTR, "interrupted");
  }
  if (rc != 0) {
    if (err.code == NL_OK) err.code = interrupted ? NL_EINTR : NL_EINTERNAL;
    fprintf(ctx->err, "normlab %s: %s\n", cmd->name, err.msg[0] ? err.msg : "failed");
    return nl_error_exit_status(&err);
  }
  if (interrupted && R.interactive) fprintf(ctx->err, "normlab %s: interrupted\n", cmd->name);
  return 0;
}

/* Run one input line (possibly several ';'-separated commands). Returns
 * the status of the first failing command, 0 when all succeeded. With
 * keep_going, later commands still run. */
static int run_line(const char *line, int keep_going, const char *where) {
  if (nl_lua_block_opens(line)) { /* lua { ... }: one command, as 'lua FILE' is */
    g_exec_depth++;
    int rc = nl_lua_block_run(R.ctx, line, where);
    if (--g_exec_depth == 0) nl_interrupt_clear();
    return rc;
  }
  nl_words *cmds;
  int n;
  nl_error err;
  nl_error_clear(&err);
  if (nl_split_line(line, &cmds, &n, &err) != 0) {
    fprintf(R.ctx->err, "normlab: %s%s%s\n", where ? where : "", where ? ": " : "", err.msg);
    return 2;
  }
  int status = 0;
  for (int i = 0; i < n && !R.quit; i++) {
    int rc = nl_repl_exec(R.ctx, cmds[i].argc, cmds[i].argv);
    if (rc != 0) {
      if (status == 0) status = rc;
      if (!keep_going || rc == 130) break;
    }
  }
  nl_words_free(cmds, n);
  return status;
}

/* Join a continuation line: after a trailing backslash the two lines are
 * glued (the backslash dropped); inside quotes the newline is kept. */
static char *join_continued(char *line, const char *more) {
  size_t a = strlen(line), b = strlen(more);
  int backslash = !nl_lua_block_opens(line) && nl_split_incomplete(line) == 2;
  char *r = nl_xmalloc(a + b + 2);
  memcpy(r, line, a);
  if (backslash)
    a--;
  else
    r[a++] = '\n';
  memcpy(r + a, more, b + 1);
  free(line);
  return r;
}

/* Whether the next line continues this one: an open quote, a trailing
 * backslash, or a "lua {" block without its closing brace. */
static int line_incomplete(const char *line) {
  if (nl_lua_block_opens(line)) return nl_lua_block_incomplete(line);
  return nl_split_incomplete(line);
}

/* ---- history ---- */

static void history_setup(void) {
  const char *env = getenv("NORMLAB_HISTORY");
  using_history();
  stifle_history(NL_HISTORY_MAX);
  if (env) {
    R.hist_path = *env ? nl_xstrdup(env) : NULL;
  } else {
    const char *home = getenv("HOME");
    if (home && *home) {
      size_t n = strlen(home) + 24;
      R.hist_path = nl_xmalloc(n);
      snprintf(R.hist_path, n, "%s/.normlab_history", home);
    }
  }
  if (R.hist_path) read_history(R.hist_path);
}

static void history_add(const char *raw) {
  const char *p = raw;
  while (*p == ' ' || *p == '\t') p++;
  if (!*p) return;
  /* trailing blanks (left by completion) are not kept */
  size_t n = strlen(raw);
  while (n > 0 && (raw[n - 1] == ' ' || raw[n - 1] == '\t')) n--;
  char *line = nl_xstrndup(raw, n);
  HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (!last || strcmp(last->line, line) != 0) {
    add_history(line);
    /* append at once, so history survives a crash or a kill */
    if (R.hist_path) {
      if (access(R.hist_path, F_OK) == 0)
        append_history(1, R.hist_path);
      else
        write_history(R.hist_path);
    }
  }
  free(line);
}

static void history_finish(void) {
  if (R.hist_path && access(R.hist_path, F_OK) == 0)
    history_truncate_file(R.hist_path, NL_HISTORY_MAX);
  free(R.hist_path);
  R.hist_path = NULL;
  clear_history();
}

/* ---- the interactive loop (readline's callback interface, so a SIGINT
 * at the prompt can be handled outside the signal handler) ---- */

static volatile sig_atomic_t g_winch = 0;
static void on_winch(int sig) {
  (void)sig;
  g_winch = 1;
}

static void install_winch(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_winch;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGWINCH, &sa, NULL);
}

static void on_line(char *line) {
  R.line = line;
  R.line_ready = line ? 1 : 2;
  /* Stop reading until the command has run: the terminal goes back to
   * its normal mode while commands print and Ctrl-C interrupts them. */
  rl_callback_handler_remove();
}

static char *make_prompt(void) {
  char *name = nl_session_name(&R.sess);
  size_t n = (name ? strlen(name) : 0) + 16;
  char *p = nl_xmalloc(n);
  if (name)
    snprintf(p, n, "normlab:%s> ", name);
  else
    snprintf(p, n, "normlab> ");
  free(name);
  return p;
}

/* Wait for a whole line. Returns the line (caller frees) or NULL at end of
 * input. Ctrl-C discards the line being typed and starts a fresh one. */
/* Read one line with the callback interface. cancel: Ctrl-C abandons the
 * read (returns NULL, *cancelled set); otherwise it discards the line and
 * starts a fresh prompt. */
static char *read_line_cb(const char *prompt, int cancel, int *cancelled) {
  R.line = NULL;
  R.line_ready = 0;
  if (cancelled) *cancelled = 0;
  rl_callback_handler_install(prompt, on_line);
  while (!R.line_ready) {
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(fileno(rl_instream), &fds);
    struct timeval tv = {0, 500000};
    int r = select(fileno(rl_instream) + 1, &fds, NULL, NULL, nl_repl_job_running() ? &tv : NULL);
    if (r == 0) { /* the background search ended: say so above the prompt */
      if (nl_repl_job_running() && nl_repl_job_ended()) {
        /* erase the prompt line, print, then draw it again as it was */
        fputs("\r\033[K", rl_outstream);
        fflush(rl_outstream);
        nl_repl_job_poll(R.ctx);
        fflush(R.ctx->out);
        fflush(R.ctx->err);
        rl_on_new_line();
        rl_redisplay();
      } else {
        nl_repl_job_poll(R.ctx); /* a quiet checkpoint of finished searches */
      }
      continue;
    }
    if (r < 0) {
      if (errno != EINTR) {
        rl_callback_handler_remove();
        break;
      }
      if (g_winch) {
        g_winch = 0;
        rl_resize_terminal();
      }
      if (nl_interrupted()) {
        /* Ctrl-C: show it at the end of the line, drop the line and its
         * undo state; then a fresh prompt, or the end of this read. */
        nl_interrupt_clear();
        rl_point = rl_end;
        rl_redisplay();
        fputs("^C", rl_outstream);
        rl_crlf();
        rl_free_line_state();
        rl_replace_line("", 1);
        if (cancel) {
          rl_callback_handler_remove();
          if (cancelled) *cancelled = 1;
          return NULL;
        }
        rl_on_new_line();
        rl_redisplay();
      } else {
        nl_repl_job_poll(R.ctx); /* a quiet checkpoint of finished searches */
      }
      continue;
    }
    rl_callback_read_char();
  }
  return R.line_ready == 1 ? R.line : NULL;
}

static char *read_line_interactive(int more) {
  char *prompt = more ? nl_xstrdup("   ...> ") : make_prompt();
  char *line = read_line_cb(prompt, 0, NULL);
  free(prompt);
  return line;
}

static void rl_setup(void) {
  rl_readline_name = "normlab";
  rl_catch_signals = 0;
  rl_catch_sigwinch = 0;
  /* show the matching '(' while typing expressions; ~/.inputrc may
   * override it in a "$if normlab" block */
  rl_variable_bind("blink-matching-paren", "on");
  nl_complete_install();
}

static int run_interactive(void) {
  rl_setup();
  install_winch();
  history_setup();
  fprintf(R.ctx->err, "normlab %s; type 'help' for commands, Ctrl-D or 'quit' to leave.\n",
          PACKAGE_VERSION);
  int last = 0;
  while (!R.quit) {
    char *line = read_line_interactive(0);
    if (!line) {
      fputc('\n', R.ctx->err);
      break;
    }
    while (line_incomplete(line)) { /* open quote or trailing backslash */
      char *more = read_line_interactive(1);
      if (!more) break;
      line = join_continued(line, more);
      free(more);
    }
    history_add(line);
    last = run_line(line, 1, NULL);
    free(line);
    install_winch(); /* a full-screen view may have replaced it */
  }
  history_finish();
  nl_complete_cleanup();
  (void)last;
  return 0;
}

static const char *g_prefill;

static int prefill_hook(void) {
  if (g_prefill) rl_insert_text(g_prefill);
  g_prefill = NULL;
  rl_startup_hook = NULL;
  return 0;
}

char *nl_repl_read_prefilled(const char *prompt, const char *initial) {
  g_prefill = initial;
  rl_startup_hook = prefill_hook;
  char *line = read_line_cb(prompt, 1, NULL);
  rl_startup_hook = NULL;
  g_prefill = NULL;
  return line;
}

/* ---- batch ---- */

static int run_stream(FILE *in, const char *name, int keep_going);

int nl_repl_source(const char *path, nl_error *err) {
  if (g_source_depth >= 16) return nl_fail(err, NL_EINPUT, "%s: scripts nested too deeply", path);
  FILE *in = fopen(path, "r");
  if (!in) return nl_fail(err, NL_EINPUT, "%s: cannot open: %s", path, strerror(errno));
  g_source_depth++;
  int rc = run_stream(in, path, 0);
  g_source_depth--;
  fclose(in);
  if (rc != 0) {
    err->code = rc == 130 ? NL_EINTR : rc == 2 ? NL_EINPUT : NL_EIO;
    snprintf(err->msg, sizeof err->msg, "%s: %s", path,
             rc == 130 ? "interrupted" : "stopped at the first failing command");
    return -1;
  }
  return 0;
}

static int run_stream(FILE *in, const char *name, int keep_going) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int lineno = 0, status = 0;
  while (!R.quit && !nl_interrupted() && (len = getline(&line, &cap, in)) >= 0) {
    lineno++;
    if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
    if (len > 0 && line[len - 1] == '\r') line[--len] = '\0';
    char where[512];
    snprintf(where, sizeof where, "%s:%d", name, lineno);
    char *whole = nl_xstrdup(line);
    while (line_incomplete(whole)) {
      if ((len = getline(&line, &cap, in)) < 0) break;
      lineno++;
      if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
      if (len > 0 && line[len - 1] == '\r') line[--len] = '\0';
      whole = join_continued(whole, line);
    }
    int rc = run_line(whole, keep_going, where);
    free(whole);
    if (rc != 0) {
      if (status == 0) status = rc;
      if (!keep_going || rc == 130) {
        fprintf(R.ctx->err, "normlab: stopped at %s (exit %d)\n", where, rc);
        break;
      }
    }
  }
  if (!R.quit && status == 0 && nl_interrupted()) {
    fprintf(R.ctx->err, "normlab: interrupted after %s:%d\n", name, lineno);
    status = 130;
  }
  free(line);
  return status;
}

int nl_repl_main(nl_ctx *ctx, const nl_repl_opts *o) {
  memset(&R, 0, sizeof R);
  nl_session_init(&R.sess);
  nl_repl_expr_init();
  nl_ctx c = *ctx;
  c.session = &R.sess;
  c.context = nl_session_context;
  R.ctx = &c;
  nl_lua_shared_setup(nl_repl_exec);
  int status;
  if (o->commands) {
    status = run_line(o->commands, o->keep_going, NULL);
  } else if (o->file && strcmp(o->file, "-") != 0) {
    FILE *in = fopen(o->file, "r");
    if (!in) {
      fprintf(ctx->err, "normlab: %s: cannot open: %s\n", o->file, strerror(errno));
      nl_session_free(&R.sess);
      return 2;
    }
    status = run_stream(in, o->file, o->keep_going);
    fclose(in);
  } else if (!o->file && isatty(fileno(stdin))) {
    R.interactive = 1;
    c.tty = isatty(fileno(ctx->err));
    status = run_interactive();
  } else {
    status = run_stream(stdin, "<stdin>", o->keep_going);
  }
  /* a script that ran to its end waits for its background search; the
   * prompt, and a script stopped by an error, stop it */
  if (nl_repl_job_running()) {
    int stop = R.interactive || status != 0;
    if (stop) fprintf(ctx->err, "[evolve] stopping the background search\n");
    nl_repl_job_end(&c, stop);
  }
  nl_repl_fit_cleanup();
  nl_lua_shared_close();
  nl_session_free(&R.sess);
  return status;
}
