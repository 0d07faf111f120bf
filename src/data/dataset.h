/* Image classification datasets held in memory as 8-bit pixels.
 *
 * Data specs (nl_dataset_load_opts):
 *   fmnist:test | fmnist:train   Fashion-MNIST (below), 28x28 grey, as stored
 *   imagefolder:DIR              torchvision's ImageFolder: one subfolder per
 *                                class (sorted names are the labels 0..), every
 *                                .jpg/.jpeg/.png below it (any case), in sorted
 *                                order as os.walk sorted gives them
 *   cifar10:DIR[:train|:test]    CIFAR-10's binary batches (data_batch_1..5.bin
 *                                or test_batch.bin, 3073 bytes a record) in DIR
 *                                or DIR/cifar-10-batches-bin; no split: train
 * Image folders and CIFAR go through the model's transform (data/transform.h:
 * timm's evaluation transform, or RandomResizedCrop and flip with `train`)
 * on worker threads and are held at the model's size and channels.
 *
 * Fashion-MNIST comes from Debian's dataset-fashion-mnist package
 * (/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz;
 * NORMLAB_FMNIST_DIR, formerly NL_FMNIST_DIR, overrides the directory). Data specs name a dataset and
 * split: "fmnist:test", "fmnist:train". */
#ifndef NL_DATA_DATASET_H
#define NL_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/progress.h"

#define NL_FMNIST_DIR_DEFAULT "/usr/share/datasets/fashion-mnist"

typedef struct nl_dataset {
  char name[512];    /* "fmnist:test", the spec as given */
  int n;             /* images */
  int rows, cols;    /* 28 x 28 */
  int classes;       /* 10 */
  int channels;      /* channels of images (Fashion-MNIST 1) */
  uint8_t *images;   /* n * channels * rows * cols, planar per image */
  int32_t *labels;   /* n */
  int skipped;       /* bad images left out (nl_data_opts.skip_bad) */
} nl_dataset;

/* How image folders and CIFAR are turned into the model's input. */
typedef struct nl_data_opts {
  int size;          /* the model's input size (square) */
  int channels;      /* the model's input channels (1: grey, 3: RGB) */
  double crop_pct;   /* evaluation transform: shorter side to floor(size / crop_pct) */
  int interp;        /* nl_interp (data/transform.h) */
  int train;         /* 1: RandomResizedCrop + flip instead of the evaluation transform */
  uint64_t seed;     /* train: image k draws from nl_rng_stream(seed, k) (k in the whole set) */
  int threads;       /* decoding threads; 0: nl_threads_default() */
  int skip_bad;      /* 1: leave out images that fail to decode (reported through warn);
                      * 0: the first is an NL_EINPUT error naming the file */
  void (*warn)(const char *msg, void *user); /* a skipped image; may be NULL */
  void *warn_user;
  nl_progress_fn progress; /* task "decode", every few hundred images; may be NULL */
  void *progress_user;
  int32_t *boxes;    /* train, when not NULL: per kept image its crop box i, j, h, w
                      * (in the decoded image) and flip, 5 ints (room for all) */
} nl_data_opts;

/* Defaults for a model of size x size x channels: crop_pct 1, bicubic. */
void nl_data_opts_default(nl_data_opts *o, int size, int channels);

/* Read an idx-format image file and label file (gzip-compressed or not),
 * checking magic numbers, sizes and that the counts agree. */
int nl_idx_load(nl_dataset *d, const char *images_path, const char *labels_path, nl_error *err);

/* Load a data spec ("fmnist:test" | "fmnist:train") and keep images
 * [offset, offset + limit) (limit <= 0: to the end). */
int nl_dataset_load(nl_dataset *d, const char *spec, long offset, long limit, nl_error *err);
/* Any spec above; o NULL only for fmnist. */
int nl_dataset_load_opts(nl_dataset *d, const char *spec, long offset, long limit,
                         const nl_data_opts *o, nl_error *err);
void nl_dataset_free(nl_dataset *d);

/* A stream over a data spec: image folders and CIFAR are decoded `chunk`
 * images at a time, the next chunk on a background thread (one core,
 * bounded: one chunk ahead) while the caller works on the current one;
 * Fashion-MNIST comes as one chunk. Warnings of --skip-bad and progress go
 * through o on the caller's thread. nl_data_stream_next gives an empty
 * dataset (n 0, skipped 0) at the end; a chunk whose images were all left
 * out has n 0 and skipped > 0; every chunk it gives is the caller's to free.
 * Close joins the prefetch. */
typedef struct nl_data_stream nl_data_stream;
int nl_data_stream_open(nl_data_stream **s, const char *spec, long offset, long limit,
                        const nl_data_opts *o, int chunk, nl_error *err);
/* Entries the stream will read (before bad ones are left out). */
long nl_data_stream_total(const nl_data_stream *s);
int nl_data_stream_next(nl_data_stream *s, nl_dataset *d, nl_error *err);
void nl_data_stream_close(nl_data_stream *s);

/* A training stream over an image folder or CIFAR: only the listing and
 * the labels are held (shell: n, size, channels, classes and labels, no
 * images; the caller frees it with nl_dataset_free), and the images of a
 * pass (an order of listing indices) are decoded `chunk` at a time with
 * o's transform on nl_threads_count(o->threads) background threads, the
 * next chunk while the caller works on the current one (two chunks held).
 * Entry k's training crop draws from nl_rng_stream(seed, k) as
 * nl_dataset_load_opts's does: the same pixels as the whole set decoded
 * with that seed. limit > 0 keeps the first `limit` entries. */
typedef struct nl_train_stream nl_train_stream;
int nl_train_stream_open(nl_train_stream **s, const char *spec, long limit,
                         const nl_data_opts *o, int chunk, nl_dataset *shell, nl_error *err);
/* Start a pass over order[0, n) (the caller keeps it alive) with this
 * seed; a pass in progress is abandoned. */
void nl_train_stream_begin(nl_train_stream *s, const int *order, long n, uint64_t seed);
/* The next chunk of the pass: *count images (planar, the model's size and
 * channels), the stream's until the next call; 0 images at the end. An
 * image that fails to decode ends the pass (an NL_EINPUT error naming it)
 * unless o->skip_bad: then *bad (when bad is not NULL) is per image of the
 * chunk its message (NULL for a good one; its pixels are not to be used),
 * the stream's until the next call, or NULL when every image is good. */
int nl_train_stream_next(nl_train_stream *s, const uint8_t **images, const char *const **bad,
                         long *count, nl_error *err);
void nl_train_stream_close(nl_train_stream *s);

/* Normalise images [first, first + n) into out [n, channels, rows, cols]:
 * (pixel / 255 - mean[c]) / std[c]; a single mean/std applies to every
 * channel, and grey images are replicated over the channels (an RGB
 * dataset must have the channels asked for). */
void nl_dataset_normalize(const nl_dataset *d, int first, int n, int channels, int nmean,
                          const float *mean, const float *std, float *out);

#endif
