/* normlab extract: record every norm layer's mapping (x, y_pre) over a batch
 * of real images into a mappings file. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "app/cmd.h"
#include "app/data_load.h"
#include "app/model_path.h"
#include "base/timer.h"
#include "data/dataset.h"
#include "model/extract.h"
#include "model/maps.h"
#include "model/vit.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model (safetensors, timm names; default: the bundled "
     "vit_small_p7_fmnist)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"data", NL_OPT_STR, "SPEC", "fmnist:test", "images: " NL_DATA_SPEC_HELP, NULL, 0},
    NL_OPT_SKIP_BAD,
    {"offset", NL_OPT_INT, "N", "0", "first image of the split", NULL, 0},
    {"images", NL_OPT_INT, "N", "64", "images to run", NULL, 0},
    {"points", NL_OPT_INT, "N", "50000", "points sampled per layer (0: every position)", NULL, 0},
    {"seed", NL_OPT_INT, "S", "42", "sampling seed", NULL, 0},
    {"batch", NL_OPT_INT, "B", "32", "images per forward pass (does not change the points drawn)",
     NULL, 0},
    {"output", NL_OPT_STR, "FILE", NULL, "mappings file to write", NULL,
     NL_OPTF_REQUIRED | NL_OPTF_PATH},
    NL_PRECISION_OPT,
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
  fprintf(ctx->err, "\rextract: %ld/%ld images  %.1f s", p->done, p->total, p->elapsed);
  fflush(ctx->err);
  return 0;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *model = nl_model_path(ctx, a);
  const char *out = nl_arg_need(a, "output", err);
  if (!out) return -1;
  const char *spec = nl_arg_str(a, "data");
  long offset, images, points, seed, batch;
  if (nl_arg_int_range(a, "offset", 0, INT32_MAX, &offset, err) != 0 ||
      nl_arg_int_range(a, "images", 1, INT32_MAX, &images, err) != 0 ||
      nl_arg_int_range(a, "points", 0, UINT32_MAX, &points, err) != 0 ||
      nl_arg_int_range(a, "seed", 0, INT64_MAX, &seed, err) != 0 ||
      nl_arg_int_range(a, "batch", 1, 4096, &batch, err) != 0)
    return -1;

  double t0 = nl_now();
  nl_vit m;
  nl_vit_load_opts lo = {0};
  if (nl_model_precision(a, &lo, err) || nl_vit_load(&m, model, &lo, err) != 0) return -1;
  nl_dataset d;
  if (nl_app_load_images(ctx, spec, offset, images, &m.cfg, nl_app_skip_bad(a), &d, err) != 0) {
    nl_vit_free(&m);
    return -1;
  }
  int rc = 0;
  if (rc == 0 && (d.rows != m.cfg.img_size || d.cols != m.cfg.img_size))
    rc = nl_fail(err, NL_EINPUT, "%s images are %dx%d; the model expects %dx%d", spec, d.rows,
                 d.cols, m.cfg.img_size, m.cfg.img_size);
  nl_maps maps;
  nl_maps_init(&maps);
  double t1 = nl_now();
  if (rc == 0) {
    source s = {&d, &m.cfg};
    nl_extract_opts o = {.points = points,
                         .seed = (uint64_t)seed,
                         .batch = (int)batch,
                         .threads = ctx->threads,
                         .progress = ctx->tty ? progress : NULL,
                         .progress_user = ctx};
    rc = nl_extract(&m, d.n, fill, &s, &o, &maps, err); /* the images used */
    if (ctx->tty) fputc('\n', ctx->err);
  }
  double t2 = nl_now();
  if (rc == 0) {
    char v[32];
    nl_maps_set_meta(&maps, "model", model);
    if (m.cfg.arch[0]) nl_maps_set_meta(&maps, "architecture", m.cfg.arch);
    nl_maps_set_meta(&maps, "data", spec);
    snprintf(v, sizeof v, "%ld", offset);
    nl_maps_set_meta(&maps, "offset", v);
    nl_maps_set_meta(&maps, "y", "(y - b) / (w + 1e-12)");
    if (m.bf16) nl_maps_set_meta(&maps, "precision", "bf16");
    rc = nl_maps_save(&maps, out, err);
  }
  if (rc == 0) {
    char skipped[96] = "";
    if (d.skipped)
      snprintf(skipped, sizeof skipped, "; %d bad image%s skipped", d.skipped,
               d.skipped == 1 ? "" : "s");
    fprintf(ctx->out, "wrote %s: %d layers x %zu points from %d images of %s (offset %ld%s)\n",
            out, maps.nlayers, maps.layers[0].n, d.n, spec, offset, skipped);
    fprintf(ctx->out, "time: %.3f s extraction (%.1f images/s), %.3f s in all\n", t2 - t1,
            (double)d.n / (t2 - t1), nl_now() - t0);
  }
  nl_maps_free(&maps);
  nl_dataset_free(&d);
  nl_vit_free(&m);
  return rc;
}

const nl_cmd nl_cmd_extract = {
    .name = "extract",
    .args = NULL,
    .summary = "record each norm layer's input -> pre-affine output mapping over real images",
    .help = "Runs --images images (from --offset) through the model and, at every LayerNorm,\n"
            "samples --points positions uniformly over (image, token, channel), recording\n"
            "x (the norm's input) and y = (out - b) / (w + 1e-12) (its output without the\n"
            "affine). Positions are drawn from --seed alone: the same seed picks the same\n"
            "positions for any --batch and thread count. Writes a mappings file: per layer\n"
            "F32 tensors <layer>.x and <layer>.y, metadata model, data, offset, images,\n"
            "points, seed. --skip-bad leaves out images that fail to decode (named on\n"
            "stderr, counted in the summary): the points come from the images used.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
