# plot module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += src/plot/plot.c src/plot/plot.h

check_PROGRAMS += tests/unit/test_plot
NL_UNIT_TESTS += tests/unit/test_plot
tests_unit_test_plot_SOURCES = tests/unit/test_plot.c
tests_unit_test_plot_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_plot_LDADD = $(NL_TEST_LDADD)
