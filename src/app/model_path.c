#define _POSIX_C_SOURCE 200809L
#include "app/model_path.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "base/mem.h"
#include "session/session.h"

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

int nl_model_norms_get(nl_ctx *ctx, const nl_args *a, int none_ok, nl_model_norms *n,
                       nl_error *err) {
  memset(n, 0, sizeof *n);
  nl_exprset_init(&n->parsed.set);
  const char *text = nl_arg_given(a, "set") ? nl_arg_str(a, "set") : NULL;
  if (text && strcmp(text, "none") == 0) {
    if (!none_ok) return nl_fail(err, NL_EINPUT, "--set none: nothing to replace");
    return 0;
  }
  if (text) {
    if (nl_replace_parse(&n->parsed, text, err) != 0) return nl_error_prefix(err, "--set");
    n->spec = &n->parsed.spec;
    n->label = text;
    return 0;
  }
  const nl_session *s = ctx->session;
  if (s && s->set.n > 0) { /* the prompt's own set, as it is */
    n->parsed.spec.mode = NL_REPLACE_SET;
    n->parsed.spec.set = &s->set;
    n->parsed.spec.source = "the session's set";
    n->spec = &n->parsed.spec;
    n->label = "the session's set";
    n->from_session = 1;
    return 0;
  }
  if (!none_ok)
    return nl_fail(err, NL_EINPUT, "missing required option --set SPEC%s",
                   s ? " (or an expression set in the session: 'load exprs', 'set', 'pick')"
                     : "");
  return 0;
}

int nl_model_norms_apply(const nl_model_norms *n, nl_vit *m, int *kept, int *replaced,
                         nl_error *err) {
  if (replaced) *replaced = 0;
  if (!n->spec) return 0;
  int *k = kept ? kept : nl_xcalloc((size_t)m->nnorms, sizeof(int));
  int rc = nl_vit_replace(m, n->spec, k, err);
  if (rc == 0 && replaced)
    for (int i = 0; i < m->nnorms; i++) *replaced += !k[i];
  if (k != kept) free(k);
  if (rc != 0) return nl_error_prefix(err, "%s%s", n->from_session ? "" : "--set ", n->label);
  return 0;
}

void nl_model_norms_free(nl_model_norms *n) { nl_replace_parsed_free(&n->parsed); }

int nl_model_precision(const nl_args *a, nl_vit_load_opts *lo, nl_error *err) {
  nl_precision p;
  if (nl_precision_parse(nl_arg_str(a, "precision"), &p, err)) return -1;
  lo->precision = p;
  return 0;
}
