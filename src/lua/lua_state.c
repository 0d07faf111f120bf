/* Lua states: standard libraries, the normlab module, package.path for
 * the Lua-side library, Ctrl-C as a Lua error, running files and chunks
 * with tracebacks. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lualib.h>

#include "base/interrupt.h"
#include "base/mem.h"
#include "lua/local.h"

#include "config.h"

/* ---- Ctrl-C ---- */

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (nl_interrupted()) luaL_error(L, "interrupted");
}

/* ---- print goes to the host's output ---- */

static int l_print(lua_State *L) {
  nl_lua *s = nl_lua_host(L);
  FILE *o = s && s->ctx.out ? s->ctx.out : stdout;
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *t = luaL_tolstring(L, i, &len);
    if (i > 1) fputc('\t', o);
    fwrite(t, 1, len, o);
    lua_pop(L, 1);
  }
  fputc('\n', o);
  fflush(o);
  return 0;
}

/* ---- the module ---- */

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int l_version(lua_State *L) {
  lua_pushstring(L, PACKAGE_VERSION);
  return 1;
}

static int luaopen_normlab(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_version);
  lua_setfield(L, -2, "version");
  nl_lua_open_expr(L);
  nl_lua_open_model(L);
  nl_lua_open_maps(L);
  nl_lua_open_cmd(L);
  /* where the Lua-side library was found */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  /* the Lua-side helpers extend the table: require("normlab.lib")(normlab) */
  lua_getglobal(L, "require");
  lua_pushstring(L, "normlab.lib");
  lua_call(L, 1, 1);
  if (lua_isfunction(L, -1)) {
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
  } else {
    lua_pop(L, 1);
  }
  return 1;
}

static int setup(lua_State *L) {
  nl_lua *s = lua_touserdata(L, 1);
  luaL_openlibs(L);
  nl_lua_set_host(L, s);
  lua_pushcfunction(L, l_print);
  lua_setglobal(L, "print");
  /* package.path: $NORMLAB_LUA_PATH, then the source tree's lua/ (a build
   * tree) or the installed one, then Lua's defaults */
  lua_getglobal(L, "package");
  const char *srcdir = NL_SRCDIR "/lua";
  const char *dir = is_dir(srcdir) ? srcdir : NL_DATADIR "/lua";
  const char *env = getenv("NORMLAB_LUA_PATH");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s%s%s/?.lua;%s/?/init.lua;%s", env && *env ? env : "",
                  env && *env ? ";" : "", dir, dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_normlab);
  lua_setfield(L, -2, "normlab");
  lua_pop(L, 2);
  luaL_requiref(L, "normlab", luaopen_normlab, 1);
  lua_pop(L, 1);
  return 0;
}

nl_lua *nl_lua_new(nl_ctx *ctx, nl_lua_exec_fn exec, nl_error *err) {
  nl_lua *s = nl_xcalloc(1, sizeof *s);
  s->ctx = *ctx;
  s->ctx.progress = NULL;
  s->ctx.progress_user = NULL;
  s->exec = exec ? exec : nl_cmd_dispatch;
  s->L = luaL_newstate();
  if (!s->L) {
    free(s);
    nl_fail(err, NL_ENOMEM, "cannot create a Lua state");
    return NULL;
  }
  lua_State *L = s->L;
  lua_pushcfunction(L, nl_lua_msgh);
  lua_pushcfunction(L, setup);
  lua_pushlightuserdata(L, s);
  if (lua_pcall(L, 1, 0, 1) != LUA_OK) {
    nl_fail(err, NL_EIO, "starting Lua: %s", lua_tostring(L, -1));
    lua_close(L);
    free(s);
    return NULL;
  }
  lua_settop(L, 0);
  lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, 1000);
  return s;
}

void nl_lua_close(nl_lua *s) {
  if (!s) return;
  lua_close(s->L);
  free(s);
}

/* Run the function below its arguments; msgh under them. */
static int call_chunk(nl_lua *s, int nargs, nl_error *err) {
  lua_State *L = s->L;
  int base = lua_gettop(L) - nargs; /* the function */
  lua_pushcfunction(L, nl_lua_msgh);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, 0, base);
  if (rc != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    /* a script error exits 1 (as lua.c), an interrupted one 130 */
    nl_fail(err, nl_interrupted() ? NL_EINTR : NL_EIO, "%s", m ? m : "error");
    size_t n = strlen(err->msg);
    if (m && strlen(m) > n && n > 4) memcpy(err->msg + n - 4, " ...", 4);
  }
  lua_settop(L, base - 1);
  lua_gc(L, LUA_GCCOLLECT);
  return rc == LUA_OK ? 0 : -1;
}

static int load_error(lua_State *L, nl_error *err) {
  nl_fail(err, NL_EINPUT, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  return -1;
}

int nl_lua_run_file(nl_lua *s, const char *path, int argc, char **argv, nl_error *err) {
  lua_State *L = s->L;
  if (!lua_checkstack(L, argc + 4)) return nl_fail(err, NL_ENOMEM, "too many arguments");
  /* arg table as lua.c: arg[0] the script */
  lua_createtable(L, argc, 1);
  lua_pushstring(L, path);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
  FILE *f = fopen(path, "r");
  if (!f) return nl_fail(err, NL_EINPUT, "%s: cannot open: %s", path, strerror(errno));
  fclose(f);
  if (luaL_loadfile(L, path) != LUA_OK) return load_error(L, err);
  for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
  return call_chunk(s, argc, err);
}

int nl_lua_run_string(nl_lua *s, const char *code, const char *chunkname, nl_error *err) {
  lua_State *L = s->L;
  if (luaL_loadbuffer(L, code, strlen(code), chunkname) != LUA_OK) return load_error(L, err);
  return call_chunk(s, 0, err);
}

/* ---- the shared state of the prompt ---- */

static nl_lua *g_shared;
static nl_lua_exec_fn g_shared_exec;

void nl_lua_shared_setup(nl_lua_exec_fn exec) { g_shared_exec = exec; }

nl_lua *nl_lua_shared(nl_ctx *ctx, nl_error *err) {
  if (!g_shared) g_shared = nl_lua_new(ctx, g_shared_exec, err);
  return g_shared;
}

void nl_lua_shared_close(void) {
  nl_lua_close(g_shared);
  g_shared = NULL;
}

/* ---- blocks at the prompt ---- */

int nl_lua_block_opens(const char *line) {
  const char *p = line;
  while (*p == ' ' || *p == '\t') p++;
  if (strncmp(p, "lua", 3) != 0) return 0;
  p += 3;
  if (*p != ' ' && *p != '\t' && *p != '{') return 0;
  while (*p == ' ' || *p == '\t') p++;
  return *p == '{';
}

/* p points at '['. For a long bracket ([[ or [=*[) the last character of
 * its closing bracket (]] or ]=*]), NULL when it is not closed; p itself
 * when p opens no long bracket. */
static const char *long_bracket(const char *p) {
  const char *q = p + 1;
  int eq = 0;
  while (*q == '=') q++, eq++;
  if (*q != '[') return p;
  for (q++; *q; q++) {
    if (*q != ']') continue;
    const char *r = q + 1;
    int k = 0;
    while (*r == '=') r++, k++;
    if (k == eq && *r == ']') return r;
  }
  return NULL;
}

/* Where the block's closing brace is (index into text), or -1. Braces
 * are counted outside strings ('', "", [[ ]], [=[ ]=]) and comments. */
static long block_end(const char *text) {
  const char *p = strchr(text, '{');
  if (!p) return -1;
  int depth = 0;
  for (; *p; p++) {
    char c = *p;
    if (c == '-' && p[1] == '-') {
      p += 2;
      if (*p == '[') { /* a long comment? */
        const char *e = long_bracket(p);
        if (!e) return -1;
        if (e != p) {
          p = e;
          continue;
        }
      }
      while (*p && *p != '\n') p++;
      if (!*p) return -1;
      continue;
    }
    if (c == '"' || c == '\'') {
      for (p++; *p && *p != c && *p != '\n'; p++)
        if (*p == '\\' && p[1]) p++;
      if (!*p) return -1;
      continue;
    }
    if (c == '[') { /* a long string? */
      const char *e = long_bracket(p);
      if (!e) return -1;
      p = e;
      continue;
    }
    if (c == '{') depth++;
    if (c == '}' && --depth == 0) return (long)(p - text);
  }
  return -1;
}

int nl_lua_block_incomplete(const char *text) { return block_end(text) < 0; }

int nl_lua_block_run(nl_ctx *ctx, const char *text, const char *where) {
  long end = block_end(text);
  if (end < 0) {
    fprintf(ctx->err, "normlab lua: the block has no closing '}'\n");
    return 2;
  }
  const char *rest = text + end + 1;
  while (*rest == ' ' || *rest == '\t' || *rest == '\n' || *rest == '\r' || *rest == ';') rest++;
  if (*rest) {
    fprintf(ctx->err, "normlab lua: unexpected text after the block's '}': %.40s\n", rest);
    return 2;
  }
  const char *open = strchr(text, '{');
  char *code = nl_xstrndup(open + 1, (size_t)(text + end - open - 1));
  nl_error err;
  nl_error_clear(&err);
  nl_lua *s = nl_lua_shared(ctx, &err);
  char name[600];
  snprintf(name, sizeof name, "=lua block%s%s", where ? " at " : "", where ? where : "");
  int rc = s ? nl_lua_run_string(s, code, name, &err) : -1;
  free(code);
  fflush(ctx->out);
  if (rc != 0) {
    fprintf(ctx->err, "normlab lua: %s\n", err.msg);
    return nl_error_exit_status(&err);
  }
  return 0;
}
