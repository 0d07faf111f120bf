/* JSON as normlab prints it, one way for every --json output and JSON
 * file: keys in the order they were added, integers as integers, and
 * every real as the shortest decimal that reads back to the same double
 * (0.011251, not jansson's %.17g 0.011251000000000001), with ".0" added
 * to a real that would otherwise read as an integer. Strings are UTF-8,
 * with '"', '\\' and control characters escaped.
 *
 * NL_JSON_LINE prints an object on one line, items separated by ", " and
 * keys by ": " (what every --json prints, one object per line);
 * NL_JSON_PRETTY indents nested values by two spaces (files people read,
 * such as train.json). */
#ifndef NL_BASE_JSON_H
#define NL_BASE_JSON_H

#include <stdio.h>

struct json_t;

enum { NL_JSON_LINE = 0, NL_JSON_PRETTY = 1 };

/* The text of j (no trailing newline); malloc'd, the caller frees. NULL
 * only when memory runs out. */
char *nl_json_text(const struct json_t *j, int style);

/* Print j on one line (NL_JSON_LINE) and a newline. 0, or -1 when memory
 * runs out or the write fails. */
int nl_json_print(FILE *out, const struct json_t *j);

/* The shortest decimal text of v that reads back (strtod) to v: 17
 * significant digits at most; at least 32 bytes in buf. */
void nl_json_format_real(char *buf, size_t cap, double v);

/* A JSON real for a single-precision value: the double nearest to the
 * float's own shortest decimal, so 0.1f prints as 0.1, not as
 * 0.10000000149011612. NULL for NaN or infinity (as json_real). */
struct json_t *nl_json_float(float f);

/* A JSON real rounded to `decimals` places (measured figures: rates,
 * milliseconds), so a timing prints as 1234.57. */
struct json_t *nl_json_rounded(double v, int decimals);

#endif
