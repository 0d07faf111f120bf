/* Without a command: until the REPL front-end exists, show the overview
 * and exit with status 2 so scripts notice. */
#include "app/main.h"

int nl_main_interactive(nl_ctx *ctx, int argc, char **argv) {
  (void)argc;
  (void)argv;
  nl_help_overview(ctx->err);
  return 2;
}
