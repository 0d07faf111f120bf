/* A command's data: a data spec (data/dataset.h) loaded for a model's
 * input, with the terminal's progress line while images are decoded and a
 * warning per bad image left out (--skip-bad). */
#ifndef NL_APP_DATA_LOAD_H
#define NL_APP_DATA_LOAD_H

#include "app/cmd.h"
#include "data/dataset.h"
#include "model/vit.h"

/* The help text of a --data option. */
#define NL_DATA_SPEC_HELP "fmnist:test|fmnist:train, imagefolder:DIR, cifar10:DIR[:test]"

/* --skip-bad: the one entry of it in the option table of every command
 * that reads --data (nl_app_skip_bad reads it). */
#define NL_OPT_SKIP_BAD                                                                        \
  {"skip-bad", NL_OPT_FLAG, NULL, NULL,                                                        \
   "leave out images that fail to decode (each named on stderr, the count in the summary; "  \
   "results over the images used); else the first is an error",                              \
   NULL, 0}

/* skip_bad arguments below: 0 a bad image is an NL_EINPUT error naming it
 * (exit 2); NL_SKIP_REPORT left out, one line per image on ctx->err;
 * NL_SKIP_QUIET left out and counted only (images already reported). */
enum { NL_SKIP_REPORT = 1, NL_SKIP_QUIET = 2 };
/* NL_SKIP_REPORT when the command was given --skip-bad, else 0. */
int nl_app_skip_bad(const nl_args *a);
/* The line naming a left-out image, on ctx->err. */
void nl_app_report_bad(nl_ctx *ctx, const char *msg);

int nl_app_load_data(nl_ctx *ctx, const char *spec, long offset, long limit,
                     const nl_vit_config *c, int skip_bad, nl_dataset *d, nl_error *err);
/* nl_app_load_data of exactly `images` entries from offset: fewer in the
 * spec is an NL_EINPUT error; bad ones left out (skip_bad) make d->n
 * smaller (d->skipped of them). */
int nl_app_load_images(nl_ctx *ctx, const char *spec, long offset, long images,
                       const nl_vit_config *c, int skip_bad, nl_dataset *d, nl_error *err);
/* The same with the training transform (RandomResizedCrop + flip) drawn
 * from seed. */
int nl_app_load_train_data(nl_ctx *ctx, const char *spec, long limit, const nl_vit_config *c,
                           int skip_bad, uint64_t seed, nl_dataset *d, nl_error *err);
/* A stream over spec in chunks of `chunk` images (data/dataset.h), bad
 * images reported on ctx->err when skip_bad. */
int nl_app_open_stream(nl_ctx *ctx, const char *spec, long offset, long limit,
                       const nl_vit_config *c, int skip_bad, int chunk, nl_data_stream **s,
                       nl_error *err);
/* A training stream over an image folder or CIFAR (data/dataset.h): the
 * model's transform (train: RandomResizedCrop + flip, else the evaluation
 * transform) on `threads` background threads, `chunk` images at a time;
 * shell holds the labels. */
int nl_app_open_train_stream(nl_ctx *ctx, const char *spec, long limit, const nl_vit_config *c,
                             int train, int skip_bad, int threads, int chunk,
                             nl_train_stream **s, nl_dataset *shell, nl_error *err);
/* 1 when spec names image files or records that go through the model's
 * transform (imagefolder:, cifar10:), 0 for Fashion-MNIST. */
int nl_app_data_transformed(const char *spec);

#endif
