# search module: sources and tests (appended to the variables in Makefile.am)

# The DyT baseline fit and the bound estimate.
libnormlab_a_SOURCES += src/search/dyt.c src/search/dyt.h
check_PROGRAMS += tests/unit/test_dyt
NL_UNIT_TESTS += tests/unit/test_dyt
tests_unit_test_dyt_SOURCES = tests/unit/test_dyt.c
tests_unit_test_dyt_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_dyt_LDADD = $(NL_TEST_LDADD)

# Commands extract, maps, dyt.
NL_CLI_TESTS += tests/cli/dyt.sh

# The GP search: NSGA-II, variation, constant refinement, campaigns.
libnormlab_a_SOURCES += src/search/gp.h src/search/gp_local.h src/search/gp.c \
	src/search/nsga2.c src/search/gp_campaign.c \
	src/search/campaign_opts.c src/search/campaign_opts.h \
	src/search/sequential.c src/search/sequential.h
check_PROGRAMS += tests/unit/test_gp
NL_UNIT_TESTS += tests/unit/test_gp
tests_unit_test_gp_SOURCES = tests/unit/test_gp.c
tests_unit_test_gp_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_gp_LDADD = $(NL_TEST_LDADD)

# Fitting an expression's constants (Levenberg-Marquardt), fold, impact, R2;
# the fronts CSV files.
libnormlab_a_SOURCES += src/search/fit.c src/search/fit.h src/search/fronts.c

# Command evolve.
NL_CLI_TESTS += tests/cli/test_evolve.sh tests/cli/test_budget.sh

check_PROGRAMS += tests/unit/test_budget
NL_UNIT_TESTS += tests/unit/test_budget
tests_unit_test_budget_SOURCES = tests/unit/test_budget.c
tests_unit_test_budget_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_budget_LDADD = $(NL_TEST_LDADD)
