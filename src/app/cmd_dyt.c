/* normlab dyt: the DyT baseline of every layer of a mappings file, beside
 * the bound R² of the best possible scalar function. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "base/json.h"
#include "base/mem.h"
#include "model/maps.h"
#include "search/dyt.h"

static const nl_opt opts[] = {
    {"maps", NL_OPT_STR, "FILE", NULL, "mappings file", NULL,
     NL_OPTF_REQUIRED | NL_OPTF_PATH | NL_OPTF_SESSION},
    {"bins", NL_OPT_INT, "B", "256", "quantile bins of x for the bound estimate", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

static void print_json(nl_ctx *ctx, const char *path, const nl_maps *m, const nl_dyt_row *rows,
                       int bins, double mr2, double mb, double mmse) {
  json_t *root = json_object(), *layers = json_array();
  json_object_set_new(root, "maps", json_string(path));
  json_object_set_new(root, "bins", json_integer(bins));
  for (int i = 0; i < m->nlayers; i++) {
    const nl_dyt_row *r = &rows[i];
    json_array_append_new(
        layers, json_pack("{s:s,s:I,s:f,s:f,s:f,s:f}", "name", r->name, "points",
                          (json_int_t)r->points, "alpha", r->alpha, "mse", r->mse, "r2", r->r2,
                          "bound_r2", r->bound_r2));
  }
  json_object_set_new(root, "layers", layers);
  json_object_set_new(root, "mean_mse", json_real(mmse));
  json_object_set_new(root, "mean_r2", json_real(mr2));
  json_object_set_new(root, "mean_bound_r2", json_real(mb));
  nl_json_print(ctx->out, root);
  json_decref(root);
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *path = nl_arg_need(a, "maps", err);
  if (!path) return -1;
  long bins;
  if (nl_arg_int_range(a, "bins", 1, 1000000, &bins, err) != 0) return -1;
  nl_maps m;
  if (nl_maps_load(&m, path, err) != 0) return -1;
  nl_dyt_row *rows = nl_xcalloc((size_t)m.nlayers, sizeof *rows);
  if (nl_dyt_table(&m, (int)bins, ctx->threads, rows, err) != 0) {
    nl_error_prefix(err, "%s", path);
    free(rows);
    nl_maps_free(&m);
    return -1;
  }
  double sr2 = 0, sb = 0, smse = 0;
  for (int i = 0; i < m.nlayers; i++) {
    sr2 += rows[i].r2;
    sb += rows[i].bound_r2;
    smse += rows[i].mse;
  }
  double mr2 = sr2 / m.nlayers, mb = sb / m.nlayers, mmse = smse / m.nlayers;
  if (nl_arg_flag(a, "json")) {
    print_json(ctx, path, &m, rows, (int)bins, mr2, mb, mmse);
  } else {
    int w = 5;
    for (int i = 0; i < m.nlayers; i++) {
      int l = (int)strlen(m.layers[i].name);
      if (l > w) w = l;
    }
    fprintf(ctx->out, "%s: %d layers\n", path, m.nlayers);
    /* "R²" is a byte longer than its column: widths + 1 */
    fprintf(ctx->out, "%-*s %8s %10s %10s %11s %10s %9s\n", w, "layer", "points", "alpha", "MSE",
            "R²", "bound R²", "gap");
    for (int i = 0; i < m.nlayers; i++) {
      const nl_dyt_row *r = &rows[i];
      fprintf(ctx->out, "%-*s %8zu %10.5g %10.6f %10.6f %9.6f %9.6f\n", w, r->name, r->points,
              r->alpha, r->mse, r->r2, r->bound_r2, r->bound_r2 - r->r2);
    }
    fprintf(ctx->out, "%-*s %8s %10s %10.6f %10.6f %9.6f %9.6f\n", w, "mean", "", "", mmse, mr2,
            mb, mb - mr2);
    fprintf(ctx->out,
            "DyT: y ~ tanh(alpha x), least squares; R² = 1 - MSE / Var(y).\n"
            "bound: R² of E[y|x], a line in each of %ld quantile bins of x (adjusted R²):\n"
            "the best any scalar f(x) can do; gap = bound - DyT is what a better f can win.\n",
            bins);
  }
  free(rows);
  nl_maps_free(&m);
  return 0;
}

const nl_cmd nl_cmd_dyt = {
    .name = "dyt",
    .args = NULL,
    .summary = "fit the DyT baseline tanh(alpha x) per layer, beside the best possible R²",
    .help = "For every layer of a mappings file: the least-squares alpha of tanh(alpha x)\n"
            "against y (pre-affine norm output), its MSE and R² = 1 - MSE/Var(y), and the\n"
            "bound R² of the best possible scalar function, E[y|x], estimated by a\n"
            "straight line in each of --bins quantile bins of x (adjusted R²: corrected for\n"
            "the 2 parameters per bin).\n"
            "JSON: {\"maps\",\"bins\",\"layers\":[{\"name\",\"points\",\"alpha\",\"mse\",\"r2\","
            "\"bound_r2\"}],\n\"mean_mse\",\"mean_r2\",\"mean_bound_r2\"}.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
