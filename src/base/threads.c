#define _POSIX_C_SOURCE 200809L
#include "base/threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"

/* OpenBLAS entry points (declared here to keep cblas.h out of base/). */
extern void openblas_set_num_threads(int num_threads);

static _Thread_local int t_scope = 0; /* this thread's operation count (0: none) */

int nl_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

void nl_blas_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

static pthread_once_t g_default_once = PTHREAD_ONCE_INIT;
static int g_default = 1;

static void default_init(void) {
  const char *env = getenv("NORMLAB_THREADS");
  int n = env ? atoi(env) : 0;
  if (n <= 0) n = nl_cpu_count();
  g_default = n > NL_THREADS_MAX ? NL_THREADS_MAX : n;
}

int nl_threads_default(void) {
  pthread_once(&g_default_once, default_init);
  return g_default;
}

int nl_threads_count(int threads) {
  if (threads > 0) return threads > NL_THREADS_MAX ? NL_THREADS_MAX : threads;
  return t_scope > 0 ? t_scope : nl_threads_default();
}

int nl_threads_enter(int threads) {
  int outer = t_scope;
  t_scope = nl_threads_count(threads);
  nl_blas_set_threads(t_scope);
  return outer;
}

void nl_threads_leave(int outer) {
  t_scope = outer;
  if (outer > 0) nl_blas_set_threads(outer);
}

/* A persistent pool: up to NL_THREADS_MAX-1 workers sleep on a condition
 * variable; nl_parallel_for publishes a job, the caller works on it too, and
 * returns when every index is done. Indices are handed out dynamically; a
 * nested call from inside a job runs serially on the calling thread.
 * The forward and training passes hand out many short jobs back to back
 * (one per layer, some under 100 us at batch 1), and waking a sleeping
 * thread costs about as much as such a job: so an idle worker first polls
 * for the next job for up to SPIN_NS before it sleeps, and the caller polls
 * for the workers' end of a job likewise before it waits. */
#define SPIN_NS 200000L

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t wake;     /* a new job (or shutdown) */
  pthread_cond_t idle;     /* all workers left the current job */
  pthread_t *th;
  int nworkers;            /* pool threads, excluding callers */
  atomic_ulong generation; /* bumped for every job (under mu; polled without) */
  atomic_int active;       /* workers still inside the current job (likewise) */
  /* the current job */
  size_t n;
  atomic_size_t next;
  nl_task_fn fn;
  void *user;
  int job_threads;         /* workers allowed to join this job */
} pool_t;

static pool_t g_pool = {.mu = PTHREAD_MUTEX_INITIALIZER,
                        .wake = PTHREAD_COND_INITIALIZER,
                        .idle = PTHREAD_COND_INITIALIZER};
static pthread_mutex_t g_call_mu = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static _Thread_local int t_in_job = 0;

typedef struct {
  int worker;
} worker_arg;

static void run_indices(pool_t *p, int worker) {
  t_in_job = 1;
  for (;;) {
    size_t i = atomic_fetch_add(&p->next, 1);
    if (i >= p->n) break;
    p->fn(i, worker, p->user);
  }
  t_in_job = 0;
}

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}


/* Poll until generation differs from seen (want_change) or active is 0
 * (!want_change), for at most SPIN_NS; returns whether that happened. */
static int spin_for(pool_t *p, int want_change, unsigned long seen) {
  double t0 = 0.0;
  for (unsigned k = 0;; k++) {
    if (want_change ? atomic_load(&p->generation) != seen : atomic_load(&p->active) == 0)
      return 1;
    sched_yield(); /* on a busy machine the thread waited for may need this core */
    if ((k & 15) == 0) {
      double t = now_ns();
      if (k == 0) t0 = t;
      else if (t - t0 > SPIN_NS) return 0;
    }
  }
}

static void *worker_main(void *arg) {
  int worker = ((worker_arg *)arg)->worker;
  free(arg);
  pool_t *p = &g_pool;
  unsigned long seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    if (atomic_load(&p->generation) == seen) {
      pthread_mutex_unlock(&p->mu);
      spin_for(p, 1, seen);
      pthread_mutex_lock(&p->mu);
    }
    while (atomic_load(&p->generation) == seen) pthread_cond_wait(&p->wake, &p->mu);
    seen = atomic_load(&p->generation);
    if (worker > p->job_threads - 1) continue; /* not needed for this job */
    pthread_mutex_unlock(&p->mu);
    run_indices(p, worker);
    pthread_mutex_lock(&p->mu);
    if (atomic_fetch_sub(&p->active, 1) == 1) pthread_cond_signal(&p->idle);
  }
  return NULL;
}

/* Grow the pool to `want` workers (never shrinks; extra workers stay asleep). */
static void pool_grow(int want) {
  pool_t *p = &g_pool;
  if (want <= p->nworkers) return;
  p->th = nl_xrealloc(p->th, sizeof(pthread_t) * (size_t)want);
  while (p->nworkers < want) {
    worker_arg *wa = nl_xmalloc(sizeof *wa);
    wa->worker = p->nworkers + 1; /* the caller is worker 0 */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&p->th[p->nworkers], &attr, worker_main, wa);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
      free(wa);
      break;
    }
    p->nworkers++;
  }
}

void nl_parallel_for(size_t n, nl_task_fn fn, void *user) {
  nl_parallel_for_n(n, 0, fn, user);
}

void nl_parallel_for_n(size_t n, int threads, nl_task_fn fn, void *user) {
  if (n == 0) return;
  int t = nl_threads_count(threads);
  if ((size_t)t > n) t = (int)n;
  /* inside a scope the tasks may call BLAS: single-threaded while they run,
   * also when a single task runs on the caller outside any job */
  int scope = t_in_job ? 0 : t_scope;
  if (t <= 1 || t_in_job) {
    if (scope > 1) nl_blas_set_threads(1);
    for (size_t i = 0; i < n; i++) fn(i, 0, user);
    if (scope > 1) nl_blas_set_threads(scope);
    return;
  }
  pthread_mutex_lock(&g_call_mu);
  /* BLAS goes single-threaded before any helper can start a task: a helper's
   * sgemm must never run multi-threaded beside the caller's */
  if (scope > 1) nl_blas_set_threads(1);
  pool_t *p = &g_pool;
  pthread_mutex_lock(&p->mu);
  pool_grow(t - 1);
  int helpers = p->nworkers < t - 1 ? p->nworkers : t - 1;
  p->n = n;
  atomic_store(&p->next, 0);
  p->fn = fn;
  p->user = user;
  p->job_threads = helpers + 1;
  atomic_store(&p->active, helpers);
  atomic_fetch_add(&p->generation, 1);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);

  run_indices(p, 0);

  spin_for(p, 0, 0);
  pthread_mutex_lock(&p->mu);
  while (atomic_load(&p->active) > 0) pthread_cond_wait(&p->idle, &p->mu);
  pthread_mutex_unlock(&p->mu);
  if (scope > 1) nl_blas_set_threads(scope);
  pthread_mutex_unlock(&g_call_mu);
}
