/* Internal interfaces shared by the files of src/expr. */
#ifndef NL_EXPR_LOCAL_H
#define NL_EXPR_LOCAL_H

#include "expr/expr.h"

/* Parse text[0..len) as one expression. Errors read
 * "ORIGIN:LINE:COL: message" (ORIGIN and its colon left out when NULL),
 * then the source line and a caret line. `col0` is the 0-based column of
 * text[0] within its line; `display` (may be NULL) is the whole source line
 * text[0] sits in, shown under the message. */
int nl_parse_span(const char *text, size_t len, const char *origin, int line, int col0,
                  const char *display, size_t display_len, nl_prog *out, nl_error *err);

/* Fill err with the message and caret display described above; col is
 * 1-based within `src` (one line of length srclen). Returns -1. */
int nl_expr_caret_error(nl_error *err, const char *origin, int line, int col, const char *src,
                        size_t srclen, const char *msg);

#endif
