/* Expression norm slots: f(x) * w + b with f an nl_prog (internal to the
 * model module). */
#ifndef NL_MODEL_NORM_EXPR_H
#define NL_MODEL_NORM_EXPR_H

#include <stddef.h>

#include "model/vit.h"

/* Free the slot's expression and its text, if any (kind is left to the
 * caller). */
void nl_norm_expr_release(nl_norm *n);
/* List (on = 1) or unlist (on = 0) the slot's "<slot>.alpha" view in
 * m->tensors, right after "<slot>.bias"; no-op when already so. */
void nl_vit_alpha_view(nl_vit *m, const nl_norm *n, int on);
/* out = f(x) * w + b over `rows` rows of length d. */
void nl_norm_expr_rows(const nl_norm *n, float *out, const float *x, size_t rows, int d);

#endif
