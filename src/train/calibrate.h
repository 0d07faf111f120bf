/* Output-aware calibration of an adapted ViT: the numbers of its norm slots
 * (the constants of every expression slot's f, and optionally the affine
 * w, b of every slot and the DyT alphas) are tuned to minimise the logit
 * distillation loss tau^2 KL(teacher || model) against the original model
 * on unlabeled images. No tree changes, no label is read: the step between
 * `replace` and re-alignment.
 *
 * Gradient of the constants: an expression slot computes
 * out[r, c] = f(x[r, c]; c_1..c_K) * w[c] + b[c], so
 *   dL/dc_k = sum_{r, c} dL/dout[r, c] * w[c] * df/dc_k (x[r, c])
 * with dL/dout from the trainer's backward pass (train/vit_train.h) and
 * df/dc_k per element from the expression engine (nl_eval_jac). The affine
 * and alpha gradients are the trainer's own.
 *
 * Same inputs, same seed, same result for any thread count. The library
 * never prints. */
#ifndef NL_TRAIN_CALIBRATE_H
#define NL_TRAIN_CALIBRATE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/progress.h"
#include "data/dataset.h"
#include "model/vit.h"

/* What is tuned. */
#define NL_CALIB_CONSTS 1u /* the constants of every expression slot */
#define NL_CALIB_AFFINE 2u /* every slot's w, b and the DyT alphas */
#define NL_CALIB_BOTH 3u

typedef struct nl_calib_opts {
  unsigned what;          /* NL_CALIB_* bits */
  int epochs;             /* passes over the images */
  int batch;              /* images per step */
  float lr;               /* Adam step size (constants, affine, alphas alike) */
  float tau;              /* distillation temperature; the loss is tau^2 KL at tau */
  uint64_t seed;          /* order of the images in each epoch */
  int threads;            /* > 0: worker threads (and BLAS threads) for this call, the
                           * process setting restored after it; 0: the process setting */
  int interruptible;      /* 1: stop after the step during which nl_interrupted() became true */
  nl_progress_fn progress;/* after every epoch (task "calibrate", done/total epochs, keys
                           * "kl": the epoch's mean KL at tau, "loss": tau^2 KL); and once
                           * before the first step with done 0 and the starting KL.
                           * Non-zero return: stop; may be NULL */
  void *progress_user;
} nl_calib_opts;

/* consts, 10 epochs, batch 64, lr 1e-2, tau 1, seed 0, the
 * process's threads, not interruptible, no progress. */
void nl_calib_opts_default(nl_calib_opts *o);

typedef struct nl_calib_result {
  int nconsts;            /* constants tuned (0 without NL_CALIB_CONSTS) */
  int epochs_done;
  double kl_before;       /* mean KL at tau over all images before the first step */
  double kl_after;        /* the same after the last step */
  double *epoch_kl;       /* [epochs_done] mean KL during each epoch (malloc'd; free
                           * with nl_calib_result_free) */
  double seconds;
  int stopped;            /* 1: stopped early by an interrupt or the progress callback;
                           * the model holds the numbers of the last step */
} nl_calib_result;

void nl_calib_result_free(nl_calib_result *r);

/* Calibrate m against teacher on the images of d (all of them; the labels
 * are never read). m must have the teacher's configuration (same
 * architecture: the teacher is the model m was adapted from); neither may
 * hold a non-finite parameter. NL_EINPUT for a bad option (what, epochs,
 * batch, lr, tau), a teacher of another shape, data the model cannot take,
 * nothing to tune (consts without any expression constant), a non-finite
 * parameter, or a loss that is no longer finite (m is then left as the
 * last step made it: do not save it). On success m holds the calibrated
 * numbers, and every expression slot's text (nl_norm.expr, what nl_vit_save
 * records) is updated; the trees are unchanged. */
int nl_vit_calibrate(nl_vit *m, const nl_vit *teacher, const nl_dataset *d,
                     const nl_calib_opts *o, nl_calib_result *r, nl_error *err);

/* The loss tau^2 KL(teacher || m) averaged over n normalised images
 * [n, C, H, W] (eval mode) and its gradient with respect to every
 * expression constant of m: the constants of slot 0 in nl_prog_get_consts
 * order, then slot 1, ... (nconsts = sum over expression slots of
 * nl_prog_nconst; grad may be NULL). For tests and tools; n >= 1. */
int nl_calib_const_grad(nl_vit *m, const nl_vit *teacher, const float *images, int n, float tau,
                        double *loss, float *grad, nl_error *err);

#endif
