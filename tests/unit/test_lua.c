/* Unit tests for src/lua: the prompt's block scanner, running chunks and
 * files with their statuses, interruption, rest-positional arguments. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/main.h"
#include "app/cmd.h"
#include "base/interrupt.h"
#include "lua/nlua.h"

static void test_block_opens(void **state) {
  (void)state;
  assert_true(nl_lua_block_opens("lua {"));
  assert_true(nl_lua_block_opens("  lua{ print(1) }"));
  assert_true(nl_lua_block_opens("lua\t {"));
  assert_false(nl_lua_block_opens("lua FILE"));
  assert_false(nl_lua_block_opens("luac {"));
  assert_false(nl_lua_block_opens("eval {"));
  assert_false(nl_lua_block_opens("lua"));
}

static void test_block_incomplete(void **state) {
  (void)state;
  assert_false(nl_lua_block_incomplete("lua { print(1) }"));
  assert_true(nl_lua_block_incomplete("lua {"));
  assert_true(nl_lua_block_incomplete("lua { t = {1, 2}"));
  assert_false(nl_lua_block_incomplete("lua { t = {1, {2}} }"));
  /* braces in strings and comments do not count */
  assert_true(nl_lua_block_incomplete("lua { s = \"}\""));
  assert_true(nl_lua_block_incomplete("lua { s = '}'"));
  assert_true(nl_lua_block_incomplete("lua { s = \"\\\"}\""));
  assert_true(nl_lua_block_incomplete("lua { -- }\n"));
  assert_false(nl_lua_block_incomplete("lua { -- }\n}"));
  assert_true(nl_lua_block_incomplete("lua { s = [[ } ]]"));
  assert_true(nl_lua_block_incomplete("lua { s = [==[ ]] } ]==]"));
  assert_false(nl_lua_block_incomplete("lua { s = [==[ ]] } ]==] }"));
  assert_true(nl_lua_block_incomplete("lua { --[[ } ]]"));
  assert_false(nl_lua_block_incomplete("lua { --[[ } ]] }"));
  assert_true(nl_lua_block_incomplete("lua { --[=[ ]] } ]=]"));
  /* an unterminated string or long comment keeps the block open */
  assert_true(nl_lua_block_incomplete("lua { s = [[ }"));
  assert_true(nl_lua_block_incomplete("lua { --[[ }"));
}

static nl_ctx ctx_of(FILE *out, FILE *err) {
  nl_ctx c = {.out = out, .err = err, .tty = 0};
  return c;
}

static void test_run_string(void **state) {
  (void)state;
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  nl_ctx c = ctx_of(out, stderr);
  nl_error err;
  nl_error_clear(&err);
  nl_lua *s = nl_lua_new(&c, NULL, &err);
  assert_non_null(s);
  assert_int_equal(nl_lua_run_string(s, "print(normlab.expr('x*1'):simplify(), 1 + 1)", "=t", &err), 0);
  fflush(out);
  assert_string_equal(buf, "x\t2\n");
  /* a runtime error: NL_EIO (exit 1) with the message and a traceback */
  assert_int_equal(nl_lua_run_string(s, "local function f() error('boom') end f()", "=t", &err), -1);
  assert_int_equal(err.code, NL_EIO);
  assert_int_equal(nl_error_exit_status(&err), 1);
  assert_non_null(strstr(err.msg, "t:1: boom"));
  assert_non_null(strstr(err.msg, "stack traceback:"));
  /* a syntax error: NL_EINPUT (exit 2) */
  assert_int_equal(nl_lua_run_string(s, "x = = 1", "=t", &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  /* the state survives errors */
  assert_int_equal(nl_lua_run_string(s, "assert(normlab.version())", "=t", &err), 0);
  /* an interrupt stops running code: NL_EINTR (exit 130) */
  nl_interrupt_raise();
  assert_int_equal(nl_lua_run_string(s, "while true do end", "=t", &err), -1);
  assert_int_equal(err.code, NL_EINTR);
  assert_int_equal(nl_error_exit_status(&err), 130);
  nl_interrupt_clear();
  nl_lua_close(s);
  fclose(out);
  free(buf);
}

static void test_run_file_args(void **state) {
  (void)state;
  char path[] = "/tmp/normlab-test-lua-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char *code = "local a, b = ...\nassert(arg[0] and arg[1] == a and arg[2] == b)\n"
                     "print(select('#', ...), a, b)\n";
  assert_int_equal(write(fd, code, strlen(code)), (ssize_t)strlen(code));
  close(fd);
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  nl_ctx c = ctx_of(out, stderr);
  nl_error err;
  nl_error_clear(&err);
  nl_lua *s = nl_lua_new(&c, NULL, &err);
  char *argv[] = {"--flag", "two words"};
  assert_int_equal(nl_lua_run_file(s, path, 2, argv, &err), 0);
  fflush(out);
  assert_string_equal(buf, "2\t--flag\ttwo words\n");
  assert_int_equal(nl_lua_run_file(s, "/nonexistent/x.lua", 0, NULL, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "/nonexistent/x.lua: cannot open"));
  nl_lua_close(s);
  fclose(out);
  free(buf);
  unlink(path);
}

/* 'lua FILE --flag': everything after FILE belongs to the script */
static void test_rest_positional(void **state) {
  (void)state;
  const nl_cmd *lua = nl_cmd_find("lua");
  assert_non_null(lua);
  nl_args a;
  nl_error err;
  nl_error_clear(&err);
  char *argv[] = {"script.lua", "--quick", "--code", "x"};
  assert_int_equal(nl_args_parse(&a, lua, 4, argv, NULL, &err), 0);
  assert_int_equal(a.npos, 4);
  assert_string_equal(a.pos[1], "--quick");
  assert_null(nl_arg_str(&a, "code"));
  free(a.pos);
  char *argv2[] = {"--code", "print(1)"};
  assert_int_equal(nl_args_parse(&a, lua, 2, argv2, NULL, &err), 0);
  assert_int_equal(a.npos, 0);
  assert_string_equal(nl_arg_str(&a, "code"), "print(1)");
  free(a.pos);
  char *argv3[] = {"--nope", "f.lua"};
  assert_int_equal(nl_args_parse(&a, lua, 2, argv3, NULL, &err), -1);
  free(a.pos);
}

int main(void) {
  nl_cli_setup(); /* the front-ends wired as the program wires them */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_block_opens),   cmocka_unit_test(test_block_incomplete),
      cmocka_unit_test(test_run_string),    cmocka_unit_test(test_run_file_args),
      cmocka_unit_test(test_rest_positional),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
