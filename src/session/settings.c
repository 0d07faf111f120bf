/* The settings table (see settings.h). */
#define _POSIX_C_SOURCE 200809L
#include "session/settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot/plot.h"

static const nl_setting_def table[] = {
    {"seed", NL_SETTING_INT, 0, 2147483647L, NULL, NULL, NULL,
     "default --seed of evolve and train (unset: their own, 0)"},
    {"threads", NL_SETTING_INT, 1, 256, NULL, NULL, NULL,
     "default --threads of evolve and train (unset: normlab --threads)"},
    {"term", NL_SETTING_CHOICE, 0, 0, "auto|window|png|dumb", "auto", "GNUTERM",
     "default --term of plot; $GNUTERM when not set here"},
    {"timer", NL_SETTING_CHOICE, 0, 0, "on|off", "off", NULL,
     "print each command's wall time"},
    {NULL, 0, 0, 0, NULL, NULL, NULL, NULL},
};

const nl_setting_def *nl_setting_at(int i) {
  int n = (int)(sizeof table / sizeof table[0]) - 1;
  return i >= 0 && i < n ? &table[i] : NULL;
}

const nl_setting_def *nl_setting_find(const char *name) {
  for (const nl_setting_def *d = table; d->name; d++)
    if (strcmp(d->name, name) == 0) return d;
  return NULL;
}

static int choice_ok(const char *choices, const char *v) {
  size_t n = strlen(v);
  for (const char *p = choices; p && *p;) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && strncmp(p, v, n) == 0) return 1;
    p = bar ? bar + 1 : NULL;
  }
  return 0;
}

int nl_setting_check(const nl_setting_def *d, const char *value, nl_error *err) {
  if (d->type == NL_SETTING_INT) {
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (!*value || *end || errno == ERANGE || v < d->lo || v > d->hi)
      return nl_fail(err, NL_EINPUT, "%s: expects an integer from %ld to %ld, got '%s'",
                     d->name, d->lo, d->hi, value);
    return 0;
  }
  if (!choice_ok(d->choices, value))
    return nl_fail(err, NL_EINPUT, "%s: expects one of %s, got '%s'", d->name,
                   d->choices, value);
  return 0;
}

/* Edit distance of short names, for "did you mean". */
static int distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 30 || m > 30) return 99;
  int d[31][31];
  for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
      d[i][j] = c;
    }
  return d[n][m];
}

int nl_setting_unknown(const char *name, nl_error *err) {
  char names[256] = "";
  const char *near = NULL;
  int best = 3;
  for (const nl_setting_def *d = table; d->name; d++) {
    size_t k = strlen(names);
    snprintf(names + k, sizeof names - k, "%s%s", k ? ", " : "", d->name);
    int dd = distance(name, d->name);
    if (dd < best) best = dd, near = d->name;
  }
  if (near && best <= (strlen(name) > 4 ? 2 : 1))
    return nl_fail(err, NL_EINPUT, "unknown setting '%s'; did you mean '%s'? (settings: %s)", name,
                   near, names);
  return nl_fail(err, NL_EINPUT, "unknown setting '%s' (settings: %s)", name, names);
}

const char *nl_setting_env_value(const nl_setting_def *d, const char **raw) {
  if (raw) *raw = NULL;
  if (!d->env) return NULL;
  const char *v = getenv(d->env);
  if (!v || !*v) return NULL;
  if (strcmp(d->name, "term") == 0) { /* gnuplot's terminal names too */
    nl_plot_term t;
    if (nl_plot_term_parse(v, &t) == 0) return nl_plot_term_name(t);
  } else if (nl_setting_check(d, v, NULL) == 0) {
    return v;
  }
  if (raw) *raw = v;
  return NULL;
}
