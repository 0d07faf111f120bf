/* Shell commands in the session's context: 'cost' of the current set, and
 * what follows an 'evolve' at the prompt (its fronts loaded and recorded
 * in the session's directory when it has one). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/session.h"
#include "base/mem.h"
#include "app/wb_local.h"

/* ---- cost ---- */

/* The same options as the shell's 'cost' (its run function reads them by
 * name). */
static const nl_opt cost_opts[] = {
    {"set", NL_OPT_STR, "FILE", NULL, "expression set (default at the prompt: the session's)",
     NULL, NL_OPTF_PATH},
    {"dim", NL_OPT_INT, "D", "768", "token width d (default: the loaded model's, else ViT-B's)",
     NULL, 0},
    {"tokens", NL_OPT_INT, "L", "197",
     "tokens per image (default: the loaded model's, else 197: ViT-B/16 at 224x224)", NULL, 0},
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

static int run_cost(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_session *s = ctx->session;
  if (a->npos == 0 && s->set.n == 0 && !nl_arg_given(a, "model"))
    return nl_fail(err, NL_EINPUT,
                   "no expressions in the session: 'load exprs FILE', 'set' or 'pick' "
                   "(or 'cost --set FILE | EXPR...')");
  /* d and the tokens per image of the loaded model (its config) */
  return nl_cost_command(ctx, a, &s->set, s->model_width, s->model_tokens, err);
}

static const nl_cmd cmd_cost = {
    .name = "cost",
    .args = "[FILE.exprs | EXPR...]",
    .summary = "FLOPs and bytes per layer of the session's set vs LayerNorm and DyT",
    .help = "As 'normlab cost' (see 'man normlab'); at the prompt without arguments it\n"
            "counts the session's current expression set, and --dim and --tokens default\n"
            "to the loaded model's width and tokens per image ((img/patch)^2 + 1, from its\n"
            "config); the table says where each came from. Each layer's FLOPs/elem (tanh\n"
            "23, sigmoid 22, exp 19, + - * / 1, clip 0), per token cost*d FLOPs and 4d\n"
            "bytes, totals beside LayerNorm (5d+2 FLOPs, 8d bytes per token) and DyT (24d,\n"
            "4d). --model M: the model's per-block table (see 'man normlab'), its norms\n"
            "following --set or the session's set.",
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
  if (s->dir) { /* recorded at once; the set's edits wait for 'save' */
    char *f = nl_session_path(s, NL_SESSION_FILE);
    if (nl_session_record_fronts(s, &err) != 0)
      fprintf(ctx->err, "normlab evolve: the fronts are not recorded in %s: %s\n", f, err.msg);
    else
      fprintf(ctx->err, "recorded the fronts in %s\n", f);
    free(f);
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
