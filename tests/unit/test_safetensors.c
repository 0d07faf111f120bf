/* The safetensors reader's validation (the rules of the reference
 * implementation) and the writer, on file images built by hand. */
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

#include "base/mem.h"
#include "model/safetensors.h"

static unsigned char buf[4096];

/* File image: 8-byte length, header, `ndata` data bytes (0x11 each). */
static size_t image(const char *hdr, size_t ndata) {
  size_t n = strlen(hdr);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
  memcpy(buf + 8, hdr, n);
  memset(buf + 8 + n, 0x11, ndata);
  return 8 + n + ndata;
}

static void expect_error(const char *hdr, size_t ndata, const char *want) {
  size_t size = image(hdr, ndata);
  nl_st_file f;
  nl_error err;
  nl_error_clear(&err);
  int rc = nl_st_parse(&f, "t.safetensors", buf, size, &err);
  if (rc != -1 || err.code != NL_EINPUT || !strstr(err.msg, want))
    fail_msg("header %s: rc %d, message '%s', wanted '%s'", hdr, rc, err.msg, want);
  assert_non_null(strstr(err.msg, "t.safetensors"));
}

static void test_valid(void **state) {
  (void)state;
  const char *h =
      "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[4,6]},"
      "\"c\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[6,10]},"
      "\"z\":{\"dtype\":\"U8\",\"shape\":[0,3],\"data_offsets\":[10,10]}}  ";
  size_t size = image(h, 10);
  unsigned char *d = buf + 8 + strlen(h);
  d[0] = 0x00; d[1] = 0x3c;           /* F16 1.0 */
  d[2] = 0x01; d[3] = 0x80;           /* F16 -2^-24 (subnormal) */
  d[4] = 0x80; d[5] = 0x3f;           /* BF16 1.0 */
  float v = -3.5f;
  memcpy(d + 6, &v, 4);
  nl_st_file f;
  nl_error err;
  assert_int_equal(nl_st_parse(&f, "t", buf, size, &err), 0);
  assert_int_equal(f.n, 4);
  assert_string_equal(f.t[0].name, "a");
  assert_string_equal(nl_st_meta_get(&f, "k"), "v");
  float o[2];
  nl_st_to_f32(nl_st_find(&f, "a"), o);
  assert_true(o[0] == 1.0f);
  assert_true(o[1] == -ldexpf(1.0f, -24));
  nl_st_to_f32(nl_st_find(&f, "b"), o);
  assert_true(o[0] == 1.0f);
  nl_st_to_f32(nl_st_find(&f, "c"), o);
  assert_true(o[0] == -3.5f);
  assert_int_equal(nl_st_find(&f, "z")->numel, 0);
  nl_st_close(&f);
}

static void test_f16_values(void **state) {
  (void)state;
  /* IEEE binary16 values: max finite, smallest normal, infinity, NaN, -0 */
  const uint16_t h[] = {0x7bff, 0x0400, 0x7c00, 0x7e00, 0x8000, 0x3555};
  const float want[] = {65504.0f, 6.103515625e-05f, INFINITY, NAN, -0.0f, 0.333251953125f};
  nl_st_tensor t = {.dtype = NL_DT_F16, .numel = 6, .raw = h};
  float o[6];
  nl_st_to_f32(&t, o);
  for (int i = 0; i < 6; i++) {
    if (isnan(want[i])) assert_true(isnan(o[i]));
    else assert_true(o[i] == want[i] && signbit(o[i]) == signbit(want[i]));
  }
}

static void test_errors(void **state) {
  (void)state;
  nl_st_file f;
  nl_error err;
  assert_int_equal(nl_st_parse(&f, "t.safetensors", buf, 5, &err), -1);
  assert_non_null(strstr(err.msg, "shorter than the 8-byte header length"));
  size_t size = image("{}", 0);
  buf[0] = 200; /* header length past the end */
  assert_int_equal(nl_st_parse(&f, "t.safetensors", buf, size, &err), -1);
  assert_non_null(strstr(err.msg, "runs past the end of the file"));
  buf[5] = 1; /* absurd length */
  assert_int_equal(nl_st_parse(&f, "t.safetensors", buf, size, &err), -1);
  assert_non_null(strstr(err.msg, "exceeds"));
  expect_error("{\"a\":", 0, "not valid JSON");
  expect_error("[1, 2]", 0, "does not start with '{'");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "not valid JSON");
  expect_error("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': unknown dtype 'Q4'");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "tensor 'a': shape and dtype F32 give 8 bytes but data_offsets span 4");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 4, "tensor 'a': data_offsets [0, 8] run past the data area");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "end before begin");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlaps tensor 'a'");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "tensor 'b': gap of 4 bytes");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6, "trailing bytes");
  expect_error("{\"__metadata__\":{\"k\":3}}", 0, "__metadata__ value of 'k' is not a string");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': shape entry 0");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a': header entry lacks 'data_offsets'");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unknown field 'x'");
  expect_error("{\"a\":[1]}", 0, "tensor 'a': header entry is not an object");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "tensor 'a': shape and dtype");
}

static void test_writer_roundtrip(void **state) {
  (void)state;
  char path[] = "/tmp/nl_st_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  nl_error err;
  nl_st_writer *w = nl_st_writer_new();
  float a[6] = {1, 2, 3, 4, 5, 6}, b[1] = {-7};
  int64_t sa[2] = {2, 3}, sb[1] = {1};
  uint8_t u[3] = {9, 8, 7};
  int64_t su[1] = {3};
  assert_int_equal(nl_st_writer_add(w, "zeta", a, 2, sa, &err), 0);
  assert_int_equal(nl_st_writer_add(w, "alpha", b, 1, sb, &err), 0);
  assert_int_equal(nl_st_writer_add_raw(w, "mid", NL_DT_U8, u, 1, su, &err), 0);
  assert_int_equal(nl_st_writer_add(w, "alpha", b, 1, sb, &err), -1);
  nl_st_writer_meta(w, "source", "test");
  assert_int_equal(nl_st_writer_save(w, path, &err), 0);
  nl_st_writer_free(w);
  nl_st_file f;
  assert_int_equal(nl_st_open(&f, path, &err), 0);
  assert_int_equal(f.n, 3);
  const nl_st_tensor *t = nl_st_find(&f, "zeta");
  assert_non_null(t);
  assert_int_equal(t->ndim, 2);
  assert_int_equal(t->shape[1], 3);
  /* written in name order: alpha, mid, zeta */
  assert_int_equal(nl_st_find(&f, "alpha")->begin, 0);
  assert_int_equal(nl_st_find(&f, "mid")->begin, 4);
  assert_int_equal(t->begin, 7);
  float o[6];
  nl_st_to_f32(t, o);
  assert_memory_equal(o, a, sizeof a);
  nl_st_to_f32(nl_st_find(&f, "mid"), o);
  assert_true(o[0] == 9 && o[2] == 7);
  assert_string_equal(nl_st_meta_get(&f, "source"), "test");
  /* the header length is a multiple of 8 */
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | ((unsigned char *)f.map)[i];
  assert_int_equal(hl % 8, 0);
  assert_null(nl_st_read_f32(&f, "nope", NULL, &err));
  assert_non_null(strstr(err.msg, "no tensor 'nope'"));
  nl_st_close(&f);
  unlink(path);
  assert_int_equal(nl_st_open(&f, path, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
}

/* Resident kB of this process (VmRSS), -1 when /proc is missing. */
static long rss_kb(void) {
  FILE *fp = fopen("/proc/self/status", "r");
  if (!fp) return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, fp))
    if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
  fclose(fp);
  return kb;
}

/* nl_st_release: a converted tensor's pages leave the process (its resident
 * size falls by the tensor's bytes) and the data reads back the same. */
static void test_release(void **state) {
  (void)state;
  char path[] = "/tmp/nl_st_release_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  const size_t n = 2u << 20; /* 8 MB of F32 */
  float *a = nl_xmalloc(n * sizeof *a);
  for (size_t i = 0; i < n; i++) a[i] = (float)(i % 1000) - 500.0f;
  nl_error err;
  nl_st_writer *w = nl_st_writer_new();
  int64_t sh[1] = {(int64_t)n}, s1[1] = {1};
  float one = 3.0f;
  assert_int_equal(nl_st_writer_add(w, "big", a, 1, sh, &err), 0);
  assert_int_equal(nl_st_writer_add(w, "small", &one, 1, s1, &err), 0);
  assert_int_equal(nl_st_writer_save(w, path, &err), 0);
  nl_st_writer_free(w);
  float *o = nl_xmalloc(n * sizeof *o);
  memset(o, 0, n * sizeof *o); /* resident before the measurement */
  nl_st_file f;
  assert_int_equal(nl_st_open(&f, path, &err), 0);
  const nl_st_tensor *t = nl_st_find(&f, "big");
  assert_non_null(t);
  nl_st_to_f32(t, o); /* touches every page of the mapping */
  long before = rss_kb();
  nl_st_release(&f, t);
  long after = rss_kb();
  /* 8 MB less; VmRSS lags the page tables by a few dozen pages (per-thread
   * counters), so three quarters of it is asked for (without the release: 0) */
  if (before > 0)
    if (before - after < (long)(n * sizeof(float) / 1024) * 3 / 4)
      fail_msg("resident %ld kB before the release, %ld after", before, after);
  nl_st_release(&f, nl_st_find(&f, "small")); /* under one page: nothing to drop */
  memset(o, 0, n * sizeof *o);
  nl_st_to_f32(t, o); /* read back from the file */
  assert_memory_equal(o, a, n * sizeof *a);
  nl_st_to_f32(nl_st_find(&f, "small"), o);
  assert_true(o[0] == 3.0f);
  nl_st_close(&f);
  /* an image held in memory is left alone */
  size_t size = image("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
  assert_int_equal(nl_st_parse(&f, "t", buf, size, &err), 0);
  nl_st_release(&f, nl_st_find(&f, "x"));
  nl_st_to_f32(nl_st_find(&f, "x"), o);
  unsigned char want[4] = {0x11, 0x11, 0x11, 0x11};
  assert_memory_equal(o, want, 4);
  nl_st_close(&f);
  unlink(path);
  free(a);
  free(o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid),
      cmocka_unit_test(test_f16_values),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_writer_roundtrip),
      cmocka_unit_test(test_release),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
