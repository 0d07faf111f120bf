#include "app/bench.h"
static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) { return 0; }
const nl_bench nl_bench_expr = {"expr", "batched expression evaluation, node-evals/s per core", run};
