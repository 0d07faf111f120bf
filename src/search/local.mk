# search module: sources and tests (appended to the variables in Makefile.am)

# The DyT baseline fit and the bound estimate.
libnormlab_a_SOURCES += src/search/dyt.c src/search/dyt.h
check_PROGRAMS += tests/unit/test_dyt
NL_UNIT_TESTS += tests/unit/test_dyt
tests_unit_test_dyt_SOURCES = tests/unit/test_dyt.c
tests_unit_test_dyt_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_dyt_LDADD = $(NL_TEST_LDADD)
