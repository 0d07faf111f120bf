/* Threads: normlab's own parallel loops, and how they share the cores with
 * OpenBLAS.
 *
 * The worker count travels with the work, never in a process-wide
 * setting. Every operation that runs in parallel takes it from its options
 * (nl_gp_config.threads, nl_eval_opts.threads, nl_extract_opts.threads,
 * nl_vt_opts.threads, nl_vit_acts.threads, the threads argument of
 * nl_dyt_table, ...), and a front-end fills those from its own settings
 * (`normlab --threads N`, a command's --threads, Lua's threads=). 0 in any
 * of them means nl_threads_default(). So two operations on two threads (a
 * background evolve beside the prompt) each run on their own count.
 *
 * Operations and their layers. A forward pass or a training step calls
 * many layer functions (model/vit_forward.c, train/layers.h) whose
 * arguments are plain arrays and shapes; they run on the count of the
 * operation that called them: the operation opens a scope on its thread
 * with nl_threads_enter(count from its options) and closes it with
 * nl_threads_leave, and nl_parallel_for inside (threads 0) takes the
 * scope's count. A scope belongs to one thread and nests.
 *
 * BLAS. OpenBLAS has one thread count for the whole process
 * (openblas_set_num_threads); it cannot be given per call. So it is set at
 * the start of each BLAS-using operation from that operation's options:
 * nl_threads_enter sets it to the scope's count (and nl_threads_leave back
 * to the enclosing scope's). Inside a parallel region of a scope,
 * nl_parallel_for makes it 1 (each worker's sgemm single-threaded: no
 * oversubscription) and gives the scope's count back afterwards. Regions
 * outside any scope (the GP search, the DyT table: no BLAS in their tasks)
 * leave it alone; a task that calls BLAS must run inside a scope. Two
 * BLAS-using operations at once on two threads would share whichever
 * count was set last (a matter of speed, not of results: every product is
 * split into blocks fixed by the shapes); normlab runs at most one, as its
 * one background job, the GP search, uses no BLAS. */
#ifndef NL_BASE_THREADS_H
#define NL_BASE_THREADS_H

#include <stddef.h>

/* The largest worker count. */
#define NL_THREADS_MAX 256

/* Number of online CPUs. */
int nl_cpu_count(void);
/* The count when none is given: NORMLAB_THREADS if set to 1..256, else the
 * online CPUs (at most NL_THREADS_MAX). Read from the environment once. */
int nl_threads_default(void);
/* The count nl_parallel_for_n(.., threads, ..) runs on: threads when > 0
 * (at most NL_THREADS_MAX), else the count of the scope open on this
 * thread, else nl_threads_default(). Size per-worker scratch with it. */
int nl_threads_count(int threads);

/* Open a scope of `threads` workers (resolved as nl_threads_count) on this
 * thread, and set BLAS's count to it; returns what nl_threads_leave needs
 * to restore the enclosing scope (0: none). */
int nl_threads_enter(int threads);
void nl_threads_leave(int outer);

/* Run fn(i, worker, user) for i in [0, n) on up to nl_threads_count(threads)
 * threads. Tasks are handed out dynamically; `worker` is in
 * [0, nl_threads_count(threads)). A call from inside a task runs serially
 * on that task's thread. Blocks until all finish. Inside a scope, BLAS is
 * single-threaded while the tasks run. */
typedef void (*nl_task_fn)(size_t i, int worker, void *user);
void nl_parallel_for_n(size_t n, int threads, nl_task_fn fn, void *user);
/* The same on the count of this thread's scope (threads 0): what the layer
 * functions of an operation use. */
void nl_parallel_for(size_t n, nl_task_fn fn, void *user);

/* Set the BLAS thread count (process-wide; see above). */
void nl_blas_set_threads(int n);

#endif
