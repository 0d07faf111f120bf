#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* madvise, MADV_DONTNEED (the build defines it; the fuzz target does not) */
#endif
#define _POSIX_C_SOURCE 200809L
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/mem.h"

/* Header size limit of the reference implementation (100 MB). */
#define NL_ST_MAX_HEADER 100000000ull

static const char *const dt_names[NL_DT_COUNT] = {"F32", "F16", "BF16", "F64", "I64",
                                                   "I32", "I16", "I8",   "U8",  "BOOL"};
static const size_t dt_sizes[NL_DT_COUNT] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};

const char *nl_dtype_name(nl_dtype t) { return (unsigned)t < NL_DT_COUNT ? dt_names[t] : "?"; }
size_t nl_dtype_size(nl_dtype t) { return (unsigned)t < NL_DT_COUNT ? dt_sizes[t] : 0; }

static int dtype_parse(const char *s, nl_dtype *out) {
  for (int i = 0; i < NL_DT_COUNT; i++)
    if (strcmp(s, dt_names[i]) == 0) {
      *out = (nl_dtype)i;
      return 0;
    }
  return -1;
}

static void st_free_contents(nl_st_file *f) {
  for (int i = 0; i < f->n; i++) free(f->t[i].name);
  free(f->t);
  for (int i = 0; i < f->nmeta; i++) {
    free(f->meta[i].key);
    free(f->meta[i].value);
  }
  free(f->meta);
  f->t = NULL;
  f->meta = NULL;
  f->n = f->nmeta = 0;
}

static int cmp_begin(const void *a, const void *b) {
  const nl_st_tensor *x = *(const nl_st_tensor *const *)a, *y = *(const nl_st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* Parse one tensor entry of the header. */
static int parse_entry(nl_st_tensor *t, const char *name, json_t *v, const char *file,
                       size_t data_size, nl_error *err) {
  if (!json_is_object(v))
    return nl_fail(err, NL_EINPUT, "%s: tensor '%s': header entry is not an object", file, name);
  const char *key;
  json_t *val;
  json_object_foreach(v, key, val) {
    if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
      return nl_fail(err, NL_EINPUT, "%s: tensor '%s': unknown field '%s' in header", file, name,
                     key);
  }
  json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
         *off = json_object_get(v, "data_offsets");
  if (!dt || !sh || !off)
    return nl_fail(err, NL_EINPUT, "%s: tensor '%s': header entry lacks '%s'", file, name,
                   !dt ? "dtype" : !sh ? "shape" : "data_offsets");
  if (!json_is_string(dt))
    return nl_fail(err, NL_EINPUT, "%s: tensor '%s': dtype is not a string", file, name);
  if (dtype_parse(json_string_value(dt), &t->dtype))
    return nl_fail(err, NL_EINPUT,
                   "%s: tensor '%s': unknown dtype '%s' (known: F32 F16 BF16 F64 I64 I32 I16 I8 "
                   "U8 BOOL)",
                   file, name, json_string_value(dt));
  if (!json_is_array(sh) || json_array_size(sh) > NL_ST_MAX_DIMS)
    return nl_fail(err, NL_EINPUT, "%s: tensor '%s': shape is not an array of at most %d integers",
                   file, name, NL_ST_MAX_DIMS);
  t->ndim = (int)json_array_size(sh);
  size_t numel = 1;
  int overflow = 0;
  for (int d = 0; d < t->ndim; d++) {
    json_t *e = json_array_get(sh, (size_t)d);
    if (!json_is_integer(e) || json_integer_value(e) < 0)
      return nl_fail(err, NL_EINPUT, "%s: tensor '%s': shape entry %d is not a non-negative integer",
                     file, name, d);
    t->shape[d] = (int64_t)json_integer_value(e);
    size_t s = (size_t)t->shape[d];
    if (s != 0 && numel > SIZE_MAX / s) overflow = 1;
    numel *= s;
  }
  if (!json_is_array(off) || json_array_size(off) != 2 ||
      !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)) ||
      json_integer_value(json_array_get(off, 0)) < 0 ||
      json_integer_value(json_array_get(off, 1)) < 0)
    return nl_fail(err, NL_EINPUT,
                   "%s: tensor '%s': data_offsets is not a pair of non-negative integers", file,
                   name);
  t->begin = (size_t)json_integer_value(json_array_get(off, 0));
  t->end = (size_t)json_integer_value(json_array_get(off, 1));
  if (t->end < t->begin)
    return nl_fail(err, NL_EINPUT, "%s: tensor '%s': data_offsets [%zu, %zu] end before begin",
                   file, name, t->begin, t->end);
  if (t->end > data_size)
    return nl_fail(err, NL_EINPUT,
                   "%s: tensor '%s': data_offsets [%zu, %zu] run past the data area (%zu bytes)",
                   file, name, t->begin, t->end, data_size);
  size_t es = dt_sizes[t->dtype];
  if (overflow || numel > SIZE_MAX / es || numel * es != t->end - t->begin)
    return nl_fail(err, NL_EINPUT,
                   "%s: tensor '%s': shape and dtype %s give %zu bytes but data_offsets span %zu",
                   file, name, dt_names[t->dtype], overflow ? SIZE_MAX : numel * es,
                   t->end - t->begin);
  t->numel = numel;
  return 0;
}

int nl_st_parse(nl_st_file *f, const char *name, const void *buf, size_t size, nl_error *err) {
  const unsigned char *b = buf;
  const char *file = name ? name : "(memory)";
  memset(f, 0, sizeof *f);
  f->t = NULL;
  f->meta = NULL;
  f->n = f->nmeta = 0;
  if (size < 8)
    return nl_fail(err, NL_EINPUT, "%s: not a safetensors file: %zu bytes, shorter than the 8-byte header length",
                   file, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
  if (n > NL_ST_MAX_HEADER)
    return nl_fail(err, NL_EINPUT, "%s: header length %llu exceeds the %llu-byte limit", file,
                   (unsigned long long)n, NL_ST_MAX_HEADER);
  if (n > size - 8)
    return nl_fail(err, NL_EINPUT,
                   "%s: header length %llu runs past the end of the file (%zu bytes): truncated?",
                   file, (unsigned long long)n, size);
  if (n < 2 || b[8] != '{')
    return nl_fail(err, NL_EINPUT, "%s: header does not start with '{'", file);
  size_t data_size = size - 8 - (size_t)n;
  json_error_t je;
  json_t *root = json_loadb((const char *)b + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return nl_fail(err, NL_EINPUT, "%s: header is not valid JSON: %s (at byte %d)", file, je.text,
                   je.position);
  if (!json_is_object(root)) {
    json_decref(root);
    return nl_fail(err, NL_EINPUT, "%s: header is not a JSON object", file);
  }
  size_t cap = json_object_size(root);
  f->t = nl_xcalloc(cap ? cap : 1, sizeof(nl_st_tensor));
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      if (!json_is_object(val)) {
        json_decref(root);
        st_free_contents(f);
        return nl_fail(err, NL_EINPUT, "%s: __metadata__ is not an object", file);
      }
      size_t nm = json_object_size(val);
      f->meta = nl_xcalloc(nm ? nm : 1, sizeof(nl_st_meta));
      const char *mk;
      json_t *mv;
      json_object_foreach(val, mk, mv) {
        if (!json_is_string(mv)) {
          nl_fail(err, NL_EINPUT, "%s: __metadata__ value of '%s' is not a string", file, mk);
          json_decref(root);
          st_free_contents(f);
          return -1;
        }
        f->meta[f->nmeta].key = nl_xstrdup(mk);
        f->meta[f->nmeta].value = nl_xstrdup(json_string_value(mv));
        f->nmeta++;
      }
      continue;
    }
    nl_st_tensor *t = &f->t[f->n];
    if (parse_entry(t, key, val, file, data_size, err)) {
      json_decref(root);
      st_free_contents(f);
      return -1;
    }
    t->name = nl_xstrdup(key);
    t->raw = b + 8 + n + t->begin;
    f->n++;
  }
  json_decref(root);
  /* The data area must be covered exactly, in offset order. */
  nl_st_tensor **ord = nl_xmalloc(sizeof(*ord) * (size_t)(f->n ? f->n : 1));
  for (int i = 0; i < f->n; i++) ord[i] = &f->t[i];
  qsort(ord, (size_t)f->n, sizeof(*ord), cmp_begin);
  size_t pos = 0;
  for (int i = 0; i < f->n; i++) {
    const nl_st_tensor *t = ord[i];
    if (t->begin != pos) {
      int rc;
      if (t->begin < pos)
        rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s': data [%zu, %zu) overlaps tensor '%s' (ends at %zu)",
                     file, t->name, t->begin, t->end, ord[i - 1]->name, pos);
      else
        rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s': gap of %zu bytes before its data at %zu",
                     file, t->name, t->begin - pos, t->begin);
      free(ord);
      st_free_contents(f);
      return rc;
    }
    pos = t->end;
  }
  free(ord);
  if (pos != data_size) {
    st_free_contents(f);
    return nl_fail(err, NL_EINPUT,
                   "%s: data area has %zu bytes but the tensors cover %zu (trailing bytes or truncated file)",
                   file, data_size, pos);
  }
  return 0;
}

int nl_st_open(nl_st_file *f, const char *path, nl_error *err) {
  memset(f, 0, sizeof *f);
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return nl_fail(err, nl_errno_code(errno), "%s: cannot open: %s", path,
                   strerror(errno));
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return nl_fail(err, NL_EINPUT, "%s: not a regular file", path);
  }
  size_t size = (size_t)st.st_size;
  void *map = NULL;
  if (size > 0) {
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      close(fd);
      return nl_fail(err, NL_EIO, "%s: cannot map: %s", path, strerror(errno));
    }
  }
  close(fd);
  static const char empty[1] = {0};
  if (nl_st_parse(f, path, map ? map : empty, size, err)) {
    if (map) munmap(map, size);
    return -1;
  }
  f->path = nl_xstrdup(path);
  f->map = map;
  f->size = size;
  return 0;
}

void nl_st_release(const nl_st_file *f, const nl_st_tensor *t) {
  if (!f || !t || !f->map || !t->raw) return;
  const uintptr_t base = (uintptr_t)f->map, a = (uintptr_t)t->raw;
  const size_t n = t->end - t->begin;
  if (a < base || a + n > base + f->size) return; /* not in this file's mapping */
  const long pg = sysconf(_SC_PAGESIZE);
  if (pg <= 0) return;
  const uintptr_t m = (uintptr_t)pg - 1, lo = (a + m) & ~m, hi = (a + n) & ~m;
  /* private read-only file mapping: the pages come back from the file */
  if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void nl_st_close(nl_st_file *f) {
  if (!f) return;
  st_free_contents(f);
  if (f->map) munmap(f->map, f->size);
  free(f->path);
  memset(f, 0, sizeof *f);
}

const nl_st_tensor *nl_st_find(const nl_st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
  return NULL;
}

const char *nl_st_meta_get(const nl_st_file *f, const char *key) {
  for (int i = 0; i < f->nmeta; i++)
    if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
  return NULL;
}

static float half_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { /* subnormal: renormalise */
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while (!(man & 0x400u));
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float out;
  memcpy(&out, &bits, 4);
  return out;
}

void nl_st_to_f32(const nl_st_tensor *t, float *dst) {
  const unsigned char *p = t->raw;
  size_t n = t->numel;
  /* Files are little-endian; so is every machine normlab targets. */
  for (size_t i = 0; i < n; i++) {
    switch (t->dtype) {
      case NL_DT_F32: memcpy(&dst[i], p + 4 * i, 4); break;
      case NL_DT_F16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = half_to_f32(h);
        break;
      }
      case NL_DT_BF16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        uint32_t bits = (uint32_t)h << 16;
        memcpy(&dst[i], &bits, 4);
        break;
      }
      case NL_DT_F64: {
        double d;
        memcpy(&d, p + 8 * i, 8);
        dst[i] = (float)d;
        break;
      }
      case NL_DT_I64: {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        dst[i] = (float)v;
        break;
      }
      case NL_DT_I32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        dst[i] = (float)v;
        break;
      }
      case NL_DT_I16: {
        int16_t v;
        memcpy(&v, p + 2 * i, 2);
        dst[i] = (float)v;
        break;
      }
      case NL_DT_I8: dst[i] = (float)(int8_t)p[i]; break;
      case NL_DT_U8: dst[i] = (float)p[i]; break;
      case NL_DT_BOOL: dst[i] = p[i] ? 1.0f : 0.0f; break;
      default: dst[i] = 0.0f; break;
    }
  }
}

float *nl_st_read_f32(const nl_st_file *f, const char *name, size_t *numel, nl_error *err) {
  const nl_st_tensor *t = nl_st_find(f, name);
  if (!t) {
    nl_fail(err, NL_EINPUT, "%s: no tensor '%s'", f->path ? f->path : "(memory)", name);
    return NULL;
  }
  float *out = nl_xmalloc(sizeof(float) * (t->numel ? t->numel : 1));
  nl_st_to_f32(t, out);
  if (numel) *numel = t->numel;
  return out;
}

/* ---- writer ---- */

typedef struct wt {
  char *name;
  nl_dtype dtype;
  int ndim;
  int64_t shape[NL_ST_MAX_DIMS];
  void *data;
  size_t bytes;
} wt;

struct nl_st_writer {
  wt *t;
  int n, cap;
  nl_st_meta *meta;
  int nmeta, metacap;
};

nl_st_writer *nl_st_writer_new(void) { return nl_xcalloc(1, sizeof(nl_st_writer)); }

void nl_st_writer_free(nl_st_writer *w) {
  if (!w) return;
  for (int i = 0; i < w->n; i++) {
    free(w->t[i].name);
    free(w->t[i].data);
  }
  for (int i = 0; i < w->nmeta; i++) {
    free(w->meta[i].key);
    free(w->meta[i].value);
  }
  free(w->t);
  free(w->meta);
  free(w);
}

int nl_st_writer_add_raw(nl_st_writer *w, const char *name, nl_dtype dtype, const void *data,
                         int ndim, const int64_t *shape, nl_error *err) {
  if (!name || !*name || strcmp(name, "__metadata__") == 0)
    return nl_fail(err, NL_EINPUT, "invalid tensor name '%s'", name ? name : "");
  if ((unsigned)dtype >= NL_DT_COUNT) return nl_fail(err, NL_EINPUT, "tensor '%s': bad dtype", name);
  if (ndim < 0 || ndim > NL_ST_MAX_DIMS)
    return nl_fail(err, NL_EINPUT, "tensor '%s': %d dimensions (at most %d)", name, ndim,
                   NL_ST_MAX_DIMS);
  for (int i = 0; i < w->n; i++)
    if (strcmp(w->t[i].name, name) == 0)
      return nl_fail(err, NL_EINPUT, "tensor '%s' added twice", name);
  size_t numel = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) return nl_fail(err, NL_EINPUT, "tensor '%s': negative dimension", name);
    numel *= (size_t)shape[d];
  }
  if (w->n == w->cap) {
    w->cap = w->cap ? 2 * w->cap : 16;
    w->t = nl_xrealloc(w->t, sizeof(wt) * (size_t)w->cap);
  }
  wt *t = &w->t[w->n++];
  memset(t, 0, sizeof *t);
  t->name = nl_xstrdup(name);
  t->dtype = dtype;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
  t->bytes = numel * dt_sizes[dtype];
  t->data = nl_xmalloc(t->bytes ? t->bytes : 1);
  if (t->bytes) memcpy(t->data, data, t->bytes);
  return 0;
}

int nl_st_writer_add(nl_st_writer *w, const char *name, const float *data, int ndim,
                     const int64_t *shape, nl_error *err) {
  return nl_st_writer_add_raw(w, name, NL_DT_F32, data, ndim, shape, err);
}

void nl_st_writer_meta(nl_st_writer *w, const char *key, const char *value) {
  for (int i = 0; i < w->nmeta; i++)
    if (strcmp(w->meta[i].key, key) == 0) {
      free(w->meta[i].value);
      w->meta[i].value = nl_xstrdup(value);
      return;
    }
  if (w->nmeta == w->metacap) {
    w->metacap = w->metacap ? 2 * w->metacap : 8;
    w->meta = nl_xrealloc(w->meta, sizeof(nl_st_meta) * (size_t)w->metacap);
  }
  w->meta[w->nmeta].key = nl_xstrdup(key);
  w->meta[w->nmeta].value = nl_xstrdup(value);
  w->nmeta++;
}

static int cmp_wt(const void *a, const void *b) {
  return strcmp((*(const wt *const *)a)->name, (*(const wt *const *)b)->name);
}

int nl_st_writer_save(nl_st_writer *w, const char *path, nl_error *err) {
  wt **ord = nl_xmalloc(sizeof(*ord) * (size_t)(w->n ? w->n : 1));
  for (int i = 0; i < w->n; i++) ord[i] = &w->t[i];
  qsort(ord, (size_t)w->n, sizeof(*ord), cmp_wt);
  json_t *root = json_object();
  if (w->nmeta) {
    json_t *m = json_object();
    for (int i = 0; i < w->nmeta; i++)
      json_object_set_new(m, w->meta[i].key, json_string(w->meta[i].value));
    json_object_set_new(root, "__metadata__", m);
  }
  size_t off = 0;
  for (int i = 0; i < w->n; i++) {
    wt *t = ord[i];
    json_t *e = json_object(), *sh = json_array(), *of = json_array();
    json_object_set_new(e, "dtype", json_string(dt_names[t->dtype]));
    for (int d = 0; d < t->ndim; d++) json_array_append_new(sh, json_integer(t->shape[d]));
    json_object_set_new(e, "shape", sh);
    json_array_append_new(of, json_integer((json_int_t)off));
    json_array_append_new(of, json_integer((json_int_t)(off + t->bytes)));
    json_object_set_new(e, "data_offsets", of);
    json_object_set_new(root, t->name, e);
    off += t->bytes;
  }
  char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(root);
  if (!hdr) {
    free(ord);
    return nl_fail(err, NL_EINTERNAL, "%s: cannot encode the header", path);
  }
  size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
  nl_atomic_file af;
  if (nl_atomic_open(&af, path, err)) {
    free(hdr);
    free(ord);
    return -1;
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(((uint64_t)padded >> (8 * i)) & 0xff);
  int bad = fwrite(len8, 1, 8, af.fp) != 8 || fwrite(hdr, 1, hl, af.fp) != hl;
  for (size_t i = hl; i < padded && !bad; i++) bad = fputc(' ', af.fp) == EOF;
  for (int i = 0; i < w->n && !bad; i++)
    if (ord[i]->bytes) bad = fwrite(ord[i]->data, 1, ord[i]->bytes, af.fp) != ord[i]->bytes;
  free(hdr);
  free(ord);
  if (bad) {
    nl_atomic_abort(&af);
    return nl_fail(err, NL_EIO, "%s: write failed: %s", path, strerror(errno));
  }
  return nl_atomic_commit(&af, err);
}
