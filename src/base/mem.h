/* Memory helpers. Allocation failure of these is fatal (prints and aborts):
 * the working sets of normlab are bounded and an OOM mid-computation has no
 * sensible recovery. Large, input-sized allocations should use
 * nl_try_alloc() and report NL_ENOMEM instead. */
#ifndef NL_BASE_MEM_H
#define NL_BASE_MEM_H

#include <stddef.h>

void *nl_xmalloc(size_t n);
void *nl_xcalloc(size_t count, size_t size);
void *nl_xrealloc(void *p, size_t n);
char *nl_xstrdup(const char *s);
char *nl_xstrndup(const char *s, size_t n);
/* A new string formatted as printf would (free it). */
char *nl_xstrdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* 64-byte aligned allocation for SIMD kernels; free with nl_afree(). */
void *nl_aalloc(size_t n);
void nl_afree(void *p);

/* Returns NULL on failure (and on overflow of count*size). */
void *nl_try_alloc(size_t count, size_t size);

#endif
