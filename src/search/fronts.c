/* Summaries of the Pareto fronts in a session's fronts directory. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/session.h"
#include "base/fileio.h"
#include "base/mem.h"

void nl_sess_fronts_free(nl_sess_front *f, int n) {
  for (int i = 0; i < n; i++) {
    free(f[i].layer);
    free(f[i].best_expr);
  }
  free(f);
}

const nl_sess_front *nl_session_front(const nl_session *s, const char *layer) {
  for (int i = 0; i < s->nfronts; i++)
    if (strcmp(s->fronts[i].layer, layer) == 0) return &s->fronts[i];
  return NULL;
}

/* Split one CSV record starting at *p (RFC 4180: quoted fields may hold
 * commas, doubled quotes and newlines). Fields are written into `fields`
 * (owned by the caller afterwards). Returns the number of fields, -1 on an
 * unterminated quote; *p moves past the record. */
static int csv_record(const char **p, char ***fields, int *line) {
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
          for (int i = 0; i < n; i++) free(v[i]);
          free(v);
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

static void free_fields(char **v, int n) {
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

static int col(char **head, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(head[i], name) == 0) return i;
  return -1;
}

static int read_csv(const char *path, nl_sess_front **out, int *nout, nl_error *err) {
  char *text = nl_read_file(path, NULL, err);
  if (!text) return -1;
  const char *p = text;
  int line = 1;
  char **head;
  int nh = csv_record(&p, &head, &line);
  int rc = 0;
  if (nh < 0) {
    free(text);
    return nl_fail(err, NL_EINPUT, "%s:1: unterminated quote in the header", path);
  }
  int c_layer = col(head, nh, "layer"), c_r2 = col(head, nh, "val_r2"),
      c_expr = col(head, nh, "expr");
  if (c_layer < 0) {
    free_fields(head, nh);
    free(text);
    return nl_fail(err, NL_EINPUT, "%s:1: no 'layer' column in the header", path);
  }
  while (*p) {
    line++;
    int at = line;
    char **f;
    int nf = csv_record(&p, &f, &line);
    if (nf < 0) {
      rc = nl_fail(err, NL_EINPUT, "%s:%d: unterminated quote", path, at);
      break;
    }
    if (nf == 1 && f[0][0] == '\0') { /* blank line */
      free_fields(f, nf);
      continue;
    }
    if (nf != nh) {
      free_fields(f, nf);
      rc = nl_fail(err, NL_EINPUT, "%s:%d: %d fields, the header has %d", path, at, nf, nh);
      break;
    }
    double r2 = NAN;
    if (c_r2 >= 0) {
      char *end;
      r2 = strtod(f[c_r2], &end);
      if (end == f[c_r2] || *end) {
        rc = nl_fail(err, NL_EINPUT, "%s:%d: val_r2 '%s' is not a number", path, at, f[c_r2]);
        free_fields(f, nf);
        break;
      }
    }
    nl_sess_front *fr = NULL;
    for (int i = 0; i < *nout; i++)
      if (strcmp((*out)[i].layer, f[c_layer]) == 0) fr = &(*out)[i];
    if (!fr) {
      *out = nl_xrealloc(*out, sizeof(nl_sess_front) * (size_t)(*nout + 1));
      fr = &(*out)[(*nout)++];
      fr->layer = nl_xstrdup(f[c_layer]);
      fr->members = 0;
      fr->best_r2 = NAN;
      fr->best_expr = NULL;
    }
    fr->members++;
    if (!isnan(r2) && (isnan(fr->best_r2) || r2 > fr->best_r2)) {
      fr->best_r2 = r2;
      free(fr->best_expr);
      fr->best_expr = c_expr >= 0 ? nl_xstrdup(f[c_expr]) : NULL;
    }
    free_fields(f, nf);
  }
  free_fields(head, nh);
  free(text);
  return rc;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int nl_sess_fronts_read(const char *dir, nl_sess_front **out, int *n, nl_error *err) {
  *out = NULL;
  *n = 0;
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
  qsort(names, (size_t)nn, sizeof(char *), cmp_name);
  int rc = 0;
  for (int i = 0; i < nn; i++) {
    if (rc == 0) {
      size_t len = strlen(dir) + strlen(names[i]) + 2;
      char *path = nl_xmalloc(len);
      snprintf(path, len, "%s/%s", dir, names[i]);
      rc = read_csv(path, out, n, err);
      free(path);
    }
    free(names[i]);
  }
  free(names);
  if (rc != 0) {
    nl_sess_fronts_free(*out, *n);
    *out = NULL;
    *n = 0;
  }
  return rc;
}

/* Visit every record of every CSV file of dir: fn(path, line, header,
 * nh, fields, nf, user) returns 0 to go on, -1 to stop with its error. */
typedef int (*row_fn)(const char *path, int line, char **head, int nh, char **f, int nf,
                      void *user, nl_error *err);

static int each_row(const char *dir, row_fn fn, void *user, nl_error *err) {
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
  qsort(names, (size_t)nn, sizeof(char *), cmp_name);
  int rc = 0;
  for (int i = 0; i < nn && rc == 0; i++) {
    size_t plen = strlen(dir) + strlen(names[i]) + 2;
    char *path = nl_xmalloc(plen);
    snprintf(path, plen, "%s/%s", dir, names[i]);
    char *text = nl_read_file(path, NULL, err);
    if (!text) {
      rc = -1;
    } else {
      const char *p = text;
      int line = 1;
      char **head;
      int nh = csv_record(&p, &head, &line);
      if (nh < 0) {
        rc = nl_fail(err, NL_EINPUT, "%s:1: unterminated quote in the header", path);
      } else {
        while (*p && rc == 0) {
          line++;
          int at = line;
          char **f;
          int nf = csv_record(&p, &f, &line);
          if (nf < 0) {
            rc = nl_fail(err, NL_EINPUT, "%s:%d: unterminated quote", path, at);
            break;
          }
          if (!(nf == 1 && f[0][0] == '\0')) rc = fn(path, at, head, nh, f, nf, user, err);
          free_fields(f, nf);
        }
        free_fields(head, nh);
      }
      free(text);
    }
    free(path);
  }
  for (int i = 0; i < nn; i++) free(names[i]);
  free(names);
  return rc;
}

typedef struct points {
  const char *layer, *xcol, *ycol;
  float *x, *y;
  size_t n, cap;
} points;

static int number(const char *path, int line, const char *col, const char *v, float *out,
                  nl_error *err) {
  char *end;
  double d = strtod(v, &end);
  if (end == v || *end)
    return nl_fail(err, NL_EINPUT, "%s:%d: %s '%s' is not a number", path, line, col, v);
  *out = (float)d;
  return 0;
}

static int add_point(const char *path, int line, char **head, int nh, char **f, int nf,
                     void *user, nl_error *err) {
  points *pt = user;
  int cl = col(head, nh, "layer"), cx = col(head, nh, pt->xcol), cy = col(head, nh, pt->ycol);
  if (cl < 0 || cx < 0 || cy < 0)
    return nl_fail(err, NL_EINPUT, "%s: the header lacks a '%s' column", path,
                   cl < 0 ? "layer" : cx < 0 ? pt->xcol : pt->ycol);
  if (nf != nh)
    return nl_fail(err, NL_EINPUT, "%s:%d: %d fields, the header has %d", path, line, nf, nh);
  if (strcmp(f[cl], pt->layer) != 0) return 0;
  if (pt->n == pt->cap) {
    pt->cap = pt->cap ? pt->cap * 2 : 64;
    pt->x = nl_xrealloc(pt->x, sizeof(float) * pt->cap);
    pt->y = nl_xrealloc(pt->y, sizeof(float) * pt->cap);
  }
  if (number(path, line, pt->xcol, f[cx], &pt->x[pt->n], err) != 0 ||
      number(path, line, pt->ycol, f[cy], &pt->y[pt->n], err) != 0)
    return -1;
  pt->n++;
  return 0;
}

int nl_sess_front_points(const char *dir, const char *layer, const char *xcol, const char *ycol,
                         float **x, float **y, size_t *n, nl_error *err) {
  points pt = {layer, xcol, ycol, NULL, NULL, 0, 0};
  int rc = each_row(dir, add_point, &pt, err);
  if (rc == 0 && pt.n == 0)
    rc = nl_fail(err, NL_EINPUT, "%s: no front members for layer '%s'", dir, layer);
  if (rc != 0) {
    free(pt.x);
    free(pt.y);
    return -1;
  }
  *x = pt.x;
  *y = pt.y;
  *n = pt.n;
  return 0;
}

/* ---- whole members ---- */

typedef struct members {
  const char *layer;
  nl_sess_member *m;
  size_t n, cap;
} members;

static int num_col(const char *path, int line, char **head, int nh, char **f, const char *name,
                   double *out, nl_error *err) {
  int c = col(head, nh, name);
  *out = NAN;
  if (c < 0) return 0;
  char *end;
  double d = strtod(f[c], &end);
  if (end == f[c] || *end)
    return nl_fail(err, NL_EINPUT, "%s:%d: %s '%s' is not a number", path, line, name, f[c]);
  *out = d;
  return 0;
}

static int add_member(const char *path, int line, char **head, int nh, char **f, int nf,
                      void *user, nl_error *err) {
  members *ms = user;
  int cl = col(head, nh, "layer"), ce = col(head, nh, "expr");
  if (cl < 0 || ce < 0)
    return nl_fail(err, NL_EINPUT, "%s: the header has no '%s' column", path,
                   cl < 0 ? "layer" : "expr");
  if (nf != nh)
    return nl_fail(err, NL_EINPUT, "%s:%d: %d fields, the header has %d", path, line, nf, nh);
  if (strcmp(f[cl], ms->layer) != 0) return 0;
  nl_sess_member m;
  double seed, rank, nodes, flops;
  if (num_col(path, line, head, nh, f, "seed", &seed, err) ||
      num_col(path, line, head, nh, f, "rank", &rank, err) ||
      num_col(path, line, head, nh, f, "nodes", &nodes, err) ||
      num_col(path, line, head, nh, f, "flops", &flops, err) ||
      num_col(path, line, head, nh, f, "train_fitness", &m.train_fitness, err) ||
      num_col(path, line, head, nh, f, "val_fitness", &m.val_fitness, err) ||
      num_col(path, line, head, nh, f, "val_mse", &m.val_mse, err) ||
      num_col(path, line, head, nh, f, "val_r2", &m.val_r2, err))
    return -1;
  m.seed = isfinite(seed) ? (int)seed : -1;
  m.rank = isfinite(rank) ? (int)rank : -1;
  m.nodes = isfinite(nodes) ? (int)nodes : -1;
  m.flops = isfinite(flops) ? (int)flops : -1;
  if (ms->n == ms->cap) {
    ms->cap = ms->cap ? ms->cap * 2 : 32;
    ms->m = nl_xrealloc(ms->m, sizeof(nl_sess_member) * ms->cap);
  }
  m.expr = nl_xstrdup(f[ce]);
  ms->m[ms->n++] = m;
  return 0;
}

void nl_sess_members_free(nl_sess_member *m, size_t n) {
  for (size_t i = 0; i < n; i++) free(m[i].expr);
  free(m);
}

int nl_sess_front_members(const char *dir, const char *layer, nl_sess_member **out, size_t *n,
                          nl_error *err) {
  members ms = {layer, NULL, 0, 0};
  int rc = each_row(dir, add_member, &ms, err);
  if (rc == 0 && ms.n == 0)
    rc = nl_fail(err, NL_EINPUT, "%s: no front members for layer '%s'", dir, layer);
  if (rc != 0) {
    nl_sess_members_free(ms.m, ms.n);
    return -1;
  }
  *out = ms.m;
  *n = ms.n;
  return 0;
}
