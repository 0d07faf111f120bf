/* Profiling a loaded model over a data spec: the step profile and prune
 * (without --profile) share. */
#ifndef NL_APP_PROFILE_CMD_H
#define NL_APP_PROFILE_CMD_H

#include "app/cmd.h"
#include "model/profile.h"

/* Profile `images` images of `spec` from `offset`, batch `batch`, on
 * ctx->threads; a progress line on a terminal. cov: 1 to collect the hidden
 * channels' covariance too (nl_profile_opts.cov). skip_bad
 * (app/data_load.h): bad images left out, the profile over the others;
 * *skipped (when not NULL) receives how many. */
int nl_app_profile(nl_ctx *ctx, const nl_vit *m, const char *spec, long offset, long images,
                   long batch, int cov, int skip_bad, int *skipped, nl_profile *p,
                   nl_error *err);

#endif
