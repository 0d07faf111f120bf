# tensor module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += src/tensor/kernels.c src/tensor/kernels.h \
	src/tensor/layers.c src/tensor/layers.h \
	src/tensor/qlinear.c src/tensor/qlinear.h \
	src/tensor/bf16.c src/tensor/bf16.h \
	src/tensor/gemm.c src/tensor/gemm.h src/tensor/vec512.h \
	src/tensor/igemm.c src/tensor/igemm.h \
	src/tensor/sgemm.c src/tensor/sgemm.h

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

check_PROGRAMS += tests/unit/test_bf16
NL_UNIT_TESTS += tests/unit/test_bf16
tests_unit_test_bf16_SOURCES = tests/unit/test_bf16.c
tests_unit_test_bf16_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_bf16_LDADD = $(NL_TEST_LDADD)
NL_CLI_TESTS += tests/cli/test_bf16.sh
EXTRA_DIST += tests/cli/fmnist_inputs.py
check_PROGRAMS += tests/unit/test_fwdkern
NL_UNIT_TESTS += tests/unit/test_fwdkern
tests_unit_test_fwdkern_SOURCES = tests/unit/test_fwdkern.c
tests_unit_test_fwdkern_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_fwdkern_LDADD = $(NL_TEST_LDADD)
check_PROGRAMS += tests/unit/test_igemm
NL_UNIT_TESTS += tests/unit/test_igemm
tests_unit_test_igemm_SOURCES = tests/unit/test_igemm.c
tests_unit_test_igemm_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_igemm_LDADD = $(NL_TEST_LDADD)
