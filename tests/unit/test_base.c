/* Unit tests for src/base and the command-line parser in src/app/cmd.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/cmd.h"
#include "base/error.h"
#include "base/fileio.h"
#include "base/rng.h"
#include "base/threads.h"

static void test_error_messages(void **state) {
  (void)state;
  nl_error e;
  nl_error_clear(&e);
  assert_int_equal(nl_fail(&e, NL_EINPUT, "bad %s at %d", "token", 7), -1);
  assert_int_equal(e.code, NL_EINPUT);
  assert_string_equal(e.msg, "bad token at 7");
  nl_error_prefix(&e, "file.exprs:%d", 3);
  assert_string_equal(e.msg, "file.exprs:3: bad token at 7");
  assert_int_equal(nl_error_exit_status(&e), 2);
  e.code = NL_EIO;
  assert_int_equal(nl_error_exit_status(&e), 1);
  nl_error_clear(&e);
  assert_int_equal(nl_error_exit_status(&e), 0);
}

static void test_rng_deterministic_streams(void **state) {
  (void)state;
  nl_rng a, b, c;
  nl_rng_stream(&a, 42, 0);
  nl_rng_stream(&b, 42, 0);
  nl_rng_stream(&c, 42, 1);
  int same_ab = 1, same_ac = 1;
  for (int i = 0; i < 100; i++) {
    uint64_t x = nl_rng_u64(&a), y = nl_rng_u64(&b), z = nl_rng_u64(&c);
    same_ab &= (x == y);
    same_ac &= (x == z);
  }
  assert_true(same_ab);
  assert_false(same_ac);
}

/* Moments of the generators against their distributions: with n = 200000
 * the standard error of the mean is ~0.0022 (normal) / 0.00065 (uniform). */
static void test_rng_moments(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 7);
  const int n = 200000;
  double su = 0, su2 = 0, sn = 0, sn2 = 0;
  int below_hist[5] = {0};
  for (int i = 0; i < n; i++) {
    double u = nl_rng_uniform(&r);
    assert_true(u >= 0.0 && u < 1.0);
    su += u;
    su2 += u * u;
    double g = nl_rng_normal(&r);
    sn += g;
    sn2 += g * g;
    below_hist[nl_rng_below(&r, 5)]++;
  }
  assert_true(fabs(su / n - 0.5) < 0.005);
  assert_true(fabs(su2 / n - 1.0 / 3.0) < 0.005);
  assert_true(fabs(sn / n) < 0.015);
  assert_true(fabs(sn2 / n - 1.0) < 0.015);
  for (int k = 0; k < 5; k++) assert_true(abs(below_hist[k] - n / 5) < n / 50);
}

static void test_atomic_write(void **state) {
  (void)state;
  char dir[] = "/tmp/normlab-base-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/sub/dir/file.txt", dir);
  nl_error e;
  char sub[256];
  snprintf(sub, sizeof sub, "%s/sub/dir", dir);
  assert_int_equal(nl_mkdir_p(sub, &e), 0);
  assert_int_equal(nl_write_file_atomic(path, "hello", 5, &e), 0);
  size_t len;
  char *s = nl_read_file(path, &len, &e);
  assert_non_null(s);
  assert_int_equal(len, 5);
  assert_string_equal(s, "hello");
  free(s);
  /* An aborted write leaves the old content and no temporary file. */
  nl_atomic_file af;
  assert_int_equal(nl_atomic_open(&af, path, &e), 0);
  fputs("partial", af.fp);
  nl_atomic_abort(&af);
  s = nl_read_file(path, &len, &e);
  assert_string_equal(s, "hello");
  free(s);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", sub);
  assert_int_equal(system(cmd), 0);
  /* A write killed before its rename leaves "NAME.tmp.XXXXXX": the cleanup
   * removes exactly those, and what a real open left (by hand: a temporary
   * that is never committed) */
  assert_int_equal(nl_atomic_open(&af, path, &e), 0);
  fputs("killed", af.fp);
  fflush(af.fp);
  const char *keep[] = {"a.tmp", "tmp.Ab12Cd", "b.tmp.long-suffix", ".tmp.Ab12Cd", "c.tmp.Ab1"};
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
    snprintf(cmd, sizeof cmd, "touch '%s/%s'", sub, keep[i]);
    assert_int_equal(system(cmd), 0);
  }
  snprintf(cmd, sizeof cmd, "touch '%s/train.json.tmp.Zz99Yy'", sub);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(nl_atomic_cleanup(sub, &e), 2);
  snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 6", sub); /* file.txt + the five kept */
  assert_int_equal(system(cmd), 0);
  fclose(af.fp);
  free(af.path);
  free(af.tmppath);
  assert_int_equal(nl_atomic_cleanup("/nonexistent/normlab-dir", &e), -1);
  assert_int_equal(e.code, NL_EIO);
  /* Missing files are input errors naming the path. */
  assert_null(nl_read_file("/nonexistent/normlab.txt", &len, &e));
  assert_int_equal(e.code, NL_EINPUT);
  assert_non_null(strstr(e.msg, "/nonexistent/normlab.txt"));
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void mark(size_t i, int worker, void *user) {
  int *hits = user;
  (void)worker;
  __atomic_fetch_add(&hits[i], 1, __ATOMIC_RELAXED);
}

static void test_parallel_for_covers_each_index_once(void **state) {
  (void)state;
  for (int t = 1; t <= 4; t++) {
    nl_threads_set(t);
    int hits[1000] = {0};
    nl_parallel_for(1000, mark, hits);
    for (int i = 0; i < 1000; i++) assert_int_equal(hits[i], 1);
  }
}

static const nl_opt demo_opts[] = {
    {"limit", NL_OPT_INT, "N", "100", "images", NULL, 0},
    {"lr", NL_OPT_NUM, "X", NULL, "learning rate", NULL, 0},
    {"mode", NL_OPT_CHOICE, NULL, "nodes", "complexity", "nodes|flops", 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "json output", NULL, 0},
    {"model", NL_OPT_STR, "FILE", NULL, "model", NULL, NL_OPTF_REQUIRED | NL_OPTF_SESSION},
    {0},
};
static int demo_run(nl_ctx *c, const nl_args *a, nl_error *e) {
  (void)c; (void)a; (void)e;
  return 0;
}
static const nl_cmd demo = {.name = "demo", .args = "[X]", .summary = "demo", .opts = demo_opts,
                            .min_pos = 0, .max_pos = 1, .run = demo_run};

static const char *ctx_value(void *s, const char *key) {
  (void)s;
  return strcmp(key, "model") == 0 ? "session.safetensors" : NULL;
}

static void test_args_parse(void **state) {
  (void)state;
  nl_args a;
  nl_error e;
  char *ok1[] = {"--limit", "5", "--lr=0.01", "--json", "pos", "--model", "m.st"};
  assert_int_equal(nl_args_parse(&a, &demo, 7, ok1, NULL, &e), 0);
  assert_int_equal(nl_arg_int(&a, "limit"), 5);
  assert_true(fabs(nl_arg_num(&a, "lr") - 0.01) < 1e-12);
  assert_true(nl_arg_flag(&a, "json"));
  assert_string_equal(nl_arg_str(&a, "mode"), "nodes");
  assert_false(nl_arg_given(&a, "mode"));
  assert_int_equal(a.npos, 1);
  assert_string_equal(a.pos[0], "pos");
  free(a.pos);

  struct { int argc; char *argv[4]; const char *needle; } bad[] = {
      {2, {"--limit", "abc"}, "--limit expects an integer"},
      {2, {"--lr", "nan"}, "--lr expects a finite number"},
      {2, {"--mode", "trees"}, "one of nodes|flops"},
      {1, {"--bogus"}, "unknown option '--bogus'"},
      {1, {"--limit"}, "needs a value"},
      {2, {"--json=1", "--model"}, "takes no value"},
      {0, {NULL}, "missing required option --model"},
      {4, {"--model", "m", "a", "b"}, "unexpected argument 'b'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    nl_error_clear(&e);
    assert_int_equal(nl_args_parse(&a, &demo, bad[i].argc, bad[i].argv, NULL, &e), -1);
    assert_int_equal(e.code, NL_EINPUT);
    if (!strstr(e.msg, bad[i].needle)) fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, bad[i].needle);
    free(a.pos);
  }
  /* A session can supply context options. */
  nl_ctx ctx = {.context = ctx_value};
  assert_int_equal(nl_args_parse(&a, &demo, 0, NULL, &ctx, &e), 0);
  assert_string_equal(nl_arg_str(&a, "model"), "session.safetensors");
  free(a.pos);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_error_messages),
      cmocka_unit_test(test_rng_deterministic_streams),
      cmocka_unit_test(test_rng_moments),
      cmocka_unit_test(test_atomic_write),
      cmocka_unit_test(test_parallel_for_covers_each_index_once),
      cmocka_unit_test(test_args_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
