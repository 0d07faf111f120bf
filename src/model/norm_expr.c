#include "model/norm_expr.h"

#include <stdlib.h>

/* The expression engine (src/expr) is not part of this build yet: the
 * expression kind is refused with an error instead of being faked. */
void nl_norm_expr_release(nl_norm *n) { n->prog = NULL; }

void nl_norm_expr_rows(const nl_norm *n, float *out, const float *x, size_t rows, int d) {
  (void)n, (void)out, (void)x, (void)rows, (void)d;
}

int nl_norm_set_expr(nl_norm *n, const struct nl_prog *p, nl_error *err) {
  (void)p;
  return nl_fail(err, NL_EINTERNAL,
                 "%s: expression norms are not available in this build (no expression engine)",
                 n->name);
}
