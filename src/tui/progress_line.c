#define _POSIX_C_SOURCE 200809L
#include "tui/progress_line.h"

#include <stdlib.h>
#include <string.h>

#include "base/interrupt.h"
#include "base/timer.h"

void nl_progress_line_init(nl_progress_line *pl, FILE *out, int tty, int width) {
  memset(pl, 0, sizeof *pl);
  pl->out = out;
  pl->tty = tty;
  if (width <= 0) {
    const char *c = getenv("COLUMNS");
    width = c ? atoi(c) : 0;
  }
  pl->width = width >= 20 ? width : 80;
  pl->last = -1.0;
}

static void fmt_seconds(double s, char *buf, size_t n) {
  if (s < 60)
    snprintf(buf, n, "%.1f s", s);
  else if (s < 3600)
    snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else
    snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s / 60 % 60);
}

void nl_progress_format(const nl_progress *p, int width, char *buf, size_t n) {
  char head[160], tail[256], el[32], eta[48];
  snprintf(head, sizeof head, "%s%s%s", p->task ? p->task : "", p->label ? " " : "",
           p->label ? p->label : "");
  fmt_seconds(p->elapsed, el, sizeof el);
  if (p->total > 0 && p->done > 0 && p->done < p->total) {
    char e[32];
    fmt_seconds(p->elapsed * (double)(p->total - p->done) / (double)p->done, e, sizeof e);
    snprintf(eta, sizeof eta, "  ETA %s", e);
  } else {
    eta[0] = '\0';
  }
  if (p->total > 0)
    snprintf(tail, sizeof tail, "  %ld/%ld  %s%s%s%s", p->done, p->total, el, eta,
             p->detail ? "  " : "", p->detail ? p->detail : "");
  else
    snprintf(tail, sizeof tail, "  %ld  %s%s%s", p->done, el, p->detail ? "  " : "",
             p->detail ? p->detail : "");
  /* a bar in the room left, between 10 and 30 cells */
  int room = width - 1 - (int)strlen(head) - (int)strlen(tail) - 3;
  int bar = room > 30 ? 30 : room;
  if (p->total > 0 && bar >= 10) {
    int fill = (int)((double)bar * (double)p->done / (double)p->total);
    if (fill > bar) fill = bar;
    char b[32];
    memset(b, '#', (size_t)fill);
    memset(b + fill, '.', (size_t)(bar - fill));
    b[bar] = '\0';
    snprintf(buf, n, "%s [%s]%s", head, b, tail);
  } else {
    snprintf(buf, n, "%s%s", head, tail);
  }
  /* never wider than the terminal: a wrapped line cannot be redrawn */
  if ((int)strlen(buf) > width - 1 && width > 1 && (size_t)(width - 1) < n) buf[width - 1] = '\0';
}

int nl_progress_line_cb(const nl_progress *p, void *user) {
  nl_progress_line *pl = user;
  if (pl->tty) {
    double now = nl_now();
    int final = p->total > 0 && p->done >= p->total;
    if (final || pl->last < 0 || now - pl->last >= 0.1) {
      char buf[512];
      nl_progress_format(p, pl->width, buf, sizeof buf);
      fprintf(pl->out, "\r%s\033[K", buf);
      fflush(pl->out);
      pl->last = now;
      pl->shown = 1;
    }
  }
  return nl_interrupted();
}

void nl_progress_line_done(nl_progress_line *pl) {
  if (pl->shown) {
    fputs("\r\033[K", pl->out);
    fflush(pl->out);
    pl->shown = 0;
  }
}
