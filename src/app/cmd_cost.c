/* `normlab cost`: FLOPs and bytes read per layer of an expression set,
 * beside LayerNorm and DyT (the cost model of Appendix F). */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/cmd.h"
#include "app/bench_norm.h"
#include "app/cost_local.h"
#include "app/wb_local.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/threads.h"
#include "expr/expr.h"
#include "expr/local.h"

static const nl_opt opts[] = {
    {"set", NL_OPT_STR, "FILE", NULL, "expression set (NAME = EXPR per line)", NULL, NL_OPTF_PATH},
    {"dim", NL_OPT_INT, "D", "768", "token width d (768: ViT-B; at the prompt the model's)", NULL,
     0},
    {"tokens", NL_OPT_INT, "L", "197",
     "tokens per image (197: ViT-B/16 at 224x224; at the prompt the model's)", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {"model", NL_OPT_STR, "FILE", NULL, "per-block table of this model (--set: replace's SPEC)",
     NULL, NL_OPTF_PATH},
    {"batch", NL_OPT_INT, "B", "1", "batch size: weights' bytes per image are theirs / B", NULL,
     0},
    {"per-block", NL_OPT_FLAG, NULL, NULL, "with --model: every block's rows", NULL, 0},
    {"measure", NL_OPT_FLAG, NULL, NULL, "add measured time (per layer, or per part with --model)",
     NULL, 0},
    {"seconds", NL_OPT_NUM, "S", "2", "measuring time for --measure", NULL, 0},
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
  const char *file = nl_arg_str(a, "set");
  if (file && a->npos > 0)
    return nl_fail(err, NL_EINPUT, "give --set FILE or expressions, not both");
  if (file) return nl_exprset_load(file, set, err);
  if (a->npos == 0) return nl_fail(err, NL_EINPUT, "expects --set FILE.exprs or expressions");
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

/* The table for a set: FLOPs and bytes per layer at width d for L tokens,
 * beside LayerNorm and DyT, as text or one JSON object; dfrom and lfrom
 * say where d and L came from. */
static int report(nl_ctx *ctx, const nl_exprset *setp, long d, const char *dfrom, long L,
                  const char *lfrom, int as_json, const nl_args *a) {
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
  /* --measure: seconds per call of each slot over L * batch rows, then
   * LayerNorm's and DyT's (sec[n], sec[n + 1]) */
  double *sec = NULL, rows = 0;
  if (nl_arg_flag(a, "measure")) {
    long batch = nl_arg_int(a, "batch");
    double seconds = nl_arg_num(a, "seconds");
    rows = (double)L * (double)batch;
    sec = nl_xcalloc((size_t)n + 2, sizeof(double));
    nl_cost_measure_set(ctx, simple, n, (int)d, (long)rows, seconds, sec);
  }
  /* measured figures per token: ns, GB/s of the bytes moved (formula),
   * GFLOP/s */
#define NS(i) (sec[i] / rows * 1e9)

  if (as_json) {
    json_t *root = json_object();
    json_object_set_new(root, "dim", json_integer(d));
    json_object_set_new(root, "dim_from", json_string(dfrom));
    json_object_set_new(root, "tokens", json_integer(L));
    json_object_set_new(root, "tokens_from", json_string(lfrom));
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
      char *e = nl_print(&set.e[i].prog, NL_PRINT_EXACT);
      char *se = nl_print(&simple[i], NL_PRINT_EXACT);
      nl_token_cost t = nl_cost_expr_token(cost[i], (int)d);
      json_t *lj = json_pack("{s:s,s:s,s:s,s:i,s:I,s:I}", "name", set.e[i].name, "expr", e,
                             "simplified", se, "flops_per_element", cost[i], "flops_per_token",
                             (json_int_t)t.flops, "read_bytes_per_token", (json_int_t)t.read_bytes);
      if (sec) {
        json_object_set_new(lj, "measured_ns_per_token", json_real(NS(i)));
        json_object_set_new(lj, "moved_bytes_per_token",
                            json_real(nl_norm_bytes_per_token(NL_NORM_EXPR, (int)d)));
      }
      json_array_append_new(arr, lj);
      free(e);
      free(se);
    }
    json_object_set_new(root, "layers", arr);
    json_object_set_new(root, "total",
                        json_pack("{s:I,s:I}", "flops", (json_int_t)tot_flops, "read_bytes",
                                  (json_int_t)tot_bytes));
    json_object_set_new(root, "layernorm", ref_json(ln, layers, tokens));
    json_object_set_new(root, "dyt", ref_json(dyt, layers, tokens));
    if (sec) {
      double set_s = 0;
      for (int i = 0; i < n; i++) set_s += sec[i];
      json_object_set_new(
          root, "measured",
          json_pack("{s:I,s:f,s:f,s:f,s:f,s:f}", "rows", (json_int_t)rows, "layernorm_ns_per_token",
                    NS(n), "dyt_ns_per_token", NS(n + 1), "set_seconds_per_image",
                    set_s / rows * (double)L, "layernorm_seconds_per_image",
                    sec[n] * layers / rows * (double)L, "layernorm_over_set",
                    sec[n] * layers / set_s));
    }
    nl_json_print(ctx->out, root);
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
            "cost per layer (FP32; clip counted as 0 FLOPs; expressions simplified)\n"
            "d = %ld (%s), tokens = %ld (%s)\n\n",
            d, dfrom, L, lfrom);
    if (sec)
      fprintf(ctx->out,
              "measured: each slot's forward over %.0f rows (%ld tokens x batch %ld) on %d "
              "thread%s;\nGB/s of the bytes moved per token by the formula (read + write: %.0f, "
              "LayerNorm %.0f)\n\n",
              rows, L, nl_arg_int(a, "batch"), nl_threads_count(ctx->threads),
              nl_threads_count(ctx->threads) == 1 ? "" : "s",
              nl_norm_bytes_per_token(NL_NORM_EXPR, (int)d),
              nl_norm_bytes_per_token(NL_NORM_LAYERNORM, (int)d));
    fprintf(ctx->out, "  %-*s  %-*s  %10s  %12s  %12s", wn, "layer", we, "expression",
            "FLOPs/elem", "FLOPs/token", "bytes/token");
    if (sec) fprintf(ctx->out, "  %10s  %7s  %7s", "ns/token", "GB/s", "GFLOP/s");
    fputc('\n', ctx->out);
    for (int i = 0; i < n; i++) {
      nl_token_cost t = nl_cost_expr_token(cost[i], (int)d);
      char f[40], b[40];
      group(f, sizeof f, t.flops);
      group(b, sizeof b, t.read_bytes);
      fprintf(ctx->out, "  %-*s  %-*s  %10d  %12s  %12s", wn, set.e[i].name, we, ex[i], cost[i],
              f, b);
      if (sec)
        fprintf(ctx->out, "  %10.1f  %7.2f  %7.2f", NS(i),
                nl_norm_bytes_per_token(NL_NORM_EXPR, (int)d) / NS(i), t.flops / NS(i));
      fputc('\n', ctx->out);
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
    if (sec) {
      double set_s = 0;
      for (int i = 0; i < n; i++) set_s += sec[i];
      fprintf(ctx->out, "\nmeasured, per image (%ld tokens), all %d layers:\n\n", L, n);
      fprintf(ctx->out, "  %-12s  %12s  %10s  %12s\n", "", "us/image", "ns/token", "LN/this");
      fprintf(ctx->out, "  %-12s  %12.2f  %10.1f  %11.2fx\n", "this set", set_s / rows * L * 1e6,
              set_s / rows * 1e9 / n, sec[n] * layers / set_s);
      fprintf(ctx->out, "  %-12s  %12.2f  %10.1f  %11.2fx\n", "LayerNorm",
              sec[n] * layers / rows * L * 1e6, NS(n), 1.0);
      fprintf(ctx->out, "  %-12s  %12.2f  %10.1f  %11.2fx\n", "DyT",
              sec[n + 1] * layers / rows * L * 1e6, NS(n + 1), sec[n] / sec[n + 1]);
    }
  }
#undef NS
  free(sec);
  free(cost);
  for (int i = 0; i < n; i++) nl_prog_free(&simple[i]);
  free(simple);
  return 0;
}

/* An option's value: given, else the model's (when known), else the
 * default; *from says which. */
static int figure(const nl_args *a, const char *name, long model, long hi, long *v,
                  const char **from, nl_error *err) {
  if (!nl_arg_given(a, name) && model > 0) {
    *v = model;
    *from = "model";
    return 0;
  }
  *from = nl_arg_given(a, name) ? (strcmp(name, "dim") == 0 ? "--dim" : "--tokens")
                                : "default: ViT-B/16";
  return nl_arg_int_range(a, name, 1, hi, v, err);
}

int nl_cost_command(nl_ctx *ctx, const nl_args *a, const nl_exprset *sset, long model_d,
                    long model_tokens, nl_error *err) {
  if (nl_arg_given(a, "model")) return nl_cost_model_command(ctx, a, err);
  if (nl_arg_flag(a, "per-block"))
    return nl_fail(err, NL_EINPUT, "--per-block needs --model (the per-block table of a model)");
  long d, L, batch;
  const char *dfrom, *lfrom;
  if (nl_arg_int_range(a, "batch", 1, 4096, &batch, err)) return -1;
  if (nl_arg_flag(a, "measure")) {
    double seconds = nl_arg_num(a, "seconds");
    if (!(seconds > 0 && seconds <= 3600))
      return nl_fail(err, NL_EINPUT, "--seconds must be in (0, 3600]");
  }
  if (figure(a, "dim", model_d, 1L << 20, &d, &dfrom, err) != 0 ||
      figure(a, "tokens", model_tokens, 1L << 24, &L, &lfrom, err) != 0)
    return -1;
  int as_json = nl_arg_flag(a, "json");
  if (nl_arg_flag(a, "measure") && (double)L * batch * d > (1 << 27))
    return nl_fail(err, NL_EINPUT,
                   "--measure over %ld tokens x batch %ld x d %ld floats is too large (at most "
                   "2^27 values)",
                   L, batch, d);
  if (a->npos == 0 && !nl_arg_str(a, "set") && sset)
    return report(ctx, sset, d, dfrom, L, lfrom, as_json, a);
  nl_exprset set;
  nl_exprset_init(&set);
  if (load(a, &set, err) != 0) {
    nl_exprset_free(&set);
    return -1;
  }
  if (set.n == 0) {
    nl_exprset_free(&set);
    return nl_fail(err, NL_EINPUT, "%s: no expressions in the set",
                   nl_arg_str(a, "set") ? nl_arg_str(a, "set") : a->npos ? a->pos[0] : "cost");
  }
  int rc = report(ctx, &set, d, dfrom, L, lfrom, as_json, a);
  nl_exprset_free(&set);
  return rc;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  return nl_cost_command(ctx, a, NULL, 0, 0, err);
}

const nl_cmd nl_cmd_cost = {
    .name = "cost",
    .args = "[FILE.exprs | EXPR...]",
    .summary = "FLOPs and bytes per layer of an expression set vs LayerNorm and DyT",
    .help = "Counts, for each layer's expression once simplified (constant subtrees folded,\n"
            "cancellations such as x - x removed, like terms collected; the table shows the\n"
            "simplified form, the JSON both), the FLOPs per\n"
            "element (+ - * / 1, tanh 23, sigmoid 22, exp 19, x^n n-1, neg, abs, clip 0),\n"
            "the FLOPs per token (cost*d) and the bytes read per token (4d, one FP32 pass),\n"
            "then totals over all layers for L tokens beside LayerNorm (5d+2 FLOPs, 8d bytes\n"
            "per token) and DyT (24d FLOPs, 4d bytes). The set is --set FILE (NAME = EXPR\n"
            "per line; a lone FILE.exprs argument is read the same way) or expressions given\n"
            "as arguments, named expr1, expr2, ...\n"
            "--measure adds each slot's measured ns per token (and LayerNorm's, DyT's).\n"
            "--model M: the model's per-block table per image at --batch B (patch_embed;\n"
            "norm1, qkv, attention, proj, norm2, fc1, gelu, fc2, residual per block; norm,\n"
            "head): FLOPs, parameters, bytes read (weights at their stored width / B, plus\n"
            "input activations), the norm slots following --set (replace's SPEC: FILE.exprs,\n"
            "dyt, ln); --per-block for every block's rows, --measure for time per part.\n"
            "A model carrying an attention-reuse plan (reuse --output) also gets the FLOPs\n"
            "each reusing block saves and the total with the plan.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = -1,
    .run = run,
};
