/* normlab maps: summarise a mappings file, or import one from any
 * safetensors file whose tensors hold x and y under a prefix/suffix naming. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "base/json.h"
#include "model/maps.h"

static const nl_opt opts[] = {
    {"maps", NL_OPT_STR, "FILE", NULL, "mappings file to summarise", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {"import", NL_OPT_STR, "FILE", NULL, "safetensors file to import mappings from", NULL,
     NL_OPTF_PATH},
    {"x-prefix", NL_OPT_STR, "P", NULL, "import: x tensors are named P LAYER S", NULL, 0},
    {"x-suffix", NL_OPT_STR, "S", NULL, "import: (see --x-prefix)", NULL, 0},
    {"y-prefix", NL_OPT_STR, "P", NULL, "import: y tensors are named P LAYER S", NULL, 0},
    {"y-suffix", NL_OPT_STR, "S", NULL, "import: (see --y-prefix)", NULL, 0},
    {"model", NL_OPT_STR, "NAME", NULL, "import: record the source model in the metadata", NULL,
     0},
    {"output", NL_OPT_STR, "FILE", NULL, "import: mappings file to write", NULL, NL_OPTF_PATH},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

typedef struct {
  double xmin, xmax, xmean, xvar, ymean, yvar;
} stats;

static stats layer_stats(const nl_maps_layer *l) {
  stats s = {INFINITY, -INFINITY, 0, 0, 0, 0};
  for (size_t i = 0; i < l->n; i++) {
    if (l->x[i] < s.xmin) s.xmin = l->x[i];
    if (l->x[i] > s.xmax) s.xmax = l->x[i];
    s.xmean += l->x[i];
    s.ymean += l->y[i];
  }
  s.xmean /= (double)l->n;
  s.ymean /= (double)l->n;
  for (size_t i = 0; i < l->n; i++) {
    s.xvar += (l->x[i] - s.xmean) * (l->x[i] - s.xmean);
    s.yvar += (l->y[i] - s.ymean) * (l->y[i] - s.ymean);
  }
  s.xvar /= (double)l->n;
  s.yvar /= (double)l->n;
  return s;
}

static void summary_json(nl_ctx *ctx, const char *path, const nl_maps *m) {
  json_t *root = json_object(), *meta = json_object(), *layers = json_array();
  size_t total = 0;
  for (int i = 0; i < m->nmeta; i++)
    json_object_set_new(meta, m->meta[i].key, json_string(m->meta[i].value));
  for (int i = 0; i < m->nlayers; i++) {
    const nl_maps_layer *l = &m->layers[i];
    stats s = layer_stats(l);
    total += l->n;
    json_array_append_new(layers,
                          json_pack("{s:s,s:I,s:o,s:o,s:f,s:f,s:f,s:f}", "name", l->name, "points",
                                    (json_int_t)l->n, "x_min", nl_json_float((float)s.xmin),
                                    "x_max", nl_json_float((float)s.xmax), "x_mean", s.xmean,
                                    "x_var", s.xvar, "y_mean", s.ymean, "y_var", s.yvar));
  }
  json_object_set_new(root, "path", json_string(path));
  json_object_set_new(root, "metadata", meta);
  json_object_set_new(root, "layers", layers);
  json_object_set_new(root, "points", json_integer((json_int_t)total));
  nl_json_print(ctx->out, root);
  json_decref(root);
}

static void summary_text(nl_ctx *ctx, const char *path, const nl_maps *m) {
  size_t total = 0;
  int w = 5;
  for (int i = 0; i < m->nlayers; i++) {
    total += m->layers[i].n;
    int l = (int)strlen(m->layers[i].name);
    if (l > w) w = l;
  }
  fprintf(ctx->out, "%s: %d layers, %zu points\n", path, m->nlayers, total);
  for (int i = 0; i < m->nmeta; i++)
    fprintf(ctx->out, "  %s: %s\n", m->meta[i].key, m->meta[i].value);
  fprintf(ctx->out, "%-*s %8s %10s %10s %10s %10s %10s %10s\n", w, "layer", "points", "x min",
          "x max", "x mean", "x var", "y mean", "y var");
  for (int i = 0; i < m->nlayers; i++) {
    const nl_maps_layer *l = &m->layers[i];
    stats s = layer_stats(l);
    fprintf(ctx->out, "%-*s %8zu %10.4g %10.4g %10.4g %10.4g %10.4g %10.4g\n", w, l->name, l->n,
            s.xmin, s.xmax, s.xmean, s.xvar, s.ymean, s.yvar);
  }
}

static int do_import(nl_ctx *ctx, const nl_args *a, const char *src, nl_error *err) {
  const char *out = nl_arg_str(a, "output");
  if (!out || !*out)
    return nl_fail(err, NL_EINPUT, "--import needs --output FILE (the mappings file to write)");
  nl_maps_import_opts o = {nl_arg_str(a, "x-prefix"), nl_arg_str(a, "x-suffix"),
                           nl_arg_str(a, "y-prefix"), nl_arg_str(a, "y-suffix")};
  if (!o.x_prefix && !o.x_suffix && !o.y_prefix && !o.y_suffix) {
    o.x_suffix = ".x";
    o.y_suffix = ".y";
  }
  nl_maps m;
  if (nl_maps_import(&m, src, &o, err) != 0) return -1;
  const char *model = nl_arg_str(a, "model");
  if (model) nl_maps_set_meta(&m, "model", model);
  int rc = nl_maps_save(&m, out, err);
  if (rc == 0) {
    size_t total = 0;
    for (int i = 0; i < m.nlayers; i++) total += m.layers[i].n;
    fprintf(ctx->out, "wrote %s: %d layers, %zu points, from %s\n", out, m.nlayers, total, src);
  }
  nl_maps_free(&m);
  return rc;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *src = nl_arg_str(a, "import");
  if (src) {
    if (nl_arg_given(a, "maps"))
      return nl_fail(err, NL_EINPUT, "give either --maps FILE or --import FILE, not both");
    return do_import(ctx, a, src, err);
  }
  static const char *const import_only[] = {"x-prefix", "x-suffix", "y-prefix",
                                            "y-suffix", "model",    "output"};
  for (size_t i = 0; i < sizeof import_only / sizeof import_only[0]; i++)
    if (nl_arg_given(a, import_only[i]))
      return nl_fail(err, NL_EINPUT, "--%s applies to --import only", import_only[i]);
  const char *path = nl_arg_str(a, "maps");
  if (!path || !*path)
    return nl_fail(err, NL_EINPUT, "missing --maps FILE (or --import FILE --output FILE)");
  nl_maps m;
  if (nl_maps_load(&m, path, err) != 0) return -1;
  if (nl_arg_flag(a, "json"))
    summary_json(ctx, path, &m);
  else
    summary_text(ctx, path, &m);
  nl_maps_free(&m);
  return 0;
}

const nl_cmd nl_cmd_maps = {
    .name = "maps",
    .args = NULL,
    .summary = "summarise a mappings file, or import one from another safetensors layout",
    .help = "With --maps FILE: layers, points, x range and moments, y moments, metadata.\n"
            "With --import SRC --output FILE: read layer L's x from the tensor named\n"
            "X-PREFIX L X-SUFFIX and its y from Y-PREFIX L Y-SUFFIX (any float dtype and\n"
            "shape, flattened; other tensors are skipped) and write a mappings file.\n"
            "Without any naming option the source is read as <L>.x / <L>.y.\n"
            "Example: normlab maps --import ref.safetensors --x-prefix map_x. --y-prefix map_y.\n"
            "         --output maps.safetensors",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
