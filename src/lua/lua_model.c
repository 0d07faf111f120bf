/* Models as Lua handles: load, info, eval, extract (to a maps handle),
 * in-memory norm changes, and the bridge to the replace and train
 * commands. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/model_path.h"
#include "base/fileio.h"
#include "base/interrupt.h"
#include "base/mem.h"
#include "base/timer.h"
#include "data/dataset.h"
#include "expr/expr.h"
#include "lua/local.h"
#include "model/extract.h"
#include "model/maps.h"
#include "model/vit.h"

typedef struct lmodel {
  nl_vit m;
  char *path;
  int loaded;
} lmodel;

static lmodel *check_model(lua_State *L, int idx) {
  lmodel *m = luaL_checkudata(L, idx, NL_LUA_MODEL);
  if (!m->loaded) luaL_error(L, "model: the handle is closed");
  return m;
}

static const char *default_model(void) {
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/samples/models/%s", NL_SRCDIR, NL_DEFAULT_MODEL);
  if (nl_file_exists(buf)) return buf;
  snprintf(buf, sizeof buf, "%s/models/%s", NL_DATADIR, NL_DEFAULT_MODEL);
  return buf;
}

static int l_default_model(lua_State *L) {
  lua_pushstring(L, default_model());
  return 1;
}

/* Load `path` into a new handle pushed on the stack. */
static void push_model(lua_State *L, const char *path, int heads, const char *what) {
  lmodel *m = lua_newuserdatauv(L, sizeof *m, 0);
  memset(m, 0, sizeof *m);
  luaL_setmetatable(L, NL_LUA_MODEL);
  nl_vit_load_opts lo = {heads};
  nl_error err;
  nl_error_clear(&err);
  if (nl_vit_load(&m->m, path, &lo, &err) != 0) nl_lua_fail(L, what, &err);
  m->loaded = 1;
  m->path = nl_xstrdup(path);
}

/* normlab.load_model([path [, {heads=}]]) */
static int l_load_model(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  if (!path) path = default_model();
  static const char *const keys[] = {"heads", NULL};
  nl_lua_check_keys(L, 2, "normlab.load_model", keys);
  int heads = (int)nl_lua_opt_int(L, 2, "heads", 0, 0, 4096, "normlab.load_model");
  push_model(L, path, heads, "normlab.load_model");
  return 1;
}

static int m_gc(lua_State *L) {
  lmodel *m = luaL_checkudata(L, 1, NL_LUA_MODEL);
  if (m->loaded) nl_vit_free(&m->m);
  m->loaded = 0;
  free(m->path);
  m->path = NULL;
  return 0;
}

static int m_tostring(lua_State *L) {
  lmodel *m = luaL_checkudata(L, 1, NL_LUA_MODEL);
  if (!m->loaded) {
    lua_pushstring(L, "normlab.model (closed)");
    return 1;
  }
  lua_pushfstring(L, "normlab.model %s (width %d, depth %d, %d norm layers)", m->path, m->m.cfg.dim,
                  m->m.cfg.depth, m->m.nnorms);
  return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}
static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}
static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}
static void set_bool(lua_State *L, const char *k, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

/* model:info() -> the fields of 'normlab info --json' */
static int m_info(lua_State *L) {
  lmodel *h = check_model(L, 1);
  const nl_vit_config *c = &h->m.cfg;
  lua_newtable(L);
  set_str(L, "model", h->path);
  set_str(L, "architecture", c->arch);
  set_str(L, "config_source", c->source);
  set_int(L, "img_size", c->img_size);
  set_int(L, "in_chans", c->in_chans);
  set_int(L, "patch_size", c->patch);
  set_int(L, "embed_dim", c->dim);
  set_int(L, "depth", c->depth);
  set_int(L, "num_heads", c->heads);
  set_int(L, "mlp_hidden", c->mlp_hidden);
  set_int(L, "num_classes", c->classes);
  set_int(L, "tokens", c->tokens);
  set_bool(L, "class_token", c->class_token);
  set_str(L, "global_pool", c->avg_pool ? "avg" : "token");
  set_bool(L, "layer_scale", c->layer_scale);
  set_bool(L, "qkv_bias", c->qkv_bias);
  set_num(L, "eps", (double)c->eps);
  lua_createtable(L, c->nmean, 0);
  for (int i = 0; i < c->nmean; i++) {
    lua_pushnumber(L, (double)c->mean[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "mean");
  lua_createtable(L, c->nmean, 0);
  for (int i = 0; i < c->nmean; i++) {
    lua_pushnumber(L, (double)c->std[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "std");
  set_str(L, "normalization_source", c->norm_source);
  set_int(L, "parameters", (lua_Integer)nl_vit_param_count(&h->m));
  set_num(L, "flops_per_image", nl_vit_flops_per_image(c));
  lua_createtable(L, h->m.nnorms, 0);
  for (int i = 0; i < h->m.nnorms; i++) {
    lua_pushstring(L, h->m.norms[i].name);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "norm_layers");
  return 1;
}

/* model:norms() -> { {name, kind, alpha?, expr?}, ... } */
static int m_norms(lua_State *L) {
  lmodel *h = check_model(L, 1);
  lua_createtable(L, h->m.nnorms, 0);
  for (int i = 0; i < h->m.nnorms; i++) {
    const nl_norm *n = &h->m.norms[i];
    lua_createtable(L, 0, 3);
    set_str(L, "name", n->name);
    set_str(L, "kind", n->kind == NL_NORM_DYT ? "dyt" : n->kind == NL_NORM_EXPR ? "expr" : "layernorm");
    if (n->kind == NL_NORM_DYT) set_num(L, "alpha", (double)n->alpha);
    if (n->kind == NL_NORM_EXPR && n->prog) {
      char *e = nl_print(n->prog, NL_PRINT_EXACT);
      set_str(L, "expr", e);
      free(e);
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static nl_norm *find_norm(lua_State *L, lmodel *h, const char *name, const char *what) {
  nl_norm *n = nl_vit_norm_find(&h->m, name);
  if (!n) luaL_error(L, "%s: %s has no norm layer '%s' (see model:info().norm_layers)", what, h->path, name);
  return n;
}

static void set_one(lua_State *L, lmodel *h, const char *layer, int idx, const char *what) {
  nl_norm *n = find_norm(L, h, layer, what);
  if (lua_type(L, idx) == LUA_TNUMBER) {
    nl_norm_set_dyt(n, (float)lua_tonumber(L, idx));
    return;
  }
  if (lua_type(L, idx) == LUA_TSTRING && strcmp(lua_tostring(L, idx), "layernorm") == 0) {
    nl_norm_set_layernorm(n);
    return;
  }
  nl_prog p;
  nl_lua_to_prog(L, idx, &p, what);
  nl_error err;
  nl_error_clear(&err);
  int rc = nl_norm_set_expr(n, &p, &err);
  nl_prog_free(&p);
  if (rc != 0) nl_lua_fail(L, what, &err);
}

/* model:set_norm(layer, expr | text | alpha | "layernorm"): in memory */
static int m_set_norm(lua_State *L) {
  lmodel *h = check_model(L, 1);
  const char *layer = luaL_checkstring(L, 2);
  luaL_checkany(L, 3);
  set_one(L, h, layer, 3, "model:set_norm");
  lua_pushvalue(L, 1);
  return 1;
}

/* model:apply(set): every layer of the set becomes f(x)*w + b, in memory.
 * All names are checked before anything changes. Returns the count. */
static int m_apply(lua_State *L) {
  lmodel *h = check_model(L, 1);
  nl_exprset *s = nl_lua_check_exprset(L, 2);
  for (int i = 0; i < s->n; i++) find_norm(L, h, s->e[i].name, "model:apply");
  for (int i = 0; i < s->n; i++) {
    nl_error err;
    nl_error_clear(&err);
    if (nl_norm_set_expr(nl_vit_norm_find(&h->m, s->e[i].name), &s->e[i].prog, &err) != 0)
      return nl_lua_fail(L, "model:apply", &err);
  }
  lua_pushinteger(L, s->n);
  return 1;
}

static int m_save(lua_State *L) {
  lmodel *h = check_model(L, 1);
  nl_error err;
  nl_error_clear(&err);
  if (nl_vit_save(&h->m, luaL_checkstring(L, 2), &err) != 0) return nl_lua_fail(L, "model:save", &err);
  lua_pushvalue(L, 1);
  return 1;
}

static int m_path(lua_State *L) {
  lua_pushstring(L, check_model(L, 1)->path);
  return 1;
}

/* ---- eval ---- */

static int rank_of(const float *l, int classes, int label) {
  int r = 0;
  for (int k = 0; k < classes; k++)
    if (l[k] > l[label] || (l[k] == l[label] && k < label)) r++;
  return r;
}

/* model:eval{data=, offset=, limit=, batch=} -> {top1, top5, images, images_per_second} */
static int m_eval(lua_State *L) {
  lmodel *h = check_model(L, 1);
  static const char *const keys[] = {"data", "offset", "limit", "batch", NULL};
  const char *W = "model:eval";
  nl_lua_check_keys(L, 2, W, keys);
  const char *spec = nl_lua_opt_str(L, 2, "data", "fmnist:test", W);
  long offset = (long)nl_lua_opt_int(L, 2, "offset", 0, 0, 1000000000, W);
  long limit = (long)nl_lua_opt_int(L, 2, "limit", 0, 0, 1000000000, W);
  int batch = (int)nl_lua_opt_int(L, 2, "batch", 100, 1, 4096, W);
  const nl_vit_config *c = &h->m.cfg;
  nl_error err;
  nl_error_clear(&err);
  nl_dataset d;
  if (nl_dataset_load(&d, spec, offset, limit, &err) != 0) return nl_lua_fail(L, W, &err);
  int rc = 0;
  if (d.rows != c->img_size || d.cols != c->img_size)
    rc = nl_fail(&err, NL_EINPUT, "%s expects %dx%d images but %s has %dx%d", h->path, c->img_size,
                 c->img_size, d.name, d.rows, d.cols);
  else if (d.classes > c->classes)
    rc = nl_fail(&err, NL_EINPUT, "%s has %d classes but %s has labels up to %d", h->path,
                 c->classes, d.name, d.classes - 1);
  nl_vit_acts acts;
  if (!rc) rc = nl_vit_acts_init(&acts, c, batch, 0, &err);
  if (rc) {
    nl_dataset_free(&d);
    return nl_lua_fail(L, W, &err);
  }
  float *x = nl_xmalloc(sizeof(float) * (size_t)batch * c->in_chans * d.rows * d.cols);
  long top1 = 0, top5 = 0, done = 0;
  int k5 = c->classes < 5 ? c->classes : 5;
  double t0 = nl_now();
  for (int i = 0; i < d.n && !rc; i += batch) {
    if (nl_interrupted()) {
      rc = nl_fail(&err, NL_EINTR, "interrupted after %ld of %d images", done, d.n);
      break;
    }
    int n = d.n - i < batch ? d.n - i : batch;
    nl_dataset_normalize(&d, i, n, c->in_chans, c->nmean, c->mean, c->std, x);
    rc = nl_vit_forward(&h->m, &acts, x, n, NULL, NULL, &err);
    if (rc) break;
    for (int b = 0; b < n; b++) {
      int r = rank_of(acts.logits + (size_t)b * c->classes, c->classes, d.labels[i + b]);
      top1 += r == 0;
      top5 += r < k5;
    }
    done += n;
  }
  double el = nl_now() - t0;
  free(x);
  nl_vit_acts_free(&acts);
  nl_dataset_free(&d);
  if (rc) return nl_lua_fail(L, W, &err);
  lua_createtable(L, 0, 4);
  set_num(L, "top1", done ? (double)top1 / done : 0);
  set_num(L, "top5", done ? (double)top5 / done : 0);
  set_int(L, "images", done);
  set_num(L, "images_per_second", el > 0 ? done / el : 0);
  return 1;
}

/* ---- extract ---- */

typedef struct source {
  const nl_dataset *d;
  const nl_vit_config *c;
} source;

static int fill(int first, int n, float *dst, void *user, nl_error *err) {
  (void)err;
  source *s = user;
  nl_dataset_normalize(s->d, first, n, s->c->in_chans, s->c->nmean, s->c->mean, s->c->std, dst);
  return 0;
}

/* maps handle (lua_maps.c) */
void nl_lua_push_maps_owned(lua_State *L, nl_maps *m);

/* model:extract{data=, offset=, images=, points=, seed=, batch=, output=} -> maps */
static int m_extract(lua_State *L) {
  lmodel *h = check_model(L, 1);
  static const char *const keys[] = {"data", "offset", "images", "points", "seed", "batch", "output", NULL};
  const char *W = "model:extract";
  nl_lua_check_keys(L, 2, W, keys);
  const char *spec = nl_lua_opt_str(L, 2, "data", "fmnist:test", W);
  long offset = (long)nl_lua_opt_int(L, 2, "offset", 0, 0, INT32_MAX, W);
  long images = (long)nl_lua_opt_int(L, 2, "images", NL_EXTRACT_IMAGES, 1, INT32_MAX, W);
  long points = (long)nl_lua_opt_int(L, 2, "points", NL_EXTRACT_POINTS, 0, UINT32_MAX, W);
  lua_Integer seed = nl_lua_opt_int(L, 2, "seed", NL_EXTRACT_SEED, 0, INT64_MAX, W);
  int batch = (int)nl_lua_opt_int(L, 2, "batch", 32, 1, 4096, W);
  const char *out = nl_lua_opt_str(L, 2, "output", NULL, W);
  nl_error err;
  nl_error_clear(&err);
  nl_dataset d;
  if (nl_dataset_load(&d, spec, offset, images, &err) != 0) return nl_lua_fail(L, W, &err);
  int rc = 0;
  if (d.n < images)
    rc = nl_fail(&err, NL_EINPUT, "%s has only %d images from offset %ld; images = %ld asked for",
                 spec, d.n, offset, images);
  if (rc == 0 && (d.rows != h->m.cfg.img_size || d.cols != h->m.cfg.img_size))
    rc = nl_fail(&err, NL_EINPUT, "%s images are %dx%d; the model expects %dx%d", spec, d.rows,
                 d.cols, h->m.cfg.img_size, h->m.cfg.img_size);
  nl_maps maps;
  nl_maps_init(&maps);
  if (rc == 0) {
    source s = {&d, &h->m.cfg};
    nl_extract_opts o = {.points = points, .seed = (uint64_t)seed, .batch = batch};
    rc = nl_extract(&h->m, (int)images, fill, &s, &o, &maps, &err);
  }
  nl_dataset_free(&d);
  if (rc == 0) {
    char v[32];
    nl_maps_set_meta(&maps, "model", h->path);
    if (h->m.cfg.arch[0]) nl_maps_set_meta(&maps, "architecture", h->m.cfg.arch);
    nl_maps_set_meta(&maps, "data", spec);
    snprintf(v, sizeof v, "%ld", offset);
    nl_maps_set_meta(&maps, "offset", v);
    nl_maps_set_meta(&maps, "y", "(y - b) / (w + 1e-12)");
    if (out) rc = nl_maps_save(&maps, out, &err);
  }
  if (rc != 0) {
    nl_maps_free(&maps);
    return nl_lua_fail(L, W, &err);
  }
  nl_lua_push_maps_owned(L, &maps);
  return 1;
}

/* ---- the bridge to commands that this build may not have ----
 * model:replace and model:train go through the command table with an
 * argv built from their options; a direct library call can take the
 * place of bridge_run later without changing the Lua side. */

int nl_lua_cmd_argv(lua_State *L, int words, int n, int capture, int progress_fn);

static int cmd_has_opt(const nl_cmd *c, const char *name) {
  for (int k = 0; c->opts && c->opts[k].name; k++)
    if (strcmp(c->opts[k].name, name) == 0) return 1;
  return 0;
}

/* Append "--name value" to the words table (n words so far). */
static int push_opt(lua_State *L, int words, int n, const nl_cmd *c, const char *name,
                    int validx) {
  if (!cmd_has_opt(c, name))
    luaL_error(L, "model:%s: the %s command has no option --%s", c->name, c->name, name);
  if (lua_isboolean(L, validx)) {
    if (!lua_toboolean(L, validx)) return n;
    lua_pushfstring(L, "--%s", name);
    lua_rawseti(L, words, ++n);
    return n;
  }
  if (!lua_isstring(L, validx))
    luaL_error(L, "model:%s: option %s expects a string or a number", c->name, name);
  lua_pushfstring(L, "--%s", name);
  lua_rawseti(L, words, ++n);
  lua_pushvalue(L, validx);
  lua_tostring(L, -1);
  lua_rawseti(L, words, ++n);
  return n;
}

/* A fresh temporary file name (the file is created empty). */
static void push_tmpname(lua_State *L, const char *suffix) {
  const char *dir = getenv("TMPDIR");
  char buf[4096];
  snprintf(buf, sizeof buf, "%s/normlab-lua-XXXXXX%s", dir && *dir ? dir : "/tmp", suffix);
  int fd = mkstemps(buf, (int)strlen(suffix));
  if (fd < 0) luaL_error(L, "cannot create a temporary file in %s", dir && *dir ? dir : "/tmp");
  close(fd);
  lua_pushstring(L, buf);
}

static void remove_tmps(lua_State *L, int tmps) {
  for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, tmps); i++) {
    lua_rawgeti(L, tmps, i);
    remove(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* Run command `name` with --model (this model) and --output (opts.output
 * or a temporary file), the options table's other fields as --key value
 * (underscores become dashes), `fixed` words first. The output checkpoint
 * is loaded as a new model handle. on_progress (a field name or NULL)
 * becomes the command's live progress callback. */
static int bridge_run(lua_State *L, const char *name, int opts, const char *const *skip,
                      const char *cbfield) {
  lmodel *h = check_model(L, 1);
  const nl_cmd *c = nl_cmd_find(name);
  if (!c) return luaL_error(L, "model:%s: %s is not available in this build", name, name);
  lua_newtable(L);
  int tmps = lua_gettop(L); /* temporary files to remove afterwards */
  lua_newtable(L);
  int words = lua_gettop(L), n = 0;
  lua_pushstring(L, name);
  lua_rawseti(L, words, ++n);
  lua_pushstring(L, h->path);
  n = push_opt(L, words, n, c, "model", lua_gettop(L));
  lua_pop(L, 1);
  int tmp = 0;
  if (opts && (lua_getfield(L, opts, "output"), !lua_isnil(L, -1))) {
    /* given */
  } else {
    if (opts) lua_pop(L, 1);
    push_tmpname(L, ".safetensors");
    tmp = 1;
  }
  int outidx = lua_gettop(L);
  n = push_opt(L, words, n, c, "output", outidx);
  int fn = 0;
  if (opts) {
    lua_pushnil(L);
    while (lua_next(L, opts)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      if (!k) luaL_error(L, "model:%s: option keys must be names", name);
      int skipped = strcmp(k, "output") == 0;
      for (int i = 0; skip && skip[i] && !skipped; i++) skipped = strcmp(k, skip[i]) == 0;
      if (cbfield && strcmp(k, cbfield) == 0) {
        luaL_checktype(L, -1, LUA_TFUNCTION);
        skipped = 1;
      }
      if (!skipped) {
        char opt[64];
        snprintf(opt, sizeof opt, "%s", k);
        for (char *p = opt; *p; p++)
          if (*p == '_') *p = '-';
        if (luaL_testudata(L, -1, NL_LUA_MODEL)) { /* teacher = model handle */
          lua_pushstring(L, check_model(L, lua_gettop(L))->path);
          lua_replace(L, -2);
        } else if (luaL_testudata(L, -1, NL_LUA_EXPRSET)) { /* a set: saved to a file */
          push_tmpname(L, ".exprs");
          lua_pushvalue(L, -1);
          lua_rawseti(L, tmps, (lua_Integer)lua_rawlen(L, tmps) + 1);
          nl_error err;
          nl_error_clear(&err);
          if (nl_exprset_save(nl_lua_check_exprset(L, -2), lua_tostring(L, -1), &err) != 0) {
            remove_tmps(L, tmps);
            nl_lua_fail(L, name, &err);
          }
          lua_replace(L, -2);
        }
        n = push_opt(L, words, n, c, opt, lua_gettop(L));
      }
      lua_pop(L, 1);
    }
    if (cbfield) {
      lua_getfield(L, opts, cbfield);
      if (lua_isfunction(L, -1)) fn = lua_gettop(L);
      else lua_pop(L, 1);
    }
  }
  int rc = nl_lua_cmd_argv(L, words, n, 0, fn);
  remove_tmps(L, tmps);
  if (rc != 0) {
    if (tmp) remove(lua_tostring(L, outidx));
    return lua_error(L);
  }
  lua_pop(L, 1); /* the command's result */
  push_model(L, lua_tostring(L, outidx), 0, name);
  if (tmp) remove(lua_tostring(L, outidx));
  return 1;
}

/* model:replace(set [, {output=, ...}]) -> the adapted model */
static int m_replace(lua_State *L) {
  check_model(L, 1);
  nl_lua_check_exprset(L, 2);
  if (!nl_cmd_find("replace")) return luaL_error(L, "replace is not available in this build");
  if (lua_isnoneornil(L, 3)) lua_newtable(L);
  else luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  /* the set travels as the command's --exprs option */
  lua_pushvalue(L, 2);
  lua_setfield(L, 3, "exprs");
  return bridge_run(L, "replace", 3, NULL, NULL);
}

/* model:train{variant=, epochs=, lr=, teacher=, output=, on_epoch=, ...} */
static int m_train(lua_State *L) {
  check_model(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!nl_cmd_find("train")) return luaL_error(L, "train is not available in this build");
  lua_settop(L, 2);
  return bridge_run(L, "train", 2, NULL, "on_epoch");
}

void nl_lua_open_model(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"info", m_info},       {"norms", m_norms}, {"eval", m_eval},       {"extract", m_extract},
      {"set_norm", m_set_norm}, {"apply", m_apply}, {"save", m_save},     {"path", m_path},
      {"replace", m_replace}, {"train", m_train}, {"close", m_gc},       {NULL, NULL},
  };
  static const luaL_Reg meta[] = {{"__gc", m_gc}, {"__close", m_gc}, {"__tostring", m_tostring}, {NULL, NULL}};
  luaL_newmetatable(L, NL_LUA_MODEL);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
      {"load_model", l_load_model}, {"default_model", l_default_model}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
