/* Unit tests for the live progress line (src/tui/progress.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/interrupt.h"
#include "tui/progress_line.h"

static void test_format(void **state) {
  (void)state;
  char buf[512];
  nl_progress p = {"evolve", "blocks.0.norm1", 25, 100, 10.0, "best 0.012", 0, NULL, NULL};
  nl_progress_format(&p, 100, buf, sizeof buf);
  /* a quarter done after 10 s: three quarters left take 30 s */
  assert_non_null(strstr(buf, "evolve blocks.0.norm1 ["));
  assert_non_null(strstr(buf, " 25/100  10.0 s  ETA 30.0 s  best 0.012"));
  const char *b = strchr(buf, '[');
  const char *e = strchr(buf, ']');
  int hashes = 0;
  for (const char *q = b + 1; q < e; q++) hashes += *q == '#';
  assert_int_equal(e - b - 1, 30);
  assert_int_equal(hashes, 30 / 4);
  assert_true(strlen(buf) <= 99);

  nl_progress q = {"extract", NULL, 7, 0, 125.0, NULL, 0, NULL, NULL}; /* unknown total */
  nl_progress_format(&q, 80, buf, sizeof buf);
  assert_string_equal(buf, "extract  7  2m05s");

  nl_progress r = {"train", "a-very-long-label-that-does-not-fit-anywhere", 1, 3, 4000.0, NULL, 0, NULL, NULL};
  nl_progress_format(&r, 40, buf, sizeof buf);
  assert_int_equal(strlen(buf), 39); /* cut to the terminal */
  assert_null(strchr(buf, '['));     /* no room for a bar */
}

static void test_line(void **state) {
  (void)state;
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  nl_progress_line pl;
  nl_progress_line_init(&pl, mem, 1, 80);
  nl_progress p = {"eval", NULL, 1, 10, 0.5, NULL, 0, NULL, NULL};
  nl_interrupt_clear();
  assert_int_equal(nl_progress_line_cb(&p, &pl), 0);
  p.done = 2; /* within 0.1 s of the last redraw: skipped */
  nl_progress_line_cb(&p, &pl);
  p.done = 10; /* the final state is always drawn */
  nl_progress_line_cb(&p, &pl);
  nl_progress_line_done(&pl);
  fclose(mem);
  assert_non_null(strstr(text, "\r"));
  assert_non_null(strstr(text, " 1/10 "));
  assert_null(strstr(text, " 2/10 "));
  assert_non_null(strstr(text, " 10/10 "));
  assert_string_equal(text + strlen(text) - 4, "\r\033[K");
  free(text);

  /* not a terminal: nothing drawn; Ctrl-C asks the job to stop */
  text = NULL;
  mem = open_memstream(&text, &len);
  nl_progress_line_init(&pl, mem, 0, 80);
  nl_interrupt_raise();
  assert_int_not_equal(nl_progress_line_cb(&p, &pl), 0);
  nl_interrupt_clear();
  nl_progress_line_done(&pl);
  fclose(mem);
  assert_int_equal(len, 0);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_line),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
