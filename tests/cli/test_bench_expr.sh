#!/bin/sh
# `normlab bench expr` runs, agrees with its fused reference loops and
# reports its figures (no wall time is asserted).
. "$NL_SRCDIR/tests/cli/lib.sh"

expect_status 0 "bench list names expr" "$NORMLAB" bench list
expect_out '^  expr ' "expr benchmark listed"
expect_status 0 "bench expr runs" "$NORMLAB" bench expr --seconds 0.2
expect_out '^machine: ' "machine line first"
expect_out 'batched evaluator \(nl_eval\) +[0-9.e+]+ node-evals/s' "batched figure"
expect_out 'limit: fused hand-written loops +[0-9.e+]+ node-evals/s' "limit beside it"
expect_status 0 "bench expr --json runs" "$NORMLAB" bench expr --seconds 0.2 --json
expect_out '"points": 45000' "45,000 points"
diff=$(sed -n 's/.*"fused_vs_batched_max_rel_diff": *\([-0-9.eE+]*\).*/\1/p' "$TMP/out")
check_num "${diff:-1} < 1e-6" "evaluator and fused loops agree to 1e-6"

done_testing
