/* Expressions and expression sets as Lua handles. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "expr/expr.h"
#include "lua/local.h"

/* ---- expr ---- */

typedef struct { nl_prog p; } lexpr;
typedef struct { nl_exprset s; } lset;

nl_prog *nl_lua_check_expr(lua_State *L, int idx) {
  return &((lexpr *)luaL_checkudata(L, idx, NL_LUA_EXPR))->p;
}

nl_exprset *nl_lua_check_exprset(lua_State *L, int idx) {
  return &((lset *)luaL_checkudata(L, idx, NL_LUA_EXPRSET))->s;
}

static lexpr *new_expr(lua_State *L) {
  lexpr *e = lua_newuserdatauv(L, sizeof *e, 0);
  nl_prog_init(&e->p);
  luaL_setmetatable(L, NL_LUA_EXPR);
  return e;
}

void nl_lua_push_expr(lua_State *L, const nl_prog *p) {
  lexpr *e = new_expr(L);
  nl_prog_copy(&e->p, p);
}

void nl_lua_to_prog(lua_State *L, int idx, nl_prog *out, const char *what) {
  nl_prog_init(out);
  if (luaL_testudata(L, idx, NL_LUA_EXPR)) {
    nl_prog_copy(out, nl_lua_check_expr(L, idx));
    return;
  }
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "%s: expects an expression (normlab.expr or text), got a %s", what,
               luaL_typename(L, idx));
  nl_error err;
  nl_error_clear(&err);
  if (nl_parse(lua_tostring(L, idx), 1, out, &err) != 0) {
    nl_prog_free(out);
    nl_lua_fail(L, what, &err);
  }
}

/* normlab.expr(text) */
static int l_expr(lua_State *L) {
  const char *text = luaL_checkstring(L, 1);
  lexpr *e = new_expr(L);
  nl_error err;
  nl_error_clear(&err);
  if (nl_parse(text, 1, &e->p, &err) != 0) return nl_lua_fail(L, "normlab.expr", &err);
  return 1;
}

static int e_gc(lua_State *L) {
  lexpr *e = luaL_checkudata(L, 1, NL_LUA_EXPR);
  nl_prog_free(&e->p);
  return 0;
}

static const char *const styles[] = {"short", "exact", "c", "torch", "latex", NULL};
static const nl_print_style style_val[] = {NL_PRINT_SHORT, NL_PRINT_EXACT, NL_PRINT_C,
                                           NL_PRINT_TORCH, NL_PRINT_LATEX};

static int push_print(lua_State *L, const nl_prog *p, nl_print_style st) {
  char *s = nl_print(p, st);
  lua_pushstring(L, s);
  free(s);
  return 1;
}

/* e:tostring([style]) — default "exact" (round-trip); __tostring the same */
static int e_tostring(lua_State *L) {
  nl_prog *p = nl_lua_check_expr(L, 1);
  int st = luaL_checkoption(L, 2, "exact", styles);
  return push_print(L, p, style_val[st]);
}

static int e_mt_tostring(lua_State *L) { return push_print(L, nl_lua_check_expr(L, 1), NL_PRINT_EXACT); }

/* e:eval(x | {xs} [, "float" | "double"]): the float engine the norm layers
 * use (default), or the double-precision reference evaluator. */
static int e_eval(lua_State *L) {
  nl_prog *p = nl_lua_check_expr(L, 1);
  static const char *const prec[] = {"float", "double", NULL};
  int dbl = luaL_checkoption(L, 3, "float", prec);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    double x = lua_tonumber(L, 2);
    if (dbl) {
      lua_pushnumber(L, nl_eval1(p, x));
    } else {
      float xf = (float)x, y;
      nl_eval_ws ws;
      nl_eval_ws_init(&ws, p->len);
      nl_eval(p, &xf, &y, 1, &ws);
      nl_eval_ws_free(&ws);
      lua_pushnumber(L, (double)y);
    }
    return 1;
  }
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  if (n < 0 || n > 100000000) return luaL_error(L, "expr:eval: %I points is too many", n);
  lua_createtable(L, (int)n, 0);
  if (n == 0) return 1;
  /* the points are copied into the result table first (through __index
   * if the argument has one), so nothing below can raise while C memory
   * is held: raw access to a presized table does not allocate */
  int out = lua_gettop(L);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, 2, i) != LUA_TNUMBER)
      return luaL_error(L, "expr:eval: point %I is not a number", i);
    lua_rawseti(L, out, i);
  }
  float *x = nl_try_alloc((size_t)n, 2 * sizeof(float));
  if (!x) return luaL_error(L, "expr:eval: out of memory for %I points", n);
  float *y = x + n;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, out, i);
    x[i - 1] = (float)lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  if (!dbl) {
    nl_eval_ws ws;
    nl_eval_ws_init(&ws, p->len);
    nl_eval(p, x, y, (size_t)n, &ws);
    nl_eval_ws_free(&ws);
  }
  for (lua_Integer i = 1; i <= n; i++) {
    double v;
    if (dbl) {
      lua_rawgeti(L, out, i);
      v = nl_eval1(p, lua_tonumber(L, -1));
      lua_pop(L, 1);
    } else {
      v = (double)y[i - 1];
    }
    lua_pushnumber(L, v);
    lua_rawseti(L, out, i);
  }
  free(x);
  return 1;
}

static int e_call(lua_State *L) {
  lua_settop(L, 2);
  return e_eval(L);
}

/* e:simplify() -> a new, simplified expression */
static int e_simplify(lua_State *L) {
  nl_prog *p = nl_lua_check_expr(L, 1);
  lexpr *e = new_expr(L);
  nl_prog_copy(&e->p, p);
  nl_simplify(&e->p);
  return 1;
}

static void push_cost(lua_State *L, double per_el, nl_token_cost c, int d) {
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, per_el);
  lua_setfield(L, -2, "per_element");
  lua_pushnumber(L, c.flops);
  lua_setfield(L, -2, "flops");
  lua_pushnumber(L, c.read_bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, d);
  lua_setfield(L, -2, "d");
}

static int check_d(lua_State *L, int idx) {
  lua_Integer d = luaL_optinteger(L, idx, 1);
  if (d < 1 || d > 1000000) luaL_error(L, "cost: width d must be between 1 and 1000000, got %I", d);
  return (int)d;
}

/* e:cost([d [, {clip=N}]]) -> {per_element, flops, bytes, d}: per token of width d */
static int e_cost(lua_State *L) {
  nl_prog *p = nl_lua_check_expr(L, 1);
  int d = check_d(L, 2);
  static const char *const keys[] = {"clip", NULL};
  nl_lua_check_keys(L, 3, "expr:cost", keys);
  nl_cost_opts o = {(int)nl_lua_opt_int(L, 3, "clip", 0, 0, 1000, "expr:cost")};
  int c = nl_cost(p, &o);
  push_cost(L, c, nl_cost_expr_token(c, d), d);
  return 1;
}

static int l_cost_layernorm(lua_State *L) {
  int d = check_d(L, 1);
  nl_token_cost c = nl_cost_layernorm_token(d);
  push_cost(L, c.flops / d, c, d);
  return 1;
}

static int l_cost_dyt(lua_State *L) {
  int d = check_d(L, 1);
  nl_token_cost c = nl_cost_dyt_token(d);
  push_cost(L, c.flops / d, c, d);
  return 1;
}

static int e_nodes(lua_State *L) {
  lua_pushinteger(L, nl_lua_check_expr(L, 1)->len);
  return 1;
}

static int e_depth(lua_State *L) {
  lua_pushinteger(L, nl_prog_depth(nl_lua_check_expr(L, 1)));
  return 1;
}

/* e:consts() -> {c1, c2, ...} in postfix order */
static int e_consts(lua_State *L) {
  nl_prog *p = nl_lua_check_expr(L, 1);
  int n = nl_prog_nconst(p);
  lua_createtable(L, n, 0);
  int k = 0;
  for (int i = 0; i < p->len; i++)
    if (p->nodes[i].op == NL_OP_CONST) {
      lua_pushnumber(L, (double)p->nodes[i].val);
      lua_rawseti(L, -2, ++k);
    }
  return 1;
}

static int e_eq(lua_State *L) {
  nl_prog *a = nl_lua_check_expr(L, 1), *b = nl_lua_check_expr(L, 2);
  int same = a->len == b->len;
  for (int i = 0; same && i < a->len; i++)
    same = a->nodes[i].op == b->nodes[i].op && a->nodes[i].ival == b->nodes[i].ival &&
           (a->nodes[i].op != NL_OP_CONST || a->nodes[i].val == b->nodes[i].val);
  lua_pushboolean(L, same);
  return 1;
}

/* ---- exprset ---- */

static lset *new_set(lua_State *L) {
  lset *s = lua_newuserdatauv(L, sizeof *s, 0);
  nl_exprset_init(&s->s);
  luaL_setmetatable(L, NL_LUA_EXPRSET);
  return s;
}

void nl_lua_push_exprset_owned(lua_State *L, nl_exprset *src) {
  lset *s = new_set(L);
  s->s = *src;
  nl_exprset_init(src);
}

/* normlab.exprset([path | {layer = expr, ...}]) */
static int l_exprset(lua_State *L) {
  lua_settop(L, 1);
  lset *s = new_set(L);
  if (lua_type(L, 1) == LUA_TSTRING) {
    nl_error err;
    nl_error_clear(&err);
    if (nl_exprset_load(lua_tostring(L, 1), &s->s, &err) != 0)
      return nl_lua_fail(L, "normlab.exprset", &err);
  } else if (lua_type(L, 1) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, 1)) {
      if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "normlab.exprset: keys must be layer names");
      nl_prog p;
      nl_lua_to_prog(L, -1, &p, "normlab.exprset");
      nl_exprset_set(&s->s, lua_tostring(L, -2), &p, NULL);
      nl_prog_free(&p);
      lua_pop(L, 1);
    }
  } else if (!lua_isnoneornil(L, 1)) {
    return luaL_error(L, "normlab.exprset: expects a file name or a table, got a %s",
                      luaL_typename(L, 1));
  }
  return 1;
}

static int s_gc(lua_State *L) {
  lset *s = luaL_checkudata(L, 1, NL_LUA_EXPRSET);
  nl_exprset_free(&s->s);
  return 0;
}

static int s_len(lua_State *L) {
  lua_pushinteger(L, nl_lua_check_exprset(L, 1)->n);
  return 1;
}

static int s_get(lua_State *L) {
  nl_exprset *s = nl_lua_check_exprset(L, 1);
  const nl_exprset_entry *e = nl_exprset_find(s, luaL_checkstring(L, 2));
  if (!e) {
    lua_pushnil(L);
    return 1;
  }
  nl_lua_push_expr(L, &e->prog);
  if (e->comment) lua_pushstring(L, e->comment);
  else lua_pushnil(L);
  return 2;
}

/* s:set(layer, expr | text | nil [, comment]) */
static int s_set(lua_State *L) {
  nl_exprset *s = nl_lua_check_exprset(L, 1);
  const char *name = luaL_checkstring(L, 2);
  if (!*name) return luaL_error(L, "exprset: empty layer name");
  if (lua_isnoneornil(L, 3)) {
    nl_exprset_remove(s, name);
    return 0;
  }
  const char *comment = luaL_optstring(L, 4, NULL);
  nl_prog p;
  nl_lua_to_prog(L, 3, &p, "exprset");
  nl_exprset_set(s, name, &p, comment);
  nl_prog_free(&p);
  return 0;
}

static int s_newindex(lua_State *L) {
  lua_settop(L, 3);
  return s_set(L);
}

static int s_names(lua_State *L) {
  nl_exprset *s = nl_lua_check_exprset(L, 1);
  lua_createtable(L, s->n, 0);
  for (int i = 0; i < s->n; i++) {
    lua_pushstring(L, s->e[i].name);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int s_save(lua_State *L) {
  nl_exprset *s = nl_lua_check_exprset(L, 1);
  const char *path = luaL_checkstring(L, 2);
  nl_error err;
  nl_error_clear(&err);
  if (nl_exprset_save(s, path, &err) != 0) return nl_lua_fail(L, "exprset:save", &err);
  lua_pushvalue(L, 1);
  return 1;
}

static int s_copy(lua_State *L) {
  nl_exprset *s = nl_lua_check_exprset(L, 1);
  lset *c = new_set(L);
  for (int i = 0; i < s->n; i++)
    nl_exprset_set(&c->s, s->e[i].name, &s->e[i].prog, s->e[i].comment);
  return 1;
}

/* s:cost(d [, {clip=}]) -> { {layer, per_element, flops, bytes}, ..., total_flops, total_bytes } */
static int s_cost(lua_State *L) {
  nl_exprset *s = nl_lua_check_exprset(L, 1);
  int d = check_d(L, 2);
  static const char *const keys[] = {"clip", NULL};
  nl_lua_check_keys(L, 3, "exprset:cost", keys);
  nl_cost_opts o = {(int)nl_lua_opt_int(L, 3, "clip", 0, 0, 1000, "exprset:cost")};
  lua_createtable(L, s->n, 3);
  double tf = 0, tb = 0;
  for (int i = 0; i < s->n; i++) {
    int c = nl_cost(&s->e[i].prog, &o);
    nl_token_cost t = nl_cost_expr_token(c, d);
    push_cost(L, c, t, d);
    lua_pushstring(L, s->e[i].name);
    lua_setfield(L, -2, "layer");
    lua_rawseti(L, -2, i + 1);
    tf += t.flops;
    tb += t.read_bytes;
  }
  lua_pushnumber(L, tf);
  lua_setfield(L, -2, "total_flops");
  lua_pushnumber(L, tb);
  lua_setfield(L, -2, "total_bytes");
  return 1;
}

static int s_tostring(lua_State *L) {
  nl_exprset *s = nl_lua_check_exprset(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; i < s->n; i++) {
    char *e = nl_print(&s->e[i].prog, NL_PRINT_EXACT);
    lua_pushfstring(L, "%s = %s%s%s\n", s->e[i].name, e, s->e[i].comment ? "  # " : "",
                    s->e[i].comment ? s->e[i].comment : "");
    free(e);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  return 1;
}

static const luaL_Reg set_methods[] = {
    {"get", s_get},   {"set", s_set},   {"names", s_names}, {"save", s_save},
    {"copy", s_copy}, {"cost", s_cost}, {NULL, NULL},
};

/* s.NAME: a method, else the layer's expression (or nil) */
static int s_index(lua_State *L) {
  nl_lua_check_exprset(L, 1);
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, lua_tostring(L, 2));
    if (!lua_isnil(L, -1)) return 1;
    lua_settop(L, 2);
    s_get(L);
    lua_settop(L, 3);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static int s_next(lua_State *L) {
  nl_exprset *s = nl_lua_check_exprset(L, 1);
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(1));
  if (i >= s->n) return 0;
  lua_pushinteger(L, i + 1);
  lua_replace(L, lua_upvalueindex(1));
  lua_pushstring(L, s->e[i].name);
  nl_lua_push_expr(L, &s->e[i].prog);
  return 2;
}

/* pairs(set): name, expr in file order */
static int s_pairs(lua_State *L) {
  nl_lua_check_exprset(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, s_next, 1);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

void nl_lua_open_expr(lua_State *L) {
  static const luaL_Reg expr_methods[] = {
      {"eval", e_eval},     {"simplify", e_simplify}, {"cost", e_cost},     {"tostring", e_tostring},
      {"nodes", e_nodes},   {"depth", e_depth},       {"consts", e_consts}, {NULL, NULL},
  };
  static const luaL_Reg expr_meta[] = {
      {"__gc", e_gc}, {"__tostring", e_mt_tostring}, {"__call", e_call}, {"__len", e_nodes},
      {"__eq", e_eq}, {NULL, NULL},
  };
  luaL_newmetatable(L, NL_LUA_EXPR);
  luaL_setfuncs(L, expr_meta, 0);
  luaL_newlib(L, expr_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  static const luaL_Reg set_meta[] = {
      {"__gc", s_gc},         {"__len", s_len},     {"__index", s_index}, {"__newindex", s_newindex},
      {"__tostring", s_tostring}, {"__pairs", s_pairs}, {NULL, NULL},
  };
  luaL_newmetatable(L, NL_LUA_EXPRSET);
  luaL_setfuncs(L, set_meta, 0);
  luaL_newlib(L, set_methods);
  lua_setfield(L, -2, "methods");
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"expr", l_expr},
                                 {"exprset", l_exprset},
                                 {"cost_layernorm", l_cost_layernorm},
                                 {"cost_dyt", l_cost_dyt},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
