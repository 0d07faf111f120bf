/* normlab.cmd(): any command of the table from Lua, its output printed or
 * captured (as text or decoded JSON); the command table as data. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "lua/local.h"
#include "app/split.h"

void nl_lua_push_json(lua_State *L, json_t *j) {
  luaL_checkstack(L, 4, "JSON nesting");
  switch (json_typeof(j)) {
    case JSON_OBJECT: {
      lua_createtable(L, 0, (int)json_object_size(j));
      const char *k;
      json_t *v;
      json_object_foreach(j, k, v) {
        nl_lua_push_json(L, v);
        lua_setfield(L, -2, k);
      }
      break;
    }
    case JSON_ARRAY: {
      lua_createtable(L, (int)json_array_size(j), 0);
      size_t i;
      json_t *v;
      json_array_foreach(j, i, v) {
        nl_lua_push_json(L, v);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      break;
    }
    case JSON_STRING: lua_pushstring(L, json_string_value(j)); break;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(j)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(j)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    default: lua_pushnil(L); break;
  }
}

/* A command's output and errors go to memory; what it printed to its error
 * stream is passed on (success) or becomes the error text (failure). */
int nl_lua_run_cmd(lua_State *L, int argc, char **argv, int capture, nl_progress_fn progress,
                   void *user, const int *stopped) {
  nl_lua *s = nl_lua_host(L);
  char *obuf = NULL, *ebuf = NULL;
  size_t olen = 0, elen = 0;
  FILE *o = capture ? open_memstream(&obuf, &olen) : NULL;
  FILE *e = open_memstream(&ebuf, &elen);
  if ((capture && !o) || !e) {
    if (o) fclose(o);
    if (e) fclose(e);
    free(obuf);
    free(ebuf);
    return luaL_error(L, "normlab.cmd: out of memory");
  }
  nl_ctx c = s->ctx;
  if (o) c.out = o;
  c.err = e;
  c.tty = 0;
  c.progress = progress;
  c.progress_user = user;
  fflush(s->ctx.out);
  int rc = s->exec(&c, argc, argv);
  if (o) fclose(o);
  fclose(e);
  if (rc == 130 && stopped && *stopped) { /* stopped by the callback: not an error */
    rc = 0;
    elen = 0;
  }
  if (rc == 0) {
    if (elen) {
      fwrite(ebuf, 1, elen, s->ctx.err);
      fflush(s->ctx.err);
    }
    if (capture) lua_pushlstring(L, obuf, olen);
  } else {
    while (elen > 0 && (ebuf[elen - 1] == '\n' || ebuf[elen - 1] == '\r')) elen--;
    if (elen)
      lua_pushlstring(L, ebuf, elen);
    else
      lua_pushfstring(L, "normlab %s: failed (exit %d)", argv[0], rc);
  }
  free(obuf);
  free(ebuf);
  return rc;
}

/* Words of the argument: a string (split like a prompt line, one command)
 * or a sequence of words. Pushes a userdata that frees them on collection
 * is overkill here: the words live in a Lua table instead. */
static int push_words(lua_State *L, int idx) {
  lua_newtable(L);
  int t = lua_gettop(L), n = 0;
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_Integer len = luaL_len(L, idx);
    for (lua_Integer i = 1; i <= len; i++) {
      lua_geti(L, idx, i);
      if (!lua_isstring(L, -1)) luaL_error(L, "normlab.cmd: word %I is not a string", i);
      lua_tostring(L, -1);
      lua_rawseti(L, t, ++n);
    }
    return n;
  }
  const char *line = luaL_checkstring(L, idx);
  nl_words *cmds;
  int ncmd;
  nl_error err;
  nl_error_clear(&err);
  if (nl_split_line(line, &cmds, &ncmd, &err) != 0) return nl_lua_fail(L, "normlab.cmd", &err);
  if (ncmd != 1) {
    nl_words_free(cmds, ncmd);
    luaL_error(L, "normlab.cmd: expects one command, got %d (no ';' lists)", ncmd);
  }
  for (int i = 0; i < cmds[0].argc; i++) {
    lua_pushstring(L, cmds[0].argv[i]);
    lua_rawseti(L, t, ++n);
  }
  nl_words_free(cmds, ncmd);
  return n;
}

typedef struct prog_cb {
  lua_State *L;
  int fn, errslot;
  int failed, stopped;
} prog_cb;

static void build_progress(lua_State *L, const void *d) {
  const nl_progress *p = d;
  lua_createtable(L, 0, 6);
  lua_pushstring(L, p->task ? p->task : "");
  lua_setfield(L, -2, "task");
  if (p->label) {
    lua_pushstring(L, p->label);
    lua_setfield(L, -2, "label");
  }
  lua_pushinteger(L, p->done);
  lua_setfield(L, -2, "done");
  lua_pushinteger(L, p->total);
  lua_setfield(L, -2, "total");
  lua_pushnumber(L, p->elapsed);
  lua_setfield(L, -2, "elapsed");
  if (p->detail) {
    lua_pushstring(L, p->detail);
    lua_setfield(L, -2, "detail");
  }
  for (int i = 0; i < p->nvals; i++) {
    lua_pushnumber(L, p->vals[i]);
    lua_setfield(L, -2, p->keys[i]);
  }
  if (p->task && strcmp(p->task, "train") == 0) { /* on_epoch's own names */
    lua_pushinteger(L, p->done);
    lua_setfield(L, -2, "epoch");
    lua_pushinteger(L, p->total);
    lua_setfield(L, -2, "epochs");
  }
}

static int progress_cb(const nl_progress *p, void *u) {
  prog_cb *c = u;
  if (c->failed || c->stopped) return 1;
  int r = nl_lua_callback(c->L, c->fn, c->errslot, build_progress, p);
  if (r < 0) c->failed = 1;
  if (r > 0) c->stopped = 1;
  return r != 0;
}

int nl_lua_cmd_argv(lua_State *L, int words, int n, int capture, int progress_fn);

/* Run the words in table `words` (n of them). progress_fn: stack index of
 * a Lua callback or 0. Returns the status; pushes output or error text. */
int nl_lua_cmd_argv(lua_State *L, int words, int n, int capture, int progress_fn) {
  char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, words, i + 1);
    argv[i] = (char *)lua_tostring(L, -1); /* kept alive by the table */
    lua_pop(L, 1);
  }
  argv[n] = NULL;
  prog_cb pc = {L, progress_fn, 0, 0, 0};
  if (progress_fn) {
    lua_pushnil(L);
    pc.errslot = lua_gettop(L);
  }
  int rc = nl_lua_run_cmd(L, n, argv, capture, progress_fn ? progress_cb : NULL, &pc, &pc.stopped);
  if (pc.failed) {
    lua_pushvalue(L, pc.errslot);
    return lua_error(L);
  }
  if (progress_fn) lua_remove(L, pc.errslot);
  lua_remove(L, -2); /* argv */
  return rc;
}

/* normlab.cmd(line | words [, {capture=, json=, check=, on_progress=}]) */
static int l_cmd(lua_State *L) {
  static const char *const keys[] = {"capture", "json", "check", "on_progress", NULL};
  nl_lua_check_keys(L, 2, "normlab.cmd", keys);
  int json = nl_lua_opt_bool(L, 2, "json", 0, "normlab.cmd");
  int capture = json || nl_lua_opt_bool(L, 2, "capture", 0, "normlab.cmd");
  int check = nl_lua_opt_bool(L, 2, "check", 1, "normlab.cmd");
  int fn = 0;
  if (!lua_isnoneornil(L, 2)) {
    lua_getfield(L, 2, "on_progress");
    if (!lua_isnil(L, -1)) {
      luaL_checktype(L, -1, LUA_TFUNCTION);
      fn = lua_gettop(L);
    } else {
      lua_pop(L, 1);
    }
  }
  int n = push_words(L, 1);
  int words = lua_gettop(L);
  if (n < 1) return luaL_error(L, "normlab.cmd: no command given");
  int rc = nl_lua_cmd_argv(L, words, n, capture, fn);
  if (rc != 0) {
    if (check) return lua_error(L);
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushinteger(L, rc);
    return 3;
  }
  if (json) {
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &je);
    if (!j) {
      lua_rawgeti(L, words, 1);
      return luaL_error(L, "normlab.cmd: the output of '%s' is not JSON (line %d: %s)",
                        lua_tostring(L, -1), je.line, je.text);
    }
    nl_lua_push_json(L, j);
    json_decref(j);
    return 1;
  }
  if (!capture) lua_pushboolean(L, 1);
  return 1;
}

/* normlab.json_decode(text) -> Lua value; normlab.json_load(path) */
static int push_decoded(lua_State *L, json_t *j, const json_error_t *je, const char *what) {
  if (!j) return luaL_error(L, "%s: %s:%d:%d: %s", what, je->source, je->line, je->column, je->text);
  nl_lua_push_json(L, j);
  json_decref(j);
  return 1;
}

static int l_json_decode(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  json_error_t je;
  json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &je);
  if (j && lua_checkstack(L, 8) == 0) json_decref(j), j = NULL;
  return push_decoded(L, j, &je, "normlab.json_decode");
}

static int l_json_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  json_error_t je;
  json_t *j = json_load_file(path, JSON_DECODE_ANY, &je);
  return push_decoded(L, j, &je, "normlab.json_load");
}

static int l_has_command(lua_State *L) {
  lua_pushboolean(L, nl_cmd_find(luaL_checkstring(L, 1)) != NULL);
  return 1;
}

/* normlab.commands() -> { {name=, summary=, options={...}}, ... } */
static int l_commands(lua_State *L) {
  lua_newtable(L);
  for (int i = 0; nl_commands[i]; i++) {
    const nl_cmd *c = nl_commands[i];
    lua_createtable(L, 0, 3);
    lua_pushstring(L, c->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, c->summary);
    lua_setfield(L, -2, "summary");
    lua_newtable(L);
    for (int k = 0; c->opts && c->opts[k].name; k++) {
      lua_pushstring(L, c->opts[k].name);
      lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "options");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

void nl_lua_open_cmd(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"cmd", l_cmd}, {"has_command", l_has_command}, {"commands", l_commands},
      {"json_decode", l_json_decode}, {"json_load", l_json_load}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
