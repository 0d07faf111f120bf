/* The expression engine's limit for benchmarks: trees fused by hand. */
#ifndef NL_APP_BENCH_FUSED_H
#define NL_APP_BENCH_FUSED_H

#define NL_BENCH_NTREES 5
/* The trees as text, and each as a fused loop y[i] = tree(x[i]). */
extern const char *const nl_bench_trees[NL_BENCH_NTREES];
extern void (*const nl_bench_fused[NL_BENCH_NTREES])(const float *, float *, int);
/* Node-evals/s of the fused loops on one core over n points, measured for
 * about `seconds`; nodes: the trees' node counts as parsed, summed. */
double nl_bench_fused_rate(const float *x, float *y, int n, double nodes, double seconds);

#endif
