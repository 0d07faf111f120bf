#include <string.h>

#include "app/cmd.h"
#include "app/workbench.h"

static const nl_opt opts[] = {{0}};

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  if (a->npos == 0) {
    nl_help_overview(ctx->out);
    return 0;
  }
  const char *name = a->pos[0];
  const nl_cmd *c = nl_cmd_find(name);
  if (!c && nl_cmd_session_only(name)) {
    /* a command of the prompt: say so, and show its help */
    fprintf(ctx->out,
            "'%s' is a command of the prompt: it works on the session that normlab keeps\n"
            "when started without a command (or with -c, -f, or commands piped to it),\n"
            "e.g. normlab -c '%s ...'.\n\n",
            name, name);
    nl_wb_help_command(ctx->out, nl_wb_find(name), 1);
    return 0;
  }
  if (!c) {
    const char *near = nl_cmd_suggest(name, 1);
    if (near) return nl_fail(err, NL_EINPUT, "unknown command '%s'; did you mean '%s'?", name, near);
    return nl_fail(err, NL_EINPUT, "unknown command '%s' (see 'normlab help')", name);
  }
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
