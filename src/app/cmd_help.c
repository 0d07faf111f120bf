#include <string.h>

#include "app/cmd.h"

static const nl_opt opts[] = {{0}};

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (a->npos == 0) {
    nl_help_overview(ctx->out);
    return 0;
  }
  const nl_cmd *c = nl_cmd_find(a->pos[0]);
  if (!c) return nl_fail(err, NL_EINPUT, "unknown command '%s'", a->pos[0]);
  nl_help_command(ctx->out, c);
  return 0;
}

const nl_cmd nl_cmd_help = {
    .name = "help",
    .args = "[COMMAND]",
    .summary = "list commands, or show one command's options",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 1,
    .run = run,
};
