/* The model a command works on: --model, else the session's model, else
 * the bundled default (samples/models/vit_small_p7_fmnist.safetensors). */
#ifndef NL_APP_MODEL_PATH_H
#define NL_APP_MODEL_PATH_H

#include "app/cmd.h"

#define NL_DEFAULT_MODEL "vit_small_p7_fmnist.safetensors"

const char *nl_model_path(nl_ctx *ctx, const nl_args *a);

#endif
