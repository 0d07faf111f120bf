/* Printing programs: canonical infix with minimal parentheses (short and
 * round-trip constants), C, PyTorch and LaTeX. Parentheses are kept exactly
 * where re-parsing would otherwise build a different tree, so
 * parse(print(p)) has p's structure. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "expr/expr.h"

typedef struct sbuf {
  char *s;
  size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->n + n + 1) cap *= 2;
    b->s = nl_xrealloc(b->s, cap);
    b->cap = cap;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = '\0';
}
static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Shortest %.Ng (N <= 9) that reads back as the same float (subnormal
 * floats such as 1e-40 need fewer digits than their %.6g form). */
static void fmt_exact(char *buf, size_t n, float v) {
  /* for normal floats a form shorter than %.6g that reads back is %.6g */
  int from = v != 0.0f && fabsf(v) < FLT_MIN ? 1 : 6;
  for (int prec = from; prec <= 9; prec++) {
    snprintf(buf, n, "%.*g", prec, (double)v);
    if (strtof(buf, NULL) == v) return;
  }
}

static void fmt_const(char *buf, size_t n, float v, nl_print_style st) {
  switch (st) {
    case NL_PRINT_SHORT:
      snprintf(buf, n, "%.3g", (double)v);
      break;
    case NL_PRINT_LATEX: {
      char t[64];
      snprintf(t, sizeof t, "%.3g", (double)v);
      char *e = strchr(t, 'e');
      if (e) {
        *e = '\0';
        int ex = atoi(e + 1);
        snprintf(buf, n, "%s \\times 10^{%d}", t, ex);
      } else {
        snprintf(buf, n, "%s", t);
      }
      break;
    }
    case NL_PRINT_C: {
      char t[64];
      fmt_exact(t, sizeof t, v);
      if (!strpbrk(t, ".eEin"))
        snprintf(buf, n, "%s.0f", t);
      else
        snprintf(buf, n, "%sf", t);
      break;
    }
    default:
      fmt_exact(buf, n, v);
      break;
  }
}

/* Children of node i (postfix): c[0..arity-1] in order. */
static void children(const nl_prog *p, int i, int *c) {
  int a = p->nodes[i].arity, j = i - 1;
  for (int k = a - 1; k >= 0; k--) {
    c[k] = j;
    j -= p->nodes[j].size;
  }
}

static int prec_of(const nl_prog *p, int i, nl_print_style st) {
  const nl_node *n = &p->nodes[i];
  if (n->op == NL_OP_CONST) return signbit(n->val) && st != NL_PRINT_TORCH_BUF ? 3 : 5;
  if (n->op == NL_OP_POW && st == NL_PRINT_C) return 5;
  if (n->op == NL_OP_DIV && st == NL_PRINT_LATEX) return 5;
  return nl_ops[n->op].prec;
}

static const char *fmt_of(const nl_node *n, nl_print_style st) {
  const nl_opinfo *o = &nl_ops[n->op];
  switch (st) {
    case NL_PRINT_C:
      return o->c_fmt;
    case NL_PRINT_TORCH:
    case NL_PRINT_TORCH_BUF:
      return o->torch_fmt;
    case NL_PRINT_LATEX:
      return o->latex_fmt;
    default:
      break;
  }
  switch (o->form) {
    case NL_FORM_INFIX:
      return o->c_fmt; /* "%1 + %2", "%1*%2", ... */
    case NL_FORM_PREFIX:
      return "-%1";
    case NL_FORM_POW:
      return "%1^%n";
    default:
      return NULL; /* calls: name(args) */
  }
}

static void print_rec(sbuf *b, const nl_prog *p, int i, nl_print_style st);

static void operand(sbuf *b, const nl_prog *p, int i, int need, int no_minus,
                    nl_print_style st) {
  int paren = prec_of(p, i, st) < need;
  if (!paren && no_minus) {
    const nl_node *n = &p->nodes[i];
    paren = (n->op == NL_OP_NEG) ||
            (n->op == NL_OP_CONST && signbit(n->val) && st != NL_PRINT_TORCH_BUF);
  }
  if (paren) sb_puts(b, st == NL_PRINT_LATEX ? "\\left(" : "(");
  print_rec(b, p, i, st);
  if (paren) sb_puts(b, st == NL_PRINT_LATEX ? "\\right)" : ")");
}

static void print_rec(sbuf *b, const nl_prog *p, int i, nl_print_style st) {
  const nl_node *n = &p->nodes[i];
  const nl_opinfo *o = &nl_ops[n->op];
  char t[96];
  if (n->op == NL_OP_CONST && st == NL_PRINT_TORCH_BUF) { /* c[k]: k-th constant */
    int k = 0;
    for (int j = 0; j < i; j++) k += p->nodes[j].op == NL_OP_CONST;
    snprintf(t, sizeof t, "c[%d]", k);
    sb_puts(b, t);
    return;
  }
  if (n->op == NL_OP_CONST) {
    fmt_const(t, sizeof t, n->val, st);
    sb_puts(b, t);
    return;
  }
  if (n->op == NL_OP_X) {
    sb_puts(b, "x");
    return;
  }
  int c[3];
  children(p, i, c);
  const char *f = fmt_of(n, st);
  if (!f) { /* name(a, b, c) */
    sb_puts(b, o->name);
    sb_puts(b, "(");
    for (int k = 0; k < n->arity; k++) {
      if (k) sb_puts(b, ", ");
      print_rec(b, p, c[k], st);
    }
    sb_puts(b, ")");
    return;
  }
  int latex_braced = st == NL_PRINT_LATEX && n->op == NL_OP_DIV;
  for (const char *q = f; *q; q++) {
    if (*q == '%' && q[1] >= '1' && q[1] <= '3') {
      int k = q[1] - '1';
      q++;
      int need = 0, no_minus = 0;
      if (o->form == NL_FORM_INFIX && !latex_braced) {
        need = k == 0 ? o->prec : o->prec + 1;
      } else if (o->form == NL_FORM_PREFIX) {
        need = 3;
        no_minus = 1;
      } else if (o->form == NL_FORM_POW && st != NL_PRINT_C) {
        need = 5;
      }
      operand(b, p, c[k], need, no_minus, st);
    } else if (*q == '%' && q[1] == 'n') {
      q++;
      snprintf(t, sizeof t, "%d", (int)n->ival);
      sb_puts(b, t);
    } else {
      sb_put(b, q, 1);
    }
  }
}

char *nl_print_sub(const nl_prog *p, int root, nl_print_style style) {
  sbuf b = {0};
  sb_puts(&b, "");
  if (p->len > 0 && root >= 0 && root < p->len) print_rec(&b, p, root, style);
  return b.s;
}

char *nl_print(const nl_prog *p, nl_print_style style) {
  return nl_print_sub(p, p->len - 1, style);
}
