/* The program's entry (src/cli): the one place that knows every
 * front-end. At start-up it wires them into the command tables and the
 * workbench (nl_cli_setup); then main runs one command from the shell
 * line, or the prompt / a script (nl_main_interactive). */
#ifndef NL_CLI_MAIN_H
#define NL_CLI_MAIN_H

#include "app/cmd.h"

/* Global options that select how commands are read. */
typedef struct nl_main_opts {
  const char *file;     /* -f FILE */
  const char *commands; /* -c "CMD; CMD" */
  int keep_going;       /* -k */
} nl_main_opts;

/* Wire the front-ends together (idempotent): the 'lua' command joins the
 * shell's table (nl_cmd_register); 'dashboard' joins the session commands
 * (nl_wb_register); 'lua { ... }' blocks at the prompt are Lua's
 * (nl_wb_set_block), and normlab.cmd() there runs session commands
 * (nl_lua_shared_setup with nl_wb_exec). */
void nl_cli_setup(void);

/* Entry point when normlab runs without a command (the REPL, a script). */
int nl_main_interactive(nl_ctx *ctx, const nl_main_opts *o);

#endif
