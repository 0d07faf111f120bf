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

/* The status line above the footer: a running search, else `note` (what
 * the search reported when it ended) when not NULL. */
static void draw_status(int h, int w, const char *note) {
  char line[600];
  if (h < 4) return;
  if (!nl_job_line(line, sizeof line)) {
    if (!note || !*note) return;
    size_t n = strcspn(note, "\n");
    snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line - 1 ? n : sizeof line - 1), note);
  }
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
                                                   "front R², lowest first"};
static const char *const sort_names_ascii[SORT_COUNT] = {
    "layer order", "FLOPs/elem, highest first", "front R2, lowest first"};

/* R² as normlab spells it, or R2 where the terminal's locale cannot show
 * it (curses would draw its bytes as M- escapes). */
static int utf8_ok(void) { return MB_CUR_MAX > 1; }
static const char *r2_word(void) { return utf8_ok() ? "R²" : "R2"; }

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
                       int with_r2, int with_scores, int sort, const char *note) {
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
  char hdr[64];
  snprintf(hdr, sizeof hdr, "front %s max", r2_word());
  if (with_r2) mvaddstr(2, lw + fw + 4, hdr);
  snprintf(hdr, sizeof hdr, "  val %s   DyT %s bound %s", r2_word(), r2_word(), r2_word());
  if (with_scores) mvaddstr(2, lw + fw + 3 + rw, hdr);
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
  draw_status(h, w, note);
  attron(A_REVERSE);
  mvhline(h - 1, 0, ' ', w);
  char foot[160];
  snprintf(foot, sizeof foot, "Up/Down move  Enter detail  s sort (%s)  q back to the prompt",
           utf8_ok() ? sort_names[sort] : sort_names_ascii[sort]);
  put_clipped(h - 1, 1, w - 2, foot);
  attroff(A_REVERSE);
  refresh();
}

static void draw_detail(nl_session *s, const row *r, const char *note) {
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
    snprintf(f, sizeof f, "front: %d members, best validation %s %.4f", r->front->members,
             r2_word(), r->front->best_r2);
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
  draw_status(h, w, note);
  refresh();
}

/* The rows of the table, built from the session as it is now. */
typedef struct table {
  char **names;
  row *rows;
  int n;
  int with_scores;
  unsigned changes; /* the session's change count they were built at */
  char title[512];
} table;

static void table_free(table *t) {
  for (int i = 0; i < t->n; i++) {
    free(t->rows[i].info.tree);
    free(t->rows[i].info.error);
  }
  free(t->rows);
  nl_session_free_names(t->names);
  memset(t, 0, sizeof *t);
}

static int (*const sort_cmp[SORT_COUNT])(const void *, const void *) = {cmp_index, cmp_flops,
                                                                        cmp_r2};

static void table_build(table *t, nl_session *s, int sort) {
  memset(t, 0, sizeof *t);
  t->names = nl_session_layers(s);
  while (t->names[t->n]) t->n++;
  t->rows = nl_xcalloc((size_t)t->n + 1, sizeof(row));
  for (int i = 0; i < t->n; i++) {
    row *r = &t->rows[i];
    const nl_exprset_entry *e = nl_session_find(s, t->names[i]);
    r->layer = t->names[i];
    r->expr = e ? e->text : NULL;
    r->info.flops = -1;
    r->front = nl_session_front(s, t->names[i]);
    r->index = i;
    if (e) info_of(&e->prog, &r->info);
    r->scored = s->maps_path &&
                nl_wb_layer_scores(s, t->names[i], &r->val_r2, &r->dyt_r2, &r->bound_r2) == 0;
    t->with_scores |= r->scored;
  }
  if (sort != SORT_LAYER) qsort(t->rows, (size_t)t->n, sizeof(row), sort_cmp[sort]);
  char *sname = nl_session_name(s);
  snprintf(t->title, sizeof t->title, "normlab dashboard  %s  %d layers, %d expressions",
           sname ? sname : "(nothing loaded)", t->n, s->set.n);
  free(sname);
  t->changes = s->changes;
}

/* The row of a layer, or -1. */
static int row_of(const table *t, const char *layer) {
  for (int i = 0; layer && i < t->n; i++)
    if (strcmp(t->rows[i].layer, layer) == 0) return i;
  return -1;
}

int nl_dashboard_run(nl_ctx *ctx, nl_error *err) {
  nl_session *s = ctx->session;
  /* what the background search reports while the view is open is kept
   * here and printed on return (the screen is the view's) */
  char *notes = NULL;
  size_t notes_len = 0;
  FILE *nf = open_memstream(&notes, &notes_len);
  if (!nf) return nl_fail(err, NL_ENOMEM, "out of memory");
  nl_ctx quiet = *ctx;
  quiet.out = quiet.err = nf;
  quiet.tty = 0;

  setlocale(LC_CTYPE, "");
  SCREEN *scr = newterm(NULL, stdout, stdin);
  if (!scr) {
    fclose(nf);
    free(notes);
    return nl_fail(err, NL_EINPUT, "cannot start the full-screen view (TERM=%s)",
                   getenv("TERM") ? getenv("TERM") : "unset");
  }
  set_term(scr);
  cbreak();
  noecho();
  keypad(stdscr, TRUE);
  set_escdelay(25);
  curs_set(0);
  timeout(250); /* wake up to notice Ctrl-C and the search */
  int sort = SORT_LAYER;
  table t;
  table_build(&t, s, sort);
  int sel = 0, top = 0, detail = 0, done = 0;
  while (!done) {
    /* follow the background search: what it finished is loaded into the
     * session, and the table is built again from it */
    nl_wb_job_poll(&quiet);
    fflush(nf);
    if (s->changes != t.changes) {
      char *keep = sel < t.n ? nl_xstrdup(t.rows[sel].layer) : NULL;
      table_free(&t);
      table_build(&t, s, sort);
      int k = row_of(&t, keep);
      sel = k >= 0 ? k : (sel < t.n ? sel : (t.n ? t.n - 1 : 0));
      free(keep);
    }
    int h = getmaxy(stdscr), body = h - 5 > 1 ? h - 5 : 1;
    if (sel < top) top = sel;
    if (sel >= top + body) top = sel - body + 1;
    if (detail && t.n > 0)
      draw_detail(s, &t.rows[sel], notes);
    else
      draw_table(t.rows, t.n, sel, top, t.title, s->nfronts > 0, t.with_scores, sort, notes);
    int ch = getch();
    int n = t.n;
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
      qsort(t.rows, (size_t)n, sizeof(row), sort_cmp[sort]);
      sel = top = 0;
    } else if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
      detail = n > 0;
    }
  }
  curs_set(1);
  endwin();
  delscreen(scr);
  table_free(&t);
  fclose(nf);
  if (notes_len) {
    fputs(notes, ctx->err);
    fflush(ctx->err);
  }
  free(notes);
  return 0;
}

/* ---- the 'dashboard' command of the prompt ---- */

static const nl_opt no_opts[] = {{0}};

static int run_dashboard(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)a;
  if (!nl_wb_interactive())
    return nl_fail(err, NL_EINPUT, "the dashboard needs a terminal (interactive prompt)");
  return nl_dashboard_run(ctx, err);
}

const nl_cmd nl_cmd_dashboard = {
    .name = "dashboard",
    .summary = "full-screen table of the layers and their expressions",
    .help = "Arrow keys (or j/k) move, Enter shows a layer's detail, s changes the order,\n"
            "q (or Esc, Ctrl-C) returns to the prompt. A background search is followed:\n"
            "its progress shows above the footer, and the fronts it finishes fill the\n"
            "table as they arrive.",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_dashboard,
};
