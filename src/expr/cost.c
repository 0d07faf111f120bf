/* The cost model of Appendix F: FLOPs per element of an expression (as
 * simplified, or as written), and per-token FLOPs and bytes read for
 * expressions, LayerNorm and DyT. */
#include "expr/expr.h"

int nl_cost_written(const nl_prog *p, const nl_cost_opts *o) {
  int clip = o ? o->clip_cost : 0;
  int total = 0;
  for (int i = 0; i < p->len; i++) {
    const nl_node *n = &p->nodes[i];
    switch (n->op) {
      case NL_OP_POW:
        total += n->ival > 1 ? n->ival - 1 : 0; /* x^n: n-1 multiplications */
        break;
      case NL_OP_CLIP:
      case NL_OP_CLIP3:
        total += clip;
        break;
      default:
        total += nl_ops[n->op].cost;
        break;
    }
  }
  return total;
}

/* What the expression costs once constant subtrees are folded and
 * cancellations removed: what a deployment would compute. */
int nl_cost(const nl_prog *p, const nl_cost_opts *o) {
  nl_prog q;
  nl_prog_init(&q);
  nl_prog_copy(&q, p);
  nl_simplify(&q);
  int c = nl_cost_written(&q, o);
  nl_prog_free(&q);
  return c;
}

/* One pass over the token's d FP32 values. */
nl_token_cost nl_cost_expr_token(int cost_per_element, int d) {
  nl_token_cost c = {(double)cost_per_element * d, 4.0 * d};
  return c;
}

/* Mean and variance need a reduction pass before the normalising pass. */
nl_token_cost nl_cost_layernorm_token(int d) {
  nl_token_cost c = {5.0 * d + 2.0, 8.0 * d};
  return c;
}

/* tanh(alpha x): one multiplication and one tanh per element, one pass. */
nl_token_cost nl_cost_dyt_token(int d) {
  nl_token_cost c = {24.0 * d, 4.0 * d};
  return c;
}
