/* Models as Lua handles: load, info, eval, extract (to a maps handle),
 * in-memory norm changes, replacement (nl_vit_replace) and training
 * (the train command). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>

#include <jansson.h>

#include "app/data_load.h"
#include "app/model_path.h"
#include "base/fileio.h"
#include "base/mem.h"
#include "data/dataset.h"
#include "expr/expr.h"
#include "lua/local.h"
#include "model/export.h"
#include "model/extract.h"
#include "model/maps.h"
#include "model/replace.h"
#include "model/vit.h"
#include "train/calibrate.h"
#include "train/evaluate.h"
#include "train/train_opts.h"

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
  nl_vit_load_opts lo = {.heads = heads};
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
  lua_createtable(L, c->depth, 0);
  for (int i = 0; i < c->depth; i++) {
    lua_pushinteger(L, nl_vit_mlp_width(c, i));
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "mlp_widths");
  lua_createtable(L, c->depth, 0);
  for (int i = 0; i < c->depth; i++) {
    lua_pushinteger(L, nl_vit_heads(c, i));
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "head_counts");
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
  lua_newtable(L);
  for (int i = 0, k = 0; i < h->m.ntensors; i++) {
    size_t nn, ni;
    if (!nl_vit_tensor_nonfinite(&h->m, i, &nn, &ni)) continue;
    lua_createtable(L, 0, 5);
    set_str(L, "name", h->m.tensors[i].name);
    set_int(L, "count", (lua_Integer)(nn + ni));
    set_int(L, "nan", (lua_Integer)nn);
    set_int(L, "inf", (lua_Integer)ni);
    set_int(L, "numel", (lua_Integer)h->m.tensors[i].numel);
    lua_rawseti(L, -2, ++k);
  }
  lua_setfield(L, -2, "non_finite");
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
    if (n->kind == NL_NORM_DYT) set_num(L, "alpha", (double)*n->alpha);
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
    lua_Number a = lua_tonumber(L, idx);
    if (!isfinite((float)a)) /* NaN, an infinity, or beyond float */
      luaL_error(L, "%s: layer '%s': DyT alpha %s is not a finite number", what, layer,
                 lua_tostring(L, idx));
    nl_norm_set_dyt(&h->m, n, (float)a);
    return;
  }
  if (lua_type(L, idx) == LUA_TSTRING && strcmp(lua_tostring(L, idx), "layernorm") == 0) {
    nl_norm_set_layernorm(&h->m, n);
    return;
  }
  nl_prog p;
  nl_lua_to_prog(L, idx, &p, what);
  nl_error err;
  nl_error_clear(&err);
  int rc = nl_norm_set_expr(&h->m, n, &p, &err);
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
    if (nl_norm_set_expr(&h->m, nl_vit_norm_find(&h->m, s->e[i].name), &s->e[i].prog, &err) != 0)
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

/* model:export(dir, [to]) -> model: the model as it is in memory, as
 * `normlab export --to pytorch` (default) or `--to c` writes it */
static int m_export(lua_State *L) {
  lmodel *h = check_model(L, 1);
  const char *dir = luaL_checkstring(L, 2);
  static const char *const tos[] = {"pytorch", "c", NULL};
  int to = luaL_checkoption(L, 3, "pytorch", tos);
  nl_error err;
  nl_error_clear(&err);
  int rc = to == 1 ? nl_export_c(&h->m, dir, &err) : nl_export_pytorch(&h->m, dir, &err);
  if (rc != 0) return nl_lua_fail(L, "model:export", &err);
  lua_pushvalue(L, 1);
  return 1;
}

static int m_path(lua_State *L) {
  lua_pushstring(L, check_model(L, 1)->path);
  return 1;
}

/* ---- eval ---- */

/* skip_bad = true: a bad image is named on the host's error stream and
 * left out (--skip-bad). */
static void lua_bad(const char *msg, void *user) { nl_app_report_bad(user, msg); }

static void lua_skip_bad(lua_State *L, int idx, const char *W, nl_data_opts *o) {
  o->skip_bad = nl_lua_opt_bool(L, idx, "skip_bad", 0, W);
  o->warn = lua_bad;
  o->warn_user = &nl_lua_host(L)->ctx;
}

/* model:eval{data=, offset=, images=, batch=, skip_bad=, precision=} -> {top1, top5,
 * images, skipped, images_per_second} (images= was limit=, still accepted) */
/* precision= of model:eval and model:extract ("fp32", "bf16"; a bad value
 * raises): the handle's model runs in it for the call (precision_run sets
 * it, nl_vit_set_precision; the caller puts FP32 back afterwards). */
static nl_precision precision_opt(lua_State *L, const char *W) {
  nl_error err;
  nl_error_clear(&err);
  nl_precision p;
  if (nl_precision_parse(nl_lua_opt_str(L, 2, "precision", "fp32", W), &p, &err))
    nl_lua_fail(L, W, &err);
  return p;
}

static int m_eval(lua_State *L) {
  lmodel *h = check_model(L, 1);
  static const char *const keys[] = {"data", "offset", "images", "batch", "skip_bad", "precision", NULL};
  static const char *const renamed[] = {"limit", "images", NULL};
  const char *W = "model:eval";
  nl_lua_check_keys_renamed(L, 2, W, keys, renamed);
  const char *spec = nl_lua_opt_str(L, 2, "data", "fmnist:test", W);
  long offset = (long)nl_lua_opt_int(L, 2, "offset", 0, 0, 1000000000, W);
  long limit = (long)nl_lua_opt_int(L, 2, nl_lua_opt_key(L, 2, W, "images", "limit"), 0, 0,
                                    1000000000, W);
  int batch = (int)nl_lua_opt_int(L, 2, "batch", 100, 1, 4096, W);
  nl_precision prec = precision_opt(L, W);
  nl_error err;
  nl_error_clear(&err);
  nl_dataset d;
  nl_data_opts dopt;
  nl_vit_data_opts(&h->m.cfg, &dopt);
  dopt.threads = nl_lua_threads(L);
  lua_skip_bad(L, 2, W, &dopt);
  if (nl_dataset_load_opts(&d, spec, offset, limit, &dopt, &err) != 0) return nl_lua_fail(L, W, &err);
  nl_eval_opts o;
  nl_eval_opts_default(&o);
  o.batch = batch;
  o.threads = nl_lua_threads(L);
  o.interruptible = 1;
  o.model_name = h->path;
  nl_eval_result r;
  int rc = nl_vit_set_precision(&h->m, prec, &err);
  if (!rc) rc = nl_vit_evaluate(&h->m, &d, &o, &r, &err);
  nl_vit_set_precision(&h->m, NL_PREC_FP32, NULL);
  if (!rc && r.stopped)
    rc = nl_fail(&err, NL_EINTR, "interrupted after %ld of %d images", r.images, d.n);
  nl_dataset_free(&d);
  if (rc) return nl_lua_fail(L, W, &err);
  long done = r.images;
  lua_createtable(L, 0, 5);
  set_num(L, "top1", done ? (double)r.top1 / done : 0);
  set_num(L, "top5", done ? (double)r.top5 / done : 0);
  set_int(L, "images", done);
  set_int(L, "skipped", r.skipped);
  set_num(L, "images_per_second", r.seconds > 0 ? done / r.seconds : 0);
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

/* model:extract{data=, offset=, images=, points=, seed=, batch=, output=, skip_bad=} -> maps
 * (skip_bad: the points come from the images that decode) */
static int m_extract(lua_State *L) {
  lmodel *h = check_model(L, 1);
  static const char *const keys[] = {"data",   "offset", "images",   "points", "seed",
                                     "batch",  "output", "skip_bad", "precision", NULL};
  const char *W = "model:extract";
  nl_lua_check_keys(L, 2, W, keys);
  const char *spec = nl_lua_opt_str(L, 2, "data", "fmnist:test", W);
  long offset = (long)nl_lua_opt_int(L, 2, "offset", 0, 0, INT32_MAX, W);
  long images = (long)nl_lua_opt_int(L, 2, "images", NL_EXTRACT_IMAGES, 1, INT32_MAX, W);
  long points = (long)nl_lua_opt_int(L, 2, "points", NL_EXTRACT_POINTS, 0, UINT32_MAX, W);
  lua_Integer seed = nl_lua_opt_int(L, 2, "seed", NL_EXTRACT_SEED, 0, INT64_MAX, W);
  int batch = (int)nl_lua_opt_int(L, 2, "batch", 32, 1, 4096, W);
  const char *out = nl_lua_opt_str(L, 2, "output", NULL, W);
  nl_precision prec = precision_opt(L, W);
  nl_error err;
  nl_error_clear(&err);
  nl_dataset d;
  nl_data_opts dopt;
  nl_vit_data_opts(&h->m.cfg, &dopt);
  dopt.threads = nl_lua_threads(L);
  lua_skip_bad(L, 2, W, &dopt);
  if (nl_dataset_load_opts(&d, spec, offset, images, &dopt, &err) != 0) return nl_lua_fail(L, W, &err);
  int rc = 0;
  if (d.n + d.skipped < images)
    rc = nl_fail(&err, NL_EINPUT, "%s has only %d images from offset %ld; images = %ld asked for",
                 spec, d.n + d.skipped, offset, images);
  if (rc == 0 && (d.rows != h->m.cfg.img_size || d.cols != h->m.cfg.img_size))
    rc = nl_fail(&err, NL_EINPUT, "%s images are %dx%d; the model expects %dx%d", spec, d.rows,
                 d.cols, h->m.cfg.img_size, h->m.cfg.img_size);
  nl_maps maps;
  nl_maps_init(&maps);
  if (rc == 0) {
    source s = {&d, &h->m.cfg};
    nl_extract_opts o = {.points = points, .seed = (uint64_t)seed, .batch = batch,
                         .threads = nl_lua_threads(L)};
    rc = nl_vit_set_precision(&h->m, prec, &err);
    if (!rc) rc = nl_extract(&h->m, d.n, fill, &s, &o, &maps, &err);
    if (!rc && h->m.bf16) nl_maps_set_meta(&maps, "precision", "bf16");
    nl_vit_set_precision(&h->m, NL_PREC_FP32, NULL);
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

/* ---- replace (a library call) and train (the train command) ---- */

int nl_lua_cmd_argv(lua_State *L, int words, int n, int capture, int progress_fn);

static const char *tmp_root(void) {
  const char *dir = getenv("TMPDIR");
  return dir && *dir ? dir : "/tmp";
}

/* Save the handle's model (as it is in memory) to a fresh temporary file
 * whose name is pushed and appended to the table `tmps`. */
static void push_saved_copy(lua_State *L, lmodel *h, int tmps, const char *what) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s/normlab-lua-XXXXXX.safetensors", tmp_root());
  int fd = mkstemps(buf, (int)strlen(".safetensors"));
  if (fd < 0) luaL_error(L, "%s: cannot create a temporary file in %s", what, tmp_root());
  close(fd);
  lua_pushstring(L, buf);
  lua_pushvalue(L, -1);
  lua_rawseti(L, tmps, (lua_Integer)lua_rawlen(L, tmps) + 1);
  nl_error err;
  nl_error_clear(&err);
  if (nl_vit_save(&h->m, buf, &err) != 0) nl_lua_fail(L, what, &err);
}

/* Remove the files of table `tmps`; entries ending in '/' are run
 * directories: their files, then the directory. */
static void remove_tmps(lua_State *L, int tmps) {
  for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, tmps); i++) {
    lua_rawgeti(L, tmps, i);
    const char *p = lua_tostring(L, -1);
    size_t len = strlen(p);
    if (len && p[len - 1] == '/') {
      DIR *d = opendir(p);
      struct dirent *de;
      while (d && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char f[4096];
        snprintf(f, sizeof f, "%s%s", p, de->d_name);
        remove(f);
      }
      if (d) closedir(d);
      rmdir(p);
    } else {
      remove(p);
    }
    lua_pop(L, 1);
  }
}

/* __close of a table of temporary files: removes them, also when an error
 * (a failing callback, say) unwinds the stack. */
static int tmps_close(lua_State *L) {
  remove_tmps(L, 1);
  return 0;
}

/* Push an empty table of temporary files, closed (its files removed) when
 * the calling C function returns or an error unwinds it. */
static int push_tmps(lua_State *L) {
  lua_newtable(L);
  if (luaL_newmetatable(L, "normlab.tmpfiles")) {
    lua_pushcfunction(L, tmps_close);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  int idx = lua_gettop(L);
  lua_toclose(L, idx);
  return idx;
}

/* A new handle holding a copy of h's model as it is in memory. */
static lmodel *push_copy(lua_State *L, lmodel *h, const char *what) {
  lua_newtable(L);
  int tmps = lua_gettop(L);
  push_saved_copy(L, h, tmps, what); /* on an error here the empty file stays */
  lmodel *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, NL_LUA_MODEL);
  nl_vit_load_opts lo = {.heads = h->m.cfg.heads};
  nl_error err;
  nl_error_clear(&err);
  int rc = nl_vit_load(&c->m, lua_tostring(L, -2), &lo, &err);
  remove_tmps(L, tmps);
  if (rc != 0) nl_lua_fail(L, what, &err);
  c->loaded = 1;
  c->path = nl_xstrdup(h->path);
  lua_replace(L, tmps); /* the handle where the table was */
  lua_pop(L, 1);        /* the file name */
  return c;
}

static int parsed_gc(lua_State *L) {
  nl_replace_parsed *p = luaL_checkudata(L, 1, "normlab.replace_spec");
  nl_replace_parsed_free(p);
  memset(p, 0, sizeof *p);
  return 0;
}

/* A parsed replacement spec on the stack, freed with the userdata (also
 * when an error unwinds the call). */
static nl_replace_parsed *push_parsed(lua_State *L) {
  nl_replace_parsed *p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  if (luaL_newmetatable(L, "normlab.replace_spec")) {
    lua_pushcfunction(L, parsed_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return p;
}

/* model:replace(what [, {output=FILE}]) -> adapted model, kept layers
 * what: an exprset (each layer it names becomes its expression), a number
 * (DyT with that alpha everywhere), a string in the grammar of `normlab
 * replace --set` (nl_replace_parse: "ln", "dyt", "dyt=ALPHA",
 * "dyt=FILE.json", "FILE.exprs"), or a table {LAYER = ALPHA, ...} of
 * per-layer DyT alphas.
 * The model itself is left as it is; layers a set does not name keep
 * their norm and are returned in the second value. */
static int m_replace(lua_State *L) {
  lmodel *h = check_model(L, 1);
  static const char *const keys[] = {"output", NULL};
  nl_lua_check_keys(L, 3, "model:replace", keys);
  nl_replace_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.alpha = 0.5f;
  nl_dyt_alphas al = {0, NULL, NULL};
  if (luaL_testudata(L, 2, NL_LUA_EXPRSET)) {
    spec.mode = NL_REPLACE_SET;
    spec.set = nl_lua_check_exprset(L, 2);
  } else if (lua_type(L, 2) == LUA_TNUMBER) {
    spec.mode = NL_REPLACE_DYT;
    spec.alpha = (float)lua_tonumber(L, 2);
  } else if (lua_type(L, 2) == LUA_TSTRING) {
    /* the grammar of `normlab replace --set`, parsed by the library */
    nl_replace_parsed *p = push_parsed(L);
    nl_error err;
    nl_error_clear(&err);
    if (nl_replace_parse(p, lua_tostring(L, 2), &err) != 0) return nl_lua_fail(L, "model:replace", &err);
    spec = p->spec;
  } else if (lua_type(L, 2) == LUA_TTABLE) {
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) n++, lua_pop(L, 1);
    al.names = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n ? n : 1), 0);
    al.alphas = lua_newuserdatauv(L, sizeof(float) * (size_t)(n ? n : 1), 0);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TNUMBER)
        return luaL_error(L, "model:replace: a table of alphas maps layer names to numbers");
      al.names[al.n] = (char *)lua_tostring(L, -2); /* kept alive by the table */
      al.alphas[al.n++] = (float)lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
    spec.mode = NL_REPLACE_DYT;
    spec.alphas = &al;
  } else {
    return luaL_typeerror(L, 2, "exprset, number, string or table of alphas");
  }
  const char *out = NULL;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "output");
    out = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1);
  }
  lmodel *c = push_copy(L, h, "model:replace");
  int cidx = lua_gettop(L);
  int *kept = lua_newuserdatauv(L, sizeof(int) * (size_t)c->m.nnorms, 0);
  nl_error err;
  nl_error_clear(&err);
  if (nl_vit_replace(&c->m, &spec, kept, &err) != 0) return nl_lua_fail(L, "model:replace", &err);
  if (out) {
    if (nl_vit_save(&c->m, out, &err) != 0) return nl_lua_fail(L, "model:replace", &err);
    free(c->path);
    c->path = nl_xstrdup(out);
  }
  lua_pushvalue(L, cidx);
  lua_newtable(L);
  for (int i = 0, k = 0; i < c->m.nnorms; i++)
    if (kept[i]) {
      lua_pushstring(L, c->m.norms[i].name);
      lua_rawseti(L, -2, ++k);
    }
  return 2;
}

static int opts_gc(lua_State *L) {
  nl_train_opts *o = luaL_checkudata(L, 1, "normlab.train_opts");
  nl_train_opts_free(o);
  return 0;
}

/* Training settings on the stack, freed with the userdata. */
static nl_train_opts *push_train_opts(lua_State *L) {
  nl_train_opts *o = lua_newuserdatauv(L, sizeof *o, 0);
  memset(o, 0, sizeof *o);
  if (luaL_newmetatable(L, "normlab.train_opts")) {
    lua_pushcfunction(L, opts_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  nl_train_opts_init(o);
  return o;
}

/* One option through the library's parser (the command line's), and its
 * words "--name [value]" appended to the table `words` (n so far). value:
 * the text, or NULL for a flag that is set. */
static int add_opt(lua_State *L, nl_train_opts *o, int words, int n, const char *key,
                   const char *value) {
  nl_error err;
  nl_error_clear(&err);
  const char *now = nl_train_opts_renamed(key);
  if (now) { /* an older name: say so, and pass the option on by its name */
    char lua_name[64];
    snprintf(lua_name, sizeof lua_name, "%s", now);
    for (char *p = lua_name; *p; p++)
      if (*p == '-') *p = '_';
    nl_lua *s = nl_lua_host(L);
    fprintf(s && s->ctx.err ? s->ctx.err : stderr,
            "model:train: option '%s' is deprecated; use '%s'\n", key, lua_name);
    key = now;
  }
  if (nl_train_opts_set(o, key, value, &err) != 0) nl_lua_fail(L, "model:train", &err);
  char name[64];
  snprintf(name, sizeof name, "--%s", key);
  for (char *p = name; *p; p++)
    if (*p == '_') *p = '-';
  lua_pushstring(L, name);
  lua_rawseti(L, words, ++n);
  if (value) {
    lua_pushstring(L, value);
    lua_rawseti(L, words, ++n);
  }
  return n;
}

/* ---- calibrate ---- */

/* model:calibrate{teacher=MODEL|FILE, images=512, what="consts"|"affine"|"both",
 * epochs=5, lr=0.005, tau=4, batch=64, seed=0, threads=0, output=FILE}
 * -> calibrated copy, {kl_before, kl_after, epoch_kl = {...}, constants,
 * images, seconds}. The model itself is left as it is. */
static int m_calibrate(lua_State *L) {
  lmodel *h = check_model(L, 1);
  static const char *const keys[] = {"teacher", "images", "what", "epochs", "lr", "tau",
                                     "batch", "seed", "threads", "output", NULL};
  const char *W = "model:calibrate";
  luaL_checktype(L, 2, LUA_TTABLE);
  nl_lua_check_keys(L, 2, W, keys);
  nl_calib_opts o;
  nl_calib_opts_default(&o);
  long images = (long)nl_lua_opt_int(L, 2, "images", 512, 1, 60000, W);
  const char *what = nl_lua_opt_str(L, 2, "what", "consts", W);
  if (strcmp(what, "consts") == 0) o.what = NL_CALIB_CONSTS;
  else if (strcmp(what, "affine") == 0) o.what = NL_CALIB_AFFINE;
  else if (strcmp(what, "both") == 0) o.what = NL_CALIB_BOTH;
  else return luaL_error(L, "%s: what = '%s': want consts, affine or both", W, what);
  o.epochs = (int)nl_lua_opt_int(L, 2, "epochs", o.epochs, 1, 100000, W);
  o.lr = (float)nl_lua_opt_num(L, 2, "lr", o.lr, W);
  o.tau = (float)nl_lua_opt_num(L, 2, "tau", o.tau, W);
  o.batch = (int)nl_lua_opt_int(L, 2, "batch", o.batch, 1, 4096, W);
  o.seed = (uint64_t)nl_lua_opt_int(L, 2, "seed", 0, 0, INT64_MAX, W);
  o.threads = (int)nl_lua_opt_int(L, 2, "threads", 0, 0, 4096, W);
  if (!o.threads) o.threads = nl_lua_threads(L);
  o.interruptible = 1;
  const char *out = nl_lua_opt_str(L, 2, "output", NULL, W);
  /* the teacher: a handle or a file (loaded into a handle the GC frees) */
  lua_getfield(L, 2, "teacher");
  lmodel *t;
  if (luaL_testudata(L, -1, NL_LUA_MODEL)) {
    t = check_model(L, -1);
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    push_model(L, lua_tostring(L, -1), 0, W);
    t = lua_touserdata(L, -1);
  } else {
    return luaL_error(L, "%s: teacher (a model or a file) is required", W);
  }
  nl_error err;
  nl_error_clear(&err);
  nl_dataset d;
  if (nl_dataset_load(&d, "fmnist:train", 0, images, &err) != 0) return nl_lua_fail(L, W, &err);
  lmodel *c = push_copy(L, h, W);
  int cidx = lua_gettop(L);
  nl_calib_result r;
  int rc = nl_vit_calibrate(&c->m, &t->m, &d, &o, &r, &err);
  int n = d.n;
  nl_dataset_free(&d);
  if (!rc && r.stopped) rc = nl_fail(&err, NL_EINTR, "interrupted after %d epochs", r.epochs_done);
  if (!rc && out) rc = nl_vit_save(&c->m, out, &err);
  if (rc) {
    nl_calib_result_free(&r);
    return nl_lua_fail(L, W, &err);
  }
  if (out) {
    free(c->path);
    c->path = nl_xstrdup(out);
  }
  lua_pushvalue(L, cidx);
  lua_createtable(L, 0, 6);
  set_num(L, "kl_before", r.kl_before);
  set_num(L, "kl_after", r.kl_after);
  set_int(L, "constants", r.nconsts);
  set_int(L, "images", n);
  set_num(L, "seconds", r.seconds);
  lua_createtable(L, r.epochs_done, 0);
  for (int e = 0; e < r.epochs_done; e++) {
    lua_pushnumber(L, r.epoch_kl[e]);
    lua_rawseti(L, -2, e + 1);
  }
  lua_setfield(L, -2, "epoch_kl");
  nl_calib_result_free(&r);
  return 2;
}

/* model:train{variant=A|F|D|affine|full|tb, epochs=, lr=, teacher=, output=DIR,
 * on_epoch=function(e) ... end, <any other option of the train command>}
 * -> trained model, log (the run's train.json as a table).
 * The model is trained as it is in memory; it is left unchanged. D is the
 * full variant with distillation: it needs a teacher (a model handle or a
 * file). on_epoch gets {epoch, epochs, loss, top1, top5, seconds, lr};
 * returning false stops after that epoch. Without output the run
 * directory is temporary. The options go through the parser of the
 * command line (nl_train_opts_set: the same checks and messages), then
 * to the train command. */
static int m_train(lua_State *L) {
  lmodel *h = check_model(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  const nl_cmd *c = nl_cmd_find("train");
  if (!c) return luaL_error(L, "train is not available in this build");
  int tmps = push_tmps(L); /* 3: temporary files, removed however this returns */
  nl_train_opts *o = push_train_opts(L); /* 4 */
  lua_newtable(L);
  int words = lua_gettop(L), n = 0; /* 5 */
  lua_pushstring(L, "train");
  lua_rawseti(L, words, ++n);
  /* the options of the table, as the command line gives them */
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (!k) return luaL_error(L, "model:train: option keys must be names");
    if (strcmp(k, "on_epoch") == 0) {
      luaL_checktype(L, -1, LUA_TFUNCTION);
    } else if (strcmp(k, "model") == 0) {
      return luaL_error(L, "model:train: the model is the handle itself; model= is not an option");
    } else if (strcmp(k, "teacher") == 0 && luaL_testudata(L, -1, NL_LUA_MODEL)) {
      push_saved_copy(L, check_model(L, lua_gettop(L)), tmps, "model:train");
      n = add_opt(L, o, words, n, k, lua_tostring(L, -1));
      lua_pop(L, 1);
    } else if (lua_isboolean(L, -1)) {
      if (lua_toboolean(L, -1)) n = add_opt(L, o, words, n, k, NULL);
      else if (!nl_train_opts_known(k))
        return luaL_error(L, "model:train: train has no option --%s", k);
    } else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
      lua_pushvalue(L, -1);
      n = add_opt(L, o, words, n, k, lua_tostring(L, -1));
      lua_pop(L, 1);
    } else {
      return luaL_error(L, "model:train: option %s expects a string, a number or a boolean", k);
    }
    lua_pop(L, 1);
  }
  /* run directory */
  if (!o->output) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/normlab-lua-train-XXXXXX", tmp_root());
    if (!mkdtemp(buf)) return luaL_error(L, "model:train: cannot create a directory in %s", tmp_root());
    lua_pushfstring(L, "%s/", buf);
    lua_rawseti(L, tmps, (lua_Integer)lua_rawlen(L, tmps) + 1);
    n = add_opt(L, o, words, n, "output", buf);
  }
  lua_pushstring(L, o->output);
  int dir = lua_gettop(L);
  /* the model: this handle, as it is in memory */
  push_saved_copy(L, h, tmps, "model:train");
  n = add_opt(L, o, words, n, "model", lua_tostring(L, -1));
  lua_pop(L, 1);
  nl_error err;
  nl_error_clear(&err);
  if (nl_train_opts_finish(o, &err) != 0) return nl_lua_fail(L, "model:train", &err);
  int fn = 0;
  lua_getfield(L, 2, "on_epoch");
  if (lua_isfunction(L, -1)) fn = lua_gettop(L);
  else lua_pop(L, 1);
  int rc = nl_lua_cmd_argv(L, words, n, 1, fn);
  if (rc != 0) {
    remove_tmps(L, tmps);
    return lua_error(L);
  }
  lua_pop(L, 1); /* the command's output */
  lua_pushfstring(L, "%s/last.safetensors", lua_tostring(L, dir));
  int rcl = 0;
  {
    lmodel *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, NL_LUA_MODEL);
    nl_vit_load_opts lo = {.heads = h->m.cfg.heads};
    rcl = nl_vit_load(&t->m, lua_tostring(L, -2), &lo, &err);
    if (rcl != 0) {
      remove_tmps(L, tmps);
      return nl_lua_fail(L, "model:train", &err);
    }
    t->loaded = 1;
    t->path = nl_xstrdup(lua_tostring(L, -2));
  }
  int res = lua_gettop(L);
  char logp[4096];
  snprintf(logp, sizeof logp, "%s/train.json", lua_tostring(L, dir));
  json_error_t je;
  json_t *log = json_load_file(logp, 0, &je);
  if (log) {
    nl_lua_push_json(L, log);
    json_decref(log);
  } else {
    lua_pushnil(L);
  }
  remove_tmps(L, tmps);
  lua_pushvalue(L, res);
  lua_insert(L, -2);
  return 2;
}

/* For the methods in other files (lua_prune.c). */
nl_vit *nl_lua_check_model(lua_State *L, int idx, const char **path) {
  lmodel *h = check_model(L, idx);
  if (path) *path = h->path;
  return &h->m;
}

void nl_lua_push_model_owned(lua_State *L, nl_vit *m, const char *path) {
  lmodel *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, NL_LUA_MODEL);
  c->m = *m;
  memset(m, 0, sizeof *m);
  c->loaded = 1;
  c->path = nl_xstrdup(path);
}

void nl_lua_open_model(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"info", m_info},       {"norms", m_norms}, {"eval", m_eval},       {"extract", m_extract},
      {"set_norm", m_set_norm}, {"apply", m_apply}, {"save", m_save},     {"path", m_path},
      {"export", m_export},
      {"replace", m_replace}, {"train", m_train}, {"calibrate", m_calibrate}, {"close", m_gc},
      {"profile", nl_lua_model_profile}, {"prune", nl_lua_model_prune},
      {"reuse", nl_lua_model_reuse}, {"reuse_plan", nl_lua_model_reuse_plan}, {NULL, NULL},
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
