/* `normlab cost`: FLOPs and bytes read per layer of an expression set,
 * beside LayerNorm and DyT (the cost model of Appendix F). */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/cmd.h"
#include "app/wb_local.h"
#include "base/mem.h"
#include "expr/expr.h"
#include "expr/local.h"

static const nl_opt opts[] = {
    {"dim", NL_OPT_INT, "D", "768", "token width d (768: ViT-B)", NULL, 0},
    {"tokens", NL_OPT_INT, "L", "197", "tokens per image (197: ViT-B/16 at 224x224)", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

static int is_file_arg(const char *s) {
  struct stat st;
  if (stat(s, &st) == 0 && S_ISREG(st.st_mode)) return 1;
  size_t n = strlen(s);
  return n > 6 && strcmp(s + n - 6, ".exprs") == 0;
}

/* 1234567 -> "1,234,567" */
static void group(char *buf, size_t n, double v) {
  char t[64];
  snprintf(t, sizeof t, "%.0f", v);
  size_t len = strlen(t), k = 0, start = t[0] == '-' ? 1 : 0;
  for (size_t i = 0; i < len && k + 2 < n; i++) {
    if (i > start && (len - i) % 3 == 0) buf[k++] = ',';
    buf[k++] = t[i];
  }
  buf[k] = '\0';
}

static int load(const nl_args *a, nl_exprset *set, nl_error *err) {
  if (a->npos == 1 && is_file_arg(a->pos[0])) return nl_exprset_load(a->pos[0], set, err);
  nl_prog p;
  nl_prog_init(&p);
  for (int i = 0; i < a->npos; i++) {
    char name[32];
    snprintf(name, sizeof name, "expr%d", i + 1);
    const char *s = a->pos[i];
    size_t len = strlen(s);
    const char *nl = memchr(s, '\n', len);
    if (nl_parse_span(s, len, name, 1, 0, nl ? NULL : s, len, &p, err) != 0) {
      nl_prog_free(&p);
      return -1;
    }
    nl_exprset_set(set, name, &p, NULL);
  }
  nl_prog_free(&p);
  return 0;
}

static json_t *ref_json(nl_token_cost t, double layers, double tokens) {
  return json_pack("{s:I,s:I,s:I}", "flops_per_token", (json_int_t)t.flops, "total_flops",
                   (json_int_t)(t.flops * layers * tokens), "total_read_bytes",
                   (json_int_t)(t.read_bytes * layers * tokens));
}

int nl_cost_report(nl_ctx *ctx, const nl_exprset *setp, long d, long L, int as_json) {
  const nl_exprset set = *setp;
  nl_cost_opts co = {.clip_cost = 0};
  int n = set.n;
  double tot_flops = 0, tot_bytes = 0;
  int *cost = nl_xmalloc(sizeof(int) * (size_t)n);
  /* counted (and shown) as simplified: folded constants, no cancellations */
  nl_prog *simple = nl_xcalloc((size_t)n, sizeof(nl_prog));
  for (int i = 0; i < n; i++) {
    nl_prog_copy(&simple[i], &set.e[i].prog);
    nl_simplify(&simple[i]);
    cost[i] = nl_cost(&simple[i], &co);
    nl_token_cost t = nl_cost_expr_token(cost[i], (int)d);
    tot_flops += t.flops * (double)L;
    tot_bytes += t.read_bytes * (double)L;
  }
  nl_token_cost ln = nl_cost_layernorm_token((int)d), dyt = nl_cost_dyt_token((int)d);
  double layers = n, tokens = (double)L;

  if (as_json) {
    json_t *root = json_object();
    json_object_set_new(root, "dim", json_integer(d));
    json_object_set_new(root, "tokens", json_integer(L));
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
      char *e = nl_print(&set.e[i].prog, NL_PRINT_EXACT);
      char *se = nl_print(&simple[i], NL_PRINT_EXACT);
      nl_token_cost t = nl_cost_expr_token(cost[i], (int)d);
      json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:i,s:I,s:I}", "name", set.e[i].name,
                                           "expr", e, "simplified", se, "flops_per_element",
                                           cost[i], "flops_per_token", (json_int_t)t.flops,
                                           "read_bytes_per_token", (json_int_t)t.read_bytes));
      free(e);
      free(se);
    }
    json_object_set_new(root, "layers", arr);
    json_object_set_new(root, "total",
                        json_pack("{s:I,s:I}", "flops", (json_int_t)tot_flops, "read_bytes",
                                  (json_int_t)tot_bytes));
    json_object_set_new(root, "layernorm", ref_json(ln, layers, tokens));
    json_object_set_new(root, "dyt", ref_json(dyt, layers, tokens));
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fprintf(ctx->out, "%s\n", s);
    free(s);
    json_decref(root);
  } else {
    /* per-layer table */
    char **ex = nl_xmalloc(sizeof(char *) * (size_t)n);
    int wn = 5, we = 10;
    for (int i = 0; i < n; i++) {
      ex[i] = nl_print(&simple[i], NL_PRINT_SHORT);
      if (strlen(ex[i]) > 60) strcpy(ex[i] + 56, " ...");
      int l = (int)strlen(set.e[i].name);
      if (l > wn) wn = l;
      l = (int)strlen(ex[i]);
      if (l > we) we = l;
    }
    fprintf(ctx->out,
            "cost per layer (d = %ld, FP32; clip counted as 0 FLOPs; expressions simplified):\n\n",
            d);
    fprintf(ctx->out, "  %-*s  %-*s  %10s  %12s  %12s\n", wn, "layer", we, "expression",
            "FLOPs/elem", "FLOPs/token", "bytes/token");
    for (int i = 0; i < n; i++) {
      nl_token_cost t = nl_cost_expr_token(cost[i], (int)d);
      char f[40], b[40];
      group(f, sizeof f, t.flops);
      group(b, sizeof b, t.read_bytes);
      fprintf(ctx->out, "  %-*s  %-*s  %10d  %12s  %12s\n", wn, set.e[i].name, we, ex[i], cost[i],
              f, b);
      free(ex[i]);
    }
    free(ex);
    char f1[40], b1[40], f2[40], b2[40], f3[40], b3[40];
    group(f1, sizeof f1, tot_flops);
    group(b1, sizeof b1, tot_bytes);
    group(f2, sizeof f2, ln.flops * layers * tokens);
    group(b2, sizeof b2, ln.read_bytes * layers * tokens);
    group(f3, sizeof f3, dyt.flops * layers * tokens);
    group(b3, sizeof b3, dyt.read_bytes * layers * tokens);
    fprintf(ctx->out, "\ntotals over %d layer%s x %ld tokens:\n\n", n, n == 1 ? "" : "s", L);
    fprintf(ctx->out, "  %-12s  %16s  %16s  %10s  %10s\n", "", "FLOPs", "bytes read",
                      "set/FLOPs", "set/bytes");
    fprintf(ctx->out, "  %-12s  %16s  %16s\n", "this set", f1, b1);
    fprintf(ctx->out, "  %-12s  %16s  %16s  %9.3fx  %9.3fx\n", "LayerNorm", f2, b2,
            tot_flops / (ln.flops * layers * tokens), tot_bytes / (ln.read_bytes * layers * tokens));
    fprintf(ctx->out, "  %-12s  %16s  %16s  %9.3fx  %9.3fx\n", "DyT", f3, b3,
            tot_flops / (dyt.flops * layers * tokens),
            tot_bytes / (dyt.read_bytes * layers * tokens));
  }
  free(cost);
  for (int i = 0; i < n; i++) nl_prog_free(&simple[i]);
  free(simple);
  return 0;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long d, L;
  if (nl_arg_int_range(a, "dim", 1, 1L << 20, &d, err) != 0) return -1;
  if (nl_arg_int_range(a, "tokens", 1, 1L << 24, &L, err) != 0) return -1;
  nl_exprset set;
  nl_exprset_init(&set);
  if (load(a, &set, err) != 0) {
    nl_exprset_free(&set);
    return -1;
  }
  if (set.n == 0) {
    nl_exprset_free(&set);
    return nl_fail(err, NL_EINPUT, "%s: no expressions in the set", a->pos[0]);
  }
  int rc = nl_cost_report(ctx, &set, d, L, nl_arg_flag(a, "json"));
  nl_exprset_free(&set);
  return rc;
}

const nl_cmd nl_cmd_cost = {
    .name = "cost",
    .args = "FILE.exprs | EXPR...",
    .summary = "FLOPs and bytes per layer of an expression set vs LayerNorm and DyT",
    .help = "Counts, for each layer's expression once simplified (constant subtrees folded,\n"
            "cancellations such as x - x removed, like terms collected; the table shows the\n"
            "simplified form, the JSON both), the FLOPs per\n"
            "element (+ - * / 1, tanh 23, sigmoid 22, exp 19, x^n n-1, neg, abs, clip 0),\n"
            "the FLOPs per token (cost*d) and the bytes read per token (4d, one FP32 pass),\n"
            "then totals over all layers for L tokens beside LayerNorm (5d+2 FLOPs, 8d bytes\n"
            "per token) and DyT (24d FLOPs, 4d bytes). The argument is an expression-set\n"
            "file (NAME = EXPR per line) or expressions, named expr1, expr2, ...",
    .opts = opts,
    .min_pos = 1,
    .max_pos = -1,
    .run = run,
};
