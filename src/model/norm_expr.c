#include "model/norm_expr.h"

#include <stdlib.h>

#include "base/mem.h"
#include "expr/expr.h"

void nl_norm_expr_release(nl_norm *n) {
  if (n->prog) {
    nl_prog_free(n->prog);
    free(n->prog);
  }
  n->prog = NULL;
}

void nl_norm_expr_rows(const nl_norm *n, float *out, const float *x, size_t rows, int d) {
  nl_eval_ws ws;
  nl_eval_ws_init(&ws, n->prog->len);
  nl_eval(n->prog, x, out, rows * (size_t)d, &ws);
  nl_eval_ws_free(&ws);
  for (size_t r = 0; r < rows; r++) {
    float *o = out + r * (size_t)d;
    for (int j = 0; j < d; j++) o[j] = o[j] * n->w[j] + n->b[j];
  }
}

int nl_norm_set_expr(nl_norm *n, const struct nl_prog *p, nl_error *err) {
  nl_prog *c = nl_xmalloc(sizeof *c);
  nl_prog_init(c);
  if (p) nl_prog_copy(c, p);
  if (!p || p->len < 1 || nl_prog_fix_sizes(c) != 0) {
    nl_prog_free(c);
    free(c);
    return nl_fail(err, NL_EINPUT, "%s: not a well-formed expression", n->name);
  }
  nl_norm_expr_release(n);
  n->prog = c;
  n->kind = NL_NORM_EXPR;
  return 0;
}
