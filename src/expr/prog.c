/* Flat postfix programs: construction, sizes, constants, depth. */
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "expr/expr.h"

void nl_prog_init(nl_prog *p) {
  p->nodes = NULL;
  p->len = 0;
  p->cap = 0;
}

void nl_prog_free(nl_prog *p) {
  free(p->nodes);
  nl_prog_init(p);
}

static void reserve(nl_prog *p, int need) {
  if (need <= p->cap) return;
  int cap = p->cap ? p->cap * 2 : 16;
  while (cap < need) cap *= 2;
  p->nodes = nl_xrealloc(p->nodes, sizeof(nl_node) * (size_t)cap);
  p->cap = cap;
}

void nl_prog_copy(nl_prog *dst, const nl_prog *src) {
  if (dst == src) return;
  dst->len = 0;
  reserve(dst, src->len);
  if (src->len) memcpy(dst->nodes, src->nodes, sizeof(nl_node) * (size_t)src->len);
  dst->len = src->len;
}

int nl_prog_push(nl_prog *p, nl_op op, float val, int32_t ival) {
  int arity = nl_ops[op].arity;
  long size = 1;
  int j = p->len - 1;
  for (int k = 0; k < arity; k++) {
    if (j < 0) return -1;
    size += p->nodes[j].size;
    j -= p->nodes[j].size;
  }
  if (size > NL_EXPR_MAX_NODES) return -1;
  reserve(p, p->len + 1);
  nl_node *n = &p->nodes[p->len];
  n->op = (uint8_t)op;
  n->arity = (uint8_t)arity;
  n->size = (uint16_t)size;
  n->ival = op == NL_OP_POW ? ival : 0;
  n->val = op == NL_OP_CONST ? val : 0.0f;
  return p->len++;
}

int nl_prog_fix_sizes(nl_prog *p) {
  if (p->len <= 0) return -1;
  /* stack of subtree sizes */
  long *st = nl_xmalloc(sizeof(long) * (size_t)p->len);
  int sp = 0, rc = 0;
  for (int i = 0; i < p->len; i++) {
    nl_node *n = &p->nodes[i];
    if (n->op >= NL_OP_COUNT) {
      rc = -1;
      break;
    }
    n->arity = (uint8_t)nl_ops[n->op].arity;
    if (sp < n->arity) {
      rc = -1;
      break;
    }
    long size = 1;
    for (int k = 0; k < n->arity; k++) size += st[--sp];
    if (size > NL_EXPR_MAX_NODES) {
      rc = -1;
      break;
    }
    n->size = (uint16_t)size;
    st[sp++] = size;
  }
  if (rc == 0 && sp != 1) rc = -1;
  free(st);
  return rc;
}

int nl_prog_nconst(const nl_prog *p) {
  int k = 0;
  for (int i = 0; i < p->len; i++) k += p->nodes[i].op == NL_OP_CONST;
  return k;
}

void nl_prog_get_consts(const nl_prog *p, float *c) {
  int k = 0;
  for (int i = 0; i < p->len; i++)
    if (p->nodes[i].op == NL_OP_CONST) c[k++] = p->nodes[i].val;
}

void nl_prog_set_consts(nl_prog *p, const float *c) {
  int k = 0;
  for (int i = 0; i < p->len; i++)
    if (p->nodes[i].op == NL_OP_CONST) p->nodes[i].val = c[k++];
}

int nl_prog_depth(const nl_prog *p) {
  if (p->len <= 0) return 0;
  int *st = nl_xmalloc(sizeof(int) * (size_t)p->len);
  int sp = 0;
  for (int i = 0; i < p->len; i++) {
    int a = p->nodes[i].arity, d = 0;
    for (int k = 0; k < a && sp > 0; k++) {
      int c = st[--sp];
      if (c > d) d = c;
    }
    st[sp++] = d + 1;
  }
  int depth = sp > 0 ? st[sp - 1] : 0;
  free(st);
  return depth;
}
