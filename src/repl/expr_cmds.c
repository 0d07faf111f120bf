/* Session commands over expressions (set, edit, simplify) need the
 * expression engine (src/expr); until it is part of the build there are
 * none, and 'show' prints the expression text alone. */
#include "repl/repl.h"

const nl_cmd *const nl_repl_expr_commands[] = {NULL};

int nl_repl_show_details(nl_ctx *ctx, const char *expr, nl_error *err) {
  (void)ctx;
  (void)expr;
  (void)err;
  return 0;
}

void nl_repl_expr_init(void) {}
