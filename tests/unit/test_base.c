/* Unit tests for src/base and the command-line parser in src/app/cmd.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "app/cmd.h"
#include "base/error.h"
#include "base/fileio.h"
#include "base/json.h"
#include "base/text.h"
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
    int hits[1000] = {0};
    nl_parallel_for_n(1000, t, mark, hits);
    for (int i = 0; i < 1000; i++) assert_int_equal(hits[i], 1);
  }
}

/* The highest worker index a job saw, and how many tasks ran. */
typedef struct {
  int max_worker, tasks;
} seen_t;

static void see(size_t i, int worker, void *user) {
  seen_t *s = user;
  (void)i;
  __atomic_fetch_add(&s->tasks, 1, __ATOMIC_RELAXED);
  int m = __atomic_load_n(&s->max_worker, __ATOMIC_RELAXED);
  while (worker > m &&
         !__atomic_compare_exchange_n(&s->max_worker, &m, worker, 0, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED)) {
  }
  usleep(200); /* long enough for every helper to take some */
}

static int max_worker(size_t n, int threads, int scoped) {
  seen_t s = {0, 0};
  if (scoped) nl_parallel_for(n, see, &s);
  else nl_parallel_for_n(n, threads, see, &s);
  assert_int_equal(s.tasks, (int)n);
  return s.max_worker;
}

static void *scope_elsewhere(void *arg) {
  *(int *)arg = nl_threads_count(0);
  return NULL;
}

/* The count comes from the caller: an explicit count, else the scope open
 * on this thread (nested, restored on leave, not seen by other threads),
 * else the default; a job never uses more workers than that. */
static void test_thread_counts(void **state) {
  (void)state;
  const int def = nl_threads_default();
  assert_true(def >= 1 && def <= NL_THREADS_MAX);
  assert_int_equal(nl_threads_count(0), def);
  assert_int_equal(nl_threads_count(5), 5);
  assert_int_equal(nl_threads_count(100000), NL_THREADS_MAX);
  for (int t = 1; t <= 3; t++) assert_true(max_worker(200, t, 0) < t);
  assert_int_equal(max_worker(200, 1, 0), 0);
  int outer = nl_threads_enter(3);
  assert_int_equal(outer, 0);
  assert_int_equal(nl_threads_count(0), 3);
  assert_int_equal(nl_threads_count(2), 2);
  assert_true(max_worker(200, 0, 1) < 3);
  int o2 = nl_threads_enter(0); /* inherits */
  assert_int_equal(nl_threads_count(0), 3);
  int o3 = nl_threads_enter(1);
  assert_int_equal(nl_threads_count(0), 1);
  assert_int_equal(max_worker(200, 0, 1), 0);
  pthread_t th;
  int other = -1;
  assert_int_equal(pthread_create(&th, NULL, scope_elsewhere, &other), 0);
  pthread_join(th, NULL);
  assert_int_equal(other, def); /* the scope is this thread's */
  nl_threads_leave(o3);
  assert_int_equal(nl_threads_count(0), 3);
  nl_threads_leave(o2);
  nl_threads_leave(outer);
  assert_int_equal(nl_threads_count(0), def);
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

/* Old option names: still parsed, with a note; an unknown option gets the
 * closest name. */
static const nl_opt_alias demo_aliases[] = {{"max", "limit"}, {"count", NULL}, {NULL, NULL}};
static const nl_cmd demo_old = {.name = "demo", .args = "[N]", .summary = "demo", .opts = demo_opts,
                                .min_pos = 0, .max_pos = 1, .run = demo_run,
                                .aliases = demo_aliases};

static void test_args_aliases(void **state) {
  (void)state;
  nl_args a;
  nl_error e;
  char *buf = NULL;
  size_t len = 0;
  FILE *err = open_memstream(&buf, &len);
  nl_ctx ctx = {.out = stdout, .err = err, .context = ctx_value};
  char *v1[] = {"--max", "7", "--count=3"};
  assert_int_equal(nl_args_parse(&a, &demo_old, 3, v1, &ctx, &e), 0);
  assert_int_equal(nl_arg_int(&a, "limit"), 7);
  assert_true(nl_arg_given(&a, "limit"));
  assert_int_equal(a.npos, 1);
  assert_string_equal(a.pos[0], "3"); /* --count N is the positional N now */
  free(a.pos);
  fclose(err);
  assert_string_equal(buf, "normlab demo: --max is deprecated; use --limit\n"
                           "normlab demo: --count is deprecated; use 'demo N'\n");
  free(buf);
  char *v2[] = {"--max=abc"};
  assert_int_equal(nl_args_parse(&a, &demo_old, 1, v2, NULL, &e), -1);
  assert_non_null(strstr(e.msg, "--limit expects an integer")); /* named as it is now */
  free(a.pos);
  struct { const char *word, *msg; } unknown[] = {
      {"--limt", "unknown option '--limt'; did you mean '--limit'?"},
      {"--jsno", "unknown option '--jsno'; did you mean '--json'?"},  /* two letters swapped */
      {"--mdoel", "unknown option '--mdoel'; did you mean '--model'?"},
      {"--mx", "unknown option '--mx'; did you mean '--limit'?"},    /* near an old name */
      {"--zzzzzz", "unknown option '--zzzzzz' (see 'normlab help demo')"},
  };
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    char *v[] = {(char *)unknown[i].word};
    assert_int_equal(nl_args_parse(&a, &demo_old, 1, v, NULL, &e), -1);
    free(a.pos);
    if (strcmp(e.msg, unknown[i].msg) != 0)
      fail_msg("case %zu: '%s', wanted '%s'", i, e.msg, unknown[i].msg);
  }
  /* at the prompt (a session) the hint is the prompt's 'help demo' */
  nl_ctx sess = {.session = &sess};
  char *v3[] = {"--zzzzzz"};
  assert_int_equal(nl_args_parse(&a, &demo_old, 1, v3, &sess, &e), -1);
  free(a.pos);
  assert_string_equal(e.msg, "unknown option '--zzzzzz' (see 'help demo')");
}

static void test_closest(void **state) {
  (void)state;
  assert_int_equal(nl_edit_distance("kitten", "sitting"), 3);
  assert_int_equal(nl_edit_distance("", "abc"), 3);
  assert_int_equal(nl_edit_distance("jsno", "json"), 1);
  assert_int_equal(nl_edit_distance("same", "same"), 0);
  const char *const cmds[] = {"status", "save", "set", "score", NULL, "tokens"};
  assert_string_equal(nl_closest("stauts", cmds, 6), "status");
  assert_string_equal(nl_closest("sav", cmds, 6), "save");
  assert_string_equal(nl_closest("tok", cmds, 6), "tokens"); /* the one name it begins */
  assert_null(nl_closest("xyz", cmds, 6));
  const char *const two[] = {"loading", "locking"};
  assert_null(nl_closest("lo", two, 2)); /* a prefix of two names: no choice */
  assert_null(nl_closest("status", cmds, 6)); /* itself is not a suggestion */
  /* choices "a|b|c": exact matches only, by position */
  assert_int_equal(nl_choice_index("nodes|flops", "flops"), 1);
  assert_int_equal(nl_choice_index("nodes|flops", "nodes"), 0);
  assert_int_equal(nl_choice_index("nodes|flops", "node"), -1);
  assert_int_equal(nl_choice_index("nodes|flops", "flopsx"), -1);
  assert_int_equal(nl_choice_index("nodes|flops", ""), -1);
  assert_int_equal(nl_choice_index("a||b", "b"), 2);
  setenv("NL_TEST_OLD_NAME", "old", 1);
  unsetenv("NL_TEST_NEW_NAME");
  assert_string_equal(nl_getenv("NL_TEST_NEW_NAME", "NL_TEST_OLD_NAME"), "old");
  setenv("NL_TEST_NEW_NAME", "new", 1);
  assert_string_equal(nl_getenv("NL_TEST_NEW_NAME", "NL_TEST_OLD_NAME"), "new");
  unsetenv("NL_TEST_NEW_NAME");
  unsetenv("NL_TEST_OLD_NAME");
  assert_null(nl_getenv("NL_TEST_NEW_NAME", "NL_TEST_OLD_NAME"));
}

/* Significant digits of a decimal number's text (no leading or trailing
 * zeros). */
static int sig_digits(const char *s) {
  char d[64];
  int n = 0;
  for (; *s && *s != 'e' && n < 63; s++)
    if (*s >= '0' && *s <= '9' && (n > 0 || *s != '0')) d[n++] = *s;
  while (n > 1 && d[n - 1] == '0') n--;
  return n ? n : 1;
}

/* JSON printed one way: worked out by hand. */
static void test_json_text(void **state) {
  (void)state;
  json_t *j = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:b, s:n, s:[], s:{}}", "a",
                        0.011251, "b", 1.0, "c", 1e-300, "d", 0.1 + 0.2, "e", -0.5, "f", 1e21,
                        "g", 5e-324, "i", (json_int_t)-42, "t", 1, "z", "l", "o");
  json_object_set_new(j, "s", json_stringn("q\"\\\n\x01\xc3\xa9\0x", 9));
  char *t = nl_json_text(j, NL_JSON_LINE);
  assert_string_equal(t, "{\"a\": 0.011251, \"b\": 1.0, \"c\": 1e-300, \"d\": 0.30000000000000004, "
                         "\"e\": -0.5, \"f\": 1e+21, \"g\": 5e-324, \"i\": -42, \"t\": true, "
                         "\"z\": null, \"l\": [], \"o\": {}, \"s\": \"q\\\"\\\\\\n\\u0001\xc3\xa9\\u0000x\"}");
  /* jansson reads it back to the same values */
  json_error_t je;
  json_t *back = json_loads(t, JSON_ALLOW_NUL, &je);
  assert_non_null(back);
  assert_true(json_equal(j, back));
  json_decref(back);
  free(t);
  json_decref(j);
  j = json_pack("{s:[i, i], s:{}, s:{s:s}}", "a", 1, 2, "b", "c", "k", "v");
  t = nl_json_text(j, NL_JSON_PRETTY);
  assert_string_equal(t, "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": {\n    \"k\": \"v\"\n  }\n}");
  free(t);
  json_decref(j);
  /* single precision: the float's own shortest decimal */
  j = nl_json_float(0.1f);
  assert_true(json_real_value(j) == 0.1);
  json_decref(j);
  j = nl_json_float(1.0f / 3.0f);
  assert_true(json_real_value(j) == 0.33333334);
  json_decref(j);
  assert_null(nl_json_float(NAN));
  j = nl_json_rounded(1234.5678, 2);
  assert_true(json_real_value(j) == 1234.57);
  json_decref(j);
  /* shortest round trip: every double reads back (strtod) to itself, in
   * no more characters than %.17g */
  nl_rng r;
  nl_rng_seed(&r, 12345);
  for (int i = 0; i < 20000; i++) {
    uint64_t bits = nl_rng_u64(&r);
    double v;
    memcpy(&v, &bits, sizeof v);
    if (!isfinite(v)) continue;
    if (i % 2) v = (double)(nl_rng_u64(&r) % 100000) / 1000.0; /* "nice" decimals too */
    char buf[40], ref[40];
    nl_json_format_real(buf, sizeof buf, v);
    snprintf(ref, sizeof ref, "%.17g", v);
    if (strtod(buf, NULL) != v) fail_msg("%s does not read back as %s", buf, ref);
    int p = sig_digits(buf);
    char shorter[40];
    snprintf(shorter, sizeof shorter, "%.*e", p - 2, v);
    if (p > 17 || (p > 1 && strtod(shorter, NULL) == v))
      fail_msg("%s is not the shortest (%s reads back too)", buf, shorter);
  }
  char buf[40];
  /* Python's repr of the same doubles */
  struct { double v; const char *s; } forms[] = {
      {0.123, "0.123"}, {20.0, "20.0"}, {1e15, "1000000000000000.0"}, {1e16, "1e+16"},
      {0.0001, "0.0001"}, {0.00001, "1e-05"}, {-0.0, "-0.0"}, {123456789.125, "123456789.125"},
      {1e23, "1e+23"}, {1.0 / 3.0, "0.3333333333333333"}};
  for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
    nl_json_format_real(buf, sizeof buf, forms[i].v);
    assert_string_equal(buf, forms[i].s);
  }
}

/* nl_rng_shuffle: a permutation, and the draws of Fisher-Yates as its
 * header states them (i from n-1 down to 1, j = below(i + 1)). */
static void test_rng_shuffle(void **state) {
  (void)state;
  enum { N = 37 };
  int a[N], want[N];
  for (int i = 0; i < N; i++) a[i] = want[i] = i;
  nl_rng r, q;
  nl_rng_stream(&r, 5, 3);
  nl_rng_stream(&q, 5, 3);
  nl_rng_shuffle(&r, a, N);
  for (int i = N - 1; i > 0; i--) {
    const int j = (int)nl_rng_below(&q, (uint64_t)i + 1), t = want[i];
    want[i] = want[j];
    want[j] = t;
  }
  assert_memory_equal(a, want, sizeof a);
  int seen[N] = {0};
  for (int i = 0; i < N; i++) seen[a[i]]++;
  for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
  int moved = 0;
  for (int i = 0; i < N; i++) moved += a[i] != i;
  assert_true(moved > N / 2);
  nl_rng_shuffle(&r, a, 0); /* nothing to do */
  nl_rng_shuffle(&r, a, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_args_aliases),
      cmocka_unit_test(test_closest),
      cmocka_unit_test(test_json_text),
      cmocka_unit_test(test_error_messages),
      cmocka_unit_test(test_rng_deterministic_streams),
      cmocka_unit_test(test_rng_moments),
      cmocka_unit_test(test_rng_shuffle),
      cmocka_unit_test(test_atomic_write),
      cmocka_unit_test(test_parallel_for_covers_each_index_once),
      cmocka_unit_test(test_thread_counts),
      cmocka_unit_test(test_args_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
