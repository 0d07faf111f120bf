# lua module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += \
	src/lua/nlua.h src/lua/local.h \
	src/lua/lua_aux.c src/lua/lua_state.c src/lua/lua_cmd.c src/lua/lua_expr.c \
	src/lua/lua_model.c src/lua/lua_maps.c src/lua/cmd_lua.c \
	src/lua/lua_prune.c src/lua/lua_reuse.c

# The Lua-side library, found by require() in the source tree and installed.
nlluadir = $(pkgdatadir)/lua/normlab
nllua_DATA = lua/normlab/lib.lua
EXTRA_DIST += $(nllua_DATA) samples/quickstart.lua samples/paper.lua samples/sequential.lua samples/edgeflex.lua samples/adaptive.lua tests/lua

check_PROGRAMS += tests/unit/test_lua
NL_UNIT_TESTS += tests/unit/test_lua
tests_unit_test_lua_SOURCES = tests/unit/test_lua.c
tests_unit_test_lua_CFLAGS = $(NL_TEST_CFLAGS)
tests_unit_test_lua_LDADD = $(NL_TEST_LDADD)

NL_CLI_TESTS += tests/cli/lua.sh tests/cli/lua_tty.sh
dist_man_MANS += man/normlab-lua.3
