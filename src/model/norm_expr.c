#include "model/norm_expr.h"

#include <math.h>
#include <stdlib.h>

#include "base/mem.h"
#include "expr/expr.h"

void nl_norm_expr_release(nl_norm *n) {
  if (n->prog) {
    nl_prog_free(n->prog);
    free(n->prog);
  }
  n->prog = NULL;
  free(n->expr);
  n->expr = NULL;
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

int nl_norm_set_expr(nl_vit *m, nl_norm *n, const struct nl_prog *p, nl_error *err) {
  nl_prog c;
  nl_prog_init(&c);
  if (p) nl_prog_copy(&c, p);
  if (!p || p->len < 1 || nl_prog_fix_sizes(&c) != 0) {
    nl_prog_free(&c);
    return nl_fail(err, NL_EINPUT, "%s: not a well-formed expression", n->name);
  }
  for (int k = 0; k < c.len; k++)
    if (c.nodes[k].op == NL_OP_CONST && !isfinite(c.nodes[k].val)) {
      nl_prog_free(&c);
      return nl_fail(err, NL_EINPUT, "%s: the expression has a constant that is not finite",
                     n->name);
    }
  /* the canonical form: what a saved checkpoint parses back */
  char *text = nl_print(&c, NL_PRINT_EXACT);
  nl_prog *q = nl_xmalloc(sizeof *q);
  nl_prog_init(q);
  nl_error e2;
  if (nl_parse(text, 1, q, &e2) != 0) {
    nl_prog_free(&c);
    nl_prog_free(q);
    free(q);
    free(text);
    return nl_fail(err, NL_EINPUT, "%s: the expression does not print back to text: %s", n->name,
                   e2.msg);
  }
  nl_prog_free(&c);
  nl_norm_expr_release(n);
  nl_vit_alpha_view(m, n, 0);
  n->prog = q;
  n->expr = text;
  n->kind = NL_NORM_EXPR;
  return 0;
}

const char *nl_norm_kind_name(nl_norm_kind k) {
  switch (k) {
    case NL_NORM_LAYERNORM: return "layernorm";
    case NL_NORM_DYT: return "dyt";
    case NL_NORM_EXPR: return "expr";
  }
  return "?";
}
