/* Fashion-MNIST loader: the normalised first test images and labels against
 * the timm fixture, and clear errors for bad or missing files. */
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
#include <zlib.h>

#include "base/mem.h"
#include "data/dataset.h"
#include "model/safetensors.h"

static void test_matches_fixture(void **state) {
  (void)state;
  char path[4096];
  const char *dir = getenv("NL_FIXTURES");
  snprintf(path, sizeof path, "%s/vit_tiny_p4_fmnist_ref.safetensors", dir ? dir : "../shared/fixtures/timm");
  nl_error err;
  nl_dataset d;
  if (nl_dataset_load(&d, "fmnist:test", 0, 0, &err)) fail_msg("%s", err.msg);
  assert_int_equal(d.n, 10000);
  assert_int_equal(d.rows, 28);
  assert_int_equal(d.classes, 10);
  nl_st_file r;
  if (nl_st_open(&r, path, &err)) fail_msg("%s", err.msg);
  float *ref = nl_st_read_f32(&r, "inputs", NULL, &err);
  float *lab = nl_st_read_f32(&r, "labels", NULL, &err);
  assert_non_null(ref);
  assert_non_null(lab);
  float mean = 0.286f, std = 0.353f;
  float *x = nl_xmalloc(sizeof(float) * 8 * 784);
  nl_dataset_normalize(&d, 0, 8, 1, 1, &mean, &std, x);
  double w = 0;
  for (int i = 0; i < 8 * 784; i++) w = fmax(w, fabs(x[i] - ref[i]));
  printf("# first 8 normalised test images: max |difference| to the fixture %.3g\n", w);
  assert_true(w <= 1e-6);
  for (int i = 0; i < 8; i++) assert_int_equal(d.labels[i], (int)lab[i]);
  /* offset / limit */
  nl_dataset e;
  assert_int_equal(nl_dataset_load(&e, "fmnist:test", 3, 4, &err), 0);
  assert_int_equal(e.n, 4);
  assert_memory_equal(e.images, d.images + 3 * 784, 4 * 784);
  assert_int_equal(e.labels[0], d.labels[3]);
  nl_dataset_free(&e);
  assert_int_equal(nl_dataset_load(&e, "fmnist:test", 10001, 0, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_int_equal(nl_dataset_load(&e, "mnist:test", 0, 0, &err), -1);
  assert_non_null(strstr(err.msg, "unknown data spec"));
  free(x);
  free(ref);
  free(lab);
  nl_st_close(&r);
  nl_dataset_free(&d);
}

static void write_gz(const char *path, const unsigned char *b, size_t n) {
  gzFile g = gzopen(path, "wb");
  assert_non_null(g);
  assert_int_equal(gzwrite(g, b, (unsigned)n), (int)n);
  gzclose(g);
}

static void test_bad_files(void **state) {
  (void)state;
  char dir[] = "/tmp/nl_data_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char ip[256], lp[256];
  snprintf(ip, sizeof ip, "%s/t10k-images-idx3-ubyte.gz", dir);
  snprintf(lp, sizeof lp, "%s/t10k-labels-idx1-ubyte.gz", dir);
  setenv("NORMLAB_FMNIST_DIR", dir, 1);
  nl_error err;
  nl_dataset d;
  assert_int_equal(nl_dataset_load(&d, "fmnist:test", 0, 0, &err), -1);
  assert_non_null(strstr(err.msg, "apt-get install dataset-fashion-mnist"));
  unsigned char img[16 + 2 * 4] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2};
  unsigned char lab[8 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 7};
  write_gz(ip, img, sizeof img);
  write_gz(lp, lab, sizeof lab);
  assert_int_equal(nl_dataset_load(&d, "fmnist:test", 0, 0, &err), 0);
  assert_int_equal(d.n, 2);
  assert_int_equal(d.labels[1], 7);
  nl_dataset_free(&d);
  write_gz(ip, img, sizeof img - 1); /* truncated */
  assert_int_equal(nl_dataset_load(&d, "fmnist:test", 0, 0, &err), -1);
  assert_non_null(strstr(err.msg, "header announces 2 images"));
  img[3] = 1; /* wrong magic */
  write_gz(ip, img, sizeof img);
  assert_int_equal(nl_dataset_load(&d, "fmnist:test", 0, 0, &err), -1);
  assert_non_null(strstr(err.msg, "not an idx3 image file"));
  img[3] = 3;
  img[7] = 3; /* 3 images announced, 2 labels */
  unsigned char img3[16 + 3 * 4] = {0};
  memcpy(img3, img, 16);
  write_gz(ip, img3, sizeof img3);
  assert_int_equal(nl_dataset_load(&d, "fmnist:test", 0, 0, &err), -1);
  assert_non_null(strstr(err.msg, "has 3 images but"));
  unlink(ip);
  unlink(lp);
  rmdir(dir);
  unsetenv("NORMLAB_FMNIST_DIR");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matches_fixture),
      cmocka_unit_test(test_bad_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
