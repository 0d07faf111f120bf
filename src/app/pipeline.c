/* Shell commands in the session's context: 'cost' of the current set, and
 * what follows an 'evolve' at the prompt (its fronts loaded, the session
 * saved when it has a directory). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/session.h"
#include "base/mem.h"
#include "app/wb_local.h"

extern const nl_cmd nl_cmd_cost;

/* ---- cost ---- */

/* The same options as the shell's 'cost' (its run function reads them by
 * name). */
static const nl_opt cost_opts[] = {
    {"dim", NL_OPT_INT, "D", "768", "token width d (default at the prompt: the model's)", NULL,
     0},
    {"tokens", NL_OPT_INT, "L", "197", "tokens per image (197: ViT-B/16 at 224x224)", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

static int run_cost(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  if (a->npos > 0) { /* a file or expressions, as the shell, at the model's width */
    nl_args b = *a;
    char dim[24];
    if (!nl_arg_given(a, "dim") && s->model_width > 0)
      for (int i = 0; a->cmd->opts[i].name; i++)
        if (strcmp(a->cmd->opts[i].name, "dim") == 0) {
          snprintf(dim, sizeof dim, "%d", s->model_width);
          b.val[i] = dim;
        }
    return nl_cmd_cost.run(ctx, &b, err);
  }
  if (s->set.n == 0)
    return nl_fail(err, NL_EINPUT,
                   "no expressions in the session: 'load exprs FILE', 'set' or 'pick' "
                   "(or 'cost FILE.exprs | EXPR...')");
  long d, L;
  if (!nl_arg_given(a, "dim") && s->model_width > 0)
    d = s->model_width;
  else if (nl_arg_int_range(a, "dim", 1, 1L << 20, &d, err) != 0)
    return -1;
  if (nl_arg_int_range(a, "tokens", 1, 1L << 24, &L, err) != 0) return -1;
  return nl_cost_report(ctx, &s->set, d, L, nl_arg_flag(a, "json"));
}

static const nl_cmd cmd_cost = {
    .name = "cost",
    .args = "[FILE.exprs | EXPR...]",
    .summary = "FLOPs and bytes per layer of the session's set vs LayerNorm and DyT",
    .help = "As 'normlab cost' (see 'man normlab'); at the prompt without arguments it\n"
            "counts the session's current expression set, and --dim defaults to the\n"
            "loaded model's width. Each layer's FLOPs/elem (tanh 23, sigmoid 22, exp 19,\n"
            "+ - * / 1, clip 0), per token cost*d FLOPs and 4d bytes, totals beside\n"
            "LayerNorm (5d+2 FLOPs, 8d bytes per token) and DyT (24d, 4d).",
    .opts = cost_opts,
    .min_pos = 0,
    .max_pos = -1,
    .run = run_cost,
};

const nl_cmd *const nl_wb_pipeline_commands[] = {&cmd_cost, NULL};

/* ---- after evolve ---- */

static int has_csv(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *de;
  int found = 0;
  while (!found && (de = readdir(d)) != NULL) {
    size_t n = strlen(de->d_name);
    found = de->d_name[0] != '.' && n > 4 && strcmp(de->d_name + n - 4, ".csv") == 0;
  }
  closedir(d);
  return found;
}

void nl_wb_fronts_arrived(nl_ctx *ctx, const char *outdir) {
  nl_session *s = ctx->session;
  if (!s || !outdir || !has_csv(outdir)) return;
  fflush(ctx->out); /* the search's table first */
  nl_error err;
  nl_error_clear(&err);
  char *dir = nl_xstrdup(outdir);
  if (nl_session_load(s, "fronts", dir, &err) != 0) {
    fprintf(ctx->err, "normlab evolve: fronts not loaded: %s\n", err.msg);
    free(dir);
    return;
  }
  free(dir);
  fprintf(ctx->err, "fronts %s loaded (%d layers): 'front LAYER', 'pick LAYER knee|minval|N'\n",
          s->fronts_dir, s->nfronts);
  if (s->dir) {
    char *sd = nl_xstrdup(s->dir);
    if (nl_session_save(s, sd, &err) != 0)
      fprintf(ctx->err, "normlab evolve: autosave of %s failed: %s\n", sd, err.msg);
    else
      fprintf(ctx->err, "autosaved %s/%s\n", sd, NL_SESSION_FILE);
    free(sd);
  }
}

void nl_wb_after_command(nl_ctx *ctx, const nl_cmd *cmd, const nl_args *a, int rc,
                           const nl_error *cmd_err) {
  if (!ctx->session || strcmp(cmd->name, "evolve") != 0) return;
  /* a finished or interrupted search: its fronts (partial ones included)
   * become the session's */
  if (rc != 0 && cmd_err->code != NL_EINTR) return;
  nl_wb_fronts_arrived(ctx, nl_arg_str(a, "output"));
}
