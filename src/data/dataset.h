/* Image classification datasets held in memory as 8-bit pixels.
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

#define NL_FMNIST_DIR_DEFAULT "/usr/share/datasets/fashion-mnist"

typedef struct nl_dataset {
  char name[32];     /* "fmnist:test" */
  int n;             /* images */
  int rows, cols;    /* 28 x 28 */
  int classes;       /* 10 */
  uint8_t *images;   /* n * rows * cols, row-major */
  uint8_t *labels;   /* n */
} nl_dataset;

/* Read an idx-format image file and label file (gzip-compressed or not),
 * checking magic numbers, sizes and that the counts agree. */
int nl_idx_load(nl_dataset *d, const char *images_path, const char *labels_path, nl_error *err);

/* Load a data spec ("fmnist:test" | "fmnist:train") and keep images
 * [offset, offset + limit) (limit <= 0: to the end). */
int nl_dataset_load(nl_dataset *d, const char *spec, long offset, long limit, nl_error *err);
void nl_dataset_free(nl_dataset *d);

/* Normalise images [first, first + n) into out [n, channels, rows, cols]:
 * (pixel / 255 - mean[c]) / std[c]; a single mean/std applies to every
 * channel, and grey images are replicated over the channels. */
void nl_dataset_normalize(const nl_dataset *d, int first, int n, int channels, int nmean,
                          const float *mean, const float *std, float *out);

#endif
