/* Shared between the files of the Lua bindings. */
#ifndef NL_LUA_LOCAL_H
#define NL_LUA_LOCAL_H

#include <lauxlib.h>
#include <lua.h>

#include "app/cmd.h"
#include "base/error.h"
#include "lua/nlua.h"

#define NL_LUA_MODEL "normlab.model"
#define NL_LUA_MAPS "normlab.maps"
#define NL_LUA_EXPR "normlab.expr"
#define NL_LUA_EXPRSET "normlab.exprset"

/* luaL_error with the position of the Lua code that called the binding
 * (luaL_error's own level 1 is the C function, which has none). */
int nl_lua_error(lua_State *L, const char *fmt, ...);
#define luaL_error nl_lua_error

struct nl_lua {
  lua_State *L;
  nl_ctx ctx;          /* where commands and print go */
  nl_lua_exec_fn exec; /* command dispatcher */
};

/* The host of a state (stored in the registry). */
nl_lua *nl_lua_host(lua_State *L);
void nl_lua_set_host(lua_State *L, nl_lua *s);
/* The worker threads the host gives the state's work (its nl_ctx.threads;
 * 0: the default), for options without a threads= of their own. */
int nl_lua_threads(lua_State *L);

/* Raise a Lua error "what: message" from an nl_error. Never returns. */
int nl_lua_fail(lua_State *L, const char *what, const nl_error *err);

/* Options tables: every key must be one of `allowed` (NULL-terminated),
 * else an error naming the key. idx may be absent (none/nil). */
void nl_lua_check_keys(lua_State *L, int idx, const char *what, const char *const *allowed);
/* The same, where `renamed` (NULL-terminated pairs old, new) lists older
 * names that are still accepted (read them with nl_lua_opt_key). An
 * unknown key close to an allowed one is suggested ("did you mean"). */
void nl_lua_check_keys_renamed(lua_State *L, int idx, const char *what,
                               const char *const *allowed, const char *const *renamed);
/* The key to read an option from: `key`, or its older name `old` when
 * the table uses that (a one-line note on the host's error stream; both
 * given is an error). */
const char *nl_lua_opt_key(lua_State *L, int idx, const char *what, const char *key,
                           const char *old);
/* Typed fields of an options table (absent: the default). */
lua_Integer nl_lua_opt_int(lua_State *L, int idx, const char *key, lua_Integer def,
                           lua_Integer lo, lua_Integer hi, const char *what);
double nl_lua_opt_num(lua_State *L, int idx, const char *key, double def, const char *what);
const char *nl_lua_opt_str(lua_State *L, int idx, const char *key, const char *def,
                           const char *what);
int nl_lua_opt_bool(lua_State *L, int idx, const char *key, int def, const char *what);

/* Message handler: message plus traceback (kept as is when the message
 * already carries one). */
int nl_lua_msgh(lua_State *L);

/* Call the function at stack index fn with one argument built by `build`
 * (which pushes one value from `data`), protected. Returns 1 when the
 * callback returned false (stop), 0 to go on, -1 when it raised: then the
 * error (with traceback) replaces the value at errslot. */
int nl_lua_callback(lua_State *L, int fn, int errslot, void (*build)(lua_State *L, const void *data),
                    const void *data);

/* Run a command through the host's dispatcher with argv (argv[0] the
 * command). capture: stdout is returned as a string pushed on the stack
 * (else printed). progress/user: nl_ctx.progress for the command; when
 * *stopped is set afterwards (the callback asked to stop), an exit 130 is
 * a success. Returns the exit status; on failure the error text is pushed
 * (instead of the output). */
int nl_lua_run_cmd(lua_State *L, int argc, char **argv, int capture, nl_progress_fn progress,
                   void *user, const int *stopped);

/* The model of the handle at idx (an error for a closed one); *path its
 * file. */
struct nl_vit;
struct nl_vit *nl_lua_check_model(lua_State *L, int idx, const char **path);
/* A new handle taking m over (m is zeroed), named by path. */
void nl_lua_push_model_owned(lua_State *L, struct nl_vit *m, const char *path);
/* model:profile{...} and model:prune{...} (lua_prune.c). */
int nl_lua_model_profile(lua_State *L);
int nl_lua_model_prune(lua_State *L);
int nl_lua_model_reuse(lua_State *L);
int nl_lua_model_reuse_plan(lua_State *L);

/* Push a jansson value as Lua (objects: tables, arrays: sequences). */
struct json_t;
void nl_lua_push_json(lua_State *L, struct json_t *j);

/* The parts of the module. */
void nl_lua_open_expr(lua_State *L);  /* expr, exprset, cost_* */
void nl_lua_open_model(lua_State *L); /* load_model, default_model */
void nl_lua_open_maps(lua_State *L);  /* load_maps, import_maps, evolve */
void nl_lua_open_cmd(lua_State *L);   /* cmd, has_command, commands */

/* Handles used across files. */
struct nl_prog;
struct nl_exprset;
struct nl_prog *nl_lua_check_expr(lua_State *L, int idx);
struct nl_exprset *nl_lua_check_exprset(lua_State *L, int idx);
/* Push a new expr handle holding a copy of p / a new exprset taking s. */
void nl_lua_push_expr(lua_State *L, const struct nl_prog *p);
void nl_lua_push_exprset_owned(lua_State *L, struct nl_exprset *s);
/* An expression from a handle or a string (parsed; errors raised). The
 * result is written to out (initialised here; caller frees). */
void nl_lua_to_prog(lua_State *L, int idx, struct nl_prog *out, const char *what);

#endif
