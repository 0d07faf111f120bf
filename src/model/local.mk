# model module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += \
	src/model/safetensors.c src/model/safetensors.h \
	src/model/vit.h src/model/vit_load.c src/model/vit_forward.c \
	src/model/norm.c src/model/norm.h \
	src/model/replace.c src/model/replace.h \
	src/model/blockcost.c src/model/blockcost.h \
	src/model/profile.c src/model/profile.h \
	src/model/prune.c src/model/prune.h \
	src/model/quant.c src/model/quant.h \
	src/model/precision.c \
	src/model/reuse_plan.c src/model/reuse_plan.h

check_PROGRAMS += tests/unit/test_safetensors tests/unit/test_vit tests/unit/test_replace
NL_UNIT_TESTS += tests/unit/test_safetensors tests/unit/test_vit tests/unit/test_replace
check_PROGRAMS += tests/unit/test_normcost
NL_UNIT_TESTS += tests/unit/test_normcost
tests_unit_test_normcost_SOURCES = tests/unit/test_normcost.c
tests_unit_test_normcost_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_normcost_LDADD = $(NL_TEST_LDADD)
tests_unit_test_replace_SOURCES = tests/unit/test_replace.c
tests_unit_test_replace_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_replace_LDADD = $(NL_TEST_LDADD)
tests_unit_test_safetensors_SOURCES = tests/unit/test_safetensors.c
tests_unit_test_safetensors_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_safetensors_LDADD = $(NL_TEST_LDADD)
tests_unit_test_vit_SOURCES = tests/unit/test_vit.c
tests_unit_test_vit_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_vit_LDADD = $(NL_TEST_LDADD)

NL_CLI_TESTS += tests/cli/test_model.sh tests/cli/test_fuzz_safetensors.sh tests/cli/test_replace.sh
NL_CLI_TESTS += tests/cli/test_cost_model.sh tests/cli/test_bench_norm.sh
EXTRA_DIST += tests/cli/st_tool.py tests/fuzz/fuzz_safetensors.c tests/fuzz/safetensors.dict \
	tests/fuzz/corpus_safetensors samples/models/vit_small_p7_fmnist.safetensors samples/models/README.md
# Mappings files and their extraction from a model's norm taps.
libnormlab_a_SOURCES += \
	src/model/maps.c src/model/maps.h \
	src/model/extract.c src/model/extract.h
check_PROGRAMS += tests/unit/test_maps tests/unit/test_extract
NL_UNIT_TESTS += tests/unit/test_maps tests/unit/test_extract
tests_unit_test_maps_SOURCES = tests/unit/test_maps.c
tests_unit_test_maps_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_maps_LDADD = $(NL_TEST_LDADD)
tests_unit_test_extract_SOURCES = tests/unit/test_extract.c
tests_unit_test_extract_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_extract_LDADD = $(NL_TEST_LDADD)
# the bundled default model, installed beside the other data
nlmodelsdir = $(pkgdatadir)/models
nlmodels_DATA = samples/models/vit_small_p7_fmnist.safetensors
# Export to PyTorch and C (model/export.h).
libnormlab_a_SOURCES += src/model/export.c src/model/export.h
NL_CLI_TESTS += tests/cli/test_export.sh
EXTRA_DIST += tests/cli/export_check.py tests/data/export_ops.exprs
# the Python helpers normlab runs or documents, installed beside the models
nlscriptsdir = $(pkgdatadir)/scripts
dist_nlscripts_SCRIPTS = scripts/export-onnx
NL_CLI_TESTS += tests/cli/test_realign.sh
dist_nlscripts_SCRIPTS += scripts/realign-ddp
# Activation profile and MLP pruning.
check_PROGRAMS += tests/unit/test_prune
NL_UNIT_TESTS += tests/unit/test_prune
tests_unit_test_prune_SOURCES = tests/unit/test_prune.c
tests_unit_test_prune_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_prune_LDADD = $(NL_TEST_LDADD)
NL_CLI_TESTS += tests/cli/test_prune.sh
