/* `normlab bench peak`: the machine's floating-point limit, measured. An
 * FMA-bound loop (independent fused multiply-add chains on the widest
 * vectors the CPU has, no memory traffic) on one core and on every
 * thread in use; the sgemm peak beside it shows how much of the FMA limit
 * a large matrix product reaches. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/bench.h"
#include "base/json.h"
#include "base/threads.h"
#include "base/timer.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define NL_PEAK_X86 1
#endif

/* Each loop runs `iters` rounds of NACC independent FMA chains and returns
 * a value that depends on all of them (so nothing is optimised away);
 * *flops receives the floating-point operations done (2 per lane per FMA). */
#define NACC 12

/* The chains are named variables, written out, so that they stay in
 * registers at any optimisation level. */
#define NL_PEAK_CHAINS(FMA, T, INIT)                                              \
  T a0 = INIT(0.000f), a1 = INIT(0.001f), a2 = INIT(0.002f), a3 = INIT(0.003f);   \
  T a4 = INIT(0.004f), a5 = INIT(0.005f), a6 = INIT(0.006f), a7 = INIT(0.007f);   \
  T a8 = INIT(0.008f), a9 = INIT(0.009f), a10 = INIT(0.010f), a11 = INIT(0.011f); \
  for (long i = 0; i < iters; i++) {                                              \
    a0 = FMA(a0, m, c);                                                           \
    a1 = FMA(a1, m, c);                                                           \
    a2 = FMA(a2, m, c);                                                           \
    a3 = FMA(a3, m, c);                                                           \
    a4 = FMA(a4, m, c);                                                           \
    a5 = FMA(a5, m, c);                                                           \
    a6 = FMA(a6, m, c);                                                           \
    a7 = FMA(a7, m, c);                                                           \
    a8 = FMA(a8, m, c);                                                           \
    a9 = FMA(a9, m, c);                                                           \
    a10 = FMA(a10, m, c);                                                         \
    a11 = FMA(a11, m, c);                                                         \
  }

#ifdef NL_PEAK_X86
__attribute__((target("avx512f"))) static float loop_avx512(long iters, double *flops) {
  const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
  NL_PEAK_CHAINS(_mm512_fmadd_ps, __m512, _mm512_set1_ps)
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  *flops = 2.0 * 16 * NACC * (double)iters;
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float loop_avx2(long iters, double *flops) {
  const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
  NL_PEAK_CHAINS(_mm256_fmadd_ps, __m256, _mm256_set1_ps)
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  float v[8];
  _mm256_storeu_ps(v, s);
  *flops = 2.0 * 8 * NACC * (double)iters;
  return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}
#endif

/* Portable fallback: scalar multiply-add chains. */
static float loop_scalar(long iters, double *flops) {
  const float m = 0.9999999f, c = 1e-7f;
#define NL_PEAK_MADD(a, m, c) ((a) * (m) + (c))
#define NL_PEAK_SCALAR(v) (v)
  NL_PEAK_CHAINS(NL_PEAK_MADD, float, NL_PEAK_SCALAR)
  float s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
  *flops = 2.0 * NACC * (double)iters;
  return s;
}

static const char *isa_name(void) {
#ifdef NL_PEAK_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "AVX-512";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "AVX2+FMA";
#endif
  return "scalar";
}

static float loop(long iters, double *flops) {
#ifdef NL_PEAK_X86
  const char *isa = isa_name();
  if (strcmp(isa, "AVX-512") == 0) return loop_avx512(iters, flops);
  if (strcmp(isa, "AVX2+FMA") == 0) return loop_avx2(iters, flops);
#endif
  return loop_scalar(iters, flops);
}

typedef struct {
  long iters;
  double flops[NL_THREADS_MAX];
  volatile float sink[NL_THREADS_MAX];
} peak_job;

static void peak_task(size_t i, int worker, void *user) {
  (void)worker;
  peak_job *j = user;
  j->sink[i] = loop(j->iters, &j->flops[i]);
}

/* GFLOP/s of `threads` concurrent FMA loops (best of 3 runs of about
 * 0.1 s each). */
static double measure(int threads) {
  peak_job *j = calloc(1, sizeof *j);
  if (!j) return 0.0;
  j->iters = 1000;
  double best = 0.0;
  /* grow the work until one run takes about 0.1 s */
  for (;;) {
    double t0 = nl_now();
    nl_parallel_for_n((size_t)threads, threads, peak_task, j);
    double dt = nl_now() - t0;
    if (dt > 0.05 || j->iters > (1L << 40)) break;
    j->iters *= dt > 0.005 ? (long)(0.1 / dt) + 1 : 16;
  }
  for (int rep = 0; rep < 3; rep++) {
    double t0 = nl_now();
    nl_parallel_for_n((size_t)threads, threads, peak_task, j);
    double dt = nl_now() - t0, f = 0.0;
    for (int t = 0; t < threads; t++) f += j->flops[t];
    if (dt > 0 && f / dt * 1e-9 > best) best = f / dt * 1e-9;
  }
  free(j);
  return best;
}

double nl_bench_fma_peak(int threads) {
  static double cached[NL_THREADS_MAX + 1];
  threads = nl_threads_count(threads);
  if (cached[threads] > 0) return cached[threads];
  return cached[threads] = measure(threads);
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)err;
  const int threads = nl_threads_count(ctx->threads);
  double one = nl_bench_fma_peak(1);
  double all = nl_bench_fma_peak(threads);
  double sgemm = nl_bench_sgemm_peak(threads);
  if (nl_arg_flag(a, "json")) {
    json_t *j = json_pack("{s:s, s:s, s:i, s:o, s:o, s:o, s:o}", "bench", "peak", "isa",
                          isa_name(), "threads", threads, "fma_gflops_one_core",
                          nl_json_rounded(one, 2), "fma_gflops_all_threads",
                          nl_json_rounded(all, 2), "sgemm_peak_gflops", nl_json_rounded(sgemm, 2),
                          "sgemm_fraction_of_fma", nl_json_rounded(sgemm / all, 4));
    nl_json_print(ctx->out, j);
    json_decref(j);
    return 0;
  }
  nl_bench_print_machine(ctx);
  fprintf(ctx->out, "FMA loop (%s, FP32, %d chains): %.1f GFLOP/s on one core, %.1f GFLOP/s on %d "
          "threads (%.2fx)\n",
          isa_name(), NACC, one, all, threads, all / one);
  fprintf(ctx->out, "sgemm (1024^3, %d threads): %.1f GFLOP/s = %.1f %% of the FMA peak\n", threads,
          sgemm, 100.0 * sgemm / all);
  return 0;
}

const nl_bench nl_bench_peak = {
    .name = "peak",
    .summary = "the machine's FP32 FMA peak (one core, all threads) beside the sgemm peak",
    .run = run,
};
