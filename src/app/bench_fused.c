/* The expression engine's measured limit, shared by the benchmarks: a mix
 * of trees typical of the search's results, each also written as a fused
 * hand-written loop with the same vectorised approximations (what a
 * compiler can make of a tree it knows in advance). */
#include <stdlib.h>

#include "app/bench_fused.h"
#include "base/timer.h"
#include "base/vmath.h"

const char *const nl_bench_trees[NL_BENCH_NTREES] = {
    "0.698*clip(2.31*x) + 0.05*tanh(x)",
    "2.5*tanh(clip(x)) + 0.135*x",
    "(x + 0.0719)*(1.3*sigmoid(2.99*x) - 0.4)",
    "tanh(0.8*x) + sigmoid(x - 0.27)*0.5",
    "clip(1.7*x - 0.3)*0.6 + clip(x, -1, 2)",
};

/* The same trees, fused by hand. */
NL_VKERNEL static void fused0(const float *restrict x, float *restrict y, int n) {
  for (int i = 0; i < n; i++)
    y[i] = 0.698f * nl_vm_clip(2.31f * x[i], -5.0f, 5.0f) + 0.05f * nl_vm_tanh(x[i]);
}
NL_VKERNEL static void fused1(const float *restrict x, float *restrict y, int n) {
  for (int i = 0; i < n; i++)
    y[i] = 2.5f * nl_vm_tanh(nl_vm_clip(x[i], -5.0f, 5.0f)) + 0.135f * x[i];
}
NL_VKERNEL static void fused2(const float *restrict x, float *restrict y, int n) {
  for (int i = 0; i < n; i++)
    y[i] = (x[i] + 0.0719f) * (1.3f * nl_vm_sigmoid(2.99f * x[i]) - 0.4f);
}
NL_VKERNEL static void fused3(const float *restrict x, float *restrict y, int n) {
  for (int i = 0; i < n; i++)
    y[i] = nl_vm_tanh(0.8f * x[i]) + nl_vm_sigmoid(x[i] - 0.27f) * 0.5f;
}
NL_VKERNEL static void fused4(const float *restrict x, float *restrict y, int n) {
  for (int i = 0; i < n; i++)
    y[i] = nl_vm_clip(1.7f * x[i] - 0.3f, -5.0f, 5.0f) * 0.6f + nl_vm_clip(x[i], -1.0f, 2.0f);
}
void (*const nl_bench_fused[NL_BENCH_NTREES])(const float *, float *, int) = {fused0, fused1, fused2,
                                                                    fused3, fused4};

double nl_bench_fused_rate(const float *x, float *y, int n, double nodes, double seconds) {
  double evals = 0, spent = 0, t_end = nl_now() + seconds;
  while (nl_now() < t_end) {
    double t0 = nl_now();
    for (int t = 0; t < NL_BENCH_NTREES; t++) nl_bench_fused[t](x, y, n);
    spent += nl_now() - t0;
    evals += nodes * n;
  }
  return spent > 0 ? evals / spent : 0;
}
