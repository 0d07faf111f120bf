/* The adapt command's re-alignment hook, for every front-end that runs
 * the adaptation (adapt/adapt.h): a 'normlab train' run in DIR, its log on
 * the context's error stream. user is the nl_ctx. */
#ifndef NL_APP_ADAPT_CMD_H
#define NL_APP_ADAPT_CMD_H

#include "base/error.h"

int nl_app_realign(void *user, const char *model, const char *teacher, const char *variant,
                   int epochs, long images, int eval_images, int threads, const char *outdir,
                   int resume, nl_error *err);

#endif
