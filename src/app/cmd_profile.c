/* normlab profile: per-channel activation statistics at every Linear's and
 * norm's input, and the time of each block part (model/profile.h). */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/data_load.h"
#include "app/model_path.h"
#include "app/profile_cmd.h"
#include "base/json.h"
#include "base/mem.h"
#include "data/dataset.h"
#include "model/vit.h"
#include "plot/plot.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model (safetensors, timm names; default: the bundled "
     "vit_small_p7_fmnist)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"data", NL_OPT_STR, "SPEC", "fmnist:train", "images: " NL_DATA_SPEC_HELP, NULL, 0},
    NL_OPT_SKIP_BAD,
    {"offset", NL_OPT_INT, "N", "0", "first image of the split", NULL, 0},
    {"images", NL_OPT_INT, "N", "256", "images to run", NULL, 0},
    {"batch", NL_OPT_INT, "B", "32", "images per forward pass", NULL, 0},
    {"output", NL_OPT_STR, "FILE", NULL, "profile file to write (safetensors)", NULL, NL_OPTF_PATH},
    {"plot", NL_OPT_FLAG, NULL, NULL, "draw per-block part times and a channel histogram", NULL, 0},
    {"cov", NL_OPT_FLAG, NULL, NULL,
     "also the covariance of every block's MLP hidden channels (for prune --refit)", NULL, 0},
    {"layer", NL_OPT_STR, "LAYER", NULL,
     "histogram: layer (default: the last block's mlp.fc2.in)", NULL, 0},
    {"stat", NL_OPT_CHOICE, NULL, "absmean", "histogram: statistic per channel",
     "absmean|mean|var|absmax", 0},
    {"term", NL_OPT_CHOICE, NULL, "auto",
     "where to draw: $GNUTERM, else a window ($DISPLAY), else PNG files; or text",
     "auto|window|png|dumb", NL_OPTF_SESSION},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

typedef struct {
  const nl_dataset *d;
  const nl_vit_config *c;
} source;

static int fill(int first, int n, float *dst, void *user, nl_error *err) {
  (void)err;
  source *s = user;
  nl_dataset_normalize(s->d, first, n, s->c->in_chans, s->c->nmean, s->c->mean, s->c->std, dst);
  return 0;
}

static int progress(const nl_progress *p, void *user) {
  nl_ctx *ctx = user;
  if (ctx->progress && ctx->progress(p, ctx->progress_user)) return 1;
  if (ctx->tty) {
    fprintf(ctx->err, "\rprofile: %ld/%ld images  %.1f s", p->done, p->total, p->elapsed);
    fflush(ctx->err);
  }
  return 0;
}

int nl_app_profile(nl_ctx *ctx, const nl_vit *m, const char *spec, long offset, long images,
                   long batch, int cov, int skip_bad, int *skipped, nl_profile *p,
                   nl_error *err) {
  memset(p, 0, sizeof *p);
  nl_dataset d;
  if (nl_app_load_images(ctx, spec, offset, images, &m->cfg, skip_bad, &d, err) != 0) return -1;
  if (skipped) *skipped = d.skipped;
  int rc = 0;
  if (rc == 0 && (d.rows != m->cfg.img_size || d.cols != m->cfg.img_size))
    rc = nl_fail(err, NL_EINPUT, "%s images are %dx%d; the model expects %dx%d", spec, d.rows,
                 d.cols, m->cfg.img_size, m->cfg.img_size);
  if (rc == 0) {
    source s = {&d, &m->cfg};
    nl_profile_opts o = {.batch = (int)batch,
                         .threads = ctx->threads,
                         .progress = progress,
                         .progress_user = ctx,
                         .cov = cov};
    rc = nl_profile_run(m, d.n, fill, &s, &o, p, err); /* the images used */
    if (ctx->tty) fputc('\n', ctx->err);
  }
  nl_dataset_free(&d);
  return rc;
}

/* Channel figures of a layer: mean over channels of absmean and var,
 * max of absmax, and the largest absmean over the median absmean (the
 * outlier channels AWQ and SmoothQuant care about). */
typedef struct summary {
  double absmean, var, absmax, outlier;
} summary;

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static summary summarize(const nl_profile_layer *L) {
  summary s = {0, 0, 0, 0};
  float *t = nl_xmalloc((size_t)L->width * sizeof(float));
  float top = 0;
  for (int j = 0; j < L->width; j++) {
    s.absmean += L->absmean[j];
    s.var += L->var[j];
    if (L->absmax[j] > s.absmax) s.absmax = L->absmax[j];
    if (L->absmean[j] > top) top = L->absmean[j];
    t[j] = L->absmean[j];
  }
  s.absmean /= L->width;
  s.var /= L->width;
  qsort(t, (size_t)L->width, sizeof *t, cmp_float);
  float med = t[L->width / 2];
  s.outlier = med > 0 ? top / med : 0;
  free(t);
  return s;
}

static const float *stat_of(const nl_profile_layer *L, const char *stat) {
  if (strcmp(stat, "mean") == 0) return L->mean;
  if (strcmp(stat, "var") == 0) return L->var;
  if (strcmp(stat, "absmax") == 0) return L->absmax;
  return L->absmean;
}

static nl_plot_term term_of(const char *t) {
  if (strcmp(t, "png") == 0) return NL_PLOT_PNG;
  if (strcmp(t, "dumb") == 0) return NL_PLOT_DUMB;
  if (strcmp(t, "window") == 0) return NL_PLOT_WINDOW;
  return NL_PLOT_AUTO;
}

/* Per-block part times: a bar per block (its total), a line per part. */
static int plot_times(nl_ctx *ctx, const nl_args *a, const nl_profile *p, const char *model,
                      nl_error *err) {
  int D = p->depth;
  float *v = nl_xcalloc((size_t)D * (NL_PROFILE_PARTS + 2), sizeof(float));
  float *x = v, *tot = v + D;
  nl_plot_series s[NL_PROFILE_PARTS + 1];
  for (int b = 0; b < D; b++) {
    x[b] = (float)b;
    for (int k = 0; k < NL_PROFILE_PARTS; k++) tot[b] += (float)p->part_ms[b * NL_PROFILE_PARTS + k];
  }
  s[0] = (nl_plot_series){.title = "block", .x = x, .y = tot, .n = (size_t)D, .points = 3};
  for (int k = 0; k < NL_PROFILE_PARTS; k++) {
    float *y = v + (size_t)(2 + k) * D;
    for (int b = 0; b < D; b++) y[b] = (float)p->part_ms[b * NL_PROFILE_PARTS + k];
    s[k + 1] = (nl_plot_series){.title = nl_vit_part_name(nl_profile_part(k)), .x = x, .y = y,
                                .n = (size_t)D, .points = 4};
  }
  char title[512];
  snprintf(title, sizeof title, "time per block part: %s", model);
  nl_plot_opts po = {.term = term_of(nl_arg_str(a, "term")),
                     .title = title,
                     .xlabel = "block",
                     .ylabel = "ms per image",
                     .text_out = ctx->out};
  nl_plot_result res;
  int rc = nl_plot_draw(&po, s, NL_PROFILE_PARTS + 1, &res, err);
  if (rc == 0 && res.term == NL_PLOT_PNG) fprintf(ctx->out, "wrote %s\n", res.path);
  free(v);
  return rc;
}

/* Histogram of one statistic over a layer's channels (40 bins). */
static int plot_histogram(nl_ctx *ctx, const nl_args *a, const nl_profile_layer *L,
                          const char *stat, nl_error *err) {
  enum { NB = 40 };
  const float *v = stat_of(L, stat);
  float lo = v[0], hi = v[0];
  for (int j = 1; j < L->width; j++) {
    if (v[j] < lo) lo = v[j];
    if (v[j] > hi) hi = v[j];
  }
  float x[NB], y[NB];
  double w = hi > lo ? (hi - lo) / NB : 1;
  for (int i = 0; i < NB; i++) {
    x[i] = (float)i;
    y[i] = 0;
  }
  for (int j = 0; j < L->width; j++) {
    int i = (int)((v[j] - lo) / w);
    y[i < 0 ? 0 : i >= NB ? NB - 1 : i] += 1;
  }
  char lab[NB][24];
  const char *tics[NB];
  for (int i = 0; i < NB; i++) {
    lab[i][0] = 0;
    if (i % 10 == 0) snprintf(lab[i], sizeof lab[i], "%.3g", lo + i * w);
    tics[i] = lab[i];
  }
  char title[160], xl[160];
  snprintf(title, sizeof title, "%s: %s per channel (%d channels)", L->name, stat, L->width);
  snprintf(xl, sizeof xl, "%s (bins of %.3g from %.3g)", stat, w, (double)lo);
  nl_plot_series s = {.title = "channels", .x = x, .y = y, .n = NB, .points = 3};
  nl_plot_opts po = {.term = term_of(nl_arg_str(a, "term")),
                     .title = title,
                     .xlabel = xl,
                     .ylabel = "channels",
                     .text_out = ctx->out,
                     .xtics = tics,
                     .nxtics = NB};
  nl_plot_result res;
  int rc = nl_plot_draw(&po, &s, 1, &res, err);
  if (rc == 0 && res.term == NL_PLOT_PNG) fprintf(ctx->out, "wrote %s\n", res.path);
  return rc;
}

static void print_table(FILE *out, const nl_profile *p) {
  fprintf(out, "time per image (ms) by block part:\n%5s", "block");
  for (int k = 0; k < NL_PROFILE_PARTS; k++) fprintf(out, " %9s", nl_vit_part_name(nl_profile_part(k)));
  fprintf(out, " %9s\n", "total");
  double col[NL_PROFILE_PARTS] = {0}, all = 0;
  for (int b = 0; b < p->depth; b++) {
    double t = 0;
    fprintf(out, "%5d", b);
    for (int k = 0; k < NL_PROFILE_PARTS; k++) {
      double v = p->part_ms[b * NL_PROFILE_PARTS + k];
      fprintf(out, " %9.4f", v);
      t += v;
      col[k] += v;
    }
    all += t;
    fprintf(out, " %9.4f\n", t);
  }
  fprintf(out, "%5s", "all");
  for (int k = 0; k < NL_PROFILE_PARTS; k++) fprintf(out, " %9.4f", col[k]);
  fprintf(out, " %9.4f\n\n", all);
  fprintf(out, "%-24s %6s %10s %10s %10s %8s\n", "layer (input of)", "width", "mean|x|",
          "mean var", "max|x|", "outlier");
  for (int i = 0; i < p->nlayers; i++) {
    const nl_profile_layer *L = &p->layers[i];
    summary s = summarize(L);
    fprintf(out, "%-24s %6d %10.4g %10.4g %10.4g %8.2f\n", L->name, L->width, s.absmean, s.var,
            s.absmax, s.outlier);
  }
  fprintf(out, "(mean|x|, mean var: averages over channels; outlier: largest channel mean|x| "
               "over the median)\n");
}

static void print_json(FILE *out, const nl_profile *p, const char *model, const char *spec,
                       const char *output) {
  json_t *j = json_object();
  json_object_set_new(j, "model", json_string(model));
  json_object_set_new(j, "data", json_string(spec));
  json_object_set_new(j, "images", json_integer(p->images));
  if (output) json_object_set_new(j, "output", json_string(output));
  json_t *parts = json_array(), *times = json_array(), *layers = json_array();
  for (int k = 0; k < NL_PROFILE_PARTS; k++)
    json_array_append_new(parts, json_string(nl_vit_part_name(nl_profile_part(k))));
  for (int b = 0; b < p->depth; b++) {
    json_t *row = json_array();
    for (int k = 0; k < NL_PROFILE_PARTS; k++)
      json_array_append_new(row, nl_json_rounded(p->part_ms[b * NL_PROFILE_PARTS + k], 5));
    json_array_append_new(times, row);
  }
  for (int i = 0; i < p->nlayers; i++) {
    summary s = summarize(&p->layers[i]);
    json_array_append_new(
        layers, json_pack("{s:s, s:i, s:f, s:f, s:f, s:f}", "name", p->layers[i].name, "width",
                          p->layers[i].width, "absmean", s.absmean, "var", s.var, "absmax",
                          s.absmax, "outlier", s.outlier));
  }
  json_object_set_new(j, "parts", parts);
  json_object_set_new(j, "time_ms", times);
  json_object_set_new(j, "layers", layers);
  nl_json_print(out, j);
  json_decref(j);
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *model = nl_model_path(ctx, a);
  const char *spec = nl_arg_str(a, "data");
  const char *out = nl_arg_str(a, "output");
  long offset, images, batch;
  if (nl_arg_int_range(a, "offset", 0, INT32_MAX, &offset, err) != 0 ||
      nl_arg_int_range(a, "images", 1, INT32_MAX, &images, err) != 0 ||
      nl_arg_int_range(a, "batch", 1, 4096, &batch, err) != 0)
    return -1;
  nl_vit m;
  if (nl_vit_load(&m, model, NULL, err) != 0) return -1;
  /* the histogram's layer is checked before the run */
  char deflayer[64];
  snprintf(deflayer, sizeof deflayer, "blocks.%d.mlp.fc2.in", m.cfg.depth - 1);
  const char *layer = nl_arg_given(a, "layer") ? nl_arg_str(a, "layer") : deflayer;
  nl_profile p;
  memset(&p, 0, sizeof p);
  int skipped = 0;
  int rc = nl_app_profile(ctx, &m, spec, offset, images, batch, nl_arg_flag(a, "cov"),
                          nl_app_skip_bad(a), &skipped, &p, err);
  const nl_profile_layer *hl = rc == 0 ? nl_profile_find(&p, layer) : NULL;
  if (rc == 0 && nl_arg_flag(a, "plot") && !hl)
    rc = nl_fail(err, NL_EINPUT, "--layer %s: no such layer (layers are named like %s, "
                 "blocks.0.attn.qkv.in, %s.in, head.in)", layer, deflayer, m.final_norm->name);
  if (rc == 0 && out) {
    char im[32], off[32];
    snprintf(im, sizeof im, "%ld", images);
    snprintf(off, sizeof off, "%ld", offset);
    const char *meta[] = {"model", model, "data", spec, "offset", off, "images", im};
    rc = nl_profile_save(&p, out, meta, 4, err);
  }
  if (rc == 0) {
    if (nl_arg_flag(a, "json")) {
      print_json(ctx->out, &p, model, spec, out);
    } else {
      fprintf(ctx->out, "profile of %s on %s: %ld images from offset %ld, batch %ld", model, spec,
              images - skipped, offset, batch);
      if (skipped) fprintf(ctx->out, " (%d bad skipped)", skipped);
      fprintf(ctx->out, "\n\n");
      print_table(ctx->out, &p);
      if (out) fprintf(ctx->out, "wrote %s\n", out);
    }
  }
  if (rc == 0 && nl_arg_flag(a, "plot")) {
    rc = plot_times(ctx, a, &p, model, err);
    if (rc == 0) rc = plot_histogram(ctx, a, hl, nl_arg_str(a, "stat"), err);
  }
  nl_profile_free(&p);
  nl_vit_free(&m);
  return rc;
}

const nl_cmd nl_cmd_profile = {
    .name = "profile",
    .args = NULL,
    .summary = "per-channel activation statistics and the time of each block part",
    .help = "Runs --images images through the model with an observer on the forward pass and\n"
            "records, per channel, mean |x|, mean, variance and max |x| at every Linear's\n"
            "input and every norm's input: blocks.N.norm1.in, blocks.N.attn.qkv.in (norm1's\n"
            "output), blocks.N.attn.proj.in (attention output, heads x head_dim channels:\n"
            "what prune --heads scores heads by), blocks.N.norm2.in,\n"
            "blocks.N.mlp.fc1.in, blocks.N.mlp.fc2.in (fc1 after GELU: the hidden channels\n"
            "prune removes), the final norm's input and head.in; and the wall time of each\n"
            "block part (norm1, qkv, attention, proj with its residual add, norm2, fc1, gelu,\n"
            "fc2 with its residual add) per image. Prints a table of both; --output writes\n"
            "the statistics (F32 tensors <layer>.absmean, .mean, .var, .absmax and\n"
            "time.parts [depth, 9] in ms per image; metadata model, data, offset, images)\n"
            "for prune --profile. --plot draws the part times per block and a histogram of\n"
            "--stat over the channels of --layer. Times come from this machine as it is\n"
            "(shared machines: compare runs made together). --cov also records the covariance\n"
            "of every block's hidden channels (F32 blocks.N.mlp.fc2.in.cov [width, width]),\n"
            "which prune --refit uses.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
