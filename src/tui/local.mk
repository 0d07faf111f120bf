# tui module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += \
	src/tui/dashboard.c src/tui/dashboard.h \
	src/tui/progress_line.c src/tui/progress_line.h

check_PROGRAMS += tests/unit/test_progress
NL_UNIT_TESTS += tests/unit/test_progress
tests_unit_test_progress_SOURCES = tests/unit/test_progress.c
tests_unit_test_progress_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_progress_LDADD = $(NL_TEST_LDADD)
