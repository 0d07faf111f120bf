# repl module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += \
	src/repl/complete.c src/repl/complete.h \
	src/repl/repl.c src/repl/repl.h

check_PROGRAMS += tests/unit/test_repl
NL_UNIT_TESTS += tests/unit/test_repl
tests_unit_test_repl_SOURCES = tests/unit/test_repl.c
tests_unit_test_repl_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_repl_LDADD = $(NL_TEST_LDADD)

NL_CLI_TESTS += tests/cli/repl_batch.sh tests/cli/repl_tty.sh tests/cli/man.sh tests/cli/plot.sh tests/cli/repl_expr.sh tests/cli/repl_search.sh
EXTRA_DIST += tests/cli/repl_batch.sh tests/cli/repl_tty.sh tests/cli/man.sh tests/cli/plot.sh tests/cli/repl_expr.sh tests/cli/repl_search.sh

dist_man_MANS += man/normlab.1

check_PROGRAMS += tests/unit/test_workbench
NL_UNIT_TESTS += tests/unit/test_workbench
tests_unit_test_workbench_SOURCES = tests/unit/test_workbench.c
tests_unit_test_workbench_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_workbench_LDADD = $(NL_TEST_LDADD)
