/* model:profile{...} and model:prune{...}: the EdgeFlex steps on a model
 * handle (model/profile.h, model/prune.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/data_load.h"
#include "app/profile_cmd.h"
#include "lua/local.h"
#include "model/profile.h"
#include "model/prune.h"
#include "model/vit.h"

static void push_floats(lua_State *L, const float *v, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushnumber(L, (double)v[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* {images =, parts = {...}, time_ms = {{...} per block}, layers = {name =
 * {width =, absmean = {...}, mean =, var =, absmax =}}, order = {names}} */
static void push_profile(lua_State *L, const nl_profile *p) {
  lua_newtable(L);
  lua_pushinteger(L, p->images);
  lua_setfield(L, -2, "images");
  lua_createtable(L, NL_PROFILE_PARTS, 0);
  for (int k = 0; k < NL_PROFILE_PARTS; k++) {
    lua_pushstring(L, nl_vit_part_name(nl_profile_part(k)));
    lua_rawseti(L, -2, k + 1);
  }
  lua_setfield(L, -2, "parts");
  lua_createtable(L, p->depth, 0);
  for (int b = 0; b < p->depth; b++) {
    lua_createtable(L, NL_PROFILE_PARTS, 0);
    for (int k = 0; k < NL_PROFILE_PARTS; k++) {
      lua_pushnumber(L, p->part_ms[b * NL_PROFILE_PARTS + k]);
      lua_rawseti(L, -2, k + 1);
    }
    lua_rawseti(L, -2, b + 1);
  }
  lua_setfield(L, -2, "time_ms");
  lua_newtable(L);
  lua_createtable(L, p->nlayers, 0);
  for (int i = 0; i < p->nlayers; i++) {
    const nl_profile_layer *Ly = &p->layers[i];
    lua_pushstring(L, Ly->name);
    lua_rawseti(L, -2, i + 1);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, Ly->width);
    lua_setfield(L, -2, "width");
    push_floats(L, Ly->absmean, Ly->width);
    lua_setfield(L, -2, "absmean");
    push_floats(L, Ly->mean, Ly->width);
    lua_setfield(L, -2, "mean");
    push_floats(L, Ly->var, Ly->width);
    lua_setfield(L, -2, "var");
    push_floats(L, Ly->absmax, Ly->width);
    lua_setfield(L, -2, "absmax");
    lua_setfield(L, -3, Ly->name);
  }
  lua_setfield(L, -2, "order");
  lua_setfield(L, -2, "layers");
}

int nl_lua_model_profile(lua_State *L) {
  const char *path;
  nl_vit *m = nl_lua_check_model(L, 1, &path);
  static const char *const keys[] = {"data", "offset", "images", "batch", "output", "skip_bad", NULL};
  const char *W = "model:profile";
  nl_lua_check_keys(L, 2, W, keys);
  const char *spec = nl_lua_opt_str(L, 2, "data", "fmnist:train", W);
  long offset = (long)nl_lua_opt_int(L, 2, "offset", 0, 0, INT32_MAX, W);
  long images = (long)nl_lua_opt_int(L, 2, "images", 256, 1, INT32_MAX, W);
  long batch = (long)nl_lua_opt_int(L, 2, "batch", 32, 1, 4096, W);
  const char *out = nl_lua_opt_str(L, 2, "output", NULL, W);
  nl_error err;
  nl_error_clear(&err);
  nl_profile p;
  int skip = nl_lua_opt_bool(L, 2, "skip_bad", 0, W) ? NL_SKIP_REPORT : 0;
  int rc = nl_app_profile(&nl_lua_host(L)->ctx, m, spec, offset, images, batch, 0, skip, NULL, &p,
                          &err);
  if (rc == 0 && out) {
    char im[32], off[32];
    snprintf(im, sizeof im, "%ld", images);
    snprintf(off, sizeof off, "%ld", offset);
    const char *meta[] = {"model", path, "data", spec, "offset", off, "images", im};
    rc = nl_profile_save(&p, out, meta, 4, &err);
  }
  if (rc) {
    nl_profile_free(&p);
    return nl_lua_fail(L, W, &err);
  }
  push_profile(L, &p);
  nl_profile_free(&p);
  return 1;
}

int nl_lua_model_prune(lua_State *L) {
  const char *path;
  nl_vit *m = nl_lua_check_model(L, 1, &path);
  static const char *const keys[] = {"ratio", "budget_mb", "score", "profile", "data", "offset",
                                     "images", "batch", "compensate", "seed", "output", "refit",
                                     "refit_damp", "skip_bad", "heads", "keep_heads",
                                     "head_score", NULL};
  const char *W = "model:prune";
  nl_lua_check_keys(L, 2, W, keys);
  int has_ratio = lua_istable(L, 2) && lua_getfield(L, 2, "ratio") != LUA_TNIL;
  if (lua_istable(L, 2)) lua_pop(L, 1);
  int has_budget = lua_istable(L, 2) && lua_getfield(L, 2, "budget_mb") != LUA_TNIL;
  if (lua_istable(L, 2)) lua_pop(L, 1);
  int has_heads = lua_istable(L, 2) && lua_getfield(L, 2, "heads") != LUA_TNIL;
  if (lua_istable(L, 2)) lua_pop(L, 1);
  int has_keep = lua_istable(L, 2) && lua_getfield(L, 2, "keep_heads") != LUA_TNIL;
  if (lua_istable(L, 2)) lua_pop(L, 1);
  if (has_ratio && has_budget) return luaL_error(L, "%s: give one of ratio = R or budget_mb = MB, not both", W);
  if (has_heads && has_keep) return luaL_error(L, "%s: give one of heads = R or keep_heads = N, not both", W);
  if (!has_ratio && !has_budget && !has_heads && !has_keep)
    return luaL_error(L, "%s: give one of ratio = R or budget_mb = MB (MLP channels) and/or "
                      "heads = R or keep_heads = N (attention heads)", W);
  const int mlp = has_ratio || has_budget, heads = has_heads || has_keep;
  nl_prune_head_opts ho = {0};
  ho.ratio = nl_lua_opt_num(L, 2, "heads", 0, W);
  if (!(ho.ratio >= 0 && ho.ratio < 1)) {
    char v[32];
    snprintf(v, sizeof v, "%g", ho.ratio);
    return luaL_error(L, "%s: heads = %s: the fraction of heads removed must be in [0, 1)", W, v);
  }
  ho.keep = (int)nl_lua_opt_int(L, 2, "keep_heads", 0, has_keep ? 1 : 0, m->cfg.heads, W);
  const char *hs = nl_lua_opt_str(L, 2, "head_score", "contribution", W);
  if (strcmp(hs, "contribution") && strcmp(hs, "random"))
    return luaL_error(L, "%s: head_score '%s' is not contribution or random", W, hs);
  ho.score = strcmp(hs, "random") == 0 ? NL_PRUNE_RANDOM : NL_PRUNE_CONTRIBUTION;
  nl_prune_opts o = {0};
  o.ratio = nl_lua_opt_num(L, 2, "ratio", 0, W);
  o.budget_bytes = has_budget ? nl_lua_opt_num(L, 2, "budget_mb", 0, W) * 1e6 : 0;
  if (has_budget && !(o.budget_bytes > 0)) return luaL_error(L, "%s: budget_mb must be positive", W);
  const char *score = nl_lua_opt_str(L, 2, "score", "variance", W);
  static const char *const names[] = {"variance", "absmean", "magnitude", "random",
                                      "contribution", NULL};
  int si = -1;
  for (int i = 0; names[i]; i++)
    if (strcmp(score, names[i]) == 0) si = i;
  if (si < 0) return luaL_error(L, "%s: score '%s' is not variance, absmean, magnitude, random or contribution", W, score);
  o.score = (nl_prune_score)si;
  o.compensate = nl_lua_opt_bool(L, 2, "compensate", 1, W);
  o.seed = ho.seed = (uint64_t)nl_lua_opt_int(L, 2, "seed", 42, 0, INT64_MAX, W);
  ho.compensate = o.compensate;
  o.refit = nl_lua_opt_bool(L, 2, "refit", 0, W);
  o.refit_damp = nl_lua_opt_num(L, 2, "refit_damp", 0.01, W);
  if (!(o.refit_damp >= 0)) return luaL_error(L, "%s: refit_damp must be >= 0", W);
  const char *prof = nl_lua_opt_str(L, 2, "profile", NULL, W);
  const char *spec = nl_lua_opt_str(L, 2, "data", "fmnist:train", W);
  long offset = (long)nl_lua_opt_int(L, 2, "offset", 0, 0, INT32_MAX, W);
  long images = (long)nl_lua_opt_int(L, 2, "images", 256, 1, INT32_MAX, W);
  long batch = (long)nl_lua_opt_int(L, 2, "batch", 32, 1, 4096, W);
  const char *out = nl_lua_opt_str(L, 2, "output", NULL, W);
  int need = (mlp && (o.compensate || o.refit || nl_prune_score_needs_profile(o.score))) ||
             (heads && (ho.compensate || ho.score == NL_PRUNE_CONTRIBUTION));
  nl_error err;
  nl_error_clear(&err);
  nl_profile p;
  memset(&p, 0, sizeof p);
  int rc = 0;
  if (need && prof) rc = nl_profile_load(&p, prof, &err);
  else if (need) {
    int skip = nl_lua_opt_bool(L, 2, "skip_bad", 0, W) ? NL_SKIP_REPORT : 0;
    rc = nl_app_profile(&nl_lua_host(L)->ctx, m, spec, offset, images, batch, o.refit, skip, NULL,
                        &p, &err);
  }
  nl_vit pm;
  memset(&pm, 0, sizeof pm);
  if (rc == 0)
    rc = nl_prune_model(m, need ? &p : NULL, mlp ? &o : NULL, heads ? &ho : NULL, &pm, &err);
  nl_profile_free(&p);
  if (rc == 0 && out) rc = nl_vit_save(&pm, out, &err);
  if (rc) {
    if (pm.params) nl_vit_free(&pm);
    return nl_lua_fail(L, W, &err);
  }
  size_t before = nl_vit_param_bytes(m), after = nl_vit_param_bytes(&pm);
  nl_lua_push_model_owned(L, &pm, out ? out : path);
  lua_newtable(L);
  lua_pushinteger(L, (lua_Integer)before);
  lua_setfield(L, -2, "param_bytes_before");
  lua_pushinteger(L, (lua_Integer)after);
  lua_setfield(L, -2, "param_bytes");
  return 2;
}
