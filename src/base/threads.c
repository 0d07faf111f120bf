#define _POSIX_C_SOURCE 200809L
#include "base/threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/mem.h"

/* OpenBLAS entry points (declared here to keep cblas.h out of base/). */
extern void openblas_set_num_threads(int num_threads);

static int g_threads = 0;

int nl_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

void nl_blas_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

void nl_threads_set(int n) {
  if (n <= 0) {
    const char *env = getenv("NORMLAB_THREADS");
    n = env ? atoi(env) : 0;
    if (n <= 0) n = nl_cpu_count();
  }
  if (n > 256) n = 256;
  g_threads = n;
  nl_blas_set_threads(n);
}

int nl_threads_get(void) {
  if (g_threads <= 0) nl_threads_set(0);
  return g_threads;
}

typedef struct {
  size_t n;
  atomic_size_t next;
  nl_task_fn fn;
  void *user;
} job;

typedef struct {
  job *j;
  int worker;
} worker_arg;

static void *worker_main(void *p) {
  worker_arg *wa = p;
  job *j = wa->j;
  for (;;) {
    size_t i = atomic_fetch_add(&j->next, 1);
    if (i >= j->n) break;
    j->fn(i, wa->worker, j->user);
  }
  return NULL;
}

void nl_parallel_for(size_t n, nl_task_fn fn, void *user) {
  if (n == 0) return;
  int t = nl_threads_get();
  if ((size_t)t > n) t = (int)n;
  if (t <= 1) {
    for (size_t i = 0; i < n; i++) fn(i, 0, user);
    return;
  }
  job j = {.n = n, .fn = fn, .user = user};
  atomic_init(&j.next, 0);
  nl_blas_set_threads(1);
  pthread_t *th = nl_xmalloc(sizeof(pthread_t) * (size_t)t);
  worker_arg *wa = nl_xmalloc(sizeof(worker_arg) * (size_t)t);
  int started = 0;
  for (int w = 1; w < t; w++) {
    wa[w].j = &j;
    wa[w].worker = w;
    if (pthread_create(&th[w], NULL, worker_main, &wa[w]) != 0) break;
    started = w;
  }
  wa[0].j = &j;
  wa[0].worker = 0;
  worker_main(&wa[0]);
  for (int w = 1; w <= started; w++) pthread_join(th[w], NULL);
  free(th);
  free(wa);
  nl_blas_set_threads(g_threads);
}
