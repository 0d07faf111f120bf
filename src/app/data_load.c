#include "app/data_load.h"

#include <stdio.h>
#include <string.h>

#include "train/evaluate.h"

typedef struct {
  nl_ctx *ctx;
  double last;
} live;

static int on_decode(const nl_progress *p, void *user) {
  live *l = user;
  nl_ctx *ctx = l->ctx;
  if (ctx->progress && ctx->progress(p, ctx->progress_user)) return 1;
  if (ctx->tty && (p->elapsed - l->last > 0.2 || p->done == p->total)) {
    l->last = p->elapsed;
    fprintf(ctx->err, "\rdecode: %ld/%ld images, %.0f images/s   %s", p->done, p->total,
            p->elapsed > 0 ? p->done / p->elapsed : 0, p->done == p->total ? "\n" : "");
    fflush(ctx->err);
  }
  return 0;
}

void nl_app_report_bad(nl_ctx *ctx, const char *msg) {
  fprintf(ctx->err, "normlab: skipped: %s\n", msg);
}

static void on_bad(const char *msg, void *user) { nl_app_report_bad(user, msg); }

int nl_app_skip_bad(const nl_args *a) { return nl_arg_flag(a, "skip-bad") ? NL_SKIP_REPORT : 0; }

static int load(nl_ctx *ctx, const char *spec, long offset, long limit, const nl_vit_config *c,
                int skip_bad, int train, uint64_t seed, nl_dataset *d, nl_error *err) {
  nl_data_opts o;
  nl_vit_data_opts(c, &o);
  o.train = train;
  o.seed = seed;
  live l = {ctx, -1};
  o.threads = ctx->threads;
  o.skip_bad = skip_bad != 0;
  o.warn = skip_bad == NL_SKIP_REPORT ? on_bad : NULL;
  o.warn_user = ctx;
  o.progress = on_decode;
  o.progress_user = &l;
  int rc = nl_dataset_load_opts(d, spec, offset, limit, &o, err);
  if (!rc && d->skipped && skip_bad == NL_SKIP_REPORT)
    fprintf(ctx->err, "normlab: %s: %d bad image%s skipped (--skip-bad); %d used\n", spec,
            d->skipped, d->skipped == 1 ? "" : "s", d->n);
  return rc;
}

int nl_app_load_data(nl_ctx *ctx, const char *spec, long offset, long limit,
                     const nl_vit_config *c, int skip_bad, nl_dataset *d, nl_error *err) {
  return load(ctx, spec, offset, limit, c, skip_bad, 0, 0, d, err);
}

int nl_app_load_images(nl_ctx *ctx, const char *spec, long offset, long images,
                       const nl_vit_config *c, int skip_bad, nl_dataset *d, nl_error *err) {
  if (load(ctx, spec, offset, images, c, skip_bad, 0, 0, d, err)) return -1;
  if (d->n + d->skipped >= images) return 0;
  int n = d->n + d->skipped;
  nl_dataset_free(d);
  return nl_fail(err, NL_EINPUT, "%s has only %d images from offset %ld; --images %ld asked for",
                 spec, n, offset, images);
}

int nl_app_load_train_data(nl_ctx *ctx, const char *spec, long limit, const nl_vit_config *c,
                           int skip_bad, uint64_t seed, nl_dataset *d, nl_error *err) {
  return load(ctx, spec, 0, limit, c, skip_bad, 1, seed, d, err);
}

int nl_app_open_stream(nl_ctx *ctx, const char *spec, long offset, long limit,
                       const nl_vit_config *c, int skip_bad, int chunk, nl_data_stream **s,
                       nl_error *err) {
  nl_data_opts o;
  nl_vit_data_opts(c, &o);
  o.threads = ctx->threads;
  o.skip_bad = skip_bad != 0;
  o.warn = skip_bad == NL_SKIP_REPORT ? on_bad : NULL;
  o.warn_user = ctx;
  return nl_data_stream_open(s, spec, offset, limit, &o, chunk, err);
}

int nl_app_open_train_stream(nl_ctx *ctx, const char *spec, long limit, const nl_vit_config *c,
                             int train, int skip_bad, int threads, int chunk,
                             nl_train_stream **s, nl_dataset *shell, nl_error *err) {
  (void)ctx;
  nl_data_opts o;
  nl_vit_data_opts(c, &o);
  o.train = train;
  o.skip_bad = skip_bad != 0; /* the caller reports what nl_train_stream_next hands out */
  o.threads = threads;
  return nl_train_stream_open(s, spec, limit, &o, chunk, shell, err);
}

int nl_app_data_transformed(const char *spec) {
  return strncmp(spec, "imagefolder:", 12) == 0 || strncmp(spec, "cifar10:", 8) == 0;
}
