/* Without a command: the REPL (a terminal), or a script from -f, -c or
 * piped input. */
#include "cli/main.h"
#include "repl/repl.h"

int nl_main_interactive(nl_ctx *ctx, const nl_main_opts *o) {
  nl_repl_opts r = {.file = o->file, .commands = o->commands, .keep_going = o->keep_going};
  return nl_repl_main(ctx, &r);
}
