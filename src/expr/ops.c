/* The operator registry: one row per operator. Adding an operator means
 * adding its enum value in expr.h, its row here and its kernels in kern.c. */
#include <math.h>

#include "expr/expr.h"
#include "expr/kern.h"

/* ---- scalar values (double) ---- */
static double f_add(const double *a, int32_t n) { return a[0] + a[1]; }
static double f_sub(const double *a, int32_t n) { return a[0] - a[1]; }
static double f_mul(const double *a, int32_t n) { return a[0] * a[1]; }
static double f_div(const double *a, int32_t n) { return a[0] / a[1]; }
static double f_neg(const double *a, int32_t n) { return -a[0]; }
static double f_pow(const double *a, int32_t n) {
  if (n <= 0) return 1.0;
  double r = a[0];
  for (int k = 1; k < n; k++) r *= a[0];
  return r;
}
static double f_tanh(const double *a, int32_t n) { return tanh(a[0]); }
static double f_sigmoid(const double *a, int32_t n) { return 1.0 / (1.0 + exp(-a[0])); }
static double f_exp(const double *a, int32_t n) { return exp(a[0]); }
static double f_abs(const double *a, int32_t n) { return fabs(a[0]); }
static double clampd(double a, double lo, double hi) {
  double v = a < lo ? lo : a;
  return v > hi ? hi : v;
}
static double f_clip(const double *a, int32_t n) { return clampd(a[0], -5.0, 5.0); }
static double f_clip3(const double *a, int32_t n) { return clampd(a[0], a[1], a[2]); }

/* ---- scalar partial derivatives ---- */
static double d_add(const double *a, double f, int32_t n, int j) { return 1.0; }
static double d_sub(const double *a, double f, int32_t n, int j) { return j == 0 ? 1.0 : -1.0; }
static double d_mul(const double *a, double f, int32_t n, int j) { return a[1 - j]; }
static double d_div(const double *a, double f, int32_t n, int j) {
  return j == 0 ? 1.0 / a[1] : -(a[0] / a[1]) / a[1];
}
static double d_neg(const double *a, double f, int32_t n, int j) { return -1.0; }
static double d_pow(const double *a, double f, int32_t n, int j) {
  if (n <= 0) return 0.0;
  double r = n;
  for (int k = 1; k < n; k++) r *= a[0];
  return r;
}
static double d_tanh(const double *a, double f, int32_t n, int j) { return 1.0 - f * f; }
static double d_sigmoid(const double *a, double f, int32_t n, int j) { return f * (1.0 - f); }
static double d_exp(const double *a, double f, int32_t n, int j) { return f; }
static double d_abs(const double *a, double f, int32_t n, int j) {
  return a[0] > 0 ? 1.0 : (a[0] < 0 ? -1.0 : 0.0);
}
static double d_clip(const double *a, double f, int32_t n, int j) {
  return (a[0] >= -5.0 && a[0] <= 5.0) ? 1.0 : 0.0;
}
static double d_clip3(const double *a, double f, int32_t n, int j) {
  double v = a[0] < a[1] ? a[1] : a[0];
  if (j == 0) return (a[0] >= a[1] && v <= a[2]) ? 1.0 : 0.0;
  if (j == 1) return (a[0] < a[1] && a[1] <= a[2]) ? 1.0 : 0.0;
  return v > a[2] ? 1.0 : 0.0;
}

/* Precedence of printed forms: 1 sums, 2 products, 3 unary minus (and
 * negative constants), 4 powers, 5 atoms (numbers, x, calls). */
const nl_opinfo nl_ops[NL_OP_COUNT] = {
    [NL_OP_CONST] = {"const", 0, 0, NULL, NULL, NULL, NL_FORM_LEAF, 5, NULL, NULL, NULL, NULL},
    [NL_OP_X] = {"x", 0, 0, "x", "x", "x", NL_FORM_LEAF, 5, NULL, NULL, NULL, NULL},
    [NL_OP_ADD] = {"+", 2, 1, "%1 + %2", "%1 + %2", "%1 + %2", NL_FORM_INFIX, 1, f_add, d_add,
                   nl_k_add, nl_kd_add},
    [NL_OP_SUB] = {"-", 2, 1, "%1 - %2", "%1 - %2", "%1 - %2", NL_FORM_INFIX, 1, f_sub, d_sub,
                   nl_k_sub, nl_kd_sub},
    [NL_OP_MUL] = {"*", 2, 1, "%1*%2", "%1*%2", "%1 \\cdot %2", NL_FORM_INFIX, 2, f_mul, d_mul,
                   nl_k_mul, nl_kd_mul},
    [NL_OP_DIV] = {"/", 2, 1, "%1/%2", "%1/%2", "\\frac{%1}{%2}", NL_FORM_INFIX, 2, f_div,
                   d_div, nl_k_div, nl_kd_div},
    [NL_OP_NEG] = {"neg", 1, 0, "-%1", "-%1", "-%1", NL_FORM_PREFIX, 3, f_neg, d_neg, nl_k_neg,
                   nl_kd_neg},
    [NL_OP_POW] = {"^", 1, 0 /* n-1, see nl_cost */, "powf(%1, %n)", "%1**%n", "%1^{%n}",
                   NL_FORM_POW, 4, f_pow, d_pow, nl_k_pow, nl_kd_pow},
    [NL_OP_TANH] = {"tanh", 1, 23, "tanhf(%1)", "torch.tanh(%1)", "\\tanh\\left(%1\\right)",
                    NL_FORM_CALL, 5, f_tanh, d_tanh, nl_k_tanh, nl_kd_tanh},
    [NL_OP_SIGMOID] = {"sigmoid", 1, 22, "(1.0f/(1.0f + expf(-(%1))))", "torch.sigmoid(%1)",
                       "\\sigma\\left(%1\\right)", NL_FORM_CALL, 5, f_sigmoid, d_sigmoid,
                       nl_k_sigmoid, nl_kd_sigmoid},
    [NL_OP_EXP] = {"exp", 1, 19, "expf(%1)", "torch.exp(%1)", "e^{%1}", NL_FORM_CALL, 5, f_exp,
                   d_exp, nl_k_exp, nl_kd_exp},
    [NL_OP_ABS] = {"abs", 1, 0, "fabsf(%1)", "torch.abs(%1)", "\\left|%1\\right|", NL_FORM_CALL,
                   5, f_abs, d_abs, nl_k_abs, nl_kd_abs},
    [NL_OP_CLIP] = {"clip", 1, 0 /* nl_cost_opts.clip_cost */, "fminf(fmaxf(%1, -5.0f), 5.0f)",
                    "torch.clamp(%1, -5.0, 5.0)", "\\operatorname{clip}\\left(%1\\right)",
                    NL_FORM_CALL, 5, f_clip, d_clip, nl_k_clip, nl_kd_clip},
    [NL_OP_CLIP3] = {"clip", 3, 0 /* nl_cost_opts.clip_cost */, "fminf(fmaxf(%1, %2), %3)",
                     "torch.clamp(%1, %2, %3)",
                     "\\operatorname{clip}\\left(%1, %2, %3\\right)", NL_FORM_CALL, 5, f_clip3,
                     d_clip3, nl_k_clip3, nl_kd_clip3},
};
