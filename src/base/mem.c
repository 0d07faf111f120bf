#include "base/mem.h"

#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n) {
  fprintf(stderr, "normlab: out of memory (allocating %zu bytes)\n", n);
  abort();
}

void *nl_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) oom(n);
  return p;
}

void *nl_xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) oom(count * size);
  return p;
}

void *nl_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) oom(n);
  return q;
}

char *nl_xstrdup(const char *s) {
  size_t n = strlen(s);
  char *d = nl_xmalloc(n + 1);
  memcpy(d, s, n + 1);
  return d;
}

char *nl_xstrdupf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = nl_xmalloc((size_t)(n > 0 ? n : 0) + 1);
  va_start(ap, fmt);
  vsnprintf(s, (size_t)(n > 0 ? n : 0) + 1, fmt, ap);
  va_end(ap);
  return s;
}

char *nl_xstrndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *d = nl_xmalloc(len + 1);
  memcpy(d, s, len);
  d[len] = '\0';
  return d;
}

void *nl_aalloc(size_t n) {
  size_t rounded = (n + 63) & ~(size_t)63;
  void *p = aligned_alloc(64, rounded ? rounded : 64);
  if (!p) oom(n);
  return p;
}

void nl_afree(void *p) { free(p); }

void *nl_try_alloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) return NULL;
  size_t n = count * size;
  return malloc(n ? n : 1);
}
