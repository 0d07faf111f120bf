/* Closest names and environment variables (text.h). */
#include "base/text.h"

#include <stdlib.h>
#include <string.h>

int nl_edit_distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 64 || m > 64) return 99;
  /* optimal string alignment: Levenshtein plus the swap of two neighbours
   * ("jsno" is one edit from "json") */
  int d[65][65]; /* 17 kB of stack */
  for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < c)
        c = d[i - 2][j - 2] + 1;
      d[i][j] = c;
    }
  return d[n][m];
}

const char *nl_closest(const char *word, const char *const *cands, size_t n) {
  size_t len = strlen(word);
  int limit = len > 4 ? 2 : 1;
  const char *best = NULL, *prefixed = NULL;
  int bd = limit + 1, nprefixed = 0;
  for (size_t i = 0; i < n; i++) {
    if (!cands[i] || strcmp(cands[i], word) == 0) continue;
    int d = nl_edit_distance(word, cands[i]);
    if (d < bd) bd = d, best = cands[i];
    if (len >= 2 && strncmp(cands[i], word, len) == 0) {
      /* the same name twice (an option and its alias) is one candidate */
      if (!prefixed || strcmp(prefixed, cands[i]) != 0) nprefixed++;
      if (!prefixed) prefixed = cands[i];
    }
  }
  if (best) return best;
  return nprefixed == 1 ? prefixed : NULL;
}

const char *nl_getenv(const char *name, const char *old) {
  const char *v = getenv(name);
  if (!v && old) v = getenv(old);
  return v;
}

int nl_choice_index(const char *choices, const char *v) {
  size_t n = strlen(v);
  int i = 0;
  for (const char *p = choices; p && *p; i++) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && strncmp(p, v, n) == 0) return i;
    p = bar ? bar + 1 : NULL;
  }
  return -1;
}
