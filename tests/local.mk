check_PROGRAMS += tests/unit/test_base
NL_UNIT_TESTS += tests/unit/test_base
tests_unit_test_base_SOURCES = tests/unit/test_base.c
tests_unit_test_base_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_base_LDADD = $(NL_TEST_LDADD)

NL_CLI_TESTS += tests/cli/test_cli.sh tests/cli/layers.sh
EXTRA_DIST += $(NL_CLI_TESTS)
NL_CLI_TESTS += tests/cli/test_skipbad.sh
