/* Commands that exist only at the prompt: they act on the session. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "session/session.h"
#include "app/wb_local.h"
#include "session/job.h"

static const nl_opt no_opts[] = {{0}};

/* ---- help ---- */

static int run_help(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (a->npos == 1) {
    const nl_cmd *c = nl_wb_find(a->pos[0]);
    if (!c) return nl_fail(err, NL_EINPUT, "unknown command '%s'", a->pos[0]);
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
          "'load maps FILE', commands take --model and --maps from the session.\n"
          "Tab completes commands, options, choices, layer names and file names.\n");
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
    .help = "Loaded paths fill the --model, --maps, --exprs and --fronts options of later\n"
            "commands, so 'load model M' then 'eval' runs 'eval --model M'.",
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
  char *d = strdup(dir);
  int rc = nl_session_save(s, d, err);
  if (rc == 0) fprintf(ctx->out, "saved %s/%s\n", d, NL_SESSION_FILE);
  free(d);
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

static int run_open(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  if (nl_session_open(s, a->pos[0], err) != 0) return -1;
  fprintf(ctx->out, "opened %s: ", a->pos[0]);
  int any = 0;
  if (s->model_path) fprintf(ctx->out, "%smodel", any++ ? ", " : "");
  if (s->maps_path) fprintf(ctx->out, "%smaps", any++ ? ", " : "");
  if (s->set.n) fprintf(ctx->out, "%s%d expressions", any++ ? ", " : "", s->set.n);
  if (s->fronts_dir) fprintf(ctx->out, "%sfronts", any++ ? ", " : "");
  fprintf(ctx->out, "%s\n", any ? "" : "empty session");
  return 0;
}

static const nl_cmd cmd_open = {
    .name = "open",
    .args = "DIR",
    .summary = "open a session saved with 'save'",
    .opts = no_opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run_open,
};

/* ---- settings ---- */

static int run_setting(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  if (a->npos == 0) {
    for (int i = 0; i < s->nsettings; i++)
      fprintf(ctx->out, "%s = %s\n", s->settings[i].key, s->settings[i].value);
    return 0;
  }
  if (a->npos == 1) {
    const char *v = nl_session_get_setting(s, a->pos[0]);
    if (!v) return nl_fail(err, NL_EINPUT, "no setting '%s'", a->pos[0]);
    fprintf(ctx->out, "%s\n", v);
    return 0;
  }
  return nl_session_setting(s, a->pos[0], nl_arg_flag(a, "unset") ? NULL : a->pos[1], err);
}

static const nl_opt setting_opts[] = {
    {"unset", NL_OPT_FLAG, NULL, NULL, "remove the setting", NULL, 0},
    {0},
};

static int run_setting_checked(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (nl_arg_flag(a, "unset")) {
    if (a->npos != 1) return nl_fail(err, NL_EINPUT, "--unset takes one NAME");
    return nl_session_setting(ctx->session, a->pos[0], NULL, err);
  }
  return run_setting(ctx, a, err);
}

static const nl_cmd cmd_setting = {
    .name = "setting",
    .args = "[NAME [VALUE]]",
    .summary = "list, show or change session settings",
    .help = "A setting NAME fills the option --NAME of later commands where that option\n"
            "takes its value from the session (for example 'setting seed 7').",
    .opts = setting_opts,
    .min_pos = 0,
    .max_pos = 2,
    .run = run_setting_checked,
};

/* ---- undo ---- */

static int run_undo(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)a;
  nl_session *s = ctx->session;
  if (nl_session_undo(s) != 0) return nl_fail(err, NL_EINPUT, "nothing to undo");
  fprintf(ctx->out, "undone: the set has %d expressions\n", s->set.n);
  return 0;
}

static const nl_cmd cmd_undo = {
    .name = "undo",
    .summary = "undo the last change to the expression set",
    .help = "Changes are 'set', 'edit', 'simplify', 'refit', 'fold', 'pick', 'load exprs' and\n"
            "'unload exprs'; the last 100 are kept.",
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
  long n;
  if (nl_arg_int_range(a, "count", 1, 100000, &n, err) != 0) return -1;
  if (nl_wb_fe()->history) nl_wb_fe()->history(ctx->out, n);
  return 0;
}

static const nl_opt history_opts[] = {
    {"count", NL_OPT_INT, "N", "20", "how many recent lines to show", NULL, 0},
    {0},
};

static const nl_cmd cmd_history = {
    .name = "history",
    .summary = "show recent command lines",
    .help = "Lines are kept in ~/.normlab_history ($NORMLAB_HISTORY), the last 1000.",
    .opts = history_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_history,
};

static int run_quit(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)ctx;
  (void)a;
  (void)err;
  if (nl_wb_fe()->quit) nl_wb_fe()->quit();
  return 0;
}

static const nl_cmd cmd_quit = {
    .name = "quit",
    .summary = "leave normlab (also Ctrl-D)",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_quit,
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
    if (maps) fprintf(ctx->out, "%8s %8s %8s ", "val R2", "DyT R2", "bound R2");
    if (s->nfronts) fprintf(ctx->out, "%8s ", "front R2");
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
    .help = "With mappings loaded: the current expression's validation R2 (as 'score'),\n"
            "the DyT baseline's R2 and the bound R2 of the layer. With fronts loaded, the\n"
            "best validation R2 in the layer's front. FLOPs/elem of the expression as\n"
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
    fprintf(ctx->out, "fit: val R2 %.5f, DyT R2 %.5f, bound R2 %.5f (see 'score %s')\n", v, d, b,
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
    &cmd_save,    &cmd_open,    &cmd_setting,   &cmd_source,
    &cmd_history, &cmd_quit,    NULL,
};
