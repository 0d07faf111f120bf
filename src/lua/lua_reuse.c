/* model:reuse{...} and model:reuse_plan(): attention reuse on a model
 * handle (model/reuse_plan.h, train/reuse.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lua/local.h"
#include "model/reuse_plan.h"
#include "model/vit.h"
#include "train/reuse.h"

/* {flops_full =, flops =, blocks = {{block =, source =, tb =, hidden =,
 * flops_saved =}, ...}} (blocks 0-based, as the command line's), or nil. */
int nl_lua_model_reuse_plan(lua_State *L) {
  nl_vit *m = nl_lua_check_model(L, 1, NULL);
  const nl_vit_reuse *R = m->reuse;
  if (!R) {
    lua_pushnil(L);
    return 1;
  }
  const nl_vit_config *c = &m->cfg;
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, nl_vit_flops_per_image(c));
  lua_setfield(L, -2, "flops_full");
  lua_pushnumber(L, nl_reuse_plan_flops(R, c));
  lua_setfield(L, -2, "flops");
  char text[512];
  nl_reuse_plan_text(R, text, sizeof text);
  lua_pushstring(L, text);
  lua_setfield(L, -2, "text");
  lua_newtable(L);
  int k = 0;
  for (int l = 0; l < c->depth; l++) {
    if (R->src[l] < 0) continue;
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, l);
    lua_setfield(L, -2, "block");
    lua_pushinteger(L, R->src[l]);
    lua_setfield(L, -2, "source");
    lua_pushstring(L, nl_tb_kind_name(R->tb[l]));
    lua_setfield(L, -2, "tb");
    lua_pushinteger(L, R->hidden[l]);
    lua_setfield(L, -2, "hidden");
    lua_pushnumber(L, nl_reuse_block_saving(R, c, l));
    lua_setfield(L, -2, "flops_saved");
    lua_rawseti(L, -2, ++k);
  }
  lua_setfield(L, -2, "blocks");
  return 1;
}

/* model:reuse{blocks = "6,7:5", tb = "none"|"linear"|"mlp", hidden = H,
 * fit_images = N, ridge = R, seed = S, batch = B}: the model (in place)
 * gets the plan, its TBs fitted on the first N training images; blocks =
 * "" clears the plan. Returns model:reuse_plan(). */
int nl_lua_model_reuse(lua_State *L) {
  nl_vit *m = nl_lua_check_model(L, 1, NULL);
  static const char *const keys[] = {"blocks", "tb", "hidden", "fit_images", "ridge", "seed",
                                     "batch", NULL};
  const char *W = "model:reuse";
  nl_lua_check_keys(L, 2, W, keys);
  const char *blocks = nl_lua_opt_str(L, 2, "blocks", NULL, W);
  if (!blocks) return luaL_error(L, "%s: give blocks = \"L,L:SOURCE,...\"", W);
  const char *tbs = nl_lua_opt_str(L, 2, "tb", "none", W);
  nl_tb_kind tb;
  if (nl_tb_kind_parse(tbs, &tb)) return luaL_error(L, "%s: tb = '%s': want none, linear or mlp", W, tbs);
  const nl_vit_config *c = &m->cfg;
  int hidden = (int)nl_lua_opt_int(L, 2, "hidden", c->dim / 4 > 0 ? c->dim / 4 : 1, 1, 1 << 16, W);
  long fitn = (long)nl_lua_opt_int(L, 2, "fit_images", 5000, 1, 60000, W);
  nl_reuse_fit_opts fo;
  nl_reuse_fit_opts_default(&fo);
  fo.ridge = nl_lua_opt_num(L, 2, "ridge", 1e-4, W);
  if (!(fo.ridge >= 0)) return luaL_error(L, "%s: ridge must be >= 0", W);
  fo.seed = (uint64_t)nl_lua_opt_int(L, 2, "seed", 1, 0, INT32_MAX, W);
  fo.batch = (int)nl_lua_opt_int(L, 2, "batch", 64, 1, 4096, W);
  fo.threads = nl_lua_host(L)->ctx.threads;
  nl_error err;
  nl_error_clear(&err);
  nl_vit_reuse *plan = nl_reuse_plan_new(c->depth, c->dim);
  int rc = nl_reuse_parse(blocks, tb, hidden, plan, &err);
  if (!rc && tb != NL_TB_NONE && nl_reuse_plan_count(plan)) {
    nl_dataset d;
    rc = nl_dataset_load(&d, "fmnist:train", 0, fitn, &err);
    if (!rc) {
      nl_vit_reuse *old = m->reuse;
      m->reuse = plan;
      rc = nl_reuse_fit(m, &d, &fo, &err);
      m->reuse = old;
      nl_dataset_free(&d);
    }
  }
  if (rc) {
    nl_reuse_plan_free(plan);
    return nl_lua_fail(L, W, &err);
  }
  nl_reuse_plan_free(m->reuse);
  m->reuse = nl_reuse_plan_count(plan) ? plan : NULL;
  if (!m->reuse) nl_reuse_plan_free(plan);
  lua_settop(L, 1);
  return nl_lua_model_reuse_plan(L);
}
