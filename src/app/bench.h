/* `normlab bench NAME`: each benchmark is one row of the bench table
 * (src/app/cmd_bench.c) and lives in its own bench_<name>.c file. A
 * benchmark prints its figures beside the machine's measured limits. */
#ifndef NL_APP_BENCH_H
#define NL_APP_BENCH_H

#include "app/cmd.h"

typedef struct nl_bench {
  const char *name;
  const char *summary;
  /* a: the bench command's parsed args (options --model, --batch, --seconds,
   * --json are shared by all benchmarks). */
  int (*run)(nl_ctx *ctx, const nl_args *a, nl_error *err);
} nl_bench;

/* Print the machine lines every benchmark starts with: CPU model, cores,
 * threads in use (ctx->threads), and the FMA peak on those threads. */
void nl_bench_print_machine(nl_ctx *ctx);

/* Measured single-precision GEMM peak of this machine on `threads` BLAS
 * threads (0: the default), GFLOP/s (square sgemm, best of a few runs,
 * cached per count). */
double nl_bench_sgemm_peak(int threads);

/* Measured FP32 FMA peak (an FMA-bound loop on the widest vectors the CPU
 * has, one loop per thread) on `threads` threads (0: the default),
 * GFLOP/s, cached per count: the limit no product can pass. */
double nl_bench_fma_peak(int threads);

#endif
