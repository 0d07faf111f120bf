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

static void on_bad(const char *msg, void *user) {
  nl_ctx *ctx = user;
  fprintf(ctx->err, "normlab: skipped: %s\n", msg);
}

static int load(nl_ctx *ctx, const char *spec, long offset, long limit, const nl_vit_config *c,
                int skip_bad, int train, uint64_t seed, nl_dataset *d, nl_error *err) {
  nl_data_opts o;
  nl_vit_data_opts(c, &o);
  o.train = train;
  o.seed = seed;
  live l = {ctx, -1};
  o.threads = ctx->threads;
  o.skip_bad = skip_bad;
  o.warn = on_bad;
  o.warn_user = ctx;
  o.progress = on_decode;
  o.progress_user = &l;
  int rc = nl_dataset_load_opts(d, spec, offset, limit, &o, err);
  if (!rc && d->skipped)
    fprintf(ctx->err, "normlab: %s: %d bad images left out (--skip-bad)\n", spec, d->skipped);
  return rc;
}

int nl_app_load_data(nl_ctx *ctx, const char *spec, long offset, long limit,
                     const nl_vit_config *c, int skip_bad, nl_dataset *d, nl_error *err) {
  return load(ctx, spec, offset, limit, c, skip_bad, 0, 0, d, err);
}

int nl_app_load_train_data(nl_ctx *ctx, const char *spec, long limit, const nl_vit_config *c,
                           uint64_t seed, nl_dataset *d, nl_error *err) {
  return load(ctx, spec, 0, limit, c, 0, 1, seed, d, err);
}

int nl_app_open_stream(nl_ctx *ctx, const char *spec, long offset, long limit,
                       const nl_vit_config *c, int skip_bad, int chunk, nl_data_stream **s,
                       nl_error *err) {
  nl_data_opts o;
  nl_vit_data_opts(c, &o);
  o.threads = ctx->threads;
  o.skip_bad = skip_bad;
  o.warn = on_bad;
  o.warn_user = ctx;
  return nl_data_stream_open(s, spec, offset, limit, &o, chunk, err);
}

int nl_app_open_train_stream(nl_ctx *ctx, const char *spec, long limit, const nl_vit_config *c,
                             int train, int threads, int chunk, nl_train_stream **s,
                             nl_dataset *shell, nl_error *err) {
  (void)ctx;
  nl_data_opts o;
  nl_vit_data_opts(c, &o);
  o.train = train;
  o.threads = threads;
  return nl_train_stream_open(s, spec, limit, &o, chunk, shell, err);
}

int nl_app_data_transformed(const char *spec) {
  return strncmp(spec, "imagefolder:", 12) == 0 || strncmp(spec, "cifar10:", 8) == 0;
}
