/* Threads: normlab's own parallel loops and OpenBLAS share one budget.
 * nl_threads_set(n) decides it once: our pool gets n workers, and while one
 * of our parallel regions runs each worker's BLAS calls are single-threaded;
 * outside them BLAS gets n threads. No oversubscription. */
#ifndef NL_BASE_THREADS_H
#define NL_BASE_THREADS_H

#include <stddef.h>

/* n <= 0: use the number of online CPUs (or NORMLAB_THREADS if set). */
void nl_threads_set(int n);
int nl_threads_get(void);
/* Number of online CPUs. */
int nl_cpu_count(void);

/* Run fn(i, worker, user) for i in [0, n) on up to nl_threads_get() threads.
 * Tasks are handed out dynamically; `worker` is in [0, nl_threads_get()).
 * BLAS runs single-threaded inside. Blocks until all finish. */
typedef void (*nl_task_fn)(size_t i, int worker, void *user);
void nl_parallel_for(size_t n, nl_task_fn fn, void *user);

/* Set the BLAS thread count directly (used by nl_threads_set). */
void nl_blas_set_threads(int n);

#endif
