/* normlab bench extract: extraction of 64 Fashion-MNIST test images (50,000
 * points per layer) beside the bare forward pass over the same batches and
 * an extraction of 1 point per layer, so the cost of sampling and gathering
 * shows as the difference of the two extractions. Runs are interleaved and
 * the best of each is kept. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/bench.h"
#include "app/model_path.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/timer.h"
#include "data/dataset.h"
#include "model/extract.h"
#include "model/maps.h"
#include "model/vit.h"

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

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *path = nl_model_path(ctx, a);
  long batch;
  if (nl_arg_int_range(a, "batch", 1, 4096, &batch, err) != 0) return -1;
  double seconds = nl_arg_num(a, "seconds");
  const int images = NL_EXTRACT_IMAGES;
  nl_vit m;
  if (nl_vit_load(&m, path, NULL, err) != 0) return -1;
  nl_dataset d;
  if (nl_dataset_load(&d, "fmnist:test", 0, images, err) != 0) {
    nl_vit_free(&m);
    return -1;
  }
  source s = {&d, &m.cfg};
  int b = batch < images ? (int)batch : images;
  float *buf = nl_xmalloc(sizeof(float) * (size_t)b * (size_t)m.cfg.in_chans *
                          (size_t)m.cfg.img_size * (size_t)m.cfg.img_size);
  nl_vit_acts acts;
  int rc = nl_vit_acts_init(&acts, &m.cfg, b, 0, err);
  acts.threads = ctx->threads;
  double best_fwd = 1e30, best_ext = 1e30, best_one = 1e30, t_start = nl_now();
  int reps = 0;
  while (rc == 0 && (reps < 2 || nl_now() - t_start < seconds) && reps < 100) {
    double t0 = nl_now();
    for (int first = 0; rc == 0 && first < images; first += b) {
      int nb = images - first < b ? images - first : b;
      fill(first, nb, buf, &s, err);
      rc = nl_vit_forward(&m, &acts, buf, nb, NULL, NULL, err);
    }
    double t1 = nl_now();
    nl_maps maps;
    nl_extract_opts o = {.points = NL_EXTRACT_POINTS, .seed = NL_EXTRACT_SEED, .batch = b,
                         .threads = ctx->threads};
    if (rc == 0) rc = nl_extract(&m, images, fill, &s, &o, &maps, err);
    double t2 = nl_now();
    if (rc == 0) nl_maps_free(&maps);
    o.points = 1;
    if (rc == 0) rc = nl_extract(&m, images, fill, &s, &o, &maps, err);
    double t3 = nl_now();
    if (rc == 0) nl_maps_free(&maps);
    if (t1 - t0 < best_fwd) best_fwd = t1 - t0;
    if (t2 - t1 < best_ext) best_ext = t2 - t1;
    if (t3 - t2 < best_one) best_one = t3 - t2;
    reps++;
  }
  if (rc == 0) {
    double gflop = nl_vit_flops_per_image(&m.cfg) * images * 1e-9;
    if (nl_arg_flag(a, "json")) {
      json_t *j = json_pack(
          "{s:s, s:s, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "bench",
          "extract", "model", path, "norm_layers", m.nnorms, "images", images, "batch", b,
          "points_per_layer", NL_EXTRACT_POINTS, "sgemm_peak_gflops",
          nl_json_rounded(nl_bench_sgemm_peak(ctx->threads), 2), "forward_seconds",
          nl_json_rounded(best_fwd, 4), "forward_gflops", nl_json_rounded(gflop / best_fwd, 2),
          "extract_one_point_seconds", nl_json_rounded(best_one, 4), "extract_seconds",
          nl_json_rounded(best_ext, 4), "extract_images_per_second",
          nl_json_rounded(images / best_ext, 2), "sampling_fraction",
          nl_json_rounded((best_ext - best_one) / best_ext, 4));
      nl_json_print(ctx->out, j);
      json_decref(j);
    } else {
      nl_bench_print_machine(ctx);
      fprintf(ctx->out, "sgemm peak: %.1f GFLOP/s\n", nl_bench_sgemm_peak(ctx->threads));
      fprintf(ctx->out, "model: %s (%d norm layers), %d images, batch %d, best of %d\n", path,
              m.nnorms, images, b, reps);
      fprintf(ctx->out, "forward only:            %.3f s  (%.1f images/s, %.1f GFLOP/s)\n",
              best_fwd, images / best_fwd, gflop / best_fwd);
      fprintf(ctx->out, "extract, 1 point/layer:  %.3f s  (%.1f images/s)\n", best_one,
              images / best_one);
      fprintf(ctx->out, "extract %d points/layer: %.3f s  (%.1f images/s)\n", NL_EXTRACT_POINTS,
              best_ext, images / best_ext);
      fprintf(ctx->out, "sampling and gathering:  %+.3f s  (%.1f %% of the extraction)\n",
              best_ext - best_one, 100.0 * (best_ext - best_one) / best_ext);
    }
  }
  nl_vit_acts_free(&acts);
  free(buf);
  nl_dataset_free(&d);
  nl_vit_free(&m);
  return rc;
}

const nl_bench nl_bench_extract = {
    .name = "extract",
    .summary = "mapping extraction of 64 images vs the bare forward pass",
    .run = run,
};
