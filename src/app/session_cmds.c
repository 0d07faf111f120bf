/* Commands that exist only at the prompt: they act on the session. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/wb_local.h"
#include "base/mem.h"
#include "session/job.h"
#include "session/session.h"
#include "session/settings.h"

static const nl_opt no_opts[] = {{0}};

/* ---- help ---- */

static int run_help(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (a->npos == 1) {
    const nl_cmd *c = nl_wb_find(a->pos[0]);
    const char *near = c ? NULL : nl_cmd_suggest(a->pos[0], 1);
    if (!c && near)
      return nl_fail(err, NL_EINPUT, "unknown command '%s'; did you mean '%s'?", a->pos[0], near);
    if (!c) return nl_fail(err, NL_EINPUT, "unknown command '%s' (type 'help')", a->pos[0]);
    int repl_only = nl_cmd_find(a->pos[0]) == NULL;
    nl_wb_help_command(ctx->out, c, repl_only);
    return 0;
  }
  fprintf(ctx->out, "Commands (also 'normlab CMD ...' from the shell):\n");
  for (int i = 0; nl_commands[i]; i++)
    fprintf(ctx->out, "  %-10s %s\n", nl_commands[i]->name, nl_commands[i]->summary);
  fprintf(ctx->out, "\nSession commands:\n");
  const nl_cmd *c;
  for (int i = 0; (c = nl_wb_command(i)) != NULL; i++)
    if (strcmp(c->name, "help") != 0 && !nl_cmd_find(c->name)) /* not the shell's again */
      fprintf(ctx->out, "  %-10s %s\n", c->name, c->summary);
  fprintf(ctx->out,
          "\n'help CMD' or 'CMD --help' shows a command's options. After 'load model FILE' or\n"
          "'load maps FILE', commands take --model and --maps from the session; eval,\n"
          "replace and train apply the session's expression set (--set none: as loaded).\n"
          "Tab completes commands, options, choices, layer names, settings and file\n"
          "names (the kind a word takes first: model files after 'load model').\n"
          "Edits of the expression set are written only by 'save': 'quit', Ctrl-D and\n"
          "'open' ask first at a terminal and refuse in a script ('quit!', 'open!' discard\n"
          "them); the end of a script leaves as it is. After 'evolve', the session's\n"
          "directory records its fronts at once.\n");
  return 0;
}

static const nl_cmd cmd_help = {
    .name = "help",
    .args = "[COMMAND]",
    .summary = "list commands, or show one command's options",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 1,
    .run = run_help,
};

/* ---- load / unload ---- */

static int run_load(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  if (nl_session_load(s, a->pos[0], a->pos[1], err) != 0) return -1;
  if (strcmp(a->pos[0], "model") == 0)
    fprintf(ctx->out, "model %s: %d norm layers\n", s->model_path, s->nmodel_layers);
  else if (strcmp(a->pos[0], "maps") == 0)
    fprintf(ctx->out, "maps %s: %d layers\n", s->maps_path, s->nmaps_layers);
  else if (strcmp(a->pos[0], "exprs") == 0)
    fprintf(ctx->out, "exprs %s: %d expressions\n", s->exprs_path, s->set.n);
  else
    fprintf(ctx->out, "fronts %s\n", s->fronts_dir);
  return 0;
}

static const nl_cmd cmd_load = {
    .name = "load",
    .args = "model|maps|exprs|fronts FILE",
    .summary = "load a model, mappings, an expression set or a fronts directory",
    .help = "Loaded paths fill the --model, --maps, --set ('load exprs') and --fronts\n"
            "options of later commands, so 'load model M' then 'eval' runs 'eval --model M'.",
    .opts = no_opts,
    .min_pos = 2,
    .max_pos = 2,
    .run = run_load,
};

static int run_unload(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  return nl_session_unload(ctx->session, a->npos ? a->pos[0] : "all", err);
}

static const nl_cmd cmd_unload = {
    .name = "unload",
    .args = "[model|maps|exprs|fronts|all]",
    .summary = "forget a loaded artifact (all of them by default)",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 1,
    .run = run_unload,
};

/* ---- status ---- */

static int run_status(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)a;
  (void)err;
  nl_session *s = ctx->session;
  FILE *o = ctx->out;
  fprintf(o, "session  %s\n", s->dir ? s->dir : "(not saved)");
  fprintf(o, "model    %s", s->model_path ? s->model_path : "-");
  if (s->model_path) fprintf(o, "  (%d norm layers)", s->nmodel_layers);
  fprintf(o, "\nmaps     %s", s->maps_path ? s->maps_path : "-");
  if (s->maps_path) fprintf(o, "  (%d layers)", s->nmaps_layers);
  fprintf(o, "\nexprs    %s", s->exprs_path ? s->exprs_path : (s->set.n ? "(unsaved)" : "-"));
  if (s->set.n || s->exprs_path)
    fprintf(o, "  (%d expressions%s)", s->set.n, s->set_modified ? ", modified" : "");
  fprintf(o, "\nfronts   %s", s->fronts_dir ? s->fronts_dir : "-");
  if (s->fronts_dir) fprintf(o, "  (%d layers)", s->nfronts);
  fputc('\n', o);
  for (int i = 0; i < s->nsettings; i++)
    fprintf(o, "setting  %s = %s\n", s->settings[i].key, s->settings[i].value);
  if (nl_session_unsaved(s))
    fprintf(o, "unsaved  the expression set's edits ('save%s' writes them)\n", s->dir ? "" : " DIR");
  char job[600];
  if (nl_job_line(job, sizeof job)) fprintf(o, "job      %s\n", job);
  return 0;
}

static const nl_cmd cmd_status = {
    .name = "status",
    .summary = "show what the session holds",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_status,
};

/* ---- save / open ---- */

static int run_save(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  const char *dir = a->npos ? a->pos[0] : s->dir;
  if (!dir) return nl_fail(err, NL_EINPUT, "no session directory yet: 'save DIR'");
  char *d = nl_xstrdup(dir);
  int rc = nl_session_save(s, d, err);
  free(d);
  if (rc == 0) {
    char *f = nl_session_path(s, NL_SESSION_FILE);
    fprintf(ctx->out, "saved %s\n", f);
    free(f);
  }
  return rc;
}

static const nl_cmd cmd_save = {
    .name = "save",
    .args = "[DIR]",
    .summary = "save the session (session.json and its artifacts) to a directory",
    .help = "Writes DIR/session.json, the current expression set as DIR/set.exprs, and puts\n"
            "the model, mappings and fronts beside it (hard links where possible, else\n"
            "copies). Every file is written atomically; session.json comes last.",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 1,
    .run = run_save,
};

/* ---- unsaved changes: quit and open ---- */

/* The answer to a question at the prompt: 'y', 'n' or 'c' (cancel: also
 * Ctrl-C, end of input and an empty line). */
static int ask(const char *question) {
  const nl_wb_frontend *fe = nl_wb_fe();
  for (;;) {
    char *line = fe->read_prefilled ? fe->read_prefilled(question, "") : NULL;
    if (!line) return 'c';
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    size_t n = strlen(p);
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) p[--n] = '\0';
    int a = strcmp(p, "y") == 0 || strcmp(p, "yes") == 0  ? 'y'
            : strcmp(p, "n") == 0 || strcmp(p, "no") == 0 ? 'n'
            : !*p || strcmp(p, "c") == 0 || strcmp(p, "cancel") == 0 ? 'c'
                                                                       : 0;
    free(line);
    if (a) return a;
  }
}

/* Before 'quit' or 'open' drops the session: its unsaved edits are never
 * lost without a yes. Returns 0 to go on (nothing unsaved, saved, or
 * discarded), 1 when the person cancelled, -1 on an error (a script:
 * refused; a failed save). */
static int settle_unsaved(nl_ctx *ctx, const char *cmd, const char *args, int force,
                          nl_error *err) {
  nl_session *s = ctx->session;
  if (force || !nl_session_unsaved(s)) return 0;
  if (!nl_wb_interactive())
    return nl_fail(err, NL_EINPUT,
                   "the expression set has unsaved changes (%d expression%s): 'save%s' first, or "
                   "'%s!%s' to discard them",
                   s->set.n, s->set.n == 1 ? "" : "s", s->dir ? "" : " DIR", cmd, args);
  fflush(ctx->out);
  char q[4400];
  if (s->dir)
    snprintf(q, sizeof q, "The expression set has unsaved changes. Save them to %s first? "
                          "[y]es, [n]o: discard, [c]ancel: ",
             s->dir);
  else
    snprintf(q, sizeof q, "The expression set has unsaved changes. Save the session first? "
                          "[y]es, [n]o: discard, [c]ancel: ");
  int a = ask(q);
  if (a == 'n') return 0;
  if (a == 'c') {
    fprintf(ctx->err, "%s cancelled: the session is as it was\n", cmd);
    return 1;
  }
  char *dir = s->dir ? nl_xstrdup(s->dir) : nl_wb_fe()->read_prefilled("Save the session in directory: ", "");
  if (dir) {
    char *p = dir;
    while (*p == ' ') p++;
    if (!*p) {
      free(dir);
      dir = NULL;
    }
  }
  if (!dir) {
    fprintf(ctx->err, "%s cancelled: the session is as it was\n", cmd);
    return 1;
  }
  int rc = nl_session_save(s, dir, err);
  free(dir);
  if (rc != 0) return nl_error_prefix(err, "save");
  char *f = nl_session_path(s, NL_SESSION_FILE);
  fprintf(ctx->out, "saved %s\n", f);
  free(f);
  return 0;
}

static int open_session(nl_ctx *ctx, const nl_args *a, int force, nl_error *err) {
  nl_session *s = ctx->session;
  char args[4200];
  snprintf(args, sizeof args, " %s", a->pos[0]);
  int rc = settle_unsaved(ctx, "open", args, force, err);
  if (rc != 0) return rc < 0 ? -1 : 0;
  if (nl_session_open(s, a->pos[0], err) != 0) return -1;
  fprintf(ctx->out, "opened %s: ", s->dir);
  int any = 0;
  if (s->model_path) fprintf(ctx->out, "%smodel", any++ ? ", " : "");
  if (s->maps_path) fprintf(ctx->out, "%smaps", any++ ? ", " : "");
  if (s->set.n) fprintf(ctx->out, "%s%d expressions", any++ ? ", " : "", s->set.n);
  if (s->fronts_dir) fprintf(ctx->out, "%sfronts", any++ ? ", " : "");
  fprintf(ctx->out, "%s\n", any ? "" : "empty session");
  if (s->open_note) {
    fprintf(ctx->err, "open: left out of %s: %s\n", s->dir, s->open_note);
    free(s->open_note);
    s->open_note = NULL;
  }
  return 0;
}

static int run_open(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  return open_session(ctx, a, 0, err);
}

static int run_open_force(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  return open_session(ctx, a, 1, err);
}

static const nl_cmd cmd_open = {
    .name = "open",
    .args = "DIR",
    .summary = "open a session saved with 'save'",
    .help = "Unsaved edits of the expression set are not dropped silently: at a terminal\n"
            "'open' asks whether to save them first (yes, no: discard, cancel); in a script\n"
            "it refuses (exit 2). 'open! DIR' discards them.",
    .opts = no_opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run_open,
};

static const nl_cmd cmd_open_force = {
    .name = "open!",
    .args = "DIR",
    .summary = "open a session, discarding unsaved edits of the expression set",
    .opts = no_opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run_open_force,
};

/* ---- settings ---- */

/* 'setting' without arguments: every setting, its value and where that
 * comes from. */
static void list_settings(nl_ctx *ctx) {
  nl_session *s = ctx->session;
  fprintf(ctx->out, "%-8s %-8s %-9s %s\n", "setting", "value", "from", "what it does");
  const nl_setting_def *d;
  for (int i = 0; (d = nl_setting_at(i)) != NULL; i++) {
    const char *from, *raw;
    const char *v = nl_session_setting_value(s, d->name, &from);
    char range[96];
    if (d->type == NL_SETTING_INT)
      snprintf(range, sizeof range, "%ld..%ld", d->lo, d->hi);
    else
      snprintf(range, sizeof range, "%s", d->choices);
    fprintf(ctx->out, "%-8s %-8s %-9s %s [%s]\n", d->name, v ? v : "-", v ? from : "unset",
            d->help, range);
    if (!nl_session_get_setting(s, d->name) && !nl_setting_env_value(d, &raw) && raw)
      fprintf(ctx->out, "%-8s %-8s %-9s $%s=%s is not a value it takes\n", "", "", "", d->env,
              raw);
  }
}

static int run_setting(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  if (nl_arg_flag(a, "unset")) {
    if (a->npos != 1) return nl_fail(err, NL_EINPUT, "--unset takes one NAME");
    return nl_session_setting(s, a->pos[0], NULL, err);
  }
  if (a->npos == 0) {
    list_settings(ctx);
    return 0;
  }
  const char *eq = strchr(a->pos[0], '=');
  if (a->npos == 1 && eq) { /* NAME=VALUE */
    char *name = nl_xstrndup(a->pos[0], (size_t)(eq - a->pos[0]));
    int rc = nl_session_setting(s, name, eq + 1, err);
    free(name);
    return rc;
  }
  if (a->npos == 1) {
    if (!nl_setting_find(a->pos[0])) return nl_setting_unknown(a->pos[0], err);
    const char *v = nl_session_setting_value(s, a->pos[0], NULL);
    fprintf(ctx->out, "%s\n", v ? v : "(unset)");
    return 0;
  }
  return nl_session_setting(s, a->pos[0], a->pos[1], err);
}

static const nl_opt setting_opts[] = {
    {"unset", NL_OPT_FLAG, NULL, NULL, "remove the setting", NULL, 0},
    {0},
};

static const nl_cmd cmd_setting = {
    .name = "setting",
    .args = "[SETTING [VALUE]]",
    .summary = "list, show or change session settings",
    .help = "Without arguments: every setting with its value, where the value comes from\n"
            "(session, an environment variable, default) and what it accepts. A setting\n"
            "fills an option of later commands when it is not given: seed and threads\n"
            "the --seed and --threads of evolve and train, term the --term of plot\n"
            "($GNUTERM when not set here); timer on prints each command's wall time.\n"
            "'setting NAME VALUE' (or NAME=VALUE) checks the value; an unknown name or a\n"
            "bad value is an error (exit 2). Settings are saved with the session.",
    .opts = setting_opts,
    .min_pos = 0,
    .max_pos = 2,
    .run = run_setting,
};

/* ---- undo ---- */

/* One line per layer whose entry differs between `before` and the set
 * now: "undone: LAYER = NOW  (was BEFORE)". Returns how many. */
static int report_undo(FILE *o, const nl_exprset *before, const nl_exprset *now) {
  int changed = 0;
  for (int pass = 0; pass < 2; pass++) {
    const nl_exprset *a = pass == 0 ? now : before, *b = pass == 0 ? before : now;
    for (int i = 0; i < a->n; i++) {
      const nl_exprset_entry *x = &a->e[i], *y = nl_exprset_find(b, x->name);
      if (pass == 1 && y) continue; /* listed in the first pass */
      const nl_exprset_entry *was = pass == 0 ? y : x, *is = pass == 0 ? x : NULL;
      if (is && was && strcmp(is->text, was->text) == 0) continue;
      fprintf(o, "undone: %s = %s  (was %s)\n", x->name, is ? is->text : "(LayerNorm: not in the set)",
              was ? was->text : "LayerNorm: not in the set");
      changed++;
    }
  }
  return changed;
}

static int run_undo(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)a;
  nl_session *s = ctx->session;
  nl_exprset before;
  nl_exprset_copy(&before, &s->set);
  if (nl_session_undo(s) != 0) {
    nl_exprset_free(&before);
    return nl_fail(err, NL_EINPUT, "nothing to undo");
  }
  int changed = report_undo(ctx->out, &before, &s->set);
  nl_exprset_free(&before);
  if (changed == 0)
    fprintf(ctx->out, "undone: no expression changed; the set has %d expression%s\n", s->set.n,
            s->set.n == 1 ? "" : "s");
  else if (changed > 1)
    fprintf(ctx->out, "undone: %d layers; the set has %d expression%s\n", changed, s->set.n,
            s->set.n == 1 ? "" : "s");
  return 0;
}

static const nl_cmd cmd_undo = {
    .name = "undo",
    .summary = "undo the last change to the expression set",
    .help = "Changes are 'set', 'edit', 'simplify', 'refit', 'fold', 'pick', 'load exprs' and\n"
            "'unload exprs'; the last 100 are kept. Prints each layer it changed back:\n"
            "'undone: LAYER = EXPR  (was EXPR)'.",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_undo,
};

/* ---- source ---- */

static int run_source(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)ctx;
  const nl_wb_frontend *fe = nl_wb_fe();
  if (!fe->source) return nl_fail(err, NL_EINPUT, "'source' needs the prompt");
  return fe->source(a->pos[0], err);
}

static const nl_cmd cmd_source = {
    .name = "source",
    .args = "FILE",
    .summary = "run the commands of a script file in this session",
    .help = "Stops at the first failing command. 'setting timer on' prints each command's\n"
            "wall time.",
    .opts = no_opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run_source,
};

/* ---- history / quit ---- */

static int run_history(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long n = 20;
  if (a->npos == 1) {
    char *end;
    n = strtol(a->pos[0], &end, 10);
    if (!*a->pos[0] || *end || n < 1 || n > 100000)
      return nl_fail(err, NL_EINPUT, "N is a number of lines from 1 to 100000, got '%s'",
                     a->pos[0]);
  }
  if (nl_wb_fe()->history) nl_wb_fe()->history(ctx->out, n);
  return 0;
}

/* 'history --count N' was the old spelling of 'history N' */
static const nl_opt_alias history_aliases[] = {{"count", NULL}, {NULL, NULL}};

static const nl_cmd cmd_history = {
    .name = "history",
    .args = "[N]",
    .summary = "show the last N command lines (20 by default)",
    .help = "Lines are kept in ~/.normlab_history ($NORMLAB_HISTORY), the last 1000.",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 1,
    .run = run_history,
    .aliases = history_aliases,
};

static int quit_session(nl_ctx *ctx, int force, nl_error *err) {
  int rc = settle_unsaved(ctx, "quit", "", force, err);
  if (rc != 0) return rc < 0 ? -1 : 0;
  if (nl_wb_fe()->quit) nl_wb_fe()->quit();
  return 0;
}

static int run_quit(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)a;
  return quit_session(ctx, 0, err);
}

static int run_quit_force(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)a;
  return quit_session(ctx, 1, err);
}

static const nl_cmd cmd_quit = {
    .name = "quit",
    .summary = "leave normlab (also Ctrl-D)",
    .help = "Unsaved edits of the expression set are not dropped silently: at a terminal\n"
            "'quit' (and Ctrl-D) asks whether to save them first (yes, no: discard,\n"
            "cancel); in a script it refuses (exit 2). 'quit!' discards them. The end of\n"
            "a script leaves as it is.",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_quit,
};

static const nl_cmd cmd_quit_force = {
    .name = "quit!",
    .summary = "leave normlab, discarding unsaved edits of the expression set",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_quit_force,
};

/* ---- layers ---- */

static int run_layers(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)a;
  (void)err;
  nl_session *s = ctx->session;
  char **names = nl_session_layers(s);
  int w = 5, maps = s->maps_path != NULL;
  for (int i = 0; names[i]; i++)
    if ((int)strlen(names[i]) > w) w = (int)strlen(names[i]);
  if (names[0]) {
    fprintf(ctx->out, "%-*s ", w, "layer");
    /* "R²" is a byte longer than its column: widths + 1 */
    if (maps) fprintf(ctx->out, "%9s %9s %9s ", "val R²", "DyT R²", "bound R²");
    if (s->nfronts) fprintf(ctx->out, "%9s ", "front R²");
    fprintf(ctx->out, "%5s  %s\n", "FLOPs", "expression");
  }
  for (int i = 0; names[i]; i++) {
    const nl_exprset_entry *e = nl_session_find(s, names[i]);
    fprintf(ctx->out, "%-*s ", w, names[i]);
    if (maps) {
      double v, d, b;
      if (nl_wb_layer_scores(s, names[i], &v, &d, &b) == 0) {
        if (isnan(v))
          fprintf(ctx->out, "%8s ", "-");
        else
          fprintf(ctx->out, "%8.5f ", v);
        fprintf(ctx->out, "%8.5f %8.5f ", d, b);
      } else {
        fprintf(ctx->out, "%8s %8s %8s ", "-", "-", "-");
      }
    }
    if (s->nfronts) {
      const nl_front_summary *f = nl_session_front(s, names[i]);
      if (f && !isnan(f->best_r2))
        fprintf(ctx->out, "%8.5f ", f->best_r2);
      else
        fprintf(ctx->out, "%8s ", "-");
    }
    int c = e ? nl_wb_expr_cost(&e->prog) : -1;
    if (c >= 0)
      fprintf(ctx->out, "%5d  ", c);
    else
      fprintf(ctx->out, "%5s  ", "-");
    fprintf(ctx->out, "%s\n", e ? e->text : "(LayerNorm)");
  }
  if (!names[0]) fprintf(ctx->err, "no layers: load a model, mappings or an expression set\n");
  nl_session_free_names(names);
  return 0;
}

static const nl_cmd cmd_layers = {
    .name = "layers",
    .summary = "table of the layers: current expression, fit figures, FLOPs/elem",
    .help = "With mappings loaded: the current expression's validation R² (as 'score'),\n"
            "the DyT baseline's R² and the bound R² of the layer. With fronts loaded, the\n"
            "best validation R² in the layer's front. FLOPs/elem of the expression as\n"
            "written; '(LayerNorm)' where no expression is set.",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_layers,
};

/* ---- show ---- */

static int run_show(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  const char *layer = a->pos[0];
  const nl_exprset_entry *e = nl_session_find(s, layer);
  if (!e) {
    char **names = nl_session_layers(s);
    int known = 0;
    for (int i = 0; names[i] && !known; i++) known = strcmp(names[i], layer) == 0;
    nl_session_free_names(names);
    if (!known) return nl_fail(err, NL_EINPUT, "no layer '%s' (see 'layers')", layer);
    fprintf(ctx->out, "%s = (LayerNorm: no expression set)\n", layer);
    return 0;
  }
  fprintf(ctx->out, "%s = %s\n", e->name, e->text);
  if (e->comment) fprintf(ctx->out, "# %s\n", e->comment);
  nl_wb_show_details(ctx, &e->prog);
  double v, d, b;
  if (s->maps_path && nl_wb_layer_scores(s, layer, &v, &d, &b) == 0)
    fprintf(ctx->out, "fit: val R² %.5f, DyT R² %.5f, bound R² %.5f (see 'score %s')\n", v, d, b,
            layer);
  return 0;
}

static const nl_cmd cmd_show = {
    .name = "show",
    .args = "LAYER",
    .summary = "show a layer's expression, its tree, its cost and its fit",
    .opts = no_opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run_show,
};

const nl_cmd *const nl_wb_session_commands[] = {
    &cmd_help,    &cmd_load,    &cmd_unload,    &cmd_status, &cmd_layers, &cmd_show, &cmd_undo,
    &cmd_save,    &cmd_open,    &cmd_open_force, &cmd_setting, &cmd_source,
    &cmd_history, &cmd_quit,    &cmd_quit_force, NULL,
};
