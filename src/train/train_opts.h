/* The settings of a training run (`normlab train`, Lua model:train): one
 * struct, one parser from key/value text that the command line and Lua
 * both use (so a bad value gives the same message from either), the
 * run's recorded config (train.json "config") and the check that a
 * --resume keeps it.
 *
 * On --resume every setting must be the one the run was started with,
 * except these, which may change:
 *   epochs   extend (or shorten) the run; the learning-rate schedule is
 *            recomputed for the new total, and the change is recorded in
 *            train.json ("resumes");
 *   threads  results do not depend on the thread count;
 *   json     the output format;
 *   skip-bad bad images were an error, or are left out (a run stopped at
 *            one resumes with --skip-bad);
 *   model, teacher: the paths may change (Lua passes temporary copies),
 *            the contents may not (compared by fingerprint).
 * A changed setting is an NL_EINPUT error naming the option and both
 * values. */
#ifndef NL_TRAIN_TRAIN_OPTS_H
#define NL_TRAIN_TRAIN_OPTS_H

#include <stdint.h>

#include "base/error.h"
#include "model/vit.h"

struct json_t;

/* The values --variant accepts: the two trained sets, and the paper's
 * letters (A affine, F full, D full with distillation from --teacher), and
 * tb: the transformation blocks of the model's reuse plan alone
 * (model/reuse_plan.h). */
#define NL_TRAIN_VARIANTS "affine|full|A|F|D|tb"

typedef struct nl_train_opts {
  char *model, *teacher;     /* model to train, teacher (NULL: none); owned */
  char *data, *eval;         /* training / evaluation data specs; owned */
  char *output;              /* run directory (NULL: not given); owned */
  long epochs, batch, warmup, limit, eval_limit, seed;
  int threads;               /* worker threads; 0: the process setting */
  double lr, lr_affine, lr_alpha; /* per group; lr_affine, lr_alpha default to lr */
  double tau, lambda, wd, drop_path;
  int affine;                /* variant affine (norm w, b, DyT alpha) rather than full */
  int distil;                /* variant D: needs a teacher */
  int tb_only;               /* variant tb */
  int cosine;                /* schedule cosine rather than constant */
  int augment;               /* random crop and flip */
  int random_init;           /* init random rather than model */
  int resume, json;
  int skip_bad;              /* leave out images that fail to decode (not compared on resume) */
  nl_precision precision;    /* the Linear products of the step: fp32, or bf16 operands with
                              * FP32 sums (nl_vt_opts.precision) */
  /* which of the defaulted settings were given */
  int lr_affine_set, lr_alpha_set, tau_set, lambda_set, augment_set, no_augment_set;
} nl_train_opts;

/* The defaults of `normlab help train`. */
void nl_train_opts_init(nl_train_opts *o);
void nl_train_opts_free(nl_train_opts *o);

/* Set one option from text: key is the option's long name ("lr-affine";
 * '_' may stand for '-'), value its text ("1e-3", "affine"); flags
 * (augment, no-augment, resume, json) take NULL, "1" or "true" to set and
 * "0" or "false" to clear. NL_EINPUT naming the option on an unknown key
 * or a bad value. */
int nl_train_opts_set(nl_train_opts *o, const char *key, const char *value, nl_error *err);

/* After the last set: the checks between options (--augment with
 * --no-augment, --tau / --lambda / variant D without --teacher, --output
 * missing) and the defaults that follow from others (--lr-affine,
 * --lr-alpha). */
int nl_train_opts_finish(nl_train_opts *o, nl_error *err);

/* The option an older name stands for ("limit" -> "images", "eval_limit"
 * -> "eval-images"; both still accepted by nl_train_opts_set), NULL for
 * a current or unknown name. */
const char *nl_train_opts_renamed(const char *key);

/* Is key one of the options (same spelling rules as nl_train_opts_set)? */
int nl_train_opts_known(const char *key);

/* Content fingerprint of a model: its listed tensors (names, shapes,
 * values) and norm kinds (with expressions), FNV-1a 64. The same for a
 * model saved and loaded again. */
uint64_t nl_vit_fingerprint(const nl_vit *m);

/* The run's config as recorded in train.json: every setting, the model
 * and teacher paths and fingerprints, and what the data gave
 * (train_images, the batch after clamping to it). New reference. */
struct json_t *nl_train_config(const nl_train_opts *o, const nl_vit *model,
                               const nl_vit *teacher, long train_images, long batch);

/* Compare `now` (nl_train_config of this command) with the config the run
 * in `dir` was started with: NL_EINPUT naming the first setting that
 * differs and may not (see above), with both values. Keys missing from
 * `saved` (older runs) are not compared. */
int nl_train_config_check_resume(const struct json_t *saved, const struct json_t *now,
                                 const char *dir, nl_error *err);

#endif
