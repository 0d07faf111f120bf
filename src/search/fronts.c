/* The fronts CSV files: the record splitter, the rows writer and the one
 * reader of a fronts directory (see fronts.h). */
#define _POSIX_C_SOURCE 200809L
#include "search/fronts.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "base/mem.h"
#include "expr/expr.h"

/* ---- CSV ---- */

int nl_csv_record(const char **p, char ***fields, int *line) {
  const char *s = *p;
  char **v = NULL;
  int n = 0;
  for (;;) {
    size_t cap = 16, len = 0;
    char *f = nl_xmalloc(cap);
    if (*s == '"') {
      s++;
      for (;;) {
        if (!*s) {
          free(f);
          nl_csv_free(v, n);
          return -1;
        }
        if (*s == '"') {
          if (s[1] == '"') {
            s++;
          } else {
            s++;
            break;
          }
        }
        if (*s == '\n') (*line)++;
        if (len + 2 > cap) f = nl_xrealloc(f, cap *= 2);
        f[len++] = *s++;
      }
    }
    while (*s && *s != ',' && *s != '\n' && *s != '\r') {
      if (len + 2 > cap) f = nl_xrealloc(f, cap *= 2);
      f[len++] = *s++;
    }
    f[len] = '\0';
    v = nl_xrealloc(v, sizeof(char *) * (size_t)(n + 1));
    v[n++] = f;
    if (*s == ',') {
      s++;
      continue;
    }
    if (*s == '\r') s++;
    if (*s == '\n') s++;
    break;
  }
  *p = s;
  *fields = v;
  return n;
}

void nl_csv_free(char **v, int n) {
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

void nl_csv_field(FILE *fp, const char *s) {
  if (strpbrk(s, ",\"\n\r") == NULL) {
    fputs(s, fp);
    return;
  }
  fputc('"', fp);
  for (; *s; s++) {
    if (*s == '"') fputc('"', fp);
    fputc(*s, fp);
  }
  fputc('"', fp);
}

/* ---- writing ---- */

void nl_fronts_write_rows(FILE *fp, const char *layer, int seed, const nl_gp_member *m, int n) {
  /* Each expression is written simplified, with the nodes and FLOPs of
   * that form (fronts from nl_gp_run are simplified already; parts written
   * by older versions may not be). */
  nl_prog sp;
  nl_prog_init(&sp);
  nl_cost_opts rep = {0};
  for (int i = 0; i < n; i++) {
    nl_prog_copy(&sp, &m[i].prog);
    nl_simplify(&sp);
    nl_csv_field(fp, layer);
    fprintf(fp, ",%d,%d,%d,%d,%.17g,%.17g,%.17g,%.17g,", seed, m[i].rank, sp.len,
            nl_cost(&sp, &rep), m[i].train_fitness, m[i].val_fitness, m[i].val_mse, m[i].val_r2);
    char *e = nl_print(&sp, NL_PRINT_EXACT);
    fputc('"', fp);
    for (const char *s = e; *s; s++) {
      if (*s == '"') fputc('"', fp);
      fputc(*s, fp);
    }
    fprintf(fp, "\",%s\n", nl_gp_origin_name(m[i].origin));
    free(e);
  }
  nl_prog_free(&sp);
}

/* ---- reading ---- */

/* The columns of the format, in header order. */
static const char *const cols[] = {"layer",         "seed",        "rank",    "nodes",  "flops",
                                   "train_fitness", "val_fitness", "val_mse", "val_r2", "expr",
                                   "origin"};
enum {
  C_LAYER, C_SEED, C_RANK, C_NODES, C_FLOPS, C_TRAIN, C_VALF, C_MSE, C_R2, C_EXPR, C_ORIGIN,
  NCOLS
};

unsigned nl_front_col(const char *name) {
  for (int c = 0; c < NCOLS; c++)
    if (strcmp(cols[c], name) == 0) return 1u << c;
  return 0;
}

double nl_front_value(const nl_front_member *m, const char *col) {
  switch (nl_front_col(col)) {
    case 1u << C_SEED: return m->seed < 0 ? NAN : m->seed;
    case 1u << C_RANK: return m->rank < 0 ? NAN : m->rank;
    case 1u << C_NODES: return m->nodes < 0 ? NAN : m->nodes;
    case 1u << C_FLOPS: return m->flops < 0 ? NAN : m->flops;
    case 1u << C_TRAIN: return m->train_fitness;
    case 1u << C_VALF: return m->val_fitness;
    case 1u << C_MSE: return m->val_mse;
    case 1u << C_R2: return m->val_r2;
    default: return NAN;
  }
}

void nl_fronts_free(nl_fronts *f) {
  for (size_t i = 0; i < f->n; i++) {
    free(f->m[i].layer);
    free(f->m[i].expr);
  }
  free(f->m);
  memset(f, 0, sizeof *f);
}

static int number(const char *path, int line, int c, const char *v, double *out, nl_error *err) {
  char *end;
  double d = strtod(v, &end);
  if (end == v || *end)
    return nl_fail(err, NL_EINPUT, "%s:%d: %s '%s' is not a number", path, line, cols[c], v);
  *out = d;
  return 0;
}

/* The rows of one file (of `layer` only, unless NULL) appended to out. */
static int read_file(const char *path, const char *layer, nl_fronts *out, size_t *cap,
                     unsigned *has, nl_error *err) {
  char *text = nl_read_file(path, NULL, err);
  if (!text) return -1;
  const char *p = text;
  int line = 1;
  char **head;
  int nh = nl_csv_record(&p, &head, &line);
  if (nh < 0) {
    free(text);
    return nl_fail(err, NL_EINPUT, "%s:1: unterminated quote in the header", path);
  }
  int at_col[NCOLS]; /* field index of each column, -1 when absent */
  unsigned here = 0;
  for (int c = 0; c < NCOLS; c++) {
    at_col[c] = -1;
    for (int i = 0; i < nh; i++)
      if (strcmp(head[i], cols[c]) == 0) at_col[c] = i;
    if (at_col[c] >= 0) here |= 1u << c;
  }
  *has &= here;
  nl_csv_free(head, nh);
  int rc = 0;
  if (at_col[C_LAYER] < 0)
    rc = nl_fail(err, NL_EINPUT, "%s:1: no 'layer' column in the header", path);
  while (rc == 0 && *p) {
    line++;
    int at = line;
    char **f;
    int nf = nl_csv_record(&p, &f, &line);
    if (nf < 0) {
      rc = nl_fail(err, NL_EINPUT, "%s:%d: unterminated quote", path, at);
      break;
    }
    if (nf == 1 && f[0][0] == '\0') { /* blank line */
      nl_csv_free(f, nf);
      continue;
    }
    if (nf != nh) {
      rc = nl_fail(err, NL_EINPUT, "%s:%d: %d fields, the header has %d", path, at, nf, nh);
    } else if (!layer || strcmp(f[at_col[C_LAYER]], layer) == 0) {
      double v[NCOLS];
      for (int c = C_SEED; c <= C_R2 && rc == 0; c++) {
        v[c] = NAN;
        if (at_col[c] >= 0) rc = number(path, at, c, f[at_col[c]], &v[c], err);
      }
      if (rc == 0) {
        if (out->n == *cap) {
          *cap = *cap ? 2 * *cap : 64;
          out->m = nl_xrealloc(out->m, sizeof(nl_front_member) * *cap);
        }
        nl_front_member *m = &out->m[out->n++];
        m->layer = nl_xstrdup(f[at_col[C_LAYER]]);
        m->seed = isfinite(v[C_SEED]) ? (int)v[C_SEED] : -1;
        m->rank = isfinite(v[C_RANK]) ? (int)v[C_RANK] : -1;
        m->nodes = isfinite(v[C_NODES]) ? (int)v[C_NODES] : -1;
        m->flops = isfinite(v[C_FLOPS]) ? (int)v[C_FLOPS] : -1;
        m->train_fitness = v[C_TRAIN];
        m->val_fitness = v[C_VALF];
        m->val_mse = v[C_MSE];
        m->val_r2 = v[C_R2];
        m->expr = at_col[C_EXPR] >= 0 ? nl_xstrdup(f[at_col[C_EXPR]]) : NULL;
        /* files without the column (older ones) are the search's */
        m->origin = NL_GP_ORIGIN_SEARCH;
        if (at_col[C_ORIGIN] >= 0) {
          const char *o = f[at_col[C_ORIGIN]];
          int k = *o ? nl_gp_origin_parse(o) : NL_GP_ORIGIN_SEARCH;
          if (k < 0) {
            rc = nl_fail(err, NL_EINPUT, "%s:%d: origin '%s' is not search, seed or injected",
                         path, at, o);
            free(m->layer);
            free(m->expr);
            out->n--;
          } else {
            m->origin = k;
          }
        }
      }
    }
    nl_csv_free(f, nf);
  }
  free(text);
  return rc;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int nl_fronts_read(const char *dir, const char *layer, nl_fronts *out, nl_error *err) {
  memset(out, 0, sizeof *out);
  DIR *d = opendir(dir);
  if (!d) return nl_fail(err, NL_EINPUT, "%s: cannot read directory", dir);
  char **names = NULL;
  int nn = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    size_t len = strlen(de->d_name);
    if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 4, ".csv") != 0) continue;
    names = nl_xrealloc(names, sizeof(char *) * (size_t)(nn + 1));
    names[nn++] = nl_xstrdup(de->d_name);
  }
  closedir(d);
  if (nn > 1) qsort(names, (size_t)nn, sizeof(char *), cmp_name);
  size_t cap = 0;
  unsigned has = ~0u;
  int rc = 0;
  for (int i = 0; i < nn; i++) {
    if (rc == 0) {
      size_t len = strlen(dir) + strlen(names[i]) + 2;
      char *path = nl_xmalloc(len);
      snprintf(path, len, "%s/%s", dir, names[i]);
      rc = read_file(path, layer, out, &cap, &has, err);
      free(path);
    }
    free(names[i]);
  }
  free(names);
  out->has = nn ? has : 0;
  if (rc != 0) nl_fronts_free(out);
  return rc;
}

void nl_fronts_summarize(const nl_fronts *f, nl_front_summary **out, int *n) {
  *out = NULL;
  *n = 0;
  for (size_t i = 0; i < f->n; i++) {
    const nl_front_member *m = &f->m[i];
    nl_front_summary *s = NULL;
    for (int k = 0; k < *n && !s; k++)
      if (strcmp((*out)[k].layer, m->layer) == 0) s = &(*out)[k];
    if (!s) {
      *out = nl_xrealloc(*out, sizeof(nl_front_summary) * (size_t)(*n + 1));
      s = &(*out)[(*n)++];
      s->layer = nl_xstrdup(m->layer);
      s->members = 0;
      s->best_r2 = NAN;
      s->best_expr = NULL;
    }
    s->members++;
    if (!isnan(m->val_r2) && (isnan(s->best_r2) || m->val_r2 > s->best_r2)) {
      s->best_r2 = m->val_r2;
      free(s->best_expr);
      s->best_expr = m->expr ? nl_xstrdup(m->expr) : NULL;
    }
  }
}

void nl_front_summaries_free(nl_front_summary *s, int n) {
  for (int i = 0; i < n; i++) {
    free(s[i].layer);
    free(s[i].best_expr);
  }
  free(s);
}

int nl_fronts_select(const nl_front_member *m, size_t n, nl_gp_selection how) {
  if (n == 0) return -1;
  nl_gp_member *g = nl_xcalloc(n, sizeof *g);
  for (size_t i = 0; i < n; i++) {
    g[i].nodes = m[i].nodes;
    g[i].flops = m[i].flops;
    g[i].val_fitness = isnan(m[i].val_fitness) ? m[i].val_mse : m[i].val_fitness;
    if (isnan(g[i].val_fitness)) g[i].val_fitness = INFINITY;
    g[i].val_mse = isnan(m[i].val_mse) ? INFINITY : m[i].val_mse;
  }
  int k = nl_gp_select(g, (int)n, how);
  free(g);
  return k;
}

int nl_fronts_select_within(const nl_front_member *m, size_t n, double max_flops, int *cheapest,
                            nl_error *err) {
  nl_gp_member *g = nl_xcalloc(n ? n : 1, sizeof *g);
  int rc = 0;
  size_t k = 0;
  for (; k < n && rc == 0; k++) {
    nl_prog_init(&g[k].prog);
    if (!m[k].expr) {
      rc = nl_fail(err, NL_EINPUT, "front member %zu of %s has no expression", k + 1, m[k].layer);
    } else if (nl_parse(m[k].expr, 1, &g[k].prog, err) != 0) {
      nl_error_prefix(err, "front member %zu of %s", k + 1, m[k].layer);
      rc = -1;
    }
    g[k].nodes = m[k].nodes;
    g[k].val_fitness = isnan(m[k].val_fitness) ? m[k].val_mse : m[k].val_fitness;
    if (isnan(g[k].val_fitness)) g[k].val_fitness = INFINITY;
  }
  int best = rc == 0 ? nl_gp_select_within(g, (int)n, max_flops, cheapest) : -1;
  for (size_t i = 0; i < k; i++) nl_prog_free(&g[i].prog);
  free(g);
  return rc == 0 ? best : -2;
}
