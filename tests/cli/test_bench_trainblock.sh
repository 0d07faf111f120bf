#!/bin/sh
# normlab bench trainblock: runs, prints its figures beside the sgemm peak,
# rejects bad options. (Speed itself is never asserted.)
. "$NL_SRCDIR/tests/cli/lib.sh"

expect_status 0 "bench list exits 0" "$NORMLAB" bench list
expect_out '^  trainblock ' "bench list shows trainblock"
expect_status 0 "trainblock runs" "$NORMLAB" bench trainblock --batch 1 --seconds 0.05
expect_out '^machine: ' "trainblock prints the machine line"
expect_out 'sgemm peak [0-9.]+ GFLOP/s: [0-9.]+ % of peak' "trainblock prints the fraction of peak"
expect_status 0 "trainblock --json runs" "$NORMLAB" bench trainblock --batch 2 --seconds 0.05 --json
expect_out '^\{"bench": "trainblock", "batch": 2, .*"fraction_of_peak": [0-9.]+\}$' "--json prints one object"
f=$(sed -n 's/.*"fraction_of_peak": *\([0-9.]*\).*/\1/p' "$TMP/out")
check_num "${f:-0} > 0" "fraction of peak is positive"
expect_status 2 "--batch 0 exits 2" "$NORMLAB" bench trainblock --batch 0
expect_err "--batch" "--batch error names the option"
expect_status 2 "--seconds -1 exits 2" "$NORMLAB" bench trainblock --seconds -1
expect_err "--seconds" "--seconds error names the option"

done_testing
