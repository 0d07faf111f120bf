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
#include "data/transform.h"
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

/* timm's eval geometry worked out by hand: ViT-B/16 (224, crop_pct 0.9)
 * on a 500x375 image: shorter side to floor(224 / 0.9) = 248, longer to
 * int(248 * 500 / 375) = 330, crop offsets round(12.0) = 12 and
 * round(53.0) = 53; at width 331 the left offset is round(53.5) = 54
 * (Python rounds half to even), at 333 round(54.5) = 54 too. */
static void test_eval_geometry(void **state) {
  (void)state;
  int rw, rh;
  nl_crop b;
  nl_eval_geometry(500, 375, 224, 0.9, &rw, &rh, &b);
  assert_int_equal(rw, 330);
  assert_int_equal(rh, 248);
  assert_int_equal(b.i, 12);
  assert_int_equal(b.j, 53);
  assert_int_equal(b.h, 224);
  nl_eval_geometry(331 * 375 / 248 + 1, 375, 224, 0.9, &rw, &rh, &b); /* 501: int(248 * 501 / 375) = 331 */
  assert_int_equal(rw, 331);
  assert_int_equal(b.j, 54);
  nl_eval_geometry(375, 504, 224, 0.9, &rw, &rh, &b); /* portrait: int(248 * 504 / 375) = 333 */
  assert_int_equal(rw, 248);
  assert_int_equal(rh, 333);
  assert_int_equal(b.i, 54);
  assert_int_equal(b.j, 12);
}

/* RandomResizedCrop's fallback, by hand: a 1200x20 image never fits a box
 * of area >= 0.08 * 24000 with ratio <= 4/3 (height >= 37 > 20), so after
 * 10 draws: ratio 60 > 4/3, h = 20, w = round(20 * 4/3) = 27, centred:
 * j = (1200 - 27) // 2 = 586. A square image keeps boxes inside it, within
 * the area and ratio ranges up to the rounding of w and h. */
static void test_rrc(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_stream(&r, 5, 0);
  nl_crop b;
  nl_rrc_params(1200, 20, 0.08, 1.0, 0.75, 4.0 / 3.0, &r, &b);
  assert_int_equal(b.h, 20);
  assert_int_equal(b.w, 27);
  assert_int_equal(b.i, 0);
  assert_int_equal(b.j, 586);
  nl_rrc_params(20, 900, 0.08, 1.0, 0.75, 4.0 / 3.0, &r, &b); /* tall: w = 20, h = round(20 / 0.75) = 27 */
  assert_int_equal(b.w, 20);
  assert_int_equal(b.h, 27);
  assert_int_equal(b.i, (900 - 27) / 2);
  for (int k = 0; k < 1000; k++) {
    nl_rrc_params(300, 300, 0.08, 1.0, 0.75, 4.0 / 3.0, &r, &b);
    assert_true(b.i >= 0 && b.j >= 0 && b.i + b.h <= 300 && b.j + b.w <= 300);
    double area = (double)b.h * b.w / 90000.0, ratio = (double)b.w / b.h;
    assert_true(area > 0.07 && area <= 1.0);
    assert_true(ratio > 0.74 && ratio < 1.35);
  }
}

/* PIL's resampling on a case worked by hand: a 4x1 grey ramp
 * 0, 100, 200, 255 halved with the bilinear filter stretched by 2 (support
 * 2): output pixel 0 has centre 1.0 and weights over x = 0, 1, 2 of
 * 0.75, 0.75, 0.25 (filter((x - 1 + 0.5) / 2)), normalised: 3/7, 3/7, 1/7
 * -> (0 * 3 + 100 * 3 + 200) / 7 = 71.43 -> 71; pixel 1, centre 3.0, over
 * x = 1, 2, 3: 0.25, 0.75, 0.75 -> (100 + 600 + 765) / 7 = 209.29 -> 209. */
static void test_resample(void **state) {
  (void)state;
  uint8_t px[4] = {0, 100, 200, 255};
  nl_image in = {4, 1, 1, px}, out;
  nl_resample(&in, 0, 0, 4, 1, 2, 1, NL_INTERP_BILINEAR, &out);
  assert_int_equal(out.px[0], 71);
  assert_int_equal(out.px[1], 209);
  nl_image_free(&out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matches_fixture),
      cmocka_unit_test(test_bad_files),
      cmocka_unit_test(test_eval_geometry),
      cmocka_unit_test(test_rrc),
      cmocka_unit_test(test_resample),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
