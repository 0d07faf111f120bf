/* libFuzzer target for the expression parser: every input must either
 * parse, or fail with an NL_EINPUT message that names a line and column.
 * Parsed programs are printed, re-parsed (the round-trip form must parse
 * and evaluate identically), simplified, costed and evaluated. Expression
 * sets are parsed from the same bytes too. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"

static int same(double a, double b) {
  return (isnan(a) && isnan(b)) || a == b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  memcpy(text, data, size);
  text[size] = '\0';
  nl_prog p, q;
  nl_prog_init(&p);
  nl_prog_init(&q);
  nl_error err;
  nl_error_clear(&err);
  if (nl_parse(text, 1, &p, &err) == 0) {
    if (p.len < 1 || nl_prog_depth(&p) > NL_EXPR_MAX_DEPTH) abort();
    char *s = nl_print(&p, NL_PRINT_EXACT);
    nl_error e2;
    if (nl_parse(s, 1, &q, &e2) != 0) {
      fprintf(stderr, "round-trip form does not parse: %s\n%s\n", s, e2.msg);
      abort();
    }
    const double xs[] = {-3.0, -0.5, 0.0, 0.25, 1.0, 7.0};
    for (int i = 0; i < 6; i++)
      if (!same(nl_eval1(&p, xs[i]), nl_eval1(&q, xs[i]))) {
        fprintf(stderr, "round trip changes the value at x=%g: %s\n", xs[i], s);
        abort();
      }
    free(s);
    for (int st = NL_PRINT_SHORT; st <= NL_PRINT_LATEX; st++) free(nl_print(&p, st));
    nl_cost_opts co = {1};
    (void)nl_cost(&p, &co);
    float x[300], y[300], dx[300];
    for (int i = 0; i < 300; i++) x[i] = (float)(i - 150) * 0.05f;
    nl_eval_ws ws;
    nl_eval_ws_init(&ws, 8);
    nl_eval(&p, x, y, 300, &ws);
    nl_eval_dx(&p, x, y, dx, 300, &ws);
    int nc = nl_prog_nconst(&p);
    float *g = malloc(sizeof(float) * (size_t)(nc + 1));
    (void)nl_mse_grad(&p, x, y, 300, g, &ws);
    free(g);
    nl_simplify(&q);
    if (q.len < 1) abort();
    nl_eval(&q, x, y, 300, &ws);
    nl_eval_ws_free(&ws);
  } else if (err.code != NL_EINPUT || !strchr(err.msg, ':') || !strchr(err.msg, '^')) {
    fprintf(stderr, "bad error: code %d, message '%s'\n", err.code, err.msg);
    abort();
  }
  nl_exprset set;
  nl_exprset_init(&set);
  nl_error_clear(&err);
  if (nl_exprset_parse(text, "fuzz.exprs", &set, &err) != 0 &&
      (err.code != NL_EINPUT || strncmp(err.msg, "fuzz.exprs:", 11) != 0)) {
    fprintf(stderr, "bad exprset error: %s\n", err.msg);
    abort();
  }
  nl_exprset_free(&set);
  nl_prog_free(&p);
  nl_prog_free(&q);
  free(text);
  return 0;
}
