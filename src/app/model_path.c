#define _POSIX_C_SOURCE 200809L
#include "app/model_path.h"

#include <stdio.h>

#include "base/fileio.h"

const char *nl_model_path(nl_ctx *ctx, const nl_args *a) {
  (void)ctx;
  const char *p = nl_arg_str(a, "model");
  if (p && *p) return p;
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/samples/models/%s", NL_SRCDIR, NL_DEFAULT_MODEL);
  if (nl_file_exists(buf)) return buf;
  snprintf(buf, sizeof buf, "%s/models/%s", NL_DATADIR, NL_DEFAULT_MODEL);
  return buf;
}
