/* normlab lua FILE [ARGS...]: run a Lua script with the normlab module. */
#include <string.h>

#include "app/cmd.h"
#include "lua/nlua.h"

static const nl_opt opts[] = {
    {"code", NL_OPT_STR, "CHUNK", NULL, "run this Lua code instead of a file", NULL, 0},
    {0},
};

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *code = nl_arg_str(a, "code");
  if (!code && a->npos < 1) return nl_fail(err, NL_EINPUT, "expects FILE [ARGS...] or --code CHUNK");
  if (code && a->npos > 0)
    return nl_fail(err, NL_EINPUT, "--code takes no FILE (unexpected '%s')", a->pos[0]);
  /* at the prompt the session's state is shared by every script and block;
   * from the shell each run gets its own */
  nl_lua *s = ctx->session ? nl_lua_shared(ctx, err) : nl_lua_new(ctx, NULL, err);
  if (!s) return -1;
  int rc = code ? nl_lua_run_string(s, code, "=(--code)", err)
                : nl_lua_run_file(s, a->pos[0], a->npos - 1, a->pos + 1, err);
  if (!ctx->session) nl_lua_close(s);
  return rc;
}

const nl_cmd nl_cmd_lua = {
    .name = "lua",
    .args = "FILE [ARGS...]",
    .summary = "run a Lua script with the normlab module (see normlab-lua(3))",
    .help = "Runs FILE as Lua 5.4 with the module 'normlab' loaded (also as the global\n"
            "'normlab'); the global 'arg' holds arg[0] = FILE and the ARGS, which the chunk\n"
            "also receives as '...'. At the prompt, 'lua { CODE }' runs a block (it may span\n"
            "lines) and every block and script shares one Lua state. Errors print the\n"
            "message and a traceback. Exit status: 0; 1 for an error raised by the script;\n"
            "2 when FILE cannot be read or does not compile; 130 when interrupted (Ctrl-C).",
    .opts = opts,
    .min_pos = 0,
    .max_pos = -1,
    .run = run,
    .rest_positional = 1,
};
