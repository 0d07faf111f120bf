/* Evaluation of a ViT classifier on a dataset: top-1 / top-5 with the
 * model's normalisation. The one evaluation loop of normlab: the eval
 * command, Lua's model:eval and train's epoch lines all call
 * nl_vit_evaluate. It refuses a dataset the model cannot take
 * (nl_vit_check_data), a model with non-finite parameters
 * (nl_vit_check_finite) and a batch whose logits are not finite: a NaN
 * compares false with everything, so counting it would report every image
 * as correct. The library never prints. */
#ifndef NL_TRAIN_EVALUATE_H
#define NL_TRAIN_EVALUATE_H

#include <stddef.h>

#include "base/error.h"
#include "base/progress.h"
#include "data/dataset.h"
#include "model/vit.h"

typedef struct nl_eval_opts {
  int batch;             /* images per forward pass; <= 0: 100 */
  int threads;           /* worker threads (and BLAS threads) of the forward passes;
                          * 0: nl_threads_default() */
  int interruptible;     /* 1: stop before the next batch once nl_interrupted() */
  nl_progress_fn progress; /* after every batch (task "eval", label the dataset's name,
                          * done/total images, keys "top1", "top5": fractions so far);
                          * non-zero return: stop; may be NULL */
  void *progress_user;
  const char *model_name; /* names the model in messages (its path); NULL: "the model" */
  int *predictions;      /* NULL, or room for npredictions class indices: the argmax of
                          * every image evaluated, in order (ties: the lower class, as
                          * torch.argmax); images past npredictions are not recorded */
  long npredictions;
} nl_eval_opts;

typedef struct nl_eval_result {
  long images;           /* images evaluated (all of the dataset unless stopped) */
  long top1, top5;       /* of them, with the label first / among the first min(5, classes) */
  double seconds;        /* wall time of the loop */
  int stopped;           /* 1: stopped early (interrupt or progress); the counts so far */
  long skipped;          /* bad images the data left out (nl_dataset.skipped): not in images */
} nl_eval_result;

/* The data options (data/dataset.h) that give m's input: its size,
 * channels, crop_pct and interpolation; evaluation transform, threads 0. */
void nl_vit_data_opts(const nl_vit_config *c, nl_data_opts *o);

/* batch 100, the default threads, not interruptible, no progress. */
void nl_eval_opts_default(nl_eval_opts *o);

/* Can m classify d? The image size must be the model's, the labels below
 * its class count, and its mean/std must have one entry or one per input
 * channel (grey images are replicated over the channels). NL_EINPUT naming
 * both otherwise; model_name may be NULL. */
int nl_vit_check_data(const nl_vit *m, const nl_dataset *d, const char *model_name,
                      nl_error *err);

/* NaN and infinite values of tensor i of m (nan, inf may be NULL); returns
 * their sum. */
size_t nl_vit_tensor_nonfinite(const nl_vit *m, int i, size_t *nan, size_t *inf);
/* NL_EINPUT naming the first tensor of m (in checkpoint order, DyT alphas
 * included) that holds a NaN or an infinity, with the counts. */
int nl_vit_check_finite(const nl_vit *m, const char *model_name, nl_error *err);

/* Evaluate m on every image of d (in order, o->batch at a time; o may be
 * NULL for the defaults). Checks the data and the parameters first; a
 * batch whose logits hold a NaN or an infinity is an NL_EINPUT error
 * naming the image and, when one is found, the first norm layer whose
 * output is not finite. A stop (interrupt, progress) is not an error: r
 * holds the images done and r->stopped is 1. */
int nl_vit_evaluate(const nl_vit *m, const nl_dataset *d, const nl_eval_opts *o,
                    nl_eval_result *r, nl_error *err);

/* nl_vit_evaluate over the chunks of a stream (data/dataset.h) as over
 * their concatenation: the counts (skipped too) add up, progress counts over all of them
 * (total: nl_data_stream_total), the next chunk is decoded while the
 * current one runs. */
int nl_vit_evaluate_stream(const nl_vit *m, nl_data_stream *s, const nl_eval_opts *o,
                           nl_eval_result *r, nl_error *err);

#endif
