#include "model/maps.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "model/safetensors.h"

void nl_maps_init(nl_maps *m) { memset(m, 0, sizeof *m); }

void nl_maps_free(nl_maps *m) {
  if (!m) return;
  for (int i = 0; i < m->nlayers; i++) {
    free(m->layers[i].name);
    free(m->layers[i].x);
    free(m->layers[i].y);
  }
  free(m->layers);
  for (int i = 0; i < m->nmeta; i++) {
    free(m->meta[i].key);
    free(m->meta[i].value);
  }
  free(m->meta);
  free(m->path);
  memset(m, 0, sizeof *m);
}

int nl_maps_index(const nl_maps *m, const char *name) {
  for (int i = 0; i < m->nlayers; i++)
    if (strcmp(m->layers[i].name, name) == 0) return i;
  return -1;
}

/* FNV-1a, 64 bits, fed 8 bytes at a time (the tail byte by byte). */
static uint64_t fnv_words(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (; n >= 8; n -= 8, b += 8) {
    uint64_t w;
    memcpy(&w, b, 8);
    h = (h ^ w) * 0x100000001b3ull;
  }
  for (; n; n--, b++) h = (h ^ *b) * 0x100000001b3ull;
  return h;
}

static int by_name(const void *a, const void *b) {
  return strcmp((*(const nl_maps_layer *const *)a)->name, (*(const nl_maps_layer *const *)b)->name);
}

uint64_t nl_maps_fingerprint(const nl_maps *m) {
  /* layers by name: a set built in any order, saved and loaded (natural
   * order) gives the same */
  const nl_maps_layer **order = nl_xmalloc(sizeof *order * (size_t)(m->nlayers ? m->nlayers : 1));
  for (int i = 0; i < m->nlayers; i++) order[i] = &m->layers[i];
  qsort(order, (size_t)m->nlayers, sizeof *order, by_name);
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < m->nlayers; i++) {
    const nl_maps_layer *l = order[i];
    uint64_t n = l->n;
    h = fnv_words(h, l->name, strlen(l->name) + 1);
    h = fnv_words(h, &n, sizeof n);
    h = fnv_words(h, l->x, sizeof(float) * l->n);
    h = fnv_words(h, l->y, sizeof(float) * l->n);
  }
  free(order);
  h ^= h >> 33; /* spread the last words over every bit */
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

const nl_maps_layer *nl_maps_find(const nl_maps *m, const char *name) {
  int i = nl_maps_index(m, name);
  return i < 0 ? NULL : &m->layers[i];
}

/* Index of the first non-finite value, or n. */
static size_t first_nonfinite(const float *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(v[i])) return i;
  return n;
}

int nl_maps_add_owned(nl_maps *m, const char *name, float *x, float *y, size_t n,
                      nl_error *err) {
  const char *why = NULL;
  size_t bad;
  if (!name || !*name)
    why = "empty layer name";
  else if (nl_maps_index(m, name) >= 0)
    why = "duplicate layer";
  else if (n == 0)
    why = "no points";
  if (why) {
    free(x);
    free(y);
    return nl_fail(err, NL_EINPUT, "layer '%s': %s", name ? name : "", why);
  }
  if ((bad = first_nonfinite(x, n)) < n || (bad = first_nonfinite(y, n)) < n) {
    int in_x = first_nonfinite(x, n) < n;
    float v = in_x ? x[bad] : y[bad];
    free(x);
    free(y);
    return nl_fail(err, NL_EINPUT, "layer '%s': %s[%zu] is %s", name, in_x ? "x" : "y", bad,
                   isnan(v) ? "NaN" : "infinite");
  }
  m->layers = nl_xrealloc(m->layers, sizeof *m->layers * (size_t)(m->nlayers + 1));
  nl_maps_layer *l = &m->layers[m->nlayers++];
  l->name = nl_xstrdup(name);
  l->x = x;
  l->y = y;
  l->n = n;
  return 0;
}

int nl_maps_add(nl_maps *m, const char *name, const float *x, const float *y, size_t n,
                nl_error *err) {
  float *cx = nl_try_alloc(n ? n : 1, sizeof(float));
  float *cy = nl_try_alloc(n ? n : 1, sizeof(float));
  if (!cx || !cy) {
    free(cx);
    free(cy);
    return nl_fail(err, NL_ENOMEM, "layer '%s': out of memory for %zu points", name, n);
  }
  if (n) {
    memcpy(cx, x, n * sizeof(float));
    memcpy(cy, y, n * sizeof(float));
  }
  return nl_maps_add_owned(m, name, cx, cy, n, err);
}

void nl_maps_set_meta(nl_maps *m, const char *key, const char *value) {
  for (int i = 0; i < m->nmeta; i++)
    if (strcmp(m->meta[i].key, key) == 0) {
      free(m->meta[i].value);
      m->meta[i].value = nl_xstrdup(value);
      return;
    }
  m->meta = nl_xrealloc(m->meta, sizeof *m->meta * (size_t)(m->nmeta + 1));
  m->meta[m->nmeta].key = nl_xstrdup(key);
  m->meta[m->nmeta].value = nl_xstrdup(value);
  m->nmeta++;
}

const char *nl_maps_get_meta(const nl_maps *m, const char *key) {
  for (int i = 0; i < m->nmeta; i++)
    if (strcmp(m->meta[i].key, key) == 0) return m->meta[i].value;
  return NULL;
}

int nl_natural_cmp(const char *a, const char *b) {
  while (*a && *b) {
    if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
      while (*a == '0') a++;
      while (*b == '0') b++;
      size_t la = 0, lb = 0;
      while (isdigit((unsigned char)a[la])) la++;
      while (isdigit((unsigned char)b[lb])) lb++;
      if (la != lb) return la < lb ? -1 : 1;
      int c = strncmp(a, b, la);
      if (c) return c;
      a += la;
      b += lb;
    } else {
      if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
      a++;
      b++;
    }
  }
  return *a ? 1 : *b ? -1 : 0;
}

static int layer_cmp(const void *pa, const void *pb) {
  const nl_maps_layer *a = pa, *b = pb;
  int c = nl_natural_cmp(a->name, b->name);
  return c ? c : strcmp(a->name, b->name);
}

void nl_maps_sort(nl_maps *m) {
  if (m->nlayers > 1) qsort(m->layers, (size_t)m->nlayers, sizeof *m->layers, layer_cmp);
}

/* Shape as "[a, b]" for messages. */
static void shape_str(const nl_st_tensor *t, char *buf, size_t cap) {
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < t->ndim && k < cap; d++)
    k += (size_t)snprintf(buf + k, cap - k, d ? ", %lld" : "%lld", (long long)t->shape[d]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* One matched tensor pair for a layer. */
typedef struct {
  char *layer;
  const nl_st_tensor *x, *y;
} match;

static int find_match(match *ms, int n, const char *layer) {
  for (int i = 0; i < n; i++)
    if (strcmp(ms[i].layer, layer) == 0) return i;
  return -1;
}

static void free_matches(match *ms, int n) {
  for (int i = 0; i < n; i++) free(ms[i].layer);
  free(ms);
}

/* The layer name of `name` under prefix/suffix, or NULL. */
static char *strip(const char *name, const char *pre, const char *suf) {
  size_t ln = strlen(name), lp = strlen(pre), ls = strlen(suf);
  if (ln <= lp + ls || strncmp(name, pre, lp) != 0 || strcmp(name + ln - ls, suf) != 0)
    return NULL;
  return nl_xstrndup(name + lp, ln - lp - ls);
}

static int is_float_dtype(nl_dtype t) {
  return t == NL_DT_F32 || t == NL_DT_F16 || t == NL_DT_BF16 || t == NL_DT_F64;
}

/* Build m from the tensors of f matched by the two patterns. strict: the
 * mappings file format (every tensor must match, F32, 1-D). */
static int collect(nl_maps *m, const nl_st_file *f, const char *path, const char *xp,
                   const char *xs, const char *yp, const char *ys, int strict, nl_error *err) {
  match *ms = NULL;
  int nm = 0;
  int rc = 0;
  for (int i = 0; i < f->n && rc == 0; i++) {
    const nl_st_tensor *t = &f->t[i];
    char *lx = strip(t->name, xp, xs), *ly = strip(t->name, yp, ys);
    int is_x = lx != NULL;
    char *layer = lx ? lx : ly;
    if (lx && ly) {
      /* Both patterns match (e.g. prefixes "a." and "a.b."): ambiguous. */
      free(ly);
      free(lx);
      rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s' matches both the x and the y naming", path,
                   t->name);
      break;
    }
    if (!layer) {
      if (strict)
        rc = nl_fail(err, NL_EINPUT,
                     "%s: tensor '%s' is not a mapping tensor (expected <layer>.x or <layer>.y)",
                     path, t->name);
      continue;
    }
    char shp[128];
    shape_str(t, shp, sizeof shp);
    if (strict && t->dtype != NL_DT_F32)
      rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s' has dtype %s; mapping tensors must be F32",
                   path, t->name, nl_dtype_name(t->dtype));
    else if (!strict && !is_float_dtype(t->dtype))
      rc = nl_fail(err, NL_EINPUT,
                   "%s: tensor '%s' has dtype %s; mapping points must be floating point", path,
                   t->name, nl_dtype_name(t->dtype));
    else if (strict && t->ndim != 1)
      rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s' has shape %s; mapping tensors must be 1-D",
                   path, t->name, shp);
    else if (t->numel == 0)
      rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s' is empty (shape %s)", path, t->name, shp);
    if (rc) {
      free(layer);
      break;
    }
    int k = find_match(ms, nm, layer);
    if (k < 0) {
      ms = nl_xrealloc(ms, sizeof *ms * (size_t)(nm + 1));
      k = nm++;
      ms[k].layer = layer;
      ms[k].x = ms[k].y = NULL;
    } else {
      free(layer);
    }
    if (is_x)
      ms[k].x = t;
    else
      ms[k].y = t;
  }
  for (int k = 0; k < nm && rc == 0; k++) {
    const nl_st_tensor *x = ms[k].x, *y = ms[k].y;
    if (!x || !y) {
      const nl_st_tensor *have = x ? x : y;
      rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s' has no partner '%s%s%s'", path, have->name,
                   x ? yp : xp, ms[k].layer, x ? ys : xs);
    } else if (x->numel != y->numel) {
      rc = nl_fail(err, NL_EINPUT,
                   "%s: tensors '%s' and '%s' differ in length (%zu and %zu points)", path,
                   x->name, y->name, x->numel, y->numel);
    } else {
      size_t n = x->numel;
      float *vx = nl_try_alloc(n, sizeof(float)), *vy = nl_try_alloc(n, sizeof(float));
      if (!vx || !vy) {
        free(vx);
        free(vy);
        rc = nl_fail(err, NL_ENOMEM, "%s: out of memory for layer '%s' (%zu points)", path,
                     ms[k].layer, n);
        break;
      }
      nl_st_to_f32(x, vx);
      nl_st_to_f32(y, vy);
      size_t bx = first_nonfinite(vx, n), by = first_nonfinite(vy, n);
      if (bx < n || by < n) {
        const nl_st_tensor *t = bx < n ? x : y;
        size_t at = bx < n ? bx : by;
        float v = bx < n ? vx[bx] : vy[by];
        free(vx);
        free(vy);
        rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s' holds %s at index %zu", path, t->name,
                     isnan(v) ? "NaN" : "an infinity", at);
        break;
      }
      if (nl_maps_add_owned(m, ms[k].layer, vx, vy, n, err) != 0)
        rc = nl_error_prefix(err, "%s", path);
    }
  }
  if (rc == 0 && m->nlayers == 0) {
    if (strict)
      rc = nl_fail(err, NL_EINPUT, "%s: no mapping layers (no tensors named <layer>.x, <layer>.y)",
                   path);
    else
      rc = nl_fail(err, NL_EINPUT, "%s: no tensors named '%sLAYER%s' with partners '%sLAYER%s'",
                   path, xp, xs, yp, ys);
  }
  free_matches(ms, nm);
  if (rc == 0) {
    for (int i = 0; i < f->nmeta; i++) nl_maps_set_meta(m, f->meta[i].key, f->meta[i].value);
    nl_maps_sort(m);
    m->path = nl_xstrdup(path);
  }
  return rc;
}

int nl_maps_load(nl_maps *m, const char *path, nl_error *err) {
  nl_maps_init(m);
  nl_st_file f;
  if (nl_st_open(&f, path, err) != 0) return -1;
  int rc = collect(m, &f, path, "", ".x", "", ".y", 1, err);
  nl_st_close(&f);
  if (rc != 0) nl_maps_free(m);
  return rc;
}

int nl_maps_import(nl_maps *m, const char *path, const nl_maps_import_opts *o, nl_error *err) {
  nl_maps_init(m);
  const char *xp = o && o->x_prefix ? o->x_prefix : "";
  const char *xs = o && o->x_suffix ? o->x_suffix : "";
  const char *yp = o && o->y_prefix ? o->y_prefix : "";
  const char *ys = o && o->y_suffix ? o->y_suffix : "";
  if (strcmp(xp, yp) == 0 && strcmp(xs, ys) == 0)
    return nl_fail(err, NL_EINPUT,
                   "the x naming '%sLAYER%s' and the y naming '%sLAYER%s' must differ", xp, xs,
                   yp, ys);
  nl_st_file f;
  if (nl_st_open(&f, path, err) != 0) return -1;
  int rc = collect(m, &f, path, xp, xs, yp, ys, 0, err);
  nl_st_close(&f);
  if (rc != 0) {
    nl_maps_free(m);
    return rc;
  }
  free(m->path);
  m->path = NULL;
  nl_maps_set_meta(m, "imported_from", path);
  return 0;
}

int nl_maps_save(const nl_maps *m, const char *path, nl_error *err) {
  if (m->nlayers == 0) return nl_fail(err, NL_EINPUT, "%s: no mapping layers to write", path);
  nl_st_writer *w = nl_st_writer_new();
  int rc = 0;
  for (int i = 0; i < m->nlayers && rc == 0; i++) {
    const nl_maps_layer *l = &m->layers[i];
    size_t len = strlen(l->name) + 3;
    char *name = nl_xmalloc(len);
    int64_t shape[1] = {(int64_t)l->n};
    snprintf(name, len, "%s.x", l->name);
    rc = nl_st_writer_add(w, name, l->x, 1, shape, err);
    snprintf(name, len, "%s.y", l->name);
    if (rc == 0) rc = nl_st_writer_add(w, name, l->y, 1, shape, err);
    free(name);
  }
  for (int i = 0; i < m->nmeta && rc == 0; i++)
    nl_st_writer_meta(w, m->meta[i].key, m->meta[i].value);
  if (rc == 0) rc = nl_st_writer_save(w, path, err);
  nl_st_writer_free(w);
  return rc;
}
