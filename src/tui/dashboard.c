#include "tui/dashboard.h"

#include "app/workbench.h"
#include "base/interrupt.h"
#include "base/mem.h"
#include "session/job.h"

#include <curses.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_clipped(int y, int x, int width, const char *s);

/* Details of a layer's expression: cost per element (-1 unknown), a text
 * drawing of the tree and a problem with the expression (each NULL when
 * absent; freed with the row). */
typedef struct dash_info {
  int flops;
  char *tree;
  char *error;
} dash_info;

static void info_of(const nl_prog *p, dash_info *out) {
  out->tree = nl_wb_expr_tree(p);
  out->flops = nl_wb_expr_cost(p);
}

/* The status line above the footer (a running search). */
static void draw_status(int h, int w) {
  char line[600];
  if (h < 4 || !nl_job_line(line, sizeof line)) return;
  attron(A_BOLD);
  mvhline(h - 2, 0, ' ', w);
  put_clipped(h - 2, 1, w - 2, line);
  attroff(A_BOLD);
}

typedef struct row {
  const char *layer;
  const char *expr; /* NULL: none */
  dash_info info;
  const nl_front_summary *front; /* NULL: no front for this layer */
  int scored;                 /* fit figures known */
  double val_r2, dyt_r2, bound_r2;
  int index;                  /* position in layer order */
} row;

/* Sort orders of the table, cycled with 's'. */
enum { SORT_LAYER, SORT_FLOPS, SORT_R2, SORT_COUNT };
static const char *const sort_names[SORT_COUNT] = {"layer order", "FLOPs/elem, highest first",
                                                   "front R2, lowest first"};

static int cmp_index(const void *a, const void *b) {
  return (int)((const row *)a)->index - (int)((const row *)b)->index;
}

static int cmp_flops(const void *pa, const void *pb) {
  const row *a = pa, *b = pb;
  if (a->info.flops != b->info.flops) return b->info.flops - a->info.flops;
  return a->index - b->index;
}

static double r2_of(const row *r) {
  return r->front && !isnan(r->front->best_r2) ? r->front->best_r2 : 2.0; /* none: last */
}

static int cmp_r2(const void *pa, const void *pb) {
  const row *a = pa, *b = pb;
  double x = r2_of(a), y = r2_of(b);
  if (x != y) return x < y ? -1 : 1;
  return a->index - b->index;
}

static void put_clipped(int y, int x, int width, const char *s) {
  if (y < 0 || x < 0) return;
  if (width <= 0) return;
  mvaddnstr(y, x, s, width);
}

static void fig(char *f, size_t n, double v) {
  if (isnan(v))
    snprintf(f, n, "%8s", "-");
  else
    snprintf(f, n, "%8.4f", v);
}

static void draw_table(const row *rows, int n, int sel, int top, const char *title,
                       int with_r2, int with_scores, int sort) {
  int h, w;
  getmaxyx(stdscr, h, w);
  erase();
  attron(A_REVERSE);
  mvhline(0, 0, ' ', w);
  put_clipped(0, 1, w - 2, title);
  attroff(A_REVERSE);
  int lw = 22, fw = 10, rw = with_r2 ? 14 : 0, sw = with_scores ? 27 : 0;
  int ex = lw + fw + 3 + rw + sw;
  int ew = w - ex - 1;
  attron(A_BOLD);
  mvaddnstr(2, 1, "layer", lw);
  mvaddnstr(2, lw + 2, "FLOPs/elem", fw);
  if (with_r2) mvaddnstr(2, lw + fw + 4, "front R2 max", rw - 1);
  if (with_scores) mvaddnstr(2, lw + fw + 3 + rw, "  val R2   DyT R2 bound R2", sw - 1);
  if (ew > 0) mvaddnstr(2, ex, "expression", ew);
  attroff(A_BOLD);
  int body = h - 5;
  for (int i = 0; i < body && top + i < n; i++) {
    const row *r = &rows[top + i];
    int y = 3 + i;
    if (top + i == sel) {
      attron(A_REVERSE);
      mvhline(y, 0, ' ', w);
    }
    put_clipped(y, 1, lw, r->layer);
    char f[32];
    if (r->info.flops >= 0)
      snprintf(f, sizeof f, "%10d", r->info.flops);
    else
      snprintf(f, sizeof f, "%10s", "-");
    put_clipped(y, lw + 2, fw, f);
    if (with_r2) {
      if (r->front && !isnan(r->front->best_r2))
        snprintf(f, sizeof f, "%12.4f", r->front->best_r2);
      else
        snprintf(f, sizeof f, "%12s", "-");
      put_clipped(y, lw + fw + 3, rw - 1, f);
    }
    if (with_scores && r->scored) {
      char a[16], b[16], c[16], all[64];
      fig(a, sizeof a, r->val_r2);
      fig(b, sizeof b, r->dyt_r2);
      fig(c, sizeof c, r->bound_r2);
      snprintf(all, sizeof all, "%s %s %s", a, b, c);
      put_clipped(y, lw + fw + 3 + rw, sw - 1, all);
    }
    if (ew > 0) put_clipped(y, ex, ew, r->expr ? r->expr : "(LayerNorm)");
    if (top + i == sel) attroff(A_REVERSE);
  }
  if (n == 0) mvaddnstr(4, 2, "no layers: load a model, mappings or an expression set", w - 3);
  draw_status(h, w);
  attron(A_REVERSE);
  mvhline(h - 1, 0, ' ', w);
  char foot[160];
  snprintf(foot, sizeof foot, "Up/Down move  Enter detail  s sort (%s)  q back to the prompt",
           sort_names[sort]);
  put_clipped(h - 1, 1, w - 2, foot);
  attroff(A_REVERSE);
  refresh();
}

static void draw_detail(nl_session *s, const row *r) {
  int h, w;
  getmaxyx(stdscr, h, w);
  erase();
  attron(A_REVERSE);
  mvhline(0, 0, ' ', w);
  put_clipped(0, 1, w - 2, r->layer);
  attroff(A_REVERSE);
  int y = 2;
  mvaddnstr(y++, 1, "expression:", w - 2);
  const char *e = r->expr ? r->expr : "(LayerNorm: no expression set)";
  /* wrap the expression */
  size_t len = strlen(e), per = (size_t)(w > 6 ? w - 4 : 1);
  for (size_t off = 0; off < len && y < h - 2; off += per) mvaddnstr(y++, 3, e + off, (int)per);
  y++;
  if (r->info.flops >= 0 && y < h - 2) {
    char f[64];
    snprintf(f, sizeof f, "cost: %d FLOPs per element", r->info.flops);
    mvaddnstr(y++, 1, f, w - 2);
  }
  if (r->info.error && y < h - 2) mvaddnstr(y++, 1, r->info.error, w - 2);
  if (r->front && y < h - 2) {
    char f[96];
    snprintf(f, sizeof f, "front: %d members, best validation R2 %.4f", r->front->members,
             r->front->best_r2);
    mvaddnstr(y++, 1, f, w - 2);
    if (r->front->best_expr && y < h - 2) mvaddnstr(y++, 3, r->front->best_expr, w - 4);
    int room = h - 3 - y < 12 ? h - 3 - y : 12;
    char *plot = room >= 6 ? nl_wb_front_plot(s, r->layer, w - 4, room) : NULL;
    if (plot) {
      y++;
      const char *p = plot;
      while (*p && y < h - 2) {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        mvaddnstr(y++, 3, p, n < w - 4 ? n : w - 4);
        p = nl ? nl + 1 : p + n;
      }
      free(plot);
    }
  }
  if (r->info.tree) {
    y++;
    const char *p = r->info.tree;
    while (*p && y < h - 2) {
      const char *nl = strchr(p, '\n');
      int n = nl ? (int)(nl - p) : (int)strlen(p);
      mvaddnstr(y++, 3, p, n < w - 4 ? n : w - 4);
      p = nl ? nl + 1 : p + n;
    }
  }
  attron(A_REVERSE);
  mvhline(h - 1, 0, ' ', w);
  put_clipped(h - 1, 1, w - 2, "any key: back to the table  q: back to the prompt");
  attroff(A_REVERSE);
  draw_status(h, w);
  refresh();
}

int nl_dashboard_run(nl_session *s, nl_error *err) {
  char **names = nl_session_layers(s);
  int n = 0;
  while (names[n]) n++;
  row *rows = calloc((size_t)n + 1, sizeof(row));
  if (!rows) {
    nl_session_free_names(names);
    return nl_fail(err, NL_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    const nl_exprset_entry *e = nl_session_find(s, names[i]);
    rows[i].layer = names[i];
    rows[i].expr = e ? e->text : NULL;
    rows[i].info.flops = -1;
    rows[i].front = nl_session_front(s, names[i]);
    rows[i].index = i;
    if (e) info_of(&e->prog, &rows[i].info);
    rows[i].scored =
        s->maps_path &&
        nl_wb_layer_scores(s, names[i], &rows[i].val_r2, &rows[i].dyt_r2, &rows[i].bound_r2) == 0;
  }
  int with_scores = 0;
  for (int i = 0; i < n; i++) with_scores |= rows[i].scored;
  char title[512];
  char *sname = nl_session_name(s);
  snprintf(title, sizeof title, "normlab dashboard  %s  %d layers, %d expressions",
           sname ? sname : "(nothing loaded)", n, s->set.n);
  free(sname);

  setlocale(LC_CTYPE, "");
  SCREEN *scr = newterm(NULL, stdout, stdin);
  if (!scr) {
    for (int i = 0; i < n; i++) {
      free(rows[i].info.tree);
      free(rows[i].info.error);
    }
    free(rows);
    nl_session_free_names(names);
    return nl_fail(err, NL_EINPUT, "cannot start the full-screen view (TERM=%s)",
                   getenv("TERM") ? getenv("TERM") : "unset");
  }
  set_term(scr);
  cbreak();
  noecho();
  keypad(stdscr, TRUE);
  set_escdelay(25);
  curs_set(0);
  timeout(250); /* wake up to notice Ctrl-C */
  int sel = 0, top = 0, detail = 0, done = 0, sort = SORT_LAYER;
  while (!done) {
    int h = getmaxy(stdscr), body = h - 5 > 1 ? h - 5 : 1;
    if (sel < top) top = sel;
    if (sel >= top + body) top = sel - body + 1;
    if (detail && n > 0)
      draw_detail(s, &rows[sel]);
    else
      draw_table(rows, n, sel, top, title, s->nfronts > 0, with_scores, sort);
    int ch = getch();
    if (nl_interrupted()) { /* Ctrl-C leaves the view cleanly */
      nl_interrupt_clear();
      done = 1;
    } else if (ch == KEY_RESIZE || ch == ERR) {
      /* redrawn at the new size on the next pass */
    } else if (ch == 'q' || ch == 'Q') {
      done = 1;
    } else if (detail) {
      detail = 0;
    } else if (ch == 27) {
      done = 1;
    } else if (ch == KEY_UP || ch == 'k') {
      if (sel > 0) sel--;
    } else if (ch == KEY_DOWN || ch == 'j') {
      if (sel + 1 < n) sel++;
    } else if (ch == KEY_PPAGE) {
      sel = sel > body ? sel - body : 0;
    } else if (ch == KEY_NPAGE) {
      sel = sel + body < n ? sel + body : (n ? n - 1 : 0);
    } else if (ch == KEY_HOME || ch == 'g') {
      sel = 0;
    } else if (ch == KEY_END || ch == 'G') {
      sel = n ? n - 1 : 0;
    } else if (ch == 's') {
      sort = (sort + 1) % SORT_COUNT;
      qsort(rows, (size_t)n, sizeof(row),
            sort == SORT_FLOPS ? cmp_flops : sort == SORT_R2 ? cmp_r2 : cmp_index);
      sel = top = 0;
    } else if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
      detail = n > 0;
    }
  }
  curs_set(1);
  endwin();
  delscreen(scr);
  for (int i = 0; i < n; i++) {
    free(rows[i].info.tree);
    free(rows[i].info.error);
  }
  free(rows);
  nl_session_free_names(names);
  return 0;
}

/* ---- the 'dashboard' command of the prompt ---- */

static const nl_opt no_opts[] = {{0}};

static int run_dashboard(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)a;
  if (!nl_wb_interactive())
    return nl_fail(err, NL_EINPUT, "the dashboard needs a terminal (interactive prompt)");
  return nl_dashboard_run(ctx->session, err);
}

const nl_cmd nl_cmd_dashboard = {
    .name = "dashboard",
    .summary = "full-screen table of the layers and their expressions",
    .help = "Arrow keys (or j/k) move, Enter shows a layer's detail, s changes the order,\n"
            "q (or Esc, Ctrl-C) returns to the prompt.",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_dashboard,
};
