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

#include "app/split.h"
#include "app/workbench.h"
#include "base/interrupt.h"
#include "base/mem.h"
#include "repl/complete.h"
#include "session/job.h"

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
} g_repl;

static int g_source_depth = 0; /* scripts being sourced */

nl_session *nl_repl_session(void) { return &g_repl.sess; }

/* Run one input line (possibly several ';'-separated commands). Returns
 * the status of the first failing command, 0 when all succeeded. With
 * keep_going, later commands still run. */
static int run_line(const char *line, int keep_going, const char *where) {
  if (nl_wb_block_opens(line)) /* lua { ... }: one command, as 'lua FILE' is */
    return nl_wb_block_run(g_repl.ctx, line, where);
  nl_words *cmds;
  int n;
  nl_error err;
  nl_error_clear(&err);
  if (nl_split_line(line, &cmds, &n, &err) != 0) {
    fprintf(g_repl.ctx->err, "normlab: %s%s%s\n", where ? where : "", where ? ": " : "", err.msg);
    return 2;
  }
  int status = 0;
  for (int i = 0; i < n && !g_repl.quit; i++) {
    int rc = nl_wb_exec(g_repl.ctx, cmds[i].argc, cmds[i].argv);
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
  int backslash = !nl_wb_block_opens(line) && nl_split_incomplete(line) == 2;
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
  if (nl_wb_block_opens(line)) return nl_wb_block_incomplete(line);
  return nl_split_incomplete(line);
}

/* ---- history ---- */

static void history_setup(void) {
  const char *env = getenv("NORMLAB_HISTORY");
  using_history();
  stifle_history(NL_HISTORY_MAX);
  if (env) {
    g_repl.hist_path = *env ? nl_xstrdup(env) : NULL;
  } else {
    const char *home = getenv("HOME");
    if (home && *home) {
      size_t n = strlen(home) + 24;
      g_repl.hist_path = nl_xmalloc(n);
      snprintf(g_repl.hist_path, n, "%s/.normlab_history", home);
    }
  }
  if (g_repl.hist_path) read_history(g_repl.hist_path);
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
    if (g_repl.hist_path) {
      if (access(g_repl.hist_path, F_OK) == 0)
        append_history(1, g_repl.hist_path);
      else
        write_history(g_repl.hist_path);
    }
  }
  free(line);
}

/* 'history N': the last N lines. */
static void history_show(FILE *out, long n) {
  HIST_ENTRY **list = history_list();
  if (!list) return;
  int len = history_length;
  for (int i = len > n ? len - (int)n : 0; i < len; i++)
    fprintf(out, "%5d  %s\n", i + history_base, list[i]->line);
}

static void history_finish(void) {
  if (g_repl.hist_path && access(g_repl.hist_path, F_OK) == 0)
    history_truncate_file(g_repl.hist_path, NL_HISTORY_MAX);
  free(g_repl.hist_path);
  g_repl.hist_path = NULL;
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
  g_repl.line = line;
  g_repl.line_ready = line ? 1 : 2;
  /* Stop reading until the command has run: the terminal goes back to
   * its normal mode while commands print and Ctrl-C interrupts them. */
  rl_callback_handler_remove();
}

static char *make_prompt(void) {
  char *name = nl_session_name(&g_repl.sess);
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
  g_repl.line = NULL;
  g_repl.line_ready = 0;
  if (cancelled) *cancelled = 0;
  rl_callback_handler_install(prompt, on_line);
  while (!g_repl.line_ready) {
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(fileno(rl_instream), &fds);
    struct timeval tv = {0, 500000};
    int r = select(fileno(rl_instream) + 1, &fds, NULL, NULL, nl_job_running() ? &tv : NULL);
    if (r == 0) { /* the background search ended: say so above the prompt */
      if (nl_job_running() && nl_job_ended()) {
        /* erase the prompt line, print, then draw it again as it was */
        fputs("\r\033[K", rl_outstream);
        fflush(rl_outstream);
        nl_wb_job_poll(g_repl.ctx);
        fflush(g_repl.ctx->out);
        fflush(g_repl.ctx->err);
        rl_on_new_line();
        rl_redisplay();
      } else {
        nl_wb_job_poll(g_repl.ctx); /* a quiet checkpoint of finished searches */
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
        nl_wb_job_poll(g_repl.ctx); /* a quiet checkpoint of finished searches */
      }
      continue;
    }
    rl_callback_read_char();
  }
  return g_repl.line_ready == 1 ? g_repl.line : NULL;
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
  nl_complete_install(&g_repl.sess);
}

static int run_interactive(void) {
  rl_setup();
  install_winch();
  history_setup();
  fprintf(g_repl.ctx->err, "normlab %s; type 'help' for commands, Ctrl-D or 'quit' to leave.\n",
          PACKAGE_VERSION);
  int last = 0;
  while (!g_repl.quit) {
    char *line = read_line_interactive(0);
    if (!line) {
      fputc('\n', g_repl.ctx->err);
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

static char *read_prefilled(const char *prompt, const char *initial) {
  g_prefill = initial;
  rl_startup_hook = prefill_hook;
  char *line = read_line_cb(prompt, 1, NULL);
  rl_startup_hook = NULL;
  g_prefill = NULL;
  return line;
}

/* ---- batch ---- */

static int run_stream(FILE *in, const char *name, int keep_going);

static int source_file(const char *path, nl_error *err) {
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
  while (!g_repl.quit && !nl_interrupted() && (len = getline(&line, &cap, in)) >= 0) {
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
        fprintf(g_repl.ctx->err, "normlab: stopped at %s (exit %d)\n", where, rc);
        break;
      }
    }
  }
  if (!g_repl.quit && status == 0 && nl_interrupted()) {
    fprintf(g_repl.ctx->err, "normlab: interrupted after %s:%d\n", name, lineno);
    status = 130;
  }
  free(line);
  return status;
}

static void request_quit(void) { g_repl.quit = 1; }

int nl_repl_main(nl_ctx *ctx, const nl_repl_opts *o) {
  memset(&g_repl, 0, sizeof g_repl);
  nl_session_init(&g_repl.sess);
  nl_ctx c = *ctx;
  g_repl.ctx = &c;
  /* a person at the prompt, or a script (-c, -f, piped input) */
  g_repl.interactive = !o->commands && !o->file && isatty(fileno(stdin));
  nl_wb_frontend fe = {.interactive = g_repl.interactive,
                       .quit = request_quit,
                       .source = source_file,
                       .read_prefilled = read_prefilled,
                       .history = history_show};
  nl_wb_begin(&c, &g_repl.sess, &fe);
  int status;
  if (o->commands) {
    status = run_line(o->commands, o->keep_going, NULL);
  } else if (o->file && strcmp(o->file, "-") != 0) {
    FILE *in = fopen(o->file, "r");
    if (!in) {
      fprintf(ctx->err, "normlab: %s: cannot open: %s\n", o->file, strerror(errno));
      nl_wb_end(&c, 1);
      nl_session_free(&g_repl.sess);
      return 2;
    }
    status = run_stream(in, o->file, o->keep_going);
    fclose(in);
  } else if (g_repl.interactive) {
    c.tty = isatty(fileno(ctx->err));
    status = run_interactive();
  } else {
    status = run_stream(stdin, "<stdin>", o->keep_going);
  }
  /* a script that ran to its end waits for its background search; the
   * prompt, and a script stopped by an error, stop it */
  nl_wb_end(&c, g_repl.interactive || status != 0);
  nl_session_free(&g_repl.sess);
  return status;
}
