# data module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += src/data/dataset.c src/data/dataset.h \
	src/data/image.c src/data/image.h src/data/transform.c src/data/transform.h \
	src/data/folder.c src/data/folder.h

check_PROGRAMS += tests/unit/test_data
NL_UNIT_TESTS += tests/unit/test_data
tests_unit_test_data_SOURCES = tests/unit/test_data.c
tests_unit_test_data_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_data_LDADD = $(NL_TEST_LDADD)
NL_CLI_TESTS += tests/cli/test_data.sh
