/* Mappings files: round trip, natural layer order, validation errors, the
 * importer on the timm reference points, and the extraction sampler. */
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
#include "model/extract.h"
#include "model/maps.h"
#include "model/safetensors.h"

static char tmpdir[64];

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/normlab-maps-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static char *tmp(const char *name) {
  static char buf[128];
  snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
  return buf;
}

static void test_natural_order(void **state) {
  (void)state;
  assert_true(nl_natural_cmp("blocks.2.norm1", "blocks.10.norm1") < 0);
  assert_true(nl_natural_cmp("blocks.10.norm1", "blocks.10.norm2") < 0);
  assert_true(nl_natural_cmp("blocks.11.norm2", "norm") < 0);
  assert_true(nl_natural_cmp("a007", "a7") == 0);
  assert_true(nl_natural_cmp("a", "a.b") < 0);
  assert_true(nl_natural_cmp("x9", "x10") < 0);
}

/* The fingerprint: the same for the same points in any layer order and
 * after a save and load, whatever the metadata; another for one changed
 * point, a renamed layer or one point less. */
static void test_fingerprint(void **state) {
  (void)state;
  float x[6] = {1, 2, 3, 4, 5, 6}, y[6] = {0.5f, -1, 2, 0, 3, 1};
  nl_maps a, b, c;
  nl_maps_init(&a);
  nl_maps_init(&b);
  nl_error err;
  assert_int_equal(nl_maps_add(&a, "blocks.2.norm1", x, y, 6, &err), 0);
  assert_int_equal(nl_maps_add(&a, "blocks.10.norm1", y, x, 6, &err), 0);
  assert_int_equal(nl_maps_add(&b, "blocks.10.norm1", y, x, 6, &err), 0);
  assert_int_equal(nl_maps_add(&b, "blocks.2.norm1", x, y, 6, &err), 0);
  const uint64_t fa = nl_maps_fingerprint(&a);
  assert_true(fa == nl_maps_fingerprint(&b));
  nl_maps_set_meta(&b, "model", "m.safetensors");
  assert_int_equal(nl_maps_save(&b, tmp("fp.safetensors"), &err), 0);
  assert_int_equal(nl_maps_load(&c, tmp("fp.safetensors"), &err), 0);
  assert_true(fa == nl_maps_fingerprint(&c));
  c.layers[1].y[4] = nextafterf(c.layers[1].y[4], 10.0f);
  assert_true(fa != nl_maps_fingerprint(&c));
  nl_maps_free(&c);
  nl_maps_free(&b);
  nl_maps_init(&b);
  assert_int_equal(nl_maps_add(&b, "blocks.2.norm2", x, y, 6, &err), 0);
  assert_int_equal(nl_maps_add(&b, "blocks.10.norm1", y, x, 6, &err), 0);
  assert_true(fa != nl_maps_fingerprint(&b));
  nl_maps_free(&b);
  nl_maps_init(&b);
  assert_int_equal(nl_maps_add(&b, "blocks.2.norm1", x, y, 5, &err), 0);
  assert_int_equal(nl_maps_add(&b, "blocks.10.norm1", y, x, 6, &err), 0);
  assert_true(fa != nl_maps_fingerprint(&b));
  nl_maps_free(&a);
  nl_maps_free(&b);
}

static void test_round_trip(void **state) {
  (void)state;
  const char *names[] = {"norm", "blocks.10.norm1", "blocks.2.norm2", "blocks.2.norm1"};
  nl_maps m;
  nl_maps_init(&m);
  nl_error err;
  nl_error_clear(&err);
  for (int i = 0; i < 4; i++) {
    float x[5], y[5];
    for (int k = 0; k < 5; k++) {
      x[k] = (float)(i * 10 + k);
      y[k] = -(float)(i * 10 + k) * 0.5f;
    }
    assert_int_equal(nl_maps_add(&m, names[i], x, y, (size_t)(i + 2), &err), 0);
  }
  float z = 0.0f;
  assert_int_equal(nl_maps_add(&m, "norm", &z, &z, 1, &err), -1);
  assert_non_null(strstr(err.msg, "duplicate"));
  assert_int_equal(nl_maps_add(&m, "empty", &z, &z, 0, &err), -1);
  float nan = NAN;
  assert_int_equal(nl_maps_add(&m, "bad", &z, &nan, 1, &err), -1);
  assert_non_null(strstr(err.msg, "y[0] is NaN"));
  nl_maps_set_meta(&m, "seed", "7");
  nl_maps_set_meta(&m, "seed", "42");
  nl_maps_set_meta(&m, "model", "m.safetensors");
  assert_int_equal(nl_maps_save(&m, tmp("a.safetensors"), &err), 0);
  nl_maps_free(&m);

  /* The file is plain safetensors: <layer>.x / <layer>.y, F32, 1-D. */
  nl_st_file f;
  assert_int_equal(nl_st_open(&f, tmp("a.safetensors"), &err), 0);
  assert_int_equal(f.n, 8);
  const nl_st_tensor *t = nl_st_find(&f, "blocks.10.norm1.y");
  assert_non_null(t);
  assert_int_equal(t->dtype, NL_DT_F32);
  assert_int_equal(t->ndim, 1);
  assert_int_equal(t->shape[0], 3);
  assert_string_equal(nl_st_meta_get(&f, "seed"), "42");
  nl_st_close(&f);

  assert_int_equal(nl_maps_load(&m, tmp("a.safetensors"), &err), 0);
  assert_int_equal(m.nlayers, 4);
  const char *order[] = {"blocks.2.norm1", "blocks.2.norm2", "blocks.10.norm1", "norm"};
  const int src[] = {3, 2, 1, 0};
  for (int i = 0; i < 4; i++) {
    assert_string_equal(m.layers[i].name, order[i]);
    assert_int_equal(m.layers[i].n, (size_t)(src[i] + 2));
    for (size_t k = 0; k < m.layers[i].n; k++) {
      assert_true(m.layers[i].x[k] == (float)(src[i] * 10 + (int)k));
      assert_true(m.layers[i].y[k] == -(float)(src[i] * 10 + (int)k) * 0.5f);
    }
  }
  assert_string_equal(nl_maps_get_meta(&m, "seed"), "42");
  assert_string_equal(nl_maps_get_meta(&m, "model"), "m.safetensors");
  assert_null(nl_maps_get_meta(&m, "nothing"));
  assert_int_equal(nl_maps_index(&m, "norm"), 3);
  assert_null(nl_maps_find(&m, "blocks.3.norm1"));
  nl_maps_free(&m);
  nl_maps_init(&m);
  assert_int_equal(nl_maps_save(&m, tmp("empty.safetensors"), &err), -1);
}

/* Write a file through the safetensors writer with the given tensors. */
typedef struct {
  const char *name;
  nl_dtype dt;
  int ndim;
  int64_t shape[2];
  float fill;
} spec;

static void write_file(const char *path, const spec *s, int n) {
  nl_st_writer *w = nl_st_writer_new();
  nl_error err;
  for (int i = 0; i < n; i++) {
    size_t numel = 1;
    for (int d = 0; d < s[i].ndim; d++) numel *= (size_t)s[i].shape[d];
    float *v = nl_xcalloc(numel ? numel : 1, sizeof(float));
    for (size_t k = 0; k < numel; k++) v[k] = (float)k;
    if (numel) v[numel - 1] = s[i].fill;
    if (s[i].dt == NL_DT_F32) {
      assert_int_equal(nl_st_writer_add(w, s[i].name, v, s[i].ndim, s[i].shape, &err), 0);
    } else {
      assert_int_equal(s[i].dt, NL_DT_I32);
      int32_t *iv = nl_xcalloc(numel ? numel : 1, sizeof(int32_t));
      assert_int_equal(
          nl_st_writer_add_raw(w, s[i].name, NL_DT_I32, iv, s[i].ndim, s[i].shape, &err), 0);
      free(iv);
    }
    free(v);
  }
  nl_st_writer_meta(w, "kind", "test");
  assert_int_equal(nl_st_writer_save(w, path, &err), 0);
  nl_st_writer_free(w);
}

static void expect_error(const spec *s, int n, const char *want1, const char *want2) {
  write_file(tmp("bad.safetensors"), s, n);
  nl_maps m;
  nl_error err;
  nl_error_clear(&err);
  assert_int_equal(nl_maps_load(&m, tmp("bad.safetensors"), &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  if (!strstr(err.msg, want1) || !strstr(err.msg, want2) || !strstr(err.msg, "bad.safetensors"))
    fail_msg("error '%s' lacks '%s' / '%s'", err.msg, want1, want2);
  assert_int_equal(m.nlayers, 0);
}

static void test_load_errors(void **state) {
  (void)state;
  const spec mismatched[] = {{"a.x", NL_DT_F32, 1, {4, 0}, 1}, {"a.y", NL_DT_F32, 1, {5, 0}, 1}};
  expect_error(mismatched, 2, "'a.x'", "differ in length");
  const spec nan[] = {{"a.x", NL_DT_F32, 1, {4, 0}, 1}, {"a.y", NL_DT_F32, 1, {4, 0}, NAN}};
  expect_error(nan, 2, "'a.y'", "NaN at index 3");
  const spec inf[] = {{"a.x", NL_DT_F32, 1, {4, 0}, -INFINITY}, {"a.y", NL_DT_F32, 1, {4, 0}, 0}};
  expect_error(inf, 2, "'a.x'", "infinity at index 3");
  const spec dtype[] = {{"a.x", NL_DT_F32, 1, {4, 0}, 1}, {"a.y", NL_DT_I32, 1, {4, 0}, 0}};
  expect_error(dtype, 2, "'a.y'", "I32");
  const spec shape[] = {{"a.x", NL_DT_F32, 2, {2, 2}, 1}, {"a.y", NL_DT_F32, 1, {4, 0}, 0}};
  expect_error(shape, 2, "'a.x'", "1-D");
  const spec empty[] = {{"a.x", NL_DT_F32, 1, {0, 0}, 1}, {"a.y", NL_DT_F32, 1, {0, 0}, 0}};
  expect_error(empty, 2, "'a.", "empty");
  const spec partner[] = {{"a.x", NL_DT_F32, 1, {4, 0}, 1}, {"b.y", NL_DT_F32, 1, {4, 0}, 0}};
  expect_error(partner, 2, "no partner", ".y'");
  const spec stray[] = {{"a.x", NL_DT_F32, 1, {4, 0}, 1},
                        {"a.y", NL_DT_F32, 1, {4, 0}, 0},
                        {"weights", NL_DT_F32, 1, {4, 0}, 0}};
  expect_error(stray, 3, "'weights'", "not a mapping tensor");
  expect_error(NULL, 0, "no mapping layers", "");
}

/* The importer on the reference file: every map_x./map_y. pair becomes a
 * layer with exactly the stored values; other tensors are skipped. */
static void test_import_reference(void **state) {
  (void)state;
  const char *dir = getenv("NL_FIXTURES");
  char path[512];
  snprintf(path, sizeof path, "%s/vit_small_p7_fmnist_ref.safetensors", dir ? dir : "");
  if (access(path, R_OK) != 0) skip();
  nl_maps m;
  nl_error err;
  nl_maps_import_opts o = {"map_x.", NULL, "map_y.", NULL};
  assert_int_equal(nl_maps_import(&m, path, &o, &err), 0);
  assert_int_equal(m.nlayers, 25);
  assert_string_equal(m.layers[0].name, "blocks.0.norm1");
  assert_string_equal(m.layers[23].name, "blocks.11.norm2");
  assert_string_equal(m.layers[24].name, "norm");
  assert_string_equal(nl_maps_get_meta(&m, "imported_from"), path);
  nl_st_file f;
  assert_int_equal(nl_st_open(&f, path, &err), 0);
  for (int i = 0; i < m.nlayers; i++) {
    char name[96];
    size_t n;
    snprintf(name, sizeof name, "map_y.%s", m.layers[i].name);
    float *y = nl_st_read_f32(&f, name, &n, &err);
    assert_non_null(y);
    assert_int_equal(n, 50000);
    assert_int_equal(m.layers[i].n, 50000);
    assert_memory_equal(y, m.layers[i].y, n * sizeof(float));
    free(y);
  }
  nl_st_close(&f);
  /* Round trip through the mappings format. */
  assert_int_equal(nl_maps_save(&m, tmp("ref.safetensors"), &err), 0);
  nl_maps back;
  assert_int_equal(nl_maps_load(&back, tmp("ref.safetensors"), &err), 0);
  assert_int_equal(back.nlayers, 25);
  for (int i = 0; i < m.nlayers; i++) {
    assert_string_equal(back.layers[i].name, m.layers[i].name);
    assert_memory_equal(back.layers[i].x, m.layers[i].x, m.layers[i].n * sizeof(float));
  }
  nl_maps_free(&back);
  nl_maps_free(&m);
  /* Naming that matches nothing, and x and y namings that coincide. */
  nl_maps_import_opts none = {"nothing.", NULL, "map_y.", NULL};
  assert_int_equal(nl_maps_import(&m, path, &none, &err), -1);
  assert_non_null(strstr(err.msg, "no partner"));
  nl_maps_import_opts same = {"map_x.", NULL, "map_x.", NULL};
  assert_int_equal(nl_maps_import(&m, path, &same, &err), -1);
  assert_non_null(strstr(err.msg, "must differ"));
}

/* The sampler: positions uniform over the population (chi-square over 100
 * cells, 200,000 draws: 99 degrees of freedom, mean 99, SD 14; the bound
 * 170 is 5 SD), reproducible, and independent between layers. */
static void test_sampler(void **state) {
  (void)state;
  const long n = 200000;
  uint64_t *a = nl_xmalloc(sizeof *a * (size_t)n), *b = nl_xmalloc(sizeof *b * (size_t)n);
  nl_extract_sample(42, 3, 100, n, a);
  long count[100] = {0};
  for (long k = 0; k < n; k++) {
    assert_true(a[k] < 100);
    count[a[k]]++;
  }
  double chi2 = 0, e = n / 100.0;
  for (int c = 0; c < 100; c++) chi2 += (count[c] - e) * (count[c] - e) / e;
  assert_true(chi2 < 170);
  nl_extract_sample(42, 3, 100, n, b);
  assert_memory_equal(a, b, sizeof *a * (size_t)n);
  nl_extract_sample(42, 4, 100, n, b);
  long same = 0;
  for (long k = 0; k < n; k++) same += a[k] == b[k];
  assert_true(same < n / 50); /* ~1 % by chance */
  /* A population above 2^32 is reached too. */
  nl_extract_sample(1, 0, (uint64_t)1 << 40, 1000, a);
  int high = 0;
  for (int k = 0; k < 1000; k++) high += a[k] >= ((uint64_t)1 << 39);
  assert_true(high > 400 && high < 600);
  free(a);
  free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_natural_order),   cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_load_errors),     cmocka_unit_test(test_import_reference),
      cmocka_unit_test(test_sampler),         cmocka_unit_test(test_fingerprint),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
