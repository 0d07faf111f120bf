/* Unit tests for the gnuplot pipe (src/plot). */
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

#include "base/fileio.h"
#include "plot/plot.h"

static void test_quote(void **state) {
  (void)state;
  nl_error err;
  char *q = nl_plot_quote("blocks.0.norm1", &err);
  assert_string_equal(q, "'blocks.0.norm1'");
  free(q);
  /* a quote cannot close the string: gnuplot doubles it inside '...' */
  q = nl_plot_quote("a'; system 'rm -rf x", &err);
  assert_string_equal(q, "'a''; system ''rm -rf x'");
  free(q);
  q = nl_plot_quote("back\\slash", &err); /* literal inside single quotes */
  assert_string_equal(q, "'back\\slash'");
  free(q);
  assert_null(nl_plot_quote("two\nlines", &err));
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "control character"));
  assert_null(nl_plot_quote("tab\there", &err));
  assert_null(nl_plot_quote("cr\r", &err));
}

static void test_range(void **state) {
  (void)state;
  double a, b;
  nl_error err;
  assert_int_equal(nl_plot_parse_range("-6:6", &a, &b, &err), 0);
  assert_true(a == -6.0 && b == 6.0);
  assert_int_equal(nl_plot_parse_range("0.5:1e1", &a, &b, &err), 0);
  assert_true(a == 0.5 && b == 10.0);
  assert_int_equal(nl_plot_parse_range("3:1", &a, &b, &err), -1);
  assert_int_equal(nl_plot_parse_range("1", &a, &b, &err), -1);
  assert_int_equal(nl_plot_parse_range("a:b", &a, &b, &err), -1);
  assert_int_equal(nl_plot_parse_range("0:inf", &a, &b, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
}

static int have_gnuplot(void) { return system("command -v gnuplot >/dev/null 2>&1") == 0; }

#define N 201
static float xs[N], ys[N], zs[N];
static void fill(void) {
  for (int i = 0; i < N; i++) {
    xs[i] = -5.0f + 10.0f * (float)i / (N - 1);
    ys[i] = tanhf(xs[i]);
    zs[i] = i == 100 ? NAN : 0.5f * xs[i];
  }
}

static void test_png(void **state) {
  (void)state;
  if (!have_gnuplot()) {
    skip();
    return;
  }
  fill();
  char dir[] = "/tmp/normlab-test-plot-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/out.png", dir);
  nl_plot_series s[2] = {{"tanh(x)", xs, ys, N, 0, 0}, {"it's 'quoted' \\ & {enh}_^", xs, zs, N, 1, 0}};
  nl_plot_opts o = {.term = NL_PLOT_PNG, .output = path, .title = "layer 'x'", .xlabel = "x"};
  nl_plot_result r;
  nl_error err;
  nl_error_clear(&err);
  int rc = nl_plot_draw(&o, s, 2, &r, &err);
  if (rc != 0) print_message("# %s\n", err.msg);
  assert_int_equal(rc, 0);
  assert_string_equal(r.path, path);
  size_t len;
  char *png = nl_read_file(path, &len, &err);
  assert_non_null(png);
  assert_true(len > 1000);
  assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);
  assert_memory_equal(png + 12, "IHDR", 4);
  /* width and height as asked (big-endian in IHDR) */
  const unsigned char *u = (const unsigned char *)png;
  assert_int_equal((u[16] << 24) | (u[17] << 16) | (u[18] << 8) | u[19], 900);
  assert_int_equal((u[20] << 24) | (u[21] << 16) | (u[22] << 8) | u[23], 600);
  free(png);
  unlink(path);
  rmdir(dir);
}

static void test_dumb(void **state) {
  (void)state;
  if (!have_gnuplot()) {
    skip();
    return;
  }
  fill();
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  nl_plot_series s = {"tanh_curve", xs, ys, N, 0, 0};
  nl_plot_opts o = {.term = NL_PLOT_DUMB, .title = "dumb title", .width = 70, .height = 20,
                    .text_out = mem};
  nl_plot_result r;
  nl_error err;
  assert_int_equal(nl_plot_draw(&o, &s, 1, &r, &err), 0);
  fclose(mem);
  assert_non_null(strstr(text, "dumb title"));
  assert_non_null(strstr(text, "tanh_curve"));
  /* the y axis spans tanh's range */
  assert_non_null(strstr(text, "-1"));
  int lines = 0;
  for (char *p = text; *p; p++) lines += *p == '\n';
  assert_true(lines >= 18 && lines <= 22);
  free(text);
}

/* Terminals of the installed gnuplot, asked directly. */
static int gnuplot_has_window(void) {
  FILE *p = popen("gnuplot -e \"set print '-'; print GPVAL_TERMINALS\" 2>/dev/null", "r");
  char buf[4096] = "";
  size_t n = fread(buf, 1, sizeof buf - 1, p);
  buf[n] = '\0';
  pclose(p);
  return strstr(buf, "qt") || strstr(buf, "wxt") || strstr(buf, "x11");
}

static void test_window_fallback(void **state) {
  (void)state;
  if (!have_gnuplot() || gnuplot_has_window()) {
    skip();
    return;
  }
  fill();
  char dir[] = "/tmp/normlab-test-plot-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/auto.png", dir);
  nl_plot_series s = {"f", xs, ys, N, 0, 0};
  nl_plot_result r;
  nl_error err;
  /* a window asked of a gnuplot without one: a clear error */
  nl_plot_opts o = {.term = NL_PLOT_WINDOW};
  assert_int_equal(nl_plot_draw(&o, &s, 1, &r, &err), -1);
  assert_int_equal(err.code, NL_EIO);
  assert_non_null(strstr(err.msg, "no window terminal"));
  /* automatic choice with $DISPLAY set falls back to a PNG file */
  const char *old = getenv("DISPLAY");
  char *keep = old ? strdup(old) : NULL;
  setenv("DISPLAY", ":99", 1);
  o.term = NL_PLOT_AUTO;
  o.output = path;
  int rc = nl_plot_draw(&o, &s, 1, &r, &err);
  if (keep) setenv("DISPLAY", keep, 1); else unsetenv("DISPLAY");
  free(keep);
  assert_int_equal(rc, 0);
  assert_int_equal(r.term, NL_PLOT_PNG);
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  unsigned char h[8];
  assert_int_equal(fread(h, 1, 8, fp), 8);
  fclose(fp);
  assert_memory_equal(h, "\x89PNG\r\n\x1a\n", 8);
  unlink(path);
  rmdir(dir);
}

static void test_errors(void **state) {
  (void)state;
  fill();
  nl_plot_series s = {"bad\nname", xs, ys, N, 0, 0};
  nl_plot_opts o = {.term = NL_PLOT_DUMB, .text_out = stdout};
  nl_plot_result r;
  nl_error err;
  assert_int_equal(nl_plot_draw(&o, &s, 1, &r, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  s.title = "ok";
  setenv("NORMLAB_GNUPLOT", "/nonexistent/gnuplot", 1);
  assert_int_equal(nl_plot_draw(&o, &s, 1, &r, &err), -1);
  unsetenv("NORMLAB_GNUPLOT");
  assert_int_equal(err.code, NL_EIO);
  assert_non_null(strstr(err.msg, "gnuplot not found"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quote), cmocka_unit_test(test_range), cmocka_unit_test(test_png),
      cmocka_unit_test(test_dumb),  cmocka_unit_test(test_window_fallback),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
