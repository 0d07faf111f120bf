/* Lua 5.4, embedded: the `normlab` module (typed handles over the library
 * calls the commands use), the `lua` command and the REPL's `lua { ... }`
 * blocks.
 *
 * A state is made with nl_lua_new: it opens the standard libraries,
 * preloads `normlab` (also set as a global), points package.path at the
 * Lua-side library (lua/ in the source tree, else $(pkgdatadir)/lua) and
 * installs a count hook that turns Ctrl-C into a Lua error "interrupted".
 * normlab.cmd() runs commands through `exec` (nl_cmd_dispatch for the
 * shell, the REPL's own dispatcher at the prompt, so session commands work
 * there too). */
#ifndef NL_LUA_NLUA_H
#define NL_LUA_NLUA_H

#include "app/cmd.h"
#include "base/error.h"

typedef int (*nl_lua_exec_fn)(nl_ctx *ctx, int argc, char **argv);

typedef struct nl_lua nl_lua;

/* A fresh state; exec NULL means nl_cmd_dispatch. NULL on failure (err). */
nl_lua *nl_lua_new(nl_ctx *ctx, nl_lua_exec_fn exec, nl_error *err);
void nl_lua_close(nl_lua *s);

/* Run a script with arguments: the global `arg` gets arg[0] = path and
 * arg[1..argc] = argv, and the chunk receives them as `...` (as lua.c).
 * Returns 0, or -1 with err: NL_EINPUT for a missing file or a syntax
 * error (exit 2), NL_EINTR when interrupted (exit 130), NL_EIO for a
 * runtime error (exit 1); the message holds the error and its traceback. */
int nl_lua_run_file(nl_lua *s, const char *path, int argc, char **argv, nl_error *err);
/* Same for a chunk of source text named `chunkname` ("=lua" style names
 * are used as given). */
int nl_lua_run_string(nl_lua *s, const char *code, const char *chunkname, nl_error *err);

/* REPL support. A line opens a block when it reads "lua {" (blanks
 * allowed): the block ends at the '}' that balances that '{', counted
 * outside Lua strings and comments. */
int nl_lua_block_opens(const char *line);
/* 1 while `text` (from the "lua {" on) still lacks its closing brace. */
int nl_lua_block_incomplete(const char *text);
/* Run a whole block text ("lua { ... }") in the shared state; `where`
 * ("FILE:LINE" of the block's first line, or NULL at the prompt) names
 * the chunk. Returns the exit status; errors are printed to ctx->err as
 * "normlab lua: ...". */
int nl_lua_block_run(nl_ctx *ctx, const char *text, const char *where);

/* The state shared by the prompt's `lua` blocks and `lua FILE` commands:
 * nl_lua_shared_setup names the dispatcher (the REPL's), the state is made
 * on first use and closed by nl_lua_shared_close. */
void nl_lua_shared_setup(nl_lua_exec_fn exec);
nl_lua *nl_lua_shared(nl_ctx *ctx, nl_error *err);
void nl_lua_shared_close(void);

/* The 'lua FILE [ARGS...]' command (cmd_lua.c; registered by src/cli). */
extern const nl_cmd nl_cmd_lua;

#endif
