#define _POSIX_C_SOURCE 200809L
#include "plot/plot.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/mem.h"
#include "base/text.h"

char *nl_plot_quote(const char *s, nl_error *err) {
  size_t n = strlen(s);
  char *q = nl_xmalloc(2 * n + 3);
  size_t k = 0;
  q[k++] = '\'';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) {
      free(q);
      nl_fail(err, NL_EINPUT, "name '%.*s...' contains a control character (code %d)", (int)i, s,
              c);
      return NULL;
    }
    if (c == '\'') q[k++] = '\'';
    q[k++] = (char)c;
  }
  q[k++] = '\'';
  q[k] = '\0';
  return q;
}

int nl_plot_parse_range(const char *s, double *a, double *b, nl_error *err) {
  char *end;
  errno = 0;
  *a = strtod(s, &end);
  if (end == s || *end != ':')
    return nl_fail(err, NL_EINPUT, "range '%s': expected A:B, e.g. -6:6", s);
  const char *t = end + 1;
  *b = strtod(t, &end);
  if (end == t || *end || errno == ERANGE || !isfinite(*a) || !isfinite(*b))
    return nl_fail(err, NL_EINPUT, "range '%s': expected A:B with finite numbers", s);
  if (!(*a < *b)) return nl_fail(err, NL_EINPUT, "range '%s': A must be below B", s);
  return 0;
}

int nl_plot_term_parse(const char *name, nl_plot_term *t) {
  static const struct {
    const char *name;
    nl_plot_term term;
  } names[] = {{"auto", NL_PLOT_AUTO},     {"window", NL_PLOT_WINDOW}, {"png", NL_PLOT_PNG},
               {"dumb", NL_PLOT_DUMB},     {"qt", NL_PLOT_WINDOW},     {"wxt", NL_PLOT_WINDOW},
               {"x11", NL_PLOT_WINDOW},    {"aqua", NL_PLOT_WINDOW},   {"windows", NL_PLOT_WINDOW},
               {"pngcairo", NL_PLOT_PNG}};
  if (!name) return -1;
  while (*name == ' ' || *name == '\t') name++;
  size_t n = strcspn(name, " \t");
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strlen(names[i].name) == n && strncmp(names[i].name, name, n) == 0) {
      *t = names[i].term;
      return 0;
    }
  return -1;
}

const char *nl_plot_term_name(nl_plot_term t) {
  switch (t) {
    case NL_PLOT_WINDOW: return "window";
    case NL_PLOT_PNG: return "png";
    case NL_PLOT_DUMB: return "dumb";
    default: return "auto";
  }
}

static int env_size(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) return 0;
  char *end;
  long n = strtol(v, &end, 10);
  return *end || n < 1 || n > 10000 ? 0 : (int)n;
}

void nl_plot_text_size(int fd, int *width, int *height) {
  int cols = env_size("COLUMNS"), lines = env_size("LINES");
  const int fds[] = {fd, 1, 2};
  for (int i = 0; i < 3 && (!cols || !lines); i++) {
    struct winsize ws;
    if (fds[i] >= 0 && isatty(fds[i]) && ioctl(fds[i], TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 &&
        ws.ws_row > 0) {
      if (!cols) cols = ws.ws_col;
      if (!lines) lines = ws.ws_row;
    }
  }
  /* gnuplot's text is one column wider than the width it is given; the
   * last column and line stay free */
  *width = cols ? cols - 2 : 79;
  *height = lines ? lines - 1 : 24;
  /* gnuplot needs room for its axes and key */
  if (*width < 30) *width = 30;
  if (*height < 10) *height = 10;
  if (*width > 1000) *width = 1000;
  if (*height > 1000) *height = 1000;
}

/* The gnuplot program: $NORMLAB_GNUPLOT (formerly $NL_GNUPLOT), else "gnuplot" found on $PATH. */
static char *find_gnuplot(void) {
  const char *env = nl_getenv("NORMLAB_GNUPLOT", "NL_GNUPLOT");
  if (env && *env) return access(env, X_OK) == 0 ? nl_xstrdup(env) : NULL;
  const char *path = getenv("PATH");
  if (!path) path = "/usr/bin:/bin";
  char *dirs = nl_xstrdup(path);
  char *found = NULL;
  for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d && !found;
       d = strtok_r(NULL, ":", &save)) {
    size_t n = strlen(d) + 10;
    char *p = nl_xmalloc(n);
    snprintf(p, n, "%s/gnuplot", d);
    struct stat st;
    if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0)
      found = p;
    else
      free(p);
  }
  free(dirs);
  return found;
}

static void write_num(FILE *fp, float v) {
  if (isfinite(v))
    fprintf(fp, "%.9g", (double)v);
  else
    fputs("NaN", fp);
}

/* Run gnuplot with `script` on its standard input (through a pipe), its
 * messages collected in a temporary file for the error report. */
static int run_gnuplot(const char *prog, const char *script, size_t len, int persist,
                       char **output, nl_error *err) {
  char errpath[] = "/tmp/normlab-gnuplot-XXXXXX";
  int efd = mkstemp(errpath);
  if (efd < 0) return nl_fail(err, NL_EIO, "cannot create a temporary file: %s", strerror(errno));
  int in[2];
  if (pipe(in) != 0) {
    close(efd);
    unlink(errpath);
    return nl_fail(err, NL_EIO, "pipe: %s", strerror(errno));
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(efd);
    close(in[0]);
    close(in[1]);
    unlink(errpath);
    return nl_fail(err, NL_EIO, "fork: %s", strerror(errno));
  }
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(efd, 2);
    dup2(efd, 1);
    close(in[0]);
    close(in[1]);
    close(efd);
    if (persist)
      execl(prog, "gnuplot", "-persist", (char *)NULL);
    else
      execl(prog, "gnuplot", (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  FILE *fp = fdopen(in[1], "w");
  int werr = 0;
  if (fp) {
    werr = fwrite(script, 1, len, fp) != len;
    werr |= fclose(fp) != 0;
  } else {
    close(in[1]);
    werr = 1;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  char *msg = nl_read_file(errpath, NULL, NULL);
  if (output) {
    *output = msg;
    msg = NULL;
  }
  close(efd);
  unlink(errpath);
  int rc = 0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || werr) {
    /* keep the last lines of gnuplot's report */
    const char *m = output && *output ? *output : msg ? msg : "";
    size_t ml = strlen(m);
    if (ml > 600) m += ml - 600;
    rc = nl_fail(err, NL_EIO, "gnuplot failed (%s %d): %s",
                 WIFEXITED(status) ? "exit status" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), m);
    size_t el = strlen(err->msg);
    while (el && (err->msg[el - 1] == '\n' || err->msg[el - 1] == ' ')) err->msg[--el] = '\0';
  }
  free(msg);
  return rc;
}

/* Whether this gnuplot can open a window (qt, wxt or x11 terminal). */
static int has_window_terminal(const char *prog) {
  static const char q[] = "set print '-'\nprint GPVAL_TERMINALS\n";
  char *out = NULL;
  nl_error err;
  int ok = run_gnuplot(prog, q, sizeof q - 1, 0, &out, &err) == 0 && out &&
           (strstr(out, "qt") || strstr(out, "wxt") || strstr(out, "x11"));
  free(out);
  return ok;
}

static void fresh_png_name(char *out, size_t n) {
  for (int i = 1; i < 100000; i++) {
    snprintf(out, n, "normlab-plot-%d.png", i);
    if (!nl_file_exists(out)) return;
  }
  snprintf(out, n, "normlab-plot.png");
}

int nl_plot_draw(const nl_plot_opts *o, const nl_plot_series *s, int ns, nl_plot_result *res,
                 nl_error *err) {
  memset(res, 0, sizeof *res);
  char *prog = find_gnuplot();
  if (!prog)
    return nl_fail(err, NL_EIO,
                   "gnuplot not found on PATH (install it: apt-get install gnuplot-nox), "
                   "or set NORMLAB_GNUPLOT to the program");
  nl_plot_term term = o->term;
  if (term == NL_PLOT_AUTO && nl_plot_term_parse(getenv("GNUTERM"), &term) != 0)
    term = NL_PLOT_AUTO;
  if (term == NL_PLOT_AUTO) {
    const char *d = getenv("DISPLAY");
    term = d && *d && has_window_terminal(prog) ? NL_PLOT_WINDOW : NL_PLOT_PNG;
  }
  res->term = term;
  /* check every name before starting anything */
  char **titles = nl_xcalloc((size_t)ns + 1, sizeof(char *));
  char *qtitle = NULL, *qx = NULL, *qy = NULL, *qout = NULL, *textpath = NULL;
  char *buf = NULL;
  size_t blen = 0;
  FILE *sc = NULL;
  int rc = -1;
  for (int i = 0; i < ns; i++)
    if (!(titles[i] = nl_plot_quote(s[i].title ? s[i].title : "", err))) goto out;
  if (o->title && !(qtitle = nl_plot_quote(o->title, err))) goto out;
  if (o->xlabel && !(qx = nl_plot_quote(o->xlabel, err))) goto out;
  if (o->ylabel && !(qy = nl_plot_quote(o->ylabel, err))) goto out;
  if (term == NL_PLOT_PNG) {
    if (o->output)
      snprintf(res->path, sizeof res->path, "%s", o->output);
    else
      fresh_png_name(res->path, sizeof res->path);
    if (!(qout = nl_plot_quote(res->path, err))) goto out;
  } else if (term == NL_PLOT_DUMB) {
    char tmpl[] = "/tmp/normlab-plot-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) {
      nl_fail(err, NL_EIO, "cannot create a temporary file: %s", strerror(errno));
      goto out;
    }
    close(fd);
    textpath = nl_xstrdup(tmpl);
    if (!(qout = nl_plot_quote(textpath, err))) goto out;
  }
  sc = open_memstream(&buf, &blen);
  if (!sc) {
    nl_fail(err, NL_ENOMEM, "out of memory");
    goto out;
  }
  int w = o->width, h = o->height;
  if (term == NL_PLOT_PNG) {
    if (!w) w = 900;
    if (!h) h = 600;
    fprintf(sc,
            "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
            "  set terminal pngcairo noenhanced size %d,%d font ',11'\n"
            "} else {\n"
            "  set terminal png noenhanced size %d,%d\n"
            "}\n"
            "set output %s\n",
            w, h, w, h, qout);
  } else if (term == NL_PLOT_DUMB) {
    if (!w || !h) {
      int tw, th;
      nl_plot_text_size(o->text_out ? fileno(o->text_out) : 1, &tw, &th);
      if (!w) w = tw;
      if (!h) h = th;
    }
    fprintf(sc, "set terminal dumb noenhanced size %d,%d\nset output %s\n", w, h, qout);
  } else {
    fprintf(sc,
            "if (strstrt(GPVAL_TERMINALS, 'qt') > 0) {\n  set terminal qt noenhanced\n"
            "} else { if (strstrt(GPVAL_TERMINALS, 'wxt') > 0) {\n  set terminal wxt noenhanced\n"
            "} else { if (strstrt(GPVAL_TERMINALS, 'x11') > 0) {\n  set terminal x11 noenhanced\n"
            "} else {\n  print 'this gnuplot has no window terminal (qt, wxt, x11): "
            "use --term png or --term dumb'\n  exit status 3\n} } }\n");
  }
  fprintf(sc, "set encoding utf8\n"); /* titles carry UTF-8 (R²) */
  if (qtitle) fprintf(sc, "set title %s noenhanced\n", qtitle);
  if (qx) fprintf(sc, "set xlabel %s noenhanced\n", qx);
  if (qy) fprintf(sc, "set ylabel %s noenhanced\n", qy);
  fprintf(sc, "set grid\nset key below\n");
  int bars = 0;
  for (int i = 0; i < ns; i++) bars |= s[i].points == 3;
  if (bars) fprintf(sc, "set boxwidth 0.25\nset style fill solid 0.6 border -1\nset yrange [0:*]\n");
  if (o->xtics && o->nxtics) {
    fprintf(sc, "set xtics rotate by -45 (");
    for (size_t k = 0; k < o->nxtics; k++) {
      char *q = nl_plot_quote(o->xtics[k] ? o->xtics[k] : "", err);
      if (!q) goto out;
      fprintf(sc, "%s%s %zu", k ? ", " : "", q, k);
      free(q);
    }
    fprintf(sc, ")\nset xrange [-0.6:%zu.6]\n", o->nxtics - 1);
  }
  /* with marks, a margin inside the axes keeps points on the edges visible;
   * curves keep the exact x range */
  int marks = 0;
  for (int i = 0; i < ns; i++) marks |= s[i].points == 1 || s[i].points == 2 || s[i].points >= 4;
  if (marks) fprintf(sc, "set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\n");
  for (int i = 0; i < ns; i++) {
    fprintf(sc, "$d%d << EOD\n", i);
    for (size_t k = 0; k < s[i].n; k++) {
      write_num(sc, s[i].x[k]);
      fputc(' ', sc);
      write_num(sc, s[i].y[k]);
      fputc('\n', sc);
    }
    fprintf(sc, "EOD\n");
  }
  fprintf(sc, "plot ");
  for (int i = 0; i < ns; i++) {
    char big[48];
    snprintf(big, sizeof big, "points pt %d ps 2.5 lw 2", s[i].pt > 0 ? s[i].pt : 6);
    fprintf(sc, "%s$d%d using 1:2 with %s title %s noenhanced", i ? ", \\\n     " : "", i,
            s[i].points == 5   ? big
            : s[i].points == 4 ? "linespoints pt 7 ps 1.2 lw 1"
            : s[i].points == 3 ? "boxes"
            : s[i].points == 2 ? "points pt 7 ps 1.5"
            : s[i].points == 1 ? "points pt 7 ps 0.3"
                               : "lines lw 2",
            titles[i]);
  }
  fprintf(sc, "\n");
  if (term != NL_PLOT_WINDOW) fprintf(sc, "unset output\n");
  if (fclose(sc) != 0) {
    sc = NULL;
    nl_fail(err, NL_ENOMEM, "out of memory");
    goto out;
  }
  sc = NULL;
  rc = run_gnuplot(prog, buf, blen, term == NL_PLOT_WINDOW, NULL, err);
  if (rc == 0 && term == NL_PLOT_DUMB) {
    char *text = nl_read_file(textpath, NULL, err);
    if (!text) {
      rc = -1;
    } else {
      fputs(text, o->text_out ? o->text_out : stdout);
      free(text);
    }
  }
out:
  if (sc) fclose(sc);
  free(buf);
  free(prog);
  for (int i = 0; i < ns; i++) free(titles[i]);
  free(titles);
  free(qtitle);
  free(qx);
  free(qy);
  free(qout);
  if (textpath) {
    unlink(textpath);
    free(textpath);
  }
  return rc;
}
