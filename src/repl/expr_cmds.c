/* Session commands over expressions. */
#include "repl/repl.h"

int nl_repl_show_details(nl_ctx *ctx, const char *expr, nl_error *err) {
  (void)ctx;
  (void)expr;
  (void)err;
  return 0;
}

void nl_repl_expr_init(void) {}
