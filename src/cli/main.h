#ifndef NL_CLI_MAIN_H
#define NL_CLI_MAIN_H

#include "app/cmd.h"

/* Global options that select how commands are read. */
typedef struct nl_main_opts {
  const char *file;     /* -f FILE */
  const char *commands; /* -c "CMD; CMD" */
  int keep_going;       /* -k */
} nl_main_opts;

/* Entry point when normlab runs without a command (the REPL, a script). */
int nl_main_interactive(nl_ctx *ctx, const nl_main_opts *o);

#endif
