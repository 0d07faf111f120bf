# tensor module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += src/tensor/kernels.c src/tensor/kernels.h \
	src/tensor/gemm.c src/tensor/gemm.h \
	src/tensor/layers.c src/tensor/layers.h \
	src/tensor/qlinear.c src/tensor/qlinear.h

check_PROGRAMS += tests/unit/test_kernels
NL_UNIT_TESTS += tests/unit/test_kernels
tests_unit_test_kernels_SOURCES = tests/unit/test_kernels.c
tests_unit_test_kernels_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_kernels_LDADD = $(NL_TEST_LDADD)

check_PROGRAMS += tests/unit/test_quant
NL_UNIT_TESTS += tests/unit/test_quant
tests_unit_test_quant_SOURCES = tests/unit/test_quant.c
tests_unit_test_quant_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_quant_LDADD = $(NL_TEST_LDADD)
NL_CLI_TESTS += tests/cli/test_quantize.sh
