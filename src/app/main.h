#ifndef NL_APP_MAIN_H
#define NL_APP_MAIN_H

#include "app/cmd.h"

/* Entry point when normlab runs without a command (the REPL). */
int nl_main_interactive(nl_ctx *ctx, int argc, char **argv);

#endif
