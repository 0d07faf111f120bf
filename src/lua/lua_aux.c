/* Helpers shared by the files of the Lua bindings (local.h): the host of
 * a state, errors with the caller's position, options tables, protected
 * callbacks with tracebacks. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lua/local.h"

static const char HOST_KEY = 'h'; /* registry key: its address */

void nl_lua_set_host(lua_State *L, nl_lua *s) {
  lua_pushlightuserdata(L, s);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &HOST_KEY);
}

nl_lua *nl_lua_host(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &HOST_KEY);
  nl_lua *s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return s;
}

#undef luaL_error
int nl_lua_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  luaL_where(L, 1);
  if (lua_rawlen(L, -1) == 0) {
    lua_pop(L, 1);
    luaL_where(L, 2);
  }
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return lua_error(L);
}
#define luaL_error nl_lua_error

int nl_lua_fail(lua_State *L, const char *what, const nl_error *err) {
  return luaL_error(L, "%s: %s", what, err && err->msg[0] ? err->msg : "failed");
}

/* ---- options tables ---- */

void nl_lua_check_keys(lua_State *L, int idx, const char *what, const char *const *allowed) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      luaL_error(L, "%s: option keys must be names, got a %s", what, luaL_typename(L, -1));
    }
    const char *k = lua_tostring(L, -1);
    int found = 0;
    for (int i = 0; allowed[i] && !found; i++) found = strcmp(allowed[i], k) == 0;
    if (!found) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; allowed[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, allowed[i]);
      }
      luaL_pushresult(&b);
      luaL_error(L, "%s: unknown option '%s' (known: %s)", what, k, lua_tostring(L, -1));
    }
  }
}

static int get_field(lua_State *L, int idx, const char *key) {
  if (lua_isnoneornil(L, idx)) return 0;
  lua_getfield(L, idx, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

lua_Integer nl_lua_opt_int(lua_State *L, int idx, const char *key, lua_Integer def,
                           lua_Integer lo, lua_Integer hi, const char *what) {
  if (!get_field(L, idx, key)) return def;
  int isnum;
  lua_Integer v = lua_tointegerx(L, -1, &isnum);
  if (!isnum) luaL_error(L, "%s: option '%s' expects an integer, got %s", what, key,
                         luaL_tolstring(L, -1, NULL));
  if (v < lo || v > hi)
    luaL_error(L, "%s: option '%s' must be between %I and %I, got %I", what, key, lo, hi, v);
  lua_pop(L, 1);
  return v;
}

double nl_lua_opt_num(lua_State *L, int idx, const char *key, double def, const char *what) {
  if (!get_field(L, idx, key)) return def;
  int isnum;
  double v = (double)lua_tonumberx(L, -1, &isnum);
  if (!isnum || v != v || v - v != 0)
    luaL_error(L, "%s: option '%s' expects a finite number", what, key);
  lua_pop(L, 1);
  return v;
}

const char *nl_lua_opt_str(lua_State *L, int idx, const char *key, const char *def,
                           const char *what) {
  if (!get_field(L, idx, key)) return def;
  if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "%s: option '%s' expects a string, got a %s", what, key, luaL_typename(L, -1));
  /* the string stays alive in the options table */
  const char *v = lua_tostring(L, -1);
  lua_pop(L, 1);
  return v;
}

int nl_lua_opt_bool(lua_State *L, int idx, const char *key, int def, const char *what) {
  if (!get_field(L, idx, key)) return def;
  if (!lua_isboolean(L, -1)) luaL_error(L, "%s: option '%s' expects true or false", what, key);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* ---- errors, tracebacks, callbacks ---- */

int nl_lua_msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  if (strstr(msg, "\nstack traceback:")) { /* re-raised from a callback */
    lua_pushstring(L, msg);
    return 1;
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

typedef struct cbcall {
  void (*build)(lua_State *L, const void *data);
  const void *data;
} cbcall;

static int cb_trampoline(lua_State *L) {
  const cbcall *c = lua_touserdata(L, 2);
  lua_settop(L, 1); /* the function */
  c->build(L, c->data);
  lua_call(L, 1, 1);
  return 1;
}

int nl_lua_callback(lua_State *L, int fn, int errslot, void (*build)(lua_State *L, const void *data),
                    const void *data) {
  if (!lua_checkstack(L, 6)) return -1; /* errslot keeps nil: reported as a stack overflow */
  cbcall c = {build, data};
  int base = lua_gettop(L);
  lua_pushcfunction(L, nl_lua_msgh);
  lua_pushcfunction(L, cb_trampoline);
  lua_pushvalue(L, fn);
  lua_pushlightuserdata(L, &c);
  int rc = lua_pcall(L, 2, 1, base + 1);
  if (rc != LUA_OK) {
    lua_replace(L, errslot);
    lua_settop(L, base);
    return -1;
  }
  int stop = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
  lua_settop(L, base);
  return stop;
}
