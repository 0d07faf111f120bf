/* `normlab bench data`: decoding and transforming images (--data, for the
 * model's input: size, channels, crop_pct, interpolation) in images/s and
 * per core, the side normlab holds against torchvision's PIL pipeline
 * (scripts/bench-data runs both on the same files). --dump FILE writes
 * what the model would get, before normalisation, as safetensors:
 * "images" U8 [n, C, S, S], "labels" I32 [n] and with --train "boxes"
 * I32 [n, 5] (crop i, j, h, w in the decoded image, flip), for checks
 * against torchvision. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/bench.h"
#include "app/model_path.h"
#include "base/interrupt.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/threads.h"
#include "base/timer.h"
#include "data/dataset.h"
#include "data/transform.h"
#include "model/safetensors.h"
#include "model/vit.h"
#include "train/evaluate.h"

static void on_bad(const char *msg, void *user) {
  fprintf(((nl_ctx *)user)->err, "normlab: skipped: %s\n", msg);
}

static int dump(const nl_dataset *d, const int32_t *boxes, const char *path, nl_error *err) {
  nl_st_writer *w = nl_st_writer_new();
  int64_t s4[4] = {d->n, d->channels, d->rows, d->cols}, s1[1] = {d->n}, s2[2] = {d->n, 5};
  int rc = nl_st_writer_add_raw(w, "images", NL_DT_U8, d->images, 4, s4, err);
  if (!rc) rc = nl_st_writer_add_raw(w, "labels", NL_DT_I32, d->labels, 1, s1, err);
  if (!rc && boxes) rc = nl_st_writer_add_raw(w, "boxes", NL_DT_I32, boxes, 2, s2, err);
  nl_st_writer_meta(w, "data", d->name);
  if (!rc) rc = nl_st_writer_save(w, path, err);
  nl_st_writer_free(w);
  return rc;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *spec = nl_arg_str(a, "data");
  if (!spec) return nl_fail(err, NL_EINPUT, "bench data needs --data imagefolder:DIR or cifar10:DIR");
  double seconds = nl_arg_num(a, "seconds");
  if (!(seconds > 0 && seconds <= 3600))
    return nl_fail(err, NL_EINPUT, "--seconds must be in (0, 3600]");
  long limit;
  if (nl_arg_int_range(a, "images", 0, 1000000000, &limit, err)) return -1;
  const char *path = nl_model_path(ctx, a);
  nl_vit_config c;
  if (nl_vit_read_config(&c, path, NULL, err)) return -1;
  nl_data_opts o;
  nl_vit_data_opts(&c, &o);
  o.threads = ctx->threads;
  o.train = nl_arg_flag(a, "train");
  o.seed = (uint64_t)nl_arg_int(a, "seed");
  o.skip_bad = nl_arg_flag(a, "skip-bad");
  o.warn = on_bad;
  o.warn_user = ctx;
  const int threads = nl_threads_count(ctx->threads);
  /* passes over the data until --seconds have gone (at least one) */
  long passes = 0, images = 0;
  double t0 = nl_now(), el = 0;
  nl_dataset d;
  memset(&d, 0, sizeof d);
  int32_t *boxes = NULL;
  int rc = 0;
  do {
    nl_dataset_free(&d);
    free(boxes);
    boxes = NULL;
    rc = nl_dataset_load_opts(&d, spec, 0, limit, &o, err);
    if (rc) break;
    passes++;
    images += d.n + d.skipped;
    el = nl_now() - t0;
  } while (el < seconds && !nl_interrupted());
  const char *out = nl_arg_str(a, "dump");
  if (!rc && out) {
    if (o.train) { /* once more with the boxes recorded (the same draws: the same seed) */
      boxes = nl_xmalloc(sizeof(int32_t) * 5 * ((size_t)d.n + d.skipped + 1));
      o.boxes = boxes;
      nl_dataset_free(&d);
      rc = nl_dataset_load_opts(&d, spec, 0, limit, &o, err);
    }
    if (!rc) rc = dump(&d, boxes, out, err);
  }
  if (!rc) {
    double ips = images / el;
    if (nl_arg_flag(a, "json")) {
      json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:f, s:s, s:I, s:i, s:o, s:o}",
                            "bench", "data", "data", spec, "model", path, "size", c.img_size,
                            "channels", c.in_chans, "threads", threads, "interpolation",
                            nl_interp_name(o.interp), "crop_pct", o.crop_pct, "transform",
                            o.train ? "train" : "eval", "images", (json_int_t)d.n, "passes",
                            (int)passes, "images_per_second", nl_json_rounded(ips, 2),
                            "images_per_second_per_thread", nl_json_rounded(ips / threads, 2));
      nl_json_print(ctx->out, j);
      json_decref(j);
    } else {
      nl_bench_print_machine(ctx);
      fprintf(ctx->out,
              "data: %s, %d images to %dx%dx%d (%s transform, %s, crop_pct %g), %ld passes\n",
              spec, d.n, c.in_chans, c.img_size, c.img_size, o.train ? "train" : "eval",
              nl_interp_name(o.interp), o.crop_pct, passes);
      fprintf(ctx->out, "decode + transform: %.1f images/s on %d threads, %.1f images/s per thread\n",
              ips, threads, ips / threads);
      if (out) fprintf(ctx->out, "wrote %s\n", out);
    }
  }
  free(boxes);
  nl_dataset_free(&d);
  return rc;
}

const nl_bench nl_bench_data = {"data", "decode + transform of --data images for the model's input", run};
