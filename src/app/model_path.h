/* The model a command works on: --model, else the session's model, else
 * the bundled default (samples/models/vit_small_p7_fmnist.safetensors);
 * and the norms put into it before the command runs (eval, replace,
 * train). */
#ifndef NL_APP_MODEL_PATH_H
#define NL_APP_MODEL_PATH_H

#include "app/cmd.h"
#include "model/replace.h"
#include "model/vit.h"

#define NL_DEFAULT_MODEL "vit_small_p7_fmnist.safetensors"

const char *nl_model_path(nl_ctx *ctx, const nl_args *a);

/* The norms of a command's --set: SPEC in the grammar of replace --set
 * (model/replace.h: FILE.exprs, dyt, dyt=ALPHA, dyt=FILE, ln), 'none'
 * for the model as loaded; without --set, at the prompt, the session's
 * expression set when it has one (as it is, edits included). */
typedef struct nl_model_norms {
  nl_replace_parsed parsed;    /* owns a set or alphas read from --set */
  const nl_replace_spec *spec; /* NULL: the model as loaded */
  const char *label;           /* what the output calls it: the --set text, "the session's set" */
  int from_session;            /* the session's set (no --set) */
} nl_model_norms;

/* Fill n (always initialised: free it also after an error). `none_ok`: 0
 * for a command that must replace something (replace), where no --set
 * and no session set is an error naming --set. */
int nl_model_norms_get(nl_ctx *ctx, const nl_args *a, int none_ok, nl_model_norms *n,
                       nl_error *err);
/* Put the norms into a loaded model: *replaced (may be NULL) gets how
 * many of its norm slots were replaced; kept (nnorms ints, may be NULL)
 * as nl_vit_replace. Errors name --set or the session's set. */
int nl_model_norms_apply(const nl_model_norms *n, nl_vit *m, int *kept, int *replaced,
                         nl_error *err);
void nl_model_norms_free(nl_model_norms *n);

/* --precision fp32|bf16 of the commands that run the forward pass (eval,
 * forward, extract, bench forward): one option-table entry, and its value
 * into the load options (the BF16 weights are made when loading). */
#define NL_PRECISION_OPT                                                                        \
  {"precision", NL_OPT_CHOICE, "P", "fp32",                                                     \
   "matrix products: fp32, or bf16 (BF16 inputs and weights, FP32 accumulation; needs "         \
   "AVX512-BF16)",                                                                              \
   "fp32|bf16", 0}
int nl_model_precision(const nl_args *a, nl_vit_load_opts *lo, nl_error *err);

#endif
