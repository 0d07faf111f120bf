# train module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += \
	src/train/layers.c src/train/layers.h \
	src/train/attention.c \
	src/train/loss.c src/train/loss.h \
	src/train/optim.c src/train/optim.h \
	src/train/augment.c src/train/augment.h \
	src/train/vit_train.c src/train/vit_train.h \
	src/train/evaluate.c src/train/evaluate.h \
	src/train/calibrate.c src/train/calibrate.h \
	src/train/exits.c src/train/exits.h \
	src/train/reuse.c src/train/reuse.h \
	src/train/evit.c src/train/evit.h \
	src/train/train_opts.c src/train/train_opts.h

check_PROGRAMS += tests/unit/test_train_grad
NL_UNIT_TESTS += tests/unit/test_train_grad
tests_unit_test_train_grad_SOURCES = tests/unit/test_train_grad.c
tests_unit_test_train_grad_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_train_grad_LDADD = $(NL_TEST_LDADD)

NL_CLI_TESTS += tests/cli/test_bench_trainblock.sh tests/cli/test_train.sh tests/cli/test_calibrate.sh \
	tests/cli/test_train_bf16.sh
EXTRA_DIST += tests/cli/bf16_check.py

check_PROGRAMS += tests/unit/test_vit_train
NL_UNIT_TESTS += tests/unit/test_vit_train
tests_unit_test_vit_train_SOURCES = tests/unit/test_vit_train.c
tests_unit_test_vit_train_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_vit_train_LDADD = $(NL_TEST_LDADD)

check_PROGRAMS += tests/unit/test_forward_shared
NL_UNIT_TESTS += tests/unit/test_forward_shared
tests_unit_test_forward_shared_SOURCES = tests/unit/test_forward_shared.c
tests_unit_test_forward_shared_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_forward_shared_LDADD = $(NL_TEST_LDADD)

check_PROGRAMS += tests/unit/test_calibrate
NL_UNIT_TESTS += tests/unit/test_calibrate
tests_unit_test_calibrate_SOURCES = tests/unit/test_calibrate.c
tests_unit_test_calibrate_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_calibrate_LDADD = $(NL_TEST_LDADD)

check_PROGRAMS += tests/unit/test_exits
NL_UNIT_TESTS += tests/unit/test_exits
tests_unit_test_exits_SOURCES = tests/unit/test_exits.c
tests_unit_test_exits_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_exits_LDADD = $(NL_TEST_LDADD)
NL_CLI_TESTS += tests/cli/test_exits.sh

check_PROGRAMS += tests/unit/test_reuse
NL_UNIT_TESTS += tests/unit/test_reuse
tests_unit_test_reuse_SOURCES = tests/unit/test_reuse.c
tests_unit_test_reuse_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_reuse_LDADD = $(NL_TEST_LDADD)

check_PROGRAMS += tests/unit/test_train_bf16
NL_UNIT_TESTS += tests/unit/test_train_bf16
tests_unit_test_train_bf16_SOURCES = tests/unit/test_train_bf16.c
tests_unit_test_train_bf16_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_train_bf16_LDADD = $(NL_TEST_LDADD)
