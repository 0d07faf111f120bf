/* One JSON printer (json.h): jansson builds the values, this prints them,
 * because jansson prints every real with %.17g. */
#define _POSIX_C_SOURCE 200809L
#include "base/json.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void nl_json_format_real(char *buf, size_t cap, double v) {
  /* the fewest significant digits that read back to v ... */
  char e[40];
  int p = 1;
  for (; p < 17; p++) {
    snprintf(e, sizeof e, "%.*e", p - 1, v);
    if (strtod(e, NULL) == v) break;
  }
  snprintf(e, sizeof e, "%.*e", p - 1, v);
  /* ... written as Python's repr writes them: plain for exponents -4 to
   * 15 (20.0, 0.011251), else as mantissa and exponent (1e+21, 5e-324) */
  const char *x = strchr(e, 'e');
  int ex = x ? atoi(x + 1) : 0;
  if (ex >= -4 && ex < 16) {
    int decimals = p - 1 - ex;
    snprintf(buf, cap, "%.*f", decimals > 0 ? decimals : 0, v);
    /* a real stays a real when read back: 20 -> 20.0 */
    if (!strchr(buf, '.')) {
      size_t n = strlen(buf);
      if (n + 3 <= cap) memcpy(buf + n, ".0", 3);
    }
  } else {
    snprintf(buf, cap, "%s", e);
  }
  if (strtod(buf, NULL) != v) snprintf(buf, cap, "%.17g", v); /* never taken; a safety net */
}

json_t *nl_json_float(float f) {
  if (!isfinite(f)) return NULL;
  char buf[32];
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
    if (strtof(buf, NULL) == f) break;
  }
  return json_real(strtod(buf, NULL));
}

json_t *nl_json_rounded(double v, int decimals) {
  if (!isfinite(v)) return NULL;
  char buf[64];
  snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return json_real(strtod(buf, NULL));
}

/* A growing buffer. */
typedef struct {
  char *s;
  size_t len, cap;
  int failed;
} sbuf;

static void put(sbuf *b, const char *p, size_t n) {
  if (b->failed) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->len + n + 1 > cap) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
      b->failed = 1;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
  memcpy(b->s + b->len, p, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void puts_(sbuf *b, const char *p) { put(b, p, strlen(p)); }

static void put_string(sbuf *b, const char *s, size_t n) {
  put(b, "\"", 1);
  size_t run = 0; /* bytes copied as they are */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char u[8];
    switch (c) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\b': esc = "\\b"; break;
      case '\f': esc = "\\f"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      default:
        if (c < 0x20) {
          snprintf(u, sizeof u, "\\u%04x", c);
          esc = u;
        }
    }
    if (!esc) continue;
    put(b, s + run, i - run);
    puts_(b, esc);
    run = i + 1;
  }
  put(b, s + run, n - run);
  put(b, "\"", 1);
}

static void newline(sbuf *b, int style, int depth) {
  if (style != NL_JSON_PRETTY) return;
  put(b, "\n", 1);
  for (int i = 0; i < depth; i++) put(b, "  ", 2);
}

static void put_value(sbuf *b, const json_t *j, int style, int depth) {
  char num[64];
  if (!j) {
    puts_(b, "null");
    return;
  }
  switch (json_typeof(j)) {
    case JSON_OBJECT: {
      if (json_object_size(j) == 0) {
        puts_(b, "{}");
        break;
      }
      put(b, "{", 1);
      const char *k;
      json_t *v;
      int first = 1;
      /* jansson keeps an object's keys in the order they were added */
      json_object_foreach((json_t *)j, k, v) {
        if (!first) put(b, style == NL_JSON_PRETTY ? "," : ", ", style == NL_JSON_PRETTY ? 1 : 2);
        first = 0;
        newline(b, style, depth + 1);
        put_string(b, k, strlen(k));
        put(b, ": ", 2);
        put_value(b, v, style, depth + 1);
      }
      newline(b, style, depth);
      put(b, "}", 1);
      break;
    }
    case JSON_ARRAY: {
      if (json_array_size(j) == 0) {
        puts_(b, "[]");
        break;
      }
      put(b, "[", 1);
      size_t i;
      json_t *v;
      json_array_foreach((json_t *)j, i, v) {
        if (i) put(b, style == NL_JSON_PRETTY ? "," : ", ", style == NL_JSON_PRETTY ? 1 : 2);
        newline(b, style, depth + 1);
        put_value(b, v, style, depth + 1);
      }
      newline(b, style, depth);
      put(b, "]", 1);
      break;
    }
    case JSON_STRING: put_string(b, json_string_value(j), json_string_length(j)); break;
    case JSON_INTEGER:
      snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
      puts_(b, num);
      break;
    case JSON_REAL:
      nl_json_format_real(num, sizeof num, json_real_value(j));
      puts_(b, num);
      break;
    case JSON_TRUE: puts_(b, "true"); break;
    case JSON_FALSE: puts_(b, "false"); break;
    default: puts_(b, "null"); break;
  }
}

char *nl_json_text(const json_t *j, int style) {
  sbuf b = {0};
  put_value(&b, j, style, 0);
  if (b.failed) {
    free(b.s);
    return NULL;
  }
  return b.s;
}

int nl_json_print(FILE *out, const json_t *j) {
  char *s = nl_json_text(j, NL_JSON_LINE);
  if (!s) return -1;
  int rc = fprintf(out, "%s\n", s) < 0 ? -1 : 0;
  free(s);
  return rc;
}
