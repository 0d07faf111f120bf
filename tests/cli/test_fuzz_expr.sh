#!/bin/sh
# Fuzz the expression parser (parse, print, re-parse, simplify, evaluate)
# for a few seconds with libFuzzer, ASan and UBSan.
. "$NL_SRCDIR/tests/cli/lib.sh"
. "$NL_SRCDIR/tests/cli/fuzz_lib.sh"

fuzz_target fuzz_expr \
  src/expr/ops.c src/expr/kern.c src/expr/prog.c src/expr/parse.c src/expr/print.c \
  src/expr/simplify.c src/expr/eval.c src/expr/cost.c src/expr/exprset.c \
  src/base/error.c src/base/mem.c src/base/fileio.c

done_testing
