/* Expression norm slots: f(x) * w + b with f an nl_prog (internal to the
 * model module). */
#ifndef NL_MODEL_NORM_EXPR_H
#define NL_MODEL_NORM_EXPR_H

#include <stddef.h>

#include "model/vit.h"

/* Free the slot's expression, if any (kind is left to the caller). */
void nl_norm_expr_release(nl_norm *n);
/* out = f(x) * w + b over `rows` rows of length d. */
void nl_norm_expr_rows(const nl_norm *n, float *out, const float *x, size_t rows, int d);

#endif
