# model module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += \
	src/model/safetensors.c src/model/safetensors.h \
	src/model/vit.h src/model/vit_load.c src/model/vit_forward.c \
	src/model/norm_expr.c src/model/norm_expr.h

check_PROGRAMS += tests/unit/test_vit
NL_UNIT_TESTS += tests/unit/test_vit
tests_unit_test_vit_SOURCES = tests/unit/test_vit.c
tests_unit_test_vit_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_vit_LDADD = $(NL_TEST_LDADD)
