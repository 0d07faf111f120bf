# expr module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += \
	src/expr/expr.h src/expr/local.h src/expr/kern.h \
	src/expr/ops.c src/expr/kern.c src/expr/prog.c src/expr/parse.c \
	src/expr/print.c src/expr/simplify.c src/expr/eval.c src/expr/cost.c \
	src/expr/exprset.c

check_PROGRAMS += tests/unit/test_expr
NL_UNIT_TESTS += tests/unit/test_expr
tests_unit_test_expr_SOURCES = tests/unit/test_expr.c
tests_unit_test_expr_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_expr_LDADD = $(NL_TEST_LDADD)

NL_CLI_TESTS += tests/cli/test_cost.sh tests/cli/test_bench_expr.sh tests/cli/test_fuzz_expr.sh
EXTRA_DIST += tests/cli/fuzz_lib.sh tests/fuzz/fuzz_expr.c tests/fuzz/expr.dict tests/fuzz/corpus_expr \
	samples/exprs/paper_examples.exprs
pkgdata_DATA += samples/exprs/paper_examples.exprs
