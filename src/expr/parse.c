/* Recursive-descent parser for infix expressions of x.
 *
 *   expr    := term (('+' | '-') term)*
 *   term    := unary (('*' | '/') unary)*
 *   unary   := '-' unary | power
 *   power   := primary ('^' INTEGER)?
 *   primary := NUMBER | 'x' | NAME '(' expr (',' expr)* ')' | '(' expr ')'
 *
 * Nesting is bounded (NL_EXPR_MAX_DEPTH) so that no input can exhaust the
 * stack; a minus sign directly before a number makes a negative constant.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "expr/local.h"

#define MAX_EXPONENT 64

typedef struct parser {
  const char *s;
  size_t len, pos;
  int depth;
  nl_prog *out;
  nl_error *err;
  /* for error display */
  const char *origin;
  int line, col0;
  const char *display;
  size_t display_len;
  int failed;
} parser;

int nl_expr_caret_error(nl_error *err, const char *origin, int line, int col, const char *src,
                        size_t srclen, const char *msg) {
  /* show at most ~70 characters around the fault */
  size_t c = col > 0 ? (size_t)col - 1 : 0;
  if (c > srclen) c = srclen;
  size_t from = 0, to = srclen;
  const size_t half = 35;
  if (c > half) from = c - half;
  if (to - from > 2 * half) to = from + 2 * half;
  if (to < c) to = c;
  char shown[256], caret[256];
  size_t k = 0, q = 0;
  if (from > 0) {
    memcpy(shown, "...", 3);
    memcpy(caret, "   ", 3);
    k = q = 3;
  }
  for (size_t i = from; i < to && k < sizeof shown - 8; i++) {
    unsigned char ch = (unsigned char)src[i];
    char out = (ch == '\t') ? '\t' : (ch < 32 || ch == 127) ? '?' : (char)ch;
    shown[k++] = out;
    if (i < c) caret[q++] = out == '\t' ? '\t' : ' ';
  }
  if (to < srclen) {
    memcpy(shown + k, "...", 3);
    k += 3;
  }
  shown[k] = '\0';
  caret[q++] = '^';
  caret[q] = '\0';
  if (origin)
    return nl_fail(err, NL_EINPUT, "%s:%d:%d: %s\n    %s\n    %s", origin, line, col, msg, shown,
                   caret);
  return nl_fail(err, NL_EINPUT, "%d:%d: %s\n    %s\n    %s", line, col, msg, shown, caret);
}

static int fail_at(parser *P, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(parser *P, size_t at, const char *fmt, ...) {
  if (P->failed) return -1;
  P->failed = 1;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (at > P->len) at = P->len;
  if (P->display) {
    return nl_expr_caret_error(P->err, P->origin, P->line, P->col0 + (int)at + 1, P->display,
                               P->display_len, msg);
  }
  /* locate the line of text holding `at` */
  size_t ls = 0;
  int line = P->line;
  for (size_t i = 0; i < at; i++)
    if (P->s[i] == '\n') {
      line++;
      ls = i + 1;
    }
  size_t le = ls;
  while (le < P->len && P->s[le] != '\n') le++;
  int col = (int)(at - ls) + 1 + (line == P->line ? P->col0 : 0);
  return nl_expr_caret_error(P->err, P->origin, line, col, P->s + ls, le - ls, msg);
}

static void skip_ws(parser *P) {
  while (P->pos < P->len && (P->s[P->pos] == ' ' || P->s[P->pos] == '\t' ||
                              P->s[P->pos] == '\r' || P->s[P->pos] == '\n'))
    P->pos++;
}

static int peek(parser *P) {
  skip_ws(P);
  return P->pos < P->len ? (unsigned char)P->s[P->pos] : -1;
}

static void describe(parser *P, size_t at, char *buf, size_t n) {
  if (at >= P->len) {
    snprintf(buf, n, "end of input");
    return;
  }
  unsigned char c = (unsigned char)P->s[at];
  if (c >= 33 && c < 127)
    snprintf(buf, n, "'%c'", c);
  else
    snprintf(buf, n, "byte 0x%02x", c);
}

static int push(parser *P, nl_op op, float v, int32_t iv, size_t at) {
  if (nl_prog_push(P->out, op, v, iv) < 0)
    return fail_at(P, at, "expression too long (more than %d nodes)", NL_EXPR_MAX_NODES);
  return 0;
}

static int enter(parser *P, size_t at) {
  if (++P->depth > NL_EXPR_MAX_DEPTH)
    return fail_at(P, at, "expression nested too deeply (more than %d levels)",
                   NL_EXPR_MAX_DEPTH);
  return 0;
}

static int parse_expr(parser *P);

static int parse_number(parser *P) {
  size_t start = P->pos, i = P->pos;
  while (i < P->len && isdigit((unsigned char)P->s[i])) i++;
  if (i < P->len && P->s[i] == '.') {
    i++;
    while (i < P->len && isdigit((unsigned char)P->s[i])) i++;
  }
  if (i < P->len && (P->s[i] == 'e' || P->s[i] == 'E')) {
    size_t e = i++;
    if (i < P->len && (P->s[i] == '+' || P->s[i] == '-')) i++;
    if (i >= P->len || !isdigit((unsigned char)P->s[i]))
      return fail_at(P, e, "malformed number: exponent digits expected after 'e'");
    while (i < P->len && isdigit((unsigned char)P->s[i])) i++;
  }
  if (i < P->len && (isalpha((unsigned char)P->s[i]) || P->s[i] == '_' || P->s[i] == '.'))
    return fail_at(P, i, "malformed number");
  char *tmp = nl_xstrndup(P->s + start, i - start);
  errno = 0;
  float v = strtof(tmp, NULL);
  int range = errno == ERANGE;
  free(tmp);
  if (!isfinite(v) || (range && fabsf(v) > 1.0f))
    return fail_at(P, start, "number out of range (constants are single-precision floats)");
  /* Constants are floats. One below the smallest float (about 1.4e-45)
   * would silently become 0: refuse it. Subnormal floats (1e-40) are kept
   * as the nearest float and printed back exactly. */
  int nonzero = 0;
  for (size_t k = start; k < i && P->s[k] != 'e' && P->s[k] != 'E'; k++)
    nonzero |= P->s[k] >= '1' && P->s[k] <= '9';
  if (nonzero && v == 0.0f)
    return fail_at(P, start,
                   "number %.*s is too small: below the smallest single-precision float "
                   "(1.4e-45) it would become 0; write 0 or rescale",
                   (int)(i - start > 40 ? 40 : i - start), P->s + start);
  P->pos = i;
  return push(P, NL_OP_CONST, v, 0, start);
}

static int find_call(const char *name, size_t n, int arity) {
  for (int op = 0; op < NL_OP_COUNT; op++) {
    const nl_opinfo *o = &nl_ops[op];
    if (o->form != NL_FORM_CALL && op != NL_OP_NEG) continue;
    if (strlen(o->name) == n && strncmp(o->name, name, n) == 0 && (arity < 0 || o->arity == arity))
      return op;
  }
  return -1;
}

static int parse_call(parser *P, const char *name, size_t n, size_t at) {
  /* at P->pos: '(' */
  P->pos++;
  if (enter(P, at) != 0) return -1;
  int nargs = 0;
  if (peek(P) == ')') return fail_at(P, P->pos, "%.*s() needs an argument", (int)n, name);
  for (;;) {
    if (parse_expr(P) != 0) return -1;
    nargs++;
    int c = peek(P);
    if (c == ',') {
      P->pos++;
      continue;
    }
    if (c == ')') {
      P->pos++;
      break;
    }
    char what[32];
    describe(P, P->pos, what, sizeof what);
    return fail_at(P, P->pos, "expected ',' or ')' in the arguments of %.*s, found %s", (int)n,
                   name, what);
  }
  P->depth--;
  int op = find_call(name, n, nargs);
  if (op < 0) {
    char ar[64] = "";
    size_t k = 0;
    for (int o = 0; o < NL_OP_COUNT; o++)
      if (find_call(name, n, nl_ops[o].arity) == o)
        k += (size_t)snprintf(ar + k, sizeof ar - k, "%s%d", k ? " or " : "", nl_ops[o].arity);
    return fail_at(P, at, "%.*s takes %s argument%s, got %d", (int)n, name, ar,
                   strcmp(ar, "1") == 0 ? "" : "s", nargs);
  }
  return push(P, (nl_op)op, 0, 0, at);
}

static int parse_primary(parser *P) {
  int c = peek(P);
  size_t at = P->pos;
  if (c < 0) return fail_at(P, at, "unexpected end of input: expected a number, x, a function or '('");
  if (isdigit(c) || (c == '.' && at + 1 < P->len && isdigit((unsigned char)P->s[at + 1])))
    return parse_number(P);
  if (isalpha(c) || c == '_') {
    size_t i = at;
    while (i < P->len && (isalnum((unsigned char)P->s[i]) || P->s[i] == '_')) i++;
    const char *name = P->s + at;
    size_t n = i - at;
    P->pos = i;
    if (n == 1 && name[0] == 'x') return push(P, NL_OP_X, 0, 0, at);
    char low[16] = "";
    if (n < sizeof low) {
      for (size_t k = 0; k < n; k++) low[k] = (char)tolower((unsigned char)name[k]);
      low[n] = '\0';
      if (!strcmp(low, "nan") || !strcmp(low, "inf") || !strcmp(low, "infinity"))
        return fail_at(P, at, "'%.*s' is not allowed: constants must be finite numbers", (int)n,
                       name);
    }
    if (peek(P) == '(') {
      if (find_call(name, n, -1) < 0)
        return fail_at(P, at,
                       "unknown function '%.*s' (known: tanh, sigmoid, exp, abs, neg, clip)",
                       n > 40 ? 40 : (int)n, name);
      return parse_call(P, name, n, at);
    }
    if (find_call(name, n, -1) >= 0)
      return fail_at(P, P->pos, "expected '(' after '%.*s'", (int)n, name);
    return fail_at(P, at, "unknown name '%.*s' (the variable is x)", n > 40 ? 40 : (int)n, name);
  }
  if (c == '(') {
    P->pos++;
    if (enter(P, at) != 0) return -1;
    if (parse_expr(P) != 0) return -1;
    if (peek(P) != ')') {
      char what[32];
      describe(P, P->pos, what, sizeof what);
      return fail_at(P, P->pos, "expected ')' to close the '(' at column %d, found %s",
                     P->col0 + (int)at + 1, what);
    }
    P->pos++;
    P->depth--;
    return 0;
  }
  char what[32];
  describe(P, at, what, sizeof what);
  return fail_at(P, at, "unexpected %s: expected a number, x, a function or '('", what);
}

static int parse_power(parser *P) {
  if (parse_primary(P) != 0) return -1;
  if (peek(P) != '^') return 0;
  size_t caret = P->pos++;
  skip_ws(P);
  size_t at = P->pos, i = at;
  while (i < P->len && isdigit((unsigned char)P->s[i])) i++;
  if (i == at || (i < P->len && (P->s[i] == '.' || P->s[i] == 'e' || P->s[i] == 'E' ||
                                 isalpha((unsigned char)P->s[i]))))
    return fail_at(P, at, "exponent must be a non-negative integer (0 to %d)", MAX_EXPONENT);
  long n = 0;
  for (size_t k = at; k < i; k++) {
    n = n * 10 + (P->s[k] - '0');
    if (n > MAX_EXPONENT)
      return fail_at(P, at, "exponent too large (at most %d)", MAX_EXPONENT);
  }
  P->pos = i;
  if (push(P, NL_OP_POW, 0, (int32_t)n, caret) != 0) return -1;
  if (peek(P) == '^')
    return fail_at(P, P->pos, "chained '^' is ambiguous: add parentheses, e.g. (x^2)^3");
  return 0;
}

static int parse_unary(parser *P) {
  if (peek(P) == '-') {
    size_t at = P->pos++;
    if (enter(P, at) != 0) return -1;
    int before = P->out->len;
    if (parse_unary(P) != 0) return -1;
    P->depth--;
    nl_node *last = &P->out->nodes[P->out->len - 1];
    if (P->out->len == before + 1 && last->op == NL_OP_CONST) {
      last->val = -last->val; /* a negative literal is a constant */
      return 0;
    }
    return push(P, NL_OP_NEG, 0, 0, at);
  }
  if (peek(P) == '+') return fail_at(P, P->pos, "unary '+' is not part of the grammar");
  return parse_power(P);
}

static int parse_term(parser *P) {
  if (parse_unary(P) != 0) return -1;
  for (;;) {
    int c = peek(P);
    if (c != '*' && c != '/') return 0;
    size_t at = P->pos++;
    if (parse_unary(P) != 0) return -1;
    if (push(P, c == '*' ? NL_OP_MUL : NL_OP_DIV, 0, 0, at) != 0) return -1;
  }
}

static int parse_expr(parser *P) {
  if (parse_term(P) != 0) return -1;
  for (;;) {
    int c = peek(P);
    if (c != '+' && c != '-') return 0;
    size_t at = P->pos++;
    if (parse_term(P) != 0) return -1;
    if (push(P, c == '+' ? NL_OP_ADD : NL_OP_SUB, 0, 0, at) != 0) return -1;
  }
}

int nl_parse_span(const char *text, size_t len, const char *origin, int line, int col0,
                  const char *display, size_t display_len, nl_prog *out, nl_error *err) {
  parser P = {.s = text, .len = len, .out = out, .err = err, .origin = origin,
              .line = line, .col0 = col0, .display = display, .display_len = display_len};
  out->len = 0;
  if (peek(&P) < 0) return fail_at(&P, P.pos, "empty expression");
  if (parse_expr(&P) != 0) {
    out->len = 0;
    return -1;
  }
  if (peek(&P) >= 0) {
    char what[32];
    describe(&P, P.pos, what, sizeof what);
    int c = peek(&P);
    out->len = 0;
    if (c == ')') return fail_at(&P, P.pos, "unmatched ')'");
    return fail_at(&P, P.pos, "unexpected %s after the end of the expression", what);
  }
  if (nl_prog_depth(out) > NL_EXPR_MAX_DEPTH) {
    out->len = 0;
    return fail_at(&P, 0, "expression nested too deeply (more than %d levels)",
                   NL_EXPR_MAX_DEPTH);
  }
  return 0;
}

int nl_parse(const char *text, int line, nl_prog *out, nl_error *err) {
  return nl_parse_span(text, strlen(text), NULL, line, 0, NULL, 0, out, err);
}
