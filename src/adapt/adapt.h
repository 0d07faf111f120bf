/* The whole adaptation in one call (`normlab adapt`, Lua normlab.adapt):
 *
 *   LayerNorm top-1 -> evolve (mappings recorded from the model, one pass
 *   or sequentially; the campaign's selection, simplified) -> replace ->
 *   calibrate (nl_vit_calibrate against the original model, optional) ->
 *   re-align (a training run through a caller's hook, optional),
 *   top-1 on the evaluation images after each stage.
 *
 * DIR receives chosen.exprs (the selected set), adapted.safetensors (the
 * model after the last stage run), report.json, and the stages' own
 * outputs: evolve/ (the campaign directory), replaced.safetensors,
 * calibrated.safetensors, realign/ (the training run). Every file is
 * written atomically. DIR/adapt.json records, per stage, the settings it
 * ran with (a key holding those of the stages before it too), its top-1
 * and time: a rerun skips the stages whose outputs exist and whose key is
 * unchanged, resumes an interrupted search from its finished parts and an
 * interrupted training run from its state, and runs again a stage whose
 * settings changed (and the stages after it).
 *
 * report.json: {"top1_ln", "top1_replaced", "top1_calibrated",
 * "top1_realigned" (percent, null for a stage not run), "eval_images",
 * "mean_val_r2", "mean_flops_per_element", "ln_flops_per_element"
 * (5 + 2/d), "layers": [{"name", "expression", "val_r2",
 * "flops_per_element", "bytes_per_token"}], "seconds": {"evolve",
 * "replace", "calibrate", "realign" (null: not run), "eval" (the top-1s),
 * "total" (all of them, as recorded by whichever call ran each stage),
 * "this_call" (the wall time of this call)},
 * "settings": {...}}. FLOPs are counted on the simplified trees with clip
 * free, as `normlab cost` counts them; bytes per token are the bytes one
 * pass reads (4d). The library never prints: stage lines go to o->note. */
#ifndef NL_ADAPT_ADAPT_H
#define NL_ADAPT_ADAPT_H

#include "base/error.h"
#include "search/campaign_opts.h"

struct json_t;

/* A re-alignment run: train `model` (variant "A", "F" or "D"; D distils
 * from teacher) for `epochs` epochs on the first `images` training images
 * (0: all), evaluating on eval_images test images (0: all), into the run directory outdir, which must then hold
 * last.safetensors; resume: outdir holds an interrupted run of the same
 * settings. Returns 0 or -1 with err (NL_EINTR when interrupted). */
typedef int (*nl_adapt_realign_fn)(void *user, const char *model, const char *teacher,
                                   const char *variant, int epochs, long images,
                                   int eval_images, int threads, const char *outdir, int resume,
                                   nl_error *err);

/* A line about a stage ("evolve: done in 12.3 s"), without newline. */
typedef void (*nl_adapt_note_fn)(void *user, const char *line);

typedef struct nl_adapt_opts {
  const char *model;      /* the original model (required) */
  const char *output;     /* result directory (required) */
  const char *budget;     /* "ln" or FLOPs per element: the campaign's select budget=...;
                             NULL: the campaign's own select */
  nl_gp_campaign_opts gp; /* the search (pop, gens, seeds, select, threads, ...) and where its
                             mappings come from (data, images, points, sequential); gp.model
                             and gp.output are set by nl_adapt_run */
  int calibrate;          /* training images to calibrate on; 0: no calibration */
  const char *calib_what; /* "consts", "affine" or "both" */
  int calib_epochs;
  const char *realign;    /* "A", "F", "D"; NULL: no re-alignment */
  int epochs;             /* re-alignment epochs */
  long train_images;      /* re-alignment images (0: all 60,000) */
  int eval_images;        /* test images of each top-1 (0: all 10,000) */
  int threads;            /* worker threads of every stage (0: the default) */
  nl_adapt_realign_fn realign_fn; /* required with realign */
  void *realign_user;
  nl_gp_progress_fn progress;     /* the search's progress; may be NULL */
  void *progress_user;
  nl_adapt_note_fn note;          /* may be NULL */
  void *note_user;
} nl_adapt_opts;

/* The defaults of `normlab help adapt` (gp initialised: free it with
 * nl_adapt_opts_free). */
void nl_adapt_opts_init(nl_adapt_opts *o);
void nl_adapt_opts_free(nl_adapt_opts *o);

/* Check the options (NL_EINPUT naming the option: a --budget the
 * campaign's select does not accept, a --realign other than A|F|D, ...).
 * Called by nl_adapt_run; front-ends call it to reject bad flags before
 * loading anything. */
int nl_adapt_check(nl_adapt_opts *o, nl_error *err);

/* Run (or resume) the adaptation; *report gets report.json's object (a
 * new reference) on success. NL_EINTR when interrupted (rerun to resume). */
int nl_adapt_run(nl_adapt_opts *o, struct json_t **report, nl_error *err);

#endif
