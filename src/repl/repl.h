/* The interactive prompt and batch runner: reads lines (GNU readline
 * editing, history and completion when input is a terminal; a script from
 * -f, -c or piped input otherwise) and runs them in one workbench session
 * (src/app/workbench.h): every command of the table plus the session
 * commands, and the block syntax ('lua { ... }') registered by src/cli. */
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

/* The session of the prompt (completion reads it; tests fill it). */
nl_session *nl_repl_session(void);

#endif
