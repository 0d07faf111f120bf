/* Expressions of one variable x: the functions that replace LayerNorms.
 *
 * Two representations:
 *  - a flat postfix program (nl_prog): an array of nodes, children before
 *    their parent, each node knowing the size of its subtree. This is what
 *    the search mutates and crosses over (subtree = contiguous slice), what
 *    the batched evaluator runs, and what norm layers hold.
 *  - text: parsed from and printed to canonical infix.
 * Simplification, cost and printing all work on nl_prog.
 *
 * Operators live in one registry (nl_ops[], expr/ops.c): one row each with
 * name, arity, cost, C and PyTorch spellings, value and derivative.
 */
#ifndef NL_EXPR_EXPR_H
#define NL_EXPR_EXPR_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum nl_op {
  NL_OP_CONST = 0, /* leaf: value in node.val */
  NL_OP_X,         /* leaf: the variable */
  NL_OP_ADD,       /* a + b */
  NL_OP_SUB,       /* a - b */
  NL_OP_MUL,       /* a * b */
  NL_OP_DIV,       /* a / b */
  NL_OP_NEG,       /* -a, neg(a) */
  NL_OP_POW,       /* a ^ n, n = node.ival >= 0 */
  NL_OP_TANH,
  NL_OP_SIGMOID,
  NL_OP_EXP,
  NL_OP_ABS,
  NL_OP_CLIP,      /* clip(a): clamp to [-5, 5] */
  NL_OP_CLIP3,     /* clip(a, lo, hi): clamp a to [lo, hi] */
  NL_OP_COUNT
} nl_op;

typedef struct nl_node {
  uint8_t op;     /* nl_op */
  uint8_t arity;  /* copy of nl_ops[op].arity, for fast traversal */
  uint16_t size;  /* nodes in this subtree, including itself */
  int32_t ival;   /* exponent for NL_OP_POW */
  float val;      /* value for NL_OP_CONST */
} nl_node;

typedef struct nl_prog {
  nl_node *nodes; /* postfix; the root is nodes[len-1] */
  int len;
  int cap;
} nl_prog;

/* How an operator is written in infix text. */
typedef enum nl_opform {
  NL_FORM_LEAF,   /* constant, x */
  NL_FORM_INFIX,  /* a OP b, left-associative */
  NL_FORM_PREFIX, /* -a */
  NL_FORM_POW,    /* a^n */
  NL_FORM_CALL,   /* name(a, ...) */
} nl_opform;

/* One registry row per operator: everything the parser, printers, cost
 * model, scalar and batched evaluators and their derivatives need. */
typedef struct nl_opinfo {
  const char *name;     /* spelling in text: "+", "tanh", "clip", ... */
  int arity;            /* 0, 1, 2 or 3 */
  int cost;             /* FLOPs per element (Appendix F); clip: see nl_cost_opts */
  const char *c_fmt;    /* C spelling, printf-like with %1..%3 for operands */
  const char *torch_fmt;/* PyTorch spelling, same convention */
  const char *latex_fmt;/* LaTeX spelling, same convention */
  nl_opform form;
  int prec;             /* binding strength of the printed form (higher binds tighter) */
  /* Scalar value in double precision, a[0..arity-1] the operand values. */
  double (*f)(const double *a, int32_t ival);
  /* Partial derivative of the value with respect to operand j, given the
   * operands and the value f. */
  double (*df)(const double *a, double f, int32_t ival, int j);
  /* Batched value over n <= NL_EVAL_CHUNK floats: out[i] = f(a[0][i], ...). */
  void (*vf)(float *out, const float *const *a, int n, int32_t ival);
  /* Batched partial with respect to operand j: d[i] = df(a[.][i], f[i]). */
  void (*vdf)(float *d, int j, const float *const *a, const float *f, int n, int32_t ival);
} nl_opinfo;

extern const nl_opinfo nl_ops[NL_OP_COUNT];

/* ---- programs ---- */
void nl_prog_init(nl_prog *p);
void nl_prog_free(nl_prog *p);
void nl_prog_copy(nl_prog *dst, const nl_prog *src);
/* Append a node (leaf or operator over the subtrees just before it);
 * computes arity and size. Returns the new node's index. */
int nl_prog_push(nl_prog *p, nl_op op, float val, int32_t ival);
/* Recompute every node's size (after splicing). Returns 0 if the program is
 * a single well-formed tree, -1 otherwise. */
int nl_prog_fix_sizes(nl_prog *p);
/* Number of constant nodes; gather/scatter constants in postfix order. */
int nl_prog_nconst(const nl_prog *p);
void nl_prog_get_consts(const nl_prog *p, float *c);
void nl_prog_set_consts(nl_prog *p, const float *c);
int nl_prog_depth(const nl_prog *p);

/* ---- text ---- */
/* Limits of parsed programs: subtree sizes are 16-bit, and every
 * recursive walk is bounded by the depth limit. */
#define NL_EXPR_MAX_NODES 65535
#define NL_EXPR_MAX_DEPTH 500

/* Parse infix text. On error: NL_EINPUT with "line:col: message" followed
 * by the offending line and a caret under the fault. `line` is the line
 * number to report (1 for a single expression). */
int nl_parse(const char *text, int line, nl_prog *out, nl_error *err);

typedef enum {
  NL_PRINT_SHORT,     /* 3 significant digits, for display */
  NL_PRINT_EXACT,     /* round-trip (%.9g), for files */
  NL_PRINT_C,         /* C expression over float x (tanhf, ...) */
  NL_PRINT_TORCH,     /* PyTorch expression over tensor x */
  NL_PRINT_LATEX,
  NL_PRINT_TORCH_BUF, /* PyTorch with constant k (postfix order) as c[k], for a
                       * module that keeps its constants in a buffer c */
} nl_print_style;

/* Canonical infix with minimal parentheses. Caller frees. */
char *nl_print(const nl_prog *p, nl_print_style style);
/* Print the subtree rooted at node `root`. */
char *nl_print_sub(const nl_prog *p, int root, nl_print_style style);

/* ---- simplification ---- */
/* Constant folding (any subtree without x, evaluated in double and rounded
 * once to float), identities, cancellations (x - x, x + (-x), e/e) and the
 * collection of like terms (a*e + b*e -> (a+b)*e, c1*(c2*e) -> (c1 c2)*e),
 * repeated to a fixed point. In place. The result never costs more FLOPs
 * (nl_cost_written, clip charged 0 or 1) and never has more nodes.
 * Values are kept at every finite x up to float rounding (merged constants
 * are rounded once; sums and products whose terms are collected are
 * re-associated). A rule that drops a subtree (e*0, e - e, e/e, 0/e)
 * applies only when an interval analysis of the float evaluation over
 * every finite float x proves that subtree never NaN (and never infinite
 * where inf*0 or inf - inf would be): exp(x)*0, x^30*0, (1/x)*0, x/x and
 * exp(x) - exp(x) stay. A constant that would lose its value to underflow
 * (1e-30*1e-30) is not formed. The sign of a zero is kept only where it is
 * known; where the whole program folds to a constant, NaN or infinite x no
 * longer propagate. See expr/simplify.c for the rules. */
void nl_simplify(nl_prog *p);

/* ---- evaluation ---- */
/* Points are processed in chunks of NL_EVAL_CHUNK floats. */
#define NL_EVAL_CHUNK 256

/* Scratch workspace for evaluation: allocate once per thread. */
typedef struct nl_eval_ws {
  float *buf;   /* (max_len + 4) * NL_EVAL_CHUNK * 2 floats, 64-byte aligned */
  int max_len;  /* grown automatically when a longer program comes */
  void *aux;    /* per-node bookkeeping (pointers, child indices) */
} nl_eval_ws;
void nl_eval_ws_init(nl_eval_ws *ws, int max_len);
void nl_eval_ws_free(nl_eval_ws *ws);

/* out[i] = f(x[i]) for i < n (out may be x). Float arithmetic with
 * vectorised approximations of tanh, sigmoid and exp (relative error about
 * 2e-7, see base/vmath.h); NaN propagates through every operator. */
void nl_eval(const nl_prog *p, const float *x, float *out, size_t n, nl_eval_ws *ws);
/* Value and derivative with respect to x: out[i] = f(x[i]), dx[i] = f'(x[i]). */
void nl_eval_dx(const nl_prog *p, const float *x, float *out, float *dx, size_t n,
                nl_eval_ws *ws);
/* Double-precision scalar evaluation (reference, simplification checks). */
double nl_eval1(const nl_prog *p, double x);

/* Mean squared error against y and its gradient with respect to every
 * constant (in nl_prog_get_consts order), by reverse mode over chunks:
 * returns MSE = mean((f(x)-y)^2); grad[k] = dMSE/dc_k (may be NULL). */
double nl_mse_grad(const nl_prog *p, const float *x, const float *y, size_t n, float *grad,
                   nl_eval_ws *ws);
/* Jacobian of f with respect to the constants at n points:
 * jac[k*n + i] = df(x_i)/dc_k. */
void nl_eval_jac(const nl_prog *p, const float *x, float *out, float *jac, size_t n,
                 nl_eval_ws *ws);

/* ---- cost model (Appendix F) ---- */
typedef struct nl_cost_opts {
  int clip_cost;    /* FLOPs charged for clip: 0 when reporting, 1 in search */
} nl_cost_opts;
/* FLOPs per element of the expression once simplified (nl_simplify): what
 * every command reports. */
int nl_cost(const nl_prog *p, const nl_cost_opts *o);
/* FLOPs per element of the expression as written (no simplification):
 * cheap, for the search's complexity objective and before/after figures. */
int nl_cost_written(const nl_prog *p, const nl_cost_opts *o);

/* Per-token figures for width d: expression cost*d FLOPs, 4d bytes read;
 * LayerNorm 5d+2 FLOPs, 8d bytes; DyT 24d FLOPs, 4d bytes. */
typedef struct nl_token_cost {
  double flops;
  double read_bytes;
} nl_token_cost;
nl_token_cost nl_cost_expr_token(int cost_per_element, int d);
nl_token_cost nl_cost_layernorm_token(int d);
nl_token_cost nl_cost_dyt_token(int d);

/* ---- expression sets (*.exprs) ---- */
typedef struct nl_exprset_entry {
  char *name;      /* layer name */
  nl_prog prog;
  char *comment;   /* trailing comment without '#', or NULL */
  int line;        /* line of the text it was parsed from; 0 when set by a call */
  char *text;      /* the expression as written (a file, the prompt), else as
                    * printed (NL_PRINT_EXACT); what save writes */
} nl_exprset_entry;

typedef struct nl_exprset {
  nl_exprset_entry *e;
  int n, cap;
} nl_exprset;

void nl_exprset_init(nl_exprset *s);
void nl_exprset_free(nl_exprset *s);
/* Lines "NAME = EXPR  # comment"; errors name the file and line. Duplicate
 * names are an error. */
int nl_exprset_parse(const char *text, const char *filename, nl_exprset *s, nl_error *err);
int nl_exprset_load(const char *path, nl_exprset *s, nl_error *err);
/* Atomic write, round-trip precision. */
int nl_exprset_save(const nl_exprset *s, const char *path, nl_error *err);
/* Add or replace an entry (copies name, prog, comment; its text is the
 * printed prog). */
void nl_exprset_set(nl_exprset *s, const char *name, const nl_prog *p, const char *comment);
/* Add or replace an entry from an expression as written: parsed (errors
 * name `origin`, when not NULL, and the column, with a caret), kept as
 * written. The set is unchanged on error. */
int nl_exprset_set_text(nl_exprset *s, const char *name, const char *text, const char *comment,
                        const char *origin, nl_error *err);
/* A deep copy (dst is overwritten, not freed). */
void nl_exprset_copy(nl_exprset *dst, const nl_exprset *src);
/* Remove an entry (the others keep their order); no-op when absent. */
void nl_exprset_remove(nl_exprset *s, const char *name);
const nl_exprset_entry *nl_exprset_find(const nl_exprset *s, const char *name);

#endif
