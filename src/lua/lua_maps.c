/* Mappings as Lua handles (load, import, DyT table, points, save) and the
 * GP search over them with a Lua callback per generation. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/interrupt.h"
#include "base/mem.h"
#include "base/timer.h"
#include "lua/local.h"
#include "model/maps.h"
#include "search/campaign_opts.h"
#include "search/sequential.h"
#include "adapt/adapt.h"
#include "app/adapt_cmd.h"
#include "search/dyt.h"
#include "search/gp.h"

typedef struct lmaps { nl_maps m; } lmaps;

static nl_maps *check_maps(lua_State *L, int idx) {
  return &((lmaps *)luaL_checkudata(L, idx, NL_LUA_MAPS))->m;
}

static lmaps *new_maps(lua_State *L) {
  lmaps *m = lua_newuserdatauv(L, sizeof *m, 0);
  nl_maps_init(&m->m);
  luaL_setmetatable(L, NL_LUA_MAPS);
  return m;
}

void nl_lua_push_maps_owned(lua_State *L, nl_maps *src);
void nl_lua_push_maps_owned(lua_State *L, nl_maps *src) {
  if (!lua_checkstack(L, 4)) {
    nl_maps_free(src);
    luaL_error(L, "maps: stack overflow");
  }
  lmaps *m = new_maps(L);
  m->m = *src;
  nl_maps_init(src);
}

/* normlab.load_maps(path) */
static int l_load_maps(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lmaps *m = new_maps(L);
  nl_error err;
  nl_error_clear(&err);
  if (nl_maps_load(&m->m, path, &err) != 0) {
    nl_maps_init(&m->m);
    return nl_lua_fail(L, "normlab.load_maps", &err);
  }
  return 1;
}

/* normlab.import_maps(path, {x_prefix=, x_suffix=, y_prefix=, y_suffix=}) */
static int l_import_maps(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  static const char *const keys[] = {"x_prefix", "x_suffix", "y_prefix", "y_suffix", NULL};
  const char *W = "normlab.import_maps";
  nl_lua_check_keys(L, 2, W, keys);
  nl_maps_import_opts o = {nl_lua_opt_str(L, 2, "x_prefix", NULL, W), nl_lua_opt_str(L, 2, "x_suffix", NULL, W),
                           nl_lua_opt_str(L, 2, "y_prefix", NULL, W), nl_lua_opt_str(L, 2, "y_suffix", NULL, W)};
  lmaps *m = new_maps(L);
  nl_error err;
  nl_error_clear(&err);
  if (nl_maps_import(&m->m, path, &o, &err) != 0) {
    nl_maps_init(&m->m);
    return nl_lua_fail(L, W, &err);
  }
  return 1;
}

static int mp_gc(lua_State *L) {
  nl_maps_free(check_maps(L, 1));
  return 0;
}

static int mp_len(lua_State *L) {
  lua_pushinteger(L, check_maps(L, 1)->nlayers);
  return 1;
}

static int mp_tostring(lua_State *L) {
  nl_maps *m = check_maps(L, 1);
  lua_pushfstring(L, "normlab.maps %s (%d layers, %d points in the first)", m->path ? m->path : "(in memory)",
                  m->nlayers, m->nlayers ? (int)m->layers[0].n : 0);
  return 1;
}

static int mp_layers(lua_State *L) {
  nl_maps *m = check_maps(L, 1);
  lua_createtable(L, m->nlayers, 0);
  for (int i = 0; i < m->nlayers; i++) {
    lua_pushstring(L, m->layers[i].name);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static const nl_maps_layer *check_layer(lua_State *L, nl_maps *m, int idx, const char *what) {
  const char *name = luaL_checkstring(L, idx);
  const nl_maps_layer *l = nl_maps_find(m, name);
  if (!l) luaL_error(L, "%s: no layer '%s' in %s", what, name, m->path ? m->path : "the mappings");
  return l;
}

/* maps:points(layer [, limit]) -> xs, ys (the first `limit` points) */
static int mp_points(lua_State *L) {
  nl_maps *m = check_maps(L, 1);
  const nl_maps_layer *l = check_layer(L, m, 2, "maps:points");
  lua_Integer lim = luaL_optinteger(L, 3, (lua_Integer)l->n);
  size_t n = lim < 0 ? 0 : (size_t)lim < l->n ? (size_t)lim : l->n;
  lua_createtable(L, (int)n, 0);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushnumber(L, (double)l->x[i]);
    lua_rawseti(L, -3, (lua_Integer)i + 1);
    lua_pushnumber(L, (double)l->y[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 2;
}

/* maps:meta([key]) -> value, or a table of all metadata */
static int mp_meta(lua_State *L) {
  nl_maps *m = check_maps(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    const char *v = nl_maps_get_meta(m, luaL_checkstring(L, 2));
    if (v) lua_pushstring(L, v);
    else lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, m->nmeta);
  for (int i = 0; i < m->nmeta; i++) {
    lua_pushstring(L, m->meta[i].value);
    lua_setfield(L, -2, m->meta[i].key);
  }
  return 1;
}

static int mp_save(lua_State *L) {
  nl_maps *m = check_maps(L, 1);
  nl_error err;
  nl_error_clear(&err);
  if (nl_maps_save(m, luaL_checkstring(L, 2), &err) != 0) return nl_lua_fail(L, "maps:save", &err);
  lua_pushvalue(L, 1);
  return 1;
}

/* maps:dyt([{bins=}]) -> { {name, points, alpha, mse, r2, bound_r2, var_y}, ...,
 *                          mean_mse, mean_r2, mean_bound_r2, bins } */
static int mp_dyt(lua_State *L) {
  nl_maps *m = check_maps(L, 1);
  static const char *const keys[] = {"bins", NULL};
  nl_lua_check_keys(L, 2, "maps:dyt", keys);
  int bins = (int)nl_lua_opt_int(L, 2, "bins", NL_BOUND_BINS, 1, 1000000, "maps:dyt");
  if (m->nlayers < 1) return luaL_error(L, "maps:dyt: no layers");
  lua_createtable(L, m->nlayers, 4); /* before the C allocation */
  nl_dyt_row *rows = nl_xcalloc((size_t)m->nlayers, sizeof *rows);
  nl_error err;
  nl_error_clear(&err);
  if (nl_dyt_table(m, bins, nl_lua_threads(L), rows, &err) != 0) {
    free(rows);
    return nl_lua_fail(L, "maps:dyt", &err);
  }
  double sr2 = 0, sb = 0, smse = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const nl_dyt_row *r = &rows[i];
    lua_createtable(L, 0, 7);
    lua_pushstring(L, r->name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)r->points);
    lua_setfield(L, -2, "points");
    lua_pushnumber(L, r->alpha);
    lua_setfield(L, -2, "alpha");
    lua_pushnumber(L, r->mse);
    lua_setfield(L, -2, "mse");
    lua_pushnumber(L, r->r2);
    lua_setfield(L, -2, "r2");
    lua_pushnumber(L, r->bound_r2);
    lua_setfield(L, -2, "bound_r2");
    lua_pushnumber(L, r->var_y);
    lua_setfield(L, -2, "var_y");
    lua_rawseti(L, -2, i + 1);
    sr2 += r->r2;
    sb += r->bound_r2;
    smse += r->mse;
  }
  int n = m->nlayers;
  free(rows);
  lua_pushnumber(L, smse / n);
  lua_setfield(L, -2, "mean_mse");
  lua_pushnumber(L, sr2 / n);
  lua_setfield(L, -2, "mean_r2");
  lua_pushnumber(L, sb / n);
  lua_setfield(L, -2, "mean_bound_r2");
  lua_pushinteger(L, bins);
  lua_setfield(L, -2, "bins");
  return 1;
}

/* ---- evolve ---- */

typedef struct gen_cb {
  lua_State *L;
  int fn, errslot;
  int failed, stopped;
  int task, ntasks; /* in-memory runs: which layer-seed this is */
} gen_cb;

/* The end of normlab.evolve, whichever way it searched: raise a failed
 * on_generation, a search error or Ctrl-C (after its generation, as
 * model:eval does: a script exits 130; only on_generation returning false
 * is a quiet stop), else return the result table res with its layers, set,
 * stopped and seconds. */
static int evolve_finish(lua_State *L, const gen_cb *cb, int rc, const nl_error *err, int res,
                         int layers, int setidx, int stopped, double t0) {
  if (cb->failed) {
    lua_pushvalue(L, cb->errslot);
    if (lua_isnil(L, -1)) return luaL_error(L, "normlab.evolve: on_generation: stack overflow");
    return luaL_error(L, "normlab.evolve: on_generation failed: %s", lua_tostring(L, -1));
  }
  if (rc != 0) {
    if (nl_interrupted() && err->code != NL_EINPUT) return luaL_error(L, "normlab.evolve: interrupted");
    return nl_lua_fail(L, "normlab.evolve", err);
  }
  if (nl_interrupted()) return luaL_error(L, "normlab.evolve: interrupted");
  lua_pushvalue(L, layers);
  lua_setfield(L, res, "layers");
  lua_pushvalue(L, setidx);
  lua_setfield(L, res, "set");
  lua_pushboolean(L, stopped);
  lua_setfield(L, res, "stopped");
  lua_pushnumber(L, nl_now() - t0);
  lua_setfield(L, res, "seconds");
  lua_pushvalue(L, res);
  return 1;
}

static void build_gen(lua_State *L, const void *d) {
  const nl_gp_progress *p = d;
  lua_createtable(L, 0, 10);
  lua_pushstring(L, p->layer);
  lua_setfield(L, -2, "layer");
  lua_pushinteger(L, p->seed);
  lua_setfield(L, -2, "seed");
  lua_pushinteger(L, p->gen);
  lua_setfield(L, -2, "gen");
  lua_pushinteger(L, p->gens);
  lua_setfield(L, -2, "gens");
  lua_pushnumber(L, p->best_fitness);
  lua_setfield(L, -2, "best_fitness");
  lua_pushinteger(L, p->front_size);
  lua_setfield(L, -2, "front_size");
  lua_pushnumber(L, p->node_evals_per_s);
  lua_setfield(L, -2, "node_evals_per_s");
  lua_pushnumber(L, p->elapsed);
  lua_setfield(L, -2, "elapsed");
  lua_pushinteger(L, p->task + 1);
  lua_setfield(L, -2, "task");
  lua_pushinteger(L, p->ntasks);
  lua_setfield(L, -2, "ntasks");
}

static int on_gen(const nl_gp_progress *p, void *u) {
  gen_cb *c = u;
  if (c->failed || c->stopped) return 1;
  nl_gp_progress q = *p;
  if (c->ntasks) {
    q.task = c->task;
    q.ntasks = c->ntasks;
  }
  int r = nl_lua_callback(c->L, c->fn, c->errslot, build_gen, &q);
  if (r < 0) c->failed = 1;
  if (r > 0) c->stopped = 1;
  return r != 0;
}

static void push_member(lua_State *L, const nl_gp_member *m) {
  lua_createtable(L, 0, 9);
  nl_lua_push_expr(L, &m->prog);
  lua_setfield(L, -2, "expr");
  char *t = nl_print(&m->prog, NL_PRINT_EXACT);
  lua_pushstring(L, t);
  free(t);
  lua_setfield(L, -2, "text");
  lua_pushinteger(L, m->nodes);
  lua_setfield(L, -2, "nodes");
  lua_pushinteger(L, m->flops);
  lua_setfield(L, -2, "flops");
  lua_pushinteger(L, m->rank);
  lua_setfield(L, -2, "rank");
  lua_pushnumber(L, m->train_fitness);
  lua_setfield(L, -2, "train_fitness");
  lua_pushnumber(L, m->val_fitness);
  lua_setfield(L, -2, "val_fitness");
  lua_pushnumber(L, m->val_mse);
  lua_setfield(L, -2, "val_mse");
  lua_pushnumber(L, m->val_r2);
  lua_setfield(L, -2, "val_r2");
  lua_pushstring(L, nl_gp_origin_name(m->origin));
  lua_setfield(L, -2, "origin");
}

/* The settings of normlab.evolve's options table at index o, through the
 * campaign's one parser (search/campaign_opts.h), which the evolve
 * command uses too: the same checks and messages. Lua's spelling of the
 * keys (max_nodes) is the parser's; numbers and booleans are given as
 * their text. Left to the caller: on_generation and a list of layers. */
static int copts_gc(lua_State *L) {
  nl_gp_campaign_opts_free(luaL_checkudata(L, 1, "normlab.campaign_opts"));
  return 0;
}

/* Campaign settings on the stack (their strings freed with the userdata,
 * also when an error is raised). */
static nl_gp_campaign_opts *push_campaign_opts(lua_State *L) {
  nl_gp_campaign_opts *o = lua_newuserdatauv(L, sizeof *o, 0);
  memset(o, 0, sizeof *o);
  if (luaL_newmetatable(L, "normlab.campaign_opts")) {
    lua_pushcfunction(L, copts_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  nl_gp_campaign_opts_init(o);
  return o;
}

static void get_opts(lua_State *L, int o, nl_gp_campaign_opts *opts) {
  const char *W = "normlab.evolve";
  nl_error err;
  nl_error_clear(&err);
  if (!lua_isnoneornil(L, o)) {
    luaL_checktype(L, o, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, o)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      if (!k) luaL_error(L, "%s: option keys must be names", W);
      int t = lua_type(L, -1);
      char num[64];
      const char *v = NULL;
      if (strcmp(k, "on_generation") == 0 || (strcmp(k, "layer") == 0 && t == LUA_TTABLE)) {
        lua_pop(L, 1);
        continue;
      }
      if (strcmp(k, "maps") == 0 || strcmp(k, "json") == 0)
        luaL_error(L, "%s: %s= is not an option here (the mappings are the first argument)", W, k);
      if (t == LUA_TSTRING) {
        v = lua_tostring(L, -1);
      } else if (t == LUA_TNUMBER) {
        lua_Number x = lua_tonumber(L, -1);
        if (lua_isinteger(L, -1))
          snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -1));
        else if (x == floor(x) && fabs(x) < 1e15)
          snprintf(num, sizeof num, "%.0f", (double)x);
        else
          snprintf(num, sizeof num, "%.17g", (double)x);
        v = num;
      } else if (t == LUA_TBOOLEAN) {
        v = lua_toboolean(L, -1) ? NULL : "false"; /* true: a flag given */
      } else {
        luaL_error(L, "%s: option %s expects a string, a number or a boolean", W, k);
      }
      if (nl_gp_campaign_opts_set(opts, k, v, &err) != 0) nl_lua_fail(L, W, &err);
      lua_pop(L, 1);
    }
  }
  if (nl_gp_campaign_opts_finish(opts, &err) != 0) nl_lua_fail(L, W, &err);
  if (!opts->cfg.threads) opts->cfg.threads = nl_lua_threads(L);
}

/* The layers to search: opts.layer a name or "all" (parsed into
 * opts->layer), or a list of names. Pushes a table of names. */
static int push_layer_list(lua_State *L, int o, nl_maps *m, const nl_gp_campaign_opts *opts) {
  lua_newtable(L);
  int t = lua_gettop(L), n = 0;
  int pushed = !lua_isnoneornil(L, o);
  int ty = pushed ? lua_getfield(L, o, "layer") : LUA_TNIL;
  if (ty == LUA_TTABLE) {
    lua_Integer len = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= len; i++) {
      if (lua_geti(L, -1, i) != LUA_TSTRING) luaL_error(L, "normlab.evolve: layer %I is not a name", i);
      lua_rawseti(L, t, ++n);
    }
  } else if (opts->layer) {
    lua_pushstring(L, opts->layer);
    lua_rawseti(L, t, ++n);
  } else {
    for (int i = 0; i < m->nlayers; i++) {
      lua_pushstring(L, m->layers[i].name);
      lua_rawseti(L, t, ++n);
    }
  }
  if (pushed) lua_pop(L, 1);
  nl_error err;
  nl_error_clear(&err);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, t, i);
    if (nl_gp_campaign_check_layer(m, lua_tostring(L, -1), &err) != 0)
      nl_lua_fail(L, "normlab.evolve", &err);
    lua_pop(L, 1);
  }
  return n;
}

static void push_summary_layer(lua_State *L, const nl_gp_layer_summary *l) {
  lua_createtable(L, 0, 10);
  lua_pushstring(L, l->name);
  lua_setfield(L, -2, "name");
  if (l->expr) {
    nl_lua_push_expr(L, &l->prog);
    lua_setfield(L, -2, "expr");
    lua_pushstring(L, l->expr);
    lua_setfield(L, -2, "text");
  }
  lua_pushinteger(L, l->seed);
  lua_setfield(L, -2, "seed");
  lua_pushinteger(L, l->nodes);
  lua_setfield(L, -2, "nodes");
  lua_pushinteger(L, l->flops);
  lua_setfield(L, -2, "flops");
  lua_pushnumber(L, l->val_fitness);
  lua_setfield(L, -2, "val_fitness");
  lua_pushnumber(L, l->val_mse);
  lua_setfield(L, -2, "val_mse");
  lua_pushnumber(L, l->val_r2);
  lua_setfield(L, -2, "val_r2");
  lua_pushnumber(L, l->seconds);
  lua_setfield(L, -2, "seconds");
}

/* normlab.evolve{model = FILE, output = DIR, sequential = true, images =,
 * offset =, points =, data =, extract_seed =, ... the other evolve options,
 * on_generation =}: the mappings recorded from the model in memory (one
 * extraction, or layer by layer with sequential), results in DIR as the
 * evolve command writes them; returns what normlab.evolve returns (without
 * the fronts). */
static int evolve_model(lua_State *L) {
  lua_settop(L, 1);
  nl_gp_campaign_opts *opts = push_campaign_opts(L); /* 2 */
  get_opts(L, 1, opts);
  if (!opts->model || !opts->output)
    return luaL_error(L, "normlab.evolve: give the mappings as the first argument, or model= "
                         "and output= in the options table");
  gen_cb cb = {L, 0, 0, 0, 0, 0, 0};
  lua_getfield(L, 1, "on_generation");
  if (!lua_isnil(L, -1)) {
    luaL_checktype(L, -1, LUA_TFUNCTION);
    cb.fn = lua_gettop(L);
  } else {
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  cb.errslot = lua_gettop(L);
  lua_newtable(L);
  int res = lua_gettop(L);
  lua_newtable(L);
  int layers = lua_gettop(L);
  nl_exprset set;
  nl_exprset_init(&set);
  nl_lua_push_exprset_owned(L, &set);
  int setidx = lua_gettop(L);
  nl_exprset *S = nl_lua_check_exprset(L, setidx);
  const char *one[1] = {opts->layer};
  nl_gp_campaign cam = {.cfg = &opts->cfg, .layers = opts->layer ? one : NULL,
                        .nlayers = opts->layer ? 1 : 0, .seeds = opts->seeds,
                        .outdir = opts->output, .progress = cb.fn ? on_gen : NULL, .user = &cb,
                        .recompute = opts->recompute};
  nl_gp_source src;
  nl_gp_source_from_opts(&src, opts);
  nl_error err;
  nl_error_clear(&err);
  double t0 = nl_now();
  nl_gp_summary s;
  int rc = nl_gp_model_campaign_run(&cam, &src, &s, &err), stopped = 0;
  if (rc != 0 && err.code == NL_EINTR && (cb.stopped || cb.failed || nl_interrupted())) {
    stopped = 1;
    rc = cb.failed || nl_interrupted() ? -1 : 0;
  }
  if (rc == 0 && lua_checkstack(L, 8)) {
    for (int i = 0; i < s.nlayers; i++) {
      push_summary_layer(L, &s.layers[i]);
      lua_rawseti(L, layers, i + 1);
      if (s.layers[i].expr) nl_exprset_set(S, s.layers[i].name, &s.layers[i].prog, NULL);
    }
  }
  nl_gp_summary_free(&s);
  return evolve_finish(L, &cb, rc, &err, res, layers, setidx, stopped, t0);
}

/* normlab.evolve(maps, {layer=, seeds=, seed=, pop=, gens=, max_nodes=, ...,
 *   complexity=, select=, threads=, output=, recompute=, on_generation=}) ->
 *   {layers = { {name, expr, text, seed, nodes, flops, val_fitness, val_mse,
 *   val_r2, seconds, front = {...}}, ...}, set = exprset, stopped, seconds} */
static int l_evolve(lua_State *L) {
  if (lua_type(L, 1) == LUA_TTABLE) return evolve_model(L);
  nl_maps *m = check_maps(L, 1);
  lua_settop(L, 2);
  nl_gp_campaign_opts *opts = push_campaign_opts(L); /* 3 */
  get_opts(L, 2, opts);
  nl_gp_config cfg = opts->cfg;
  const int seeds = opts->seeds;
  const char *outdir = opts->output; /* owned by opts, on the stack */
  gen_cb cb = {L, 0, 0, 0, 0, 0, 0};
  if (!lua_isnil(L, 2)) {
    lua_getfield(L, 2, "on_generation");
    if (!lua_isnil(L, -1)) {
      luaL_checktype(L, -1, LUA_TFUNCTION);
      cb.fn = lua_gettop(L);
    } else {
      lua_pop(L, 1);
    }
  }
  int nl = push_layer_list(L, 2, m, opts);
  int names = lua_gettop(L);
  lua_pushnil(L);
  cb.errslot = lua_gettop(L);
  /* results are built as Lua values as they come, so nothing C-side is
   * held across a Lua call that may raise */
  lua_newtable(L);
  int res = lua_gettop(L);
  lua_newtable(L);
  int layers = lua_gettop(L);
  nl_exprset set;
  nl_exprset_init(&set);
  nl_lua_push_exprset_owned(L, &set);
  int setidx = lua_gettop(L);
  nl_exprset *S = nl_lua_check_exprset(L, setidx);
  double t0 = nl_now();
  nl_error err;
  nl_error_clear(&err);
  /* init=FILE.exprs: the layers' seeds, owned by the Lua stack */
  const nl_exprset *init = NULL;
  if (opts->init) {
    nl_exprset is;
    nl_exprset_init(&is);
    if (nl_exprset_load(opts->init, &is, &err) != 0) {
      nl_exprset_free(&is);
      return nl_lua_fail(L, "normlab.evolve", &err);
    }
    nl_lua_push_exprset_owned(L, &is);
    init = nl_lua_check_exprset(L, lua_gettop(L));
  }
  int rc = 0, stopped = 0;
  if (outdir) {
    /* a campaign: fronts on disk, resumable */
    const char **lnames = nl_xmalloc(sizeof(char *) * (size_t)(nl ? nl : 1));
    for (int i = 0; i < nl; i++) {
      lua_rawgeti(L, names, i + 1);
      lnames[i] = lua_tostring(L, -1); /* kept alive by the names table */
      lua_pop(L, 1);
    }
    nl_gp_campaign cam = {.cfg = &cfg, .maps = m, .layers = lnames, .nlayers = nl,
                          .seeds = seeds, .outdir = outdir, .progress = cb.fn ? on_gen : NULL,
                          .user = &cb, .recompute = opts->recompute, .init = init,
                          .init_path = opts->init};
    nl_gp_summary s;
    rc = nl_gp_campaign_run(&cam, &s, &err);
    free(lnames);
    if (rc != 0 && err.code == NL_EINTR && (cb.stopped || cb.failed || nl_interrupted())) {
      stopped = 1;
      rc = cb.failed || nl_interrupted() ? -1 : 0;
    }
    if (rc == 0 && lua_checkstack(L, 8)) {
      for (int i = 0; i < s.nlayers; i++) {
        push_summary_layer(L, &s.layers[i]);
        lua_rawseti(L, layers, i + 1);
        if (s.layers[i].expr) nl_exprset_set(S, s.layers[i].name, &s.layers[i].prog, NULL);
      }
    }
    nl_gp_summary_free(&s);
  } else {
    /* in memory: each layer-seed searched, the best seed's choice kept;
     * every layer checked before the first search */
    for (int i = 0; i < nl && rc == 0; i++) {
      lua_rawgeti(L, names, i + 1);
      const nl_maps_layer *Ly = nl_maps_find(m, lua_tostring(L, -1));
      lua_pop(L, 1);
      rc = nl_gp_check_points(&cfg, Ly->name, Ly->x, Ly->y, Ly->n, &err);
    }
    int task = 0;
    for (int i = 0; i < nl && rc == 0 && !stopped; i++) {
      lua_rawgeti(L, names, i + 1);
      const nl_maps_layer *Ly = nl_maps_find(m, lua_tostring(L, -1));
      lua_pop(L, 1);
      lua_createtable(L, 0, 11);
      int lt = lua_gettop(L);
      lua_newtable(L);
      int front = lua_gettop(L);
      int nfront = 0;
      double best = INFINITY, secs = 0;
      int have = 0;
      for (int k = 0; k < seeds && rc == 0 && !stopped; k++) {
        if (nl_interrupted()) {
          stopped = 1;
          break;
        }
        nl_gp_result r;
        cb.task = task++;
        cb.ntasks = nl * seeds;
        const nl_exprset_entry *ie = init ? nl_exprset_find(init, Ly->name) : NULL;
        nl_gp_extra xtra = {ie ? &ie->prog : NULL, ie ? 1 : 0, NULL, NULL};
        if (nl_gp_run_with(&cfg, &xtra, Ly->name, Ly->x, Ly->y, Ly->n, k, cb.fn ? on_gen : NULL,
                           &cb, &r, &err) != 0) {
          nl_error_prefix(&err, "layer %s seed %d", Ly->name, k);
          rc = -1;
          break;
        }
        secs += r.seconds;
        if (!r.finished) stopped = 1;
        if (cb.failed) {
          nl_gp_result_free(&r);
          break;
        }
        for (int j = 0; j < r.nfront; j++) {
          push_member(L, &r.front[j]);
          lua_pushinteger(L, k);
          lua_setfield(L, -2, "seed");
          lua_rawseti(L, front, ++nfront);
        }
        if (r.nfront > 0 && r.chosen >= 0) {
          const nl_gp_member *c = &r.front[r.chosen];
          if (!have || c->val_fitness < best) {
            have = 1;
            best = c->val_fitness;
            push_member(L, c);
            /* copy the chosen member's fields into the layer table */
            lua_pushnil(L);
            while (lua_next(L, -2)) {
              lua_pushvalue(L, -2);
              lua_insert(L, -2);
              lua_settable(L, lt);
            }
            lua_pop(L, 1);
            lua_pushinteger(L, k);
            lua_setfield(L, lt, "seed");
            nl_exprset_set(S, Ly->name, &c->prog, NULL);
          }
        }
        nl_gp_result_free(&r);
      }
      lua_pushvalue(L, front);
      lua_setfield(L, lt, "front");
      lua_pushstring(L, Ly->name);
      lua_setfield(L, lt, "name");
      lua_pushnumber(L, secs);
      lua_setfield(L, lt, "seconds");
      lua_pop(L, 1); /* front */
      if (nfront || have) lua_rawseti(L, layers, (lua_Integer)luaL_len(L, layers) + 1);
      else lua_pop(L, 1);
    }
    if (rc == 0 && cb.failed) rc = -1;
  }
  return evolve_finish(L, &cb, rc, &err, res, layers, setidx, stopped, t0);
}

/* normlab.adapt{model =, output =, budget =, sequential =, calibrate =,
 *   calibrate_what =, calibrate_epochs =, realign =, epochs =, train_images =,
 *   data =, images =, points =, seeds =, pop =, gens =, select =,
 *   eval_images =, threads =} -> the report (adapt/adapt.h; the adapt
 * command's --json), stage lines on the host's error stream. */
static void adapt_note(void *user, const char *line) {
  nl_ctx *ctx = user;
  fprintf(ctx->err, "adapt: %s\n", line);
  fflush(ctx->err);
}

static void adapt_opts_gc_free(lua_State *L, nl_adapt_opts *o, const nl_error *err) {
  nl_adapt_opts_free(o);
  nl_lua_fail(L, "normlab.adapt", err);
}

static int l_adapt(lua_State *L) {
  static const char *const keys[] = {"model", "output", "budget", "sequential", "calibrate",
                                     "calibrate_what", "calibrate_epochs", "realign", "epochs",
                                     "train_images", "data", "images", "points", "seeds", "pop",
                                     "gens", "select", "eval_images", "threads", NULL};
  const char *W = "normlab.adapt";
  luaL_checktype(L, 1, LUA_TTABLE);
  nl_lua_check_keys(L, 1, W, keys);
  lua_getfield(L, 1, "model");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushstring(L, "normlab");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "default_model");
    lua_call(L, 0, 1);
    lua_replace(L, -2);
  }
  const char *model = luaL_checkstring(L, -1); /* kept on the stack */
  /* the defaults, read before anything is held that an error would leak */
  nl_adapt_opts d;
  nl_adapt_opts_init(&d);
  int dimages = d.gp.images, dpop = d.gp.cfg.pop, dgens = d.gp.cfg.gens;
  long dpoints = d.gp.points;
  nl_adapt_opts_free(&d);
  const char *output = nl_lua_opt_str(L, 1, "output", NULL, W);
  if (!output) return luaL_error(L, "%s: output= is required", W);
  const char *budget = nl_lua_opt_str(L, 1, "budget", NULL, W);
  int sequential = nl_lua_opt_bool(L, 1, "sequential", 0, W);
  int calibrate = (int)nl_lua_opt_int(L, 1, "calibrate", 0, 0, 60000, W);
  const char *cwhat = nl_lua_opt_str(L, 1, "calibrate_what", "both", W);
  int cepochs = (int)nl_lua_opt_int(L, 1, "calibrate_epochs", 10, 1, 100000, W);
  const char *realign = nl_lua_opt_str(L, 1, "realign", NULL, W);
  int epochs = (int)nl_lua_opt_int(L, 1, "epochs", 1, 1, 100000, W);
  long timages = (long)nl_lua_opt_int(L, 1, "train_images", 0, 0, 60000, W);
  int evim = (int)nl_lua_opt_int(L, 1, "eval_images", 0, 0, 10000, W);
  int threads = (int)nl_lua_opt_int(L, 1, "threads", nl_lua_threads(L), 0, 256, W);
  int images = (int)nl_lua_opt_int(L, 1, "images", dimages, 1, 60000, W);
  long points = (long)nl_lua_opt_int(L, 1, "points", dpoints, 0, 4294967295LL, W);
  int seeds = (int)nl_lua_opt_int(L, 1, "seeds", 1, 1, 10000, W);
  int pop = (int)nl_lua_opt_int(L, 1, "pop", dpop, 4, 1000000, W);
  int gens = (int)nl_lua_opt_int(L, 1, "gens", dgens, 0, 1000000, W);
  const char *data = nl_lua_opt_str(L, 1, "data", NULL, W);
  const char *sel = nl_lua_opt_str(L, 1, "select", NULL, W);
  nl_lua *host = nl_lua_host(L);
  nl_error err;
  nl_error_clear(&err);
  nl_adapt_opts o;
  nl_adapt_opts_init(&o);
  o.model = model;
  o.output = output;
  o.budget = budget;
  o.gp.sequential = sequential;
  o.calibrate = calibrate;
  o.calib_what = cwhat;
  o.calib_epochs = cepochs;
  o.realign = realign;
  o.epochs = epochs;
  o.train_images = timages;
  o.eval_images = evim;
  o.threads = threads;
  o.gp.images = images;
  o.gp.points = points;
  o.gp.seeds = seeds;
  o.gp.cfg.pop = pop;
  o.gp.cfg.gens = gens;
  if ((data && nl_gp_campaign_opts_set(&o.gp, "data", data, &err) != 0) ||
      (sel && nl_gp_campaign_opts_set(&o.gp, "select", sel, &err) != 0))
    adapt_opts_gc_free(L, &o, &err);
  o.realign_fn = nl_app_realign;
  o.realign_user = &host->ctx;
  o.note = adapt_note;
  o.note_user = &host->ctx;
  json_t *rep = NULL;
  if (nl_adapt_run(&o, &rep, &err) != 0) adapt_opts_gc_free(L, &o, &err);
  nl_adapt_opts_free(&o);
  nl_lua_push_json(L, rep);
  json_decref(rep);
  return 1;
}

void nl_lua_open_maps(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"layers", mp_layers}, {"points", mp_points}, {"meta", mp_meta},
      {"save", mp_save},     {"dyt", mp_dyt},       {NULL, NULL},
  };
  static const luaL_Reg meta[] = {{"__gc", mp_gc}, {"__len", mp_len}, {"__tostring", mp_tostring}, {NULL, NULL}};
  luaL_newmetatable(L, NL_LUA_MAPS);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"load_maps", l_load_maps}, {"import_maps", l_import_maps},
                                 {"evolve", l_evolve},       {"adapt", l_adapt},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
