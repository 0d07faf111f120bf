/* Session commands over expressions: set, edit, simplify, and
 * the details shown by 'show' and the dashboard. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/session.h"
#include "base/mem.h"
#include "expr/expr.h"
#include "app/wb_local.h"

static const nl_opt no_opts[] = {{0}};

static int cost_of(const nl_prog *p) {
  nl_cost_opts co = {.clip_cost = 0};
  return nl_cost(p, &co);
}

/* ---- tree drawing ---- */

static void node_label(const nl_prog *p, int i, char *buf, size_t n) {
  const nl_node *nd = &p->nodes[i];
  if (nd->op == NL_OP_CONST)
    snprintf(buf, n, "%.6g", (double)nd->val);
  else if (nd->op == NL_OP_X)
    snprintf(buf, n, "x");
  else if (nd->op == NL_OP_POW)
    snprintf(buf, n, "^%d", (int)nd->ival);
  else
    snprintf(buf, n, "%s", nl_ops[nd->op].name);
}

/* Children of node i in postfix order: the last child ends at i-1, each
 * earlier one just before the next. */
static int children(const nl_prog *p, int i, int *ch) {
  int k = p->nodes[i].arity;
  int end = i - 1;
  for (int c = k - 1; c >= 0; c--) {
    ch[c] = end;
    end -= p->nodes[end].size;
  }
  return k;
}

/* One node per line under its parent, each with its path ("[0.1.0]", as
 * fold and impact address nodes). */
static void draw(FILE *out, const nl_prog *p, int i, char *prefix, size_t plen, int last,
                 int root, char *path, size_t pathlen) {
  char label[64];
  node_label(p, i, label, sizeof label);
  if (root)
    fprintf(out, "%s  [%s]\n", label, path);
  else
    fprintf(out, "%s%s%s  [%s]\n", prefix, last ? "`-- " : "|-- ", label, path);
  int ch[3];
  int k = children(p, i, ch);
  size_t add = root ? 0 : 4;
  if (plen + add + 1 > 256 || pathlen + 3 > 256) return; /* deeper than any sensible drawing */
  if (!root) memcpy(prefix + plen, last ? "    " : "|   ", 4);
  prefix[plen + add] = '\0';
  for (int c = 0; c < k; c++) {
    path[pathlen] = '.';
    path[pathlen + 1] = (char)('0' + c);
    path[pathlen + 2] = '\0';
    draw(out, p, ch[c], prefix, plen + add, c == k - 1, 0, path, pathlen + 2);
  }
  path[pathlen] = '\0';
  prefix[plen] = '\0';
}

static char *tree_text(const nl_prog *p) {
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  if (!mem) return NULL;
  char prefix[300] = "", path[300] = "0";
  if (p->len > 0) draw(mem, p, p->len - 1, prefix, 0, 1, 1, path, 1);
  fclose(mem);
  return buf;
}

void nl_wb_show_details(nl_ctx *ctx, const nl_prog *p) {
  char *t = tree_text(p);
  if (t) fputs(t, ctx->out);
  free(t);
  nl_session *s = ctx->session;
  int c = cost_of(p);
  nl_cost_opts co = {.clip_cost = 0};
  int w = nl_cost_written(p, &co);
  fprintf(ctx->out, "cost: %d FLOPs per element", c);
  if (w != c) fprintf(ctx->out, " (simplified; %d as written)", w);
  fprintf(ctx->out, ", %d nodes, depth %d", p->len, nl_prog_depth(p));
  if (s && s->model_width > 0) {
    int d = s->model_width;
    nl_token_cost e = nl_cost_expr_token(c, d), ln = nl_cost_layernorm_token(d),
                  dyt = nl_cost_dyt_token(d);
    fprintf(ctx->out,
            "\nper token (d=%d): %.0f FLOPs, %.0f bytes read; LayerNorm %.0f FLOPs, %.0f bytes;"
            " DyT %.0f FLOPs, %.0f bytes",
            d, e.flops, e.read_bytes, ln.flops, ln.read_bytes, dyt.flops, dyt.read_bytes);
  }
  fputc('\n', ctx->out);
}

char *nl_wb_expr_tree(const nl_prog *p) { return tree_text(p); }

int nl_wb_expr_cost(const nl_prog *p) { return cost_of(p); }

/* ---- set / edit ---- */

static int check_layer(nl_session *s, const char *layer, nl_error *err) {
  for (const char *p = layer; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '.' || *p == '-'))
      return nl_fail(err, NL_EINPUT, "bad layer name '%s'", layer);
  if (!*layer) return nl_fail(err, NL_EINPUT, "empty layer name");
  if (s->nmaps_layers || s->nmodel_layers) {
    char **names = nl_session_layers(s);
    int known = 0;
    for (int i = 0; names[i] && !known; i++) known = strcmp(names[i], layer) == 0;
    nl_session_free_names(names);
    if (!known) return nl_fail(err, NL_EINPUT, "no layer '%s' in the loaded %s (see 'layers')",
                               layer, s->nmaps_layers ? "mappings" : "model");
  }
  return 0;
}

static int apply(nl_ctx *ctx, const char *layer, const char *text, nl_error *err) {
  if (nl_session_set_expr(ctx->session, layer, text, NULL, err) != 0) return -1;
  int c = cost_of(&nl_session_find(ctx->session, layer)->prog);
  fprintf(ctx->out, "%s = %s  (%d FLOPs/elem)\n", layer, text, c);
  return 0;
}

static int run_set(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  /* set LAYER = EXPR, also set LAYER=EXPR and set LAYER =EXPR */
  char *joined = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&joined, &len);
  if (!mem) return nl_fail(err, NL_ENOMEM, "out of memory");
  for (int i = 0; i < a->npos; i++) fprintf(mem, "%s%s", i ? " " : "", a->pos[i]);
  fclose(mem);
  char *eq = strchr(joined, '=');
  if (!eq) {
    free(joined);
    return nl_fail(err, NL_EINPUT, "expected 'set LAYER = EXPR'");
  }
  char *l = joined, *le = eq;
  while (*l == ' ') l++;
  while (le > l && le[-1] == ' ') le--;
  char *layer = nl_xstrndup(l, (size_t)(le - l));
  char *text = eq + 1;
  while (*text == ' ') text++;
  int rc = check_layer(ctx->session, layer, err);
  if (rc == 0 && !*text) rc = nl_fail(err, NL_EINPUT, "missing expression after '='");
  if (rc == 0) rc = apply(ctx, layer, text, err);
  free(layer);
  free(joined);
  return rc;
}

static const nl_cmd cmd_set = {
    .name = "set",
    .args = "LAYER = EXPR",
    .summary = "set a layer's expression (undo with 'undo')",
    .help = "The expression is checked first; an error shows where it fails.\n"
            "Example: set blocks.0.norm1 = tanh(1.5 * x)",
    .opts = no_opts,
    .min_pos = 1,
    .max_pos = -1,
    .run = run_set,
};

static int run_edit(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  const char *layer = a->pos[0];
  if (!nl_wb_interactive() || !nl_wb_fe()->read_prefilled)
    return nl_fail(err, NL_EINPUT, "edit needs a terminal; use 'set %s = EXPR'", layer);
  if (check_layer(s, layer, err) != 0) return -1;
  const nl_exprset_entry *e = nl_session_find(s, layer);
  char *text = nl_xstrdup(e ? e->text : "");
  size_t n = strlen(layer) + 8;
  char *prompt = nl_xmalloc(n);
  snprintf(prompt, n, "%s = ", layer);
  int rc = 0;
  for (;;) {
    char *line = nl_wb_fe()->read_prefilled(prompt, text);
    if (!line) {
      fprintf(ctx->out, "%s unchanged\n", layer);
      break;
    }
    free(text);
    text = line;
    if (e && strcmp(text, e->text) == 0) {
      fprintf(ctx->out, "%s unchanged\n", layer);
      break;
    }
    nl_error perr;
    nl_error_clear(&perr);
    if (apply(ctx, layer, text, &perr) == 0) break;
    /* show the error and edit again, keeping what was typed */
    fprintf(ctx->err, "%s\n", perr.msg);
  }
  free(text);
  free(prompt);
  return rc;
}

static const nl_cmd cmd_edit = {
    .name = "edit",
    .args = "LAYER",
    .summary = "edit a layer's expression on a pre-filled line",
    .help = "Enter accepts (an invalid expression is shown with its error and stays\n"
            "on the line), Ctrl-D or Ctrl-C leaves it unchanged.",
    .opts = no_opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run_edit,
};

/* ---- simplify ---- */

/* Simplify one entry of `set` in place; prints the change. */
static void simplify_entry(nl_ctx *ctx, nl_exprset *set, int i) {
  const nl_exprset_entry *e = &set->e[i];
  nl_prog p;
  nl_prog_init(&p);
  nl_prog_copy(&p, &e->prog);
  nl_cost_opts co = {.clip_cost = 0};
  int before = nl_cost_written(&p, &co);
  nl_simplify(&p);
  int after = cost_of(&p);
  char *text = nl_print(&p, NL_PRINT_EXACT);
  if (strcmp(text, e->text) == 0) {
    fprintf(ctx->out, "%s = %s  (already simple, %d FLOPs/elem)\n", e->name, text, after);
  } else {
    fprintf(ctx->out, "%s = %s  (%d -> %d FLOPs/elem)\n", e->name, text, before, after);
    nl_exprset_set(set, e->name, &p, e->comment);
  }
  free(text);
  nl_prog_free(&p);
}

static int run_simplify(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  if (s->set.n == 0) return nl_fail(err, NL_EINPUT, "no expressions: 'load exprs FILE' or 'set'");
  for (int i = 0; i < a->npos; i++)
    if (!nl_session_find(s, a->pos[i]))
      return nl_fail(err, NL_EINPUT, "layer '%s' has no expression", a->pos[i]);
  /* all changes form one undo step */
  nl_exprset next;
  nl_exprset_copy(&next, &s->set);
  int changed = 0;
  for (int i = 0; i < next.n; i++) {
    int wanted = a->npos == 0;
    for (int k = 0; k < a->npos && !wanted; k++) wanted = strcmp(a->pos[k], next.e[i].name) == 0;
    if (!wanted) continue;
    char *old = nl_xstrdup(next.e[i].text);
    simplify_entry(ctx, &next, i);
    changed += strcmp(old, next.e[i].text) != 0;
    free(old);
  }
  if (changed)
    nl_session_replace_set(s, &next);
  else
    nl_exprset_free(&next);
  return 0;
}

static const nl_cmd cmd_simplify = {
    .name = "simplify",
    .args = "[LAYER...]",
    .summary = "simplify expressions (all layers by default)",
    .help = "Folds constants and applies identities; the function's values do not change.",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = -1,
    .run = run_simplify,
};

const nl_cmd *const nl_wb_expr_commands[] = {
    &cmd_set, &cmd_edit, &cmd_simplify, NULL,
};
