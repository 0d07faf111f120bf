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

int nl_app_load_data(nl_ctx *ctx, const char *spec, long offset, long limit,
                     const nl_vit_config *c, int skip_bad, nl_dataset *d, nl_error *err);
/* The same with the training transform (RandomResizedCrop + flip) drawn
 * from seed. */
int nl_app_load_train_data(nl_ctx *ctx, const char *spec, long limit, const nl_vit_config *c,
                           uint64_t seed, nl_dataset *d, nl_error *err);
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
                             int train, int threads, int chunk, nl_train_stream **s,
                             nl_dataset *shell, nl_error *err);
/* 1 when spec names image files or records that go through the model's
 * transform (imagefolder:, cifar10:), 0 for Fashion-MNIST. */
int nl_app_data_transformed(const char *spec);

#endif
