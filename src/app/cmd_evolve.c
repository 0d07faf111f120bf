/* normlab evolve: GP search of a scalar function per norm layer (NSGA-II on
 * fitness and complexity, Adam on the constants), fronts and the chosen
 * expressions written to a directory; reruns resume. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/wb_local.h"
#include "base/json.h"
#include "model/maps.h"
#include "search/campaign_opts.h"
#include "search/gp.h"
#include "search/sequential.h"

static const nl_opt opts[] = {
    {"maps", NL_OPT_STR, "FILE", NULL, "mappings file (or --model)", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {"model", NL_OPT_STR, "FILE", NULL,
     "record the mappings from this model instead of reading --maps", NULL, NL_OPTF_PATH},
    {"sequential", NL_OPT_FLAG, NULL, NULL,
     "with --model: search layer k on the mapping recorded with layers < k replaced", NULL, 0},
    {"data", NL_OPT_STR, "SPEC", "fmnist:test", "with --model: images (fmnist:test|fmnist:train)",
     NULL, 0},
    {"offset", NL_OPT_INT, "N", "0", "with --model: first image of the split", NULL, 0},
    {"images", NL_OPT_INT, "N", "64", "with --model: images to record", NULL, 0},
    {"points", NL_OPT_INT, "N", "50000", "with --model: points sampled per layer", NULL, 0},
    {"extract-seed", NL_OPT_INT, "S", "42", "with --model: sampling seed of the points", NULL, 0},
    {"layer", NL_OPT_STR, "NAME", "all", "layer to search, or all", NULL, NL_OPTF_LAYER},
    {"output", NL_OPT_STR, "DIR", NULL, "result directory (fronts, chosen.exprs)", NULL,
     NL_OPTF_REQUIRED | NL_OPTF_PATH},
    {"seeds", NL_OPT_INT, "N", "1", "independent searches per layer", NULL, 0},
    {"seed", NL_OPT_INT, "S", "0", "base seed", NULL, NL_OPTF_SESSION},
    {"pop", NL_OPT_INT, "N", "500", "population size", NULL, 0},
    {"gens", NL_OPT_INT, "N", "50", "generations", NULL, 0},
    {"max-nodes", NL_OPT_INT, "N", "20", "node limit of every candidate", NULL, 0},
    {"init-depth", NL_OPT_INT, "D", "4", "initial depth limit (ramped half-and-half)", NULL, 0},
    {"tournament", NL_OPT_INT, "K", "7", "tournament size", NULL, 0},
    {"penalty", NL_OPT_NUM, "GAMMA", "0.005", "pull-to-zero weight gamma", NULL, 0},
    {"const-steps", NL_OPT_INT, "N", "10", "Adam steps on the constants per generation", NULL,
     0},
    {"const-top", NL_OPT_INT, "N", "100", "offspring whose constants are refined", NULL, 0},
    {"const-lr", NL_OPT_NUM, "LR", "0.1", "Adam step size", NULL, 0},
    {"const-points", NL_OPT_INT, "N", "4096",
     "training points the Adam steps see (fixed subsample; 0: all)", NULL, 0},
    {"complexity", NL_OPT_CHOICE, NULL, "nodes", "second objective", "nodes|flops", 0},
    {"select", NL_OPT_STR, "HOW", "minval",
     "chosen from a front: minval|knee|budget=F|budget=ln", NULL, 0},
    {"max-flops", NL_OPT_STR, "F|ln", NULL,
     "search-time FLOPs/element limit (ln: 5 + 2/d)", NULL, 0},
    {"init", NL_OPT_STR, "FILE", NULL, "expressions (.exprs) seeding each layer's population",
     NULL, NL_OPTF_PATH},
    {"threads", NL_OPT_INT, "N", NULL, "worker threads (default: normlab --threads)", NULL,
     NL_OPTF_SESSION},
    {"recompute", NL_OPT_FLAG, NULL, NULL,
     "search again finished parts computed from other mappings or settings", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

typedef struct live {
  nl_ctx *ctx;
  int shown;
} live;

static int progress(const nl_gp_progress *p, void *u) {
  live *l = u;
  fprintf(l->ctx->err,
          "\r[%d/%d] %s seed %d  gen %d/%d  best F %.5g  front %d  %.3g node-evals/s  %.1fs   ",
          p->task + 1, p->ntasks, p->layer, p->seed, p->gen, p->gens, p->best_fitness,
          p->front_size, p->node_evals_per_s, p->elapsed);
  fflush(l->ctx->err);
  l->shown = 1;
  return 0;
}

/* The options given on the command line (or filled from the session),
 * through the one parser of the campaign's settings
 * (search/campaign_opts.h), which 'evolve ... &' and Lua use too. */
int nl_evolve_opts_parse(nl_ctx *ctx, const nl_args *a, nl_gp_campaign_opts *o, nl_error *err) {
  const nl_opt *ol = a->cmd->opts;
  for (int i = 0; ol[i].name; i++)
    if (a->val[i] &&
        /* at the prompt --maps defaults to the session's; --model replaces it */
        !(strcmp(ol[i].name, "maps") == 0 && !a->given[i] && nl_arg_given(a, "model")) &&
        nl_gp_campaign_opts_set(o, ol[i].name, ol[i].type == NL_OPT_FLAG ? NULL : a->val[i], err))
      return -1;
  if (nl_gp_campaign_opts_finish(o, err)) return -1;
  static const char *const with_model[] = {"data", "offset", "images", "points", "extract-seed"};
  for (int i = 0; !o->model && i < 5; i++)
    if (nl_arg_given(a, with_model[i]))
      return nl_fail(err, NL_EINPUT,
                     "--%s says where the mappings of --model come from; with --maps they are "
                     "in the file",
                     with_model[i]);
  if ((!o->maps && !o->model) || !o->output)
    return nl_fail(err, NL_EINPUT, "missing required option --%s",
                   o->maps || o->model ? "output" : "maps (or --model)");
  if (!o->cfg.threads) o->cfg.threads = ctx->threads;
  return 0;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_gp_campaign_opts o;
  nl_gp_campaign_opts_init(&o);
  if (nl_evolve_opts_parse(ctx, a, &o, err)) {
    nl_gp_campaign_opts_free(&o);
    return -1;
  }
  const char *outdir = o.output;
  nl_maps m;
  nl_maps_init(&m);
  if (o.maps && nl_maps_load(&m, o.maps, err) != 0) {
    nl_gp_campaign_opts_free(&o);
    return -1;
  }
  nl_exprset init;
  nl_exprset_init(&init);
  if (o.init && nl_exprset_load(o.init, &init, err) != 0) {
    nl_maps_free(&m);
    nl_gp_campaign_opts_free(&o);
    return -1;
  }
  const char *one[1] = {o.layer};
  nl_gp_campaign cam = {.cfg = &o.cfg, .maps = &m, .layers = o.layer ? one : NULL,
                        .nlayers = o.layer ? 1 : 0, .seeds = o.seeds, .outdir = outdir,
                        .recompute = o.recompute, .init = o.init ? &init : NULL,
                        .init_path = o.init};
  live lv = {ctx, 0};
  if (ctx->tty) {
    cam.progress = progress;
    cam.user = &lv;
  }
  nl_gp_summary s;
  int rc;
  if (o.model) {
    nl_gp_source src;
    nl_gp_source_from_opts(&src, &o);
    rc = nl_gp_model_campaign_run(&cam, &src, &s, err);
  } else {
    rc = nl_gp_campaign_run(&cam, &s, err);
  }
  if (lv.shown) fputc('\n', ctx->err);
  for (int i = 0; rc == 0 && i < s.nlayers; i++)
    if (s.layers[i].over_budget)
      fprintf(ctx->err,
              "evolve: layer %s: no front member within the budget of %.4g FLOPs per element "
              "(the cheapest costs %d); left out of %s/chosen.exprs (try --max-flops)\n",
              s.layers[i].name, s.layers[i].limit, s.layers[i].cheapest, outdir);
  if (rc == 0) {
    double sr2 = 0;
    int nr = 0;
    for (int i = 0; i < s.nlayers; i++)
      if (s.layers[i].expr && isfinite(s.layers[i].val_r2)) {
        sr2 += s.layers[i].val_r2;
        nr++;
      }
    double mean = nr ? sr2 / nr : NAN;
    if (o.json) {
      json_t *root = json_object(), *ls = json_array();
      for (int i = 0; i < s.nlayers; i++) {
        const nl_gp_layer_summary *l = &s.layers[i];
        json_array_append_new(
            ls, json_pack("{s:s,s:s,s:f,s:f,s:i,s:i,s:f,s:s}", "name", l->name, "expr",
                          l->expr ? l->expr : "", "val_mse", l->val_mse, "val_r2", l->val_r2,
                          "flops", l->flops, "nodes", l->nodes, "seconds", l->seconds, "origin",
                          nl_gp_origin_name(l->origin)));
        json_t *jl = json_array_get(ls, json_array_size(ls) - 1);
        if (l->limit > 0) {
          json_object_set_new(jl, "budget", json_real(l->limit));
          json_object_set_new(jl, "refit", json_boolean(l->refitted));
          if (l->over_budget) json_object_set_new(jl, "cheapest", json_integer(l->cheapest));
        }
      }
      json_object_set_new(root, "layers", ls);
      json_object_set_new(root, "mean_val_r2", json_real(isfinite(mean) ? mean : 0));
      json_object_set_new(root, "seconds", json_real(s.seconds));
      nl_json_print(ctx->out, root);
      json_decref(root);
    } else {
      int w = 5;
      for (int i = 0; i < s.nlayers; i++)
        if ((int)strlen(s.layers[i].name) > w) w = (int)strlen(s.layers[i].name);
      /* "R²" is a byte longer than its column: its width + 1 */
      fprintf(ctx->out, "%-*s %4s %5s %5s %10s %10s %8s  %s\n", w, "layer", "seed", "nodes",
              "flops", "val MSE", "val R²", "seconds", "expression");
      for (int i = 0; i < s.nlayers; i++) {
        const nl_gp_layer_summary *l = &s.layers[i];
        char *e = l->expr ? nl_print(&l->prog, NL_PRINT_SHORT) : NULL;
        fprintf(ctx->out, "%-*s %4d %5d %5d %10.6f %9.6f %8.1f  %s%s\n", w, l->name, l->seed,
                l->nodes, l->flops, l->val_mse, l->val_r2, l->seconds, e ? e : "-",
                l->skipped ? "  (resumed)" : "");
        free(e);
      }
      fprintf(ctx->out, "mean validation R² %.6f over %d layers; %.1f s; results in %s\n", mean,
              nr, s.seconds, outdir);
    }
  }
  nl_gp_summary_free(&s);
  nl_exprset_free(&init);
  nl_maps_free(&m);
  nl_gp_campaign_opts_free(&o);
  return rc;
}

const nl_cmd nl_cmd_evolve = {
    .name = "evolve",
    .args = NULL,
    .summary = "search a scalar function per norm layer by genetic programming",
    .help =
        "For each layer of a mappings file and each seed: NSGA-II over expression trees in x\n"
        "and constants (+, *, neg, tanh, sigmoid, clip(+-5); weights .28 .26 .08 .20 .10 .08;\n"
        "ramped half-and-half initialisation; constants from N(0,1)) on two objectives:\n"
        "  F = MSE(y, f(x)) + gamma/2 (f(-delta)^2 + f(delta)^2), delta = 2 max|x_train|,\n"
        "  and complexity (node count, or FLOPs with clip charged 1: --complexity flops).\n"
        "Points are split 90/10 (seeded) into training and validation. Each generation the\n"
        "constants of the best --const-top offspring take --const-steps Adam steps on F,\n"
        "computed on a fixed random subsample of --const-points training points; F is then\n"
        "recomputed on all training points and the constants kept when it is lower.\n"
        "An archive keeps every non-dominated (F, complexity) pair seen: that is the front.\n"
        "DIR receives LAYER.csv (the fronts of all seeds: layer,seed,rank,nodes,flops,\n"
        "train_fitness,val_fitness,val_mse,val_r2,expr) and chosen.exprs (per layer the\n"
        "selection of the seed with the lowest validation F; --select minval: lowest\n"
        "validation F on the front, knee: knee of the (flops, val MSE) front, budget=F:\n"
        "lowest validation F among the members costing at most F FLOPs per element on\n"
        "the simplified tree (clip 0, as 'cost' prints), budget=ln: at most LayerNorm's\n"
        "5 + 2/d (d from the mappings' width metadata; unknown: 5); the chosen member is\n"
        "simplified and its constants re-fitted by Levenberg-Marquardt on the training\n"
        "points, kept when validation F is not worse; a layer with no member within the\n"
        "budget is named with the cheapest cost found and left out; the entries\n"
        "of layers not searched are kept). --max-flops F|ln limits the search itself:\n"
        "a candidate costing more (or with a clip(a, lo, hi) whose bounds depend on x)\n"
        "gets F = inf, operators costing more are not drawn, and clip(a, lo, hi) with\n"
        "constant bounds joins the operators. --init FILE.exprs puts the expression\n"
        "named like a layer into that layer's initial population; the fronts' origin\n"
        "column tells the search's members from such seeds and from expressions sent by\n"
        "'inject LAYER' at the prompt into 'evolve ... &'.\n"
        "Each layer-seed is written to DIR/parts/ when\n"
        "done, with the mappings' fingerprint and the settings; rerunning the same command\n"
        "skips finished work, and a part from other mappings or settings is an error\n"
        "naming it (--recompute: search it again). A layer whose y is constant is an\n"
        "error. With --model instead of --maps the mappings are recorded in memory\n"
        "(--data, --offset, --images, --points, --extract-seed as in 'normlab extract');\n"
        "--sequential searches the layers in forward order, layer k on the mapping\n"
        "recorded with layers < k already replaced by their chosen functions (one\n"
        "forward pass per layer; each layer's mapping is kept in DIR/maps/LAYER.safetensors);\n"
        "a rerun resumes from the layers already done.\n"
        "Ctrl-C stops after the current generation and keeps its front as a\n"
        "partial result. Same seed, same result, for any thread count.\n"
        "JSON: {\"layers\":[{\"name\",\"expr\",\"val_mse\",\"val_r2\",\"flops\",\"nodes\","
        "\"seconds\",\"origin\"[,\"budget\",\"refit\",\"cheapest\"]}],\n\"mean_val_r2\",\"seconds\"}.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
