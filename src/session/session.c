#define _POSIX_C_SOURCE 200809L
#include "session/session.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/mem.h"
#include "model/maps.h"

void nl_session_init(nl_session *s) { memset(s, 0, sizeof *s); }

static void free_names(char **v, int n) {
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

static void clear_undo(nl_session *s) {
  for (int i = 0; i < s->nundo; i++) nl_exprset_free(&s->undo[i]);
  free(s->undo);
  s->undo = NULL;
  s->nundo = 0;
}

static void drop_tmp(nl_session *s) {
  if (s->tmp_exprs) {
    unlink(s->tmp_exprs);
    free(s->tmp_exprs);
    s->tmp_exprs = NULL;
  }
}

void nl_session_free(nl_session *s) {
  free(s->model_path);
  free(s->maps_path);
  free(s->exprs_path);
  free(s->fronts_dir);
  free(s->dir);
  for (int i = 0; i < 4; i++) free(s->origin[i]);
  for (int i = 0; i < s->nsettings; i++) {
    free(s->settings[i].key);
    free(s->settings[i].value);
  }
  free(s->settings);
  nl_exprset_free(&s->set);
  clear_undo(s);
  free_names(s->model_layers, s->nmodel_layers);
  free_names(s->maps_layers, s->nmaps_layers);
  drop_tmp(s);
  nl_front_summaries_free(s->fronts, s->nfronts);
  memset(s, 0, sizeof *s);
}

static void replace_str(char **dst, const char *src) {
  char *v = src ? nl_xstrdup(src) : NULL;
  free(*dst);
  *dst = v;
}

/* ---- safetensors headers (names only) ---- */

static int st_header(const char *path, json_t **out, nl_error *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return nl_fail(err, errno == ENOENT ? NL_EINPUT : NL_EIO, "%s: cannot open: %s", path,
                   strerror(errno));
  unsigned char lenb[8];
  if (fread(lenb, 1, 8, fp) != 8) {
    fclose(fp);
    return nl_fail(err, NL_EINPUT, "%s: not a safetensors file (shorter than 8 bytes)", path);
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | lenb[i];
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || n < 2 || n > 100u * 1024 * 1024 ||
      n > (uint64_t)st.st_size - 8) {
    fclose(fp);
    return nl_fail(err, NL_EINPUT, "%s: not a safetensors file (bad header length %llu)", path,
                   (unsigned long long)n);
  }
  char *h = nl_xmalloc((size_t)n);
  size_t got = fread(h, 1, (size_t)n, fp);
  fclose(fp);
  if (got != n) {
    free(h);
    return nl_fail(err, NL_EIO, "%s: short read of the header", path);
  }
  json_error_t je;
  json_t *j = json_loadb(h, (size_t)n, 0, &je);
  free(h);
  if (!j || !json_is_object(j)) {
    json_decref(j);
    return nl_fail(err, NL_EINPUT, "%s: safetensors header is not a JSON object", path);
  }
  *out = j;
  return 0;
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Natural order: runs of digits compare as numbers (blocks.2 < blocks.10). */
static int cmp_str(const void *pa, const void *pb) {
  return nl_natural_cmp(*(char *const *)pa, *(char *const *)pb);
}

/* Layers of a mappings file: tensors "<layer>.x" with a "<layer>.y". */
static int maps_layers(const char *path, char ***out, int *n, nl_error *err) {
  json_t *h;
  if (st_header(path, &h, err) != 0) return -1;
  const char *key;
  json_t *v;
  char **names = NULL;
  int k = 0;
  json_object_foreach(h, key, v) {
    /* "<layer>.x" with "<layer>.y", or "map_x.<layer>" with "map_y.<layer>"
     * (the reference files' naming) */
    char *ykey = nl_xstrdup(key), *layer = NULL;
    size_t len = strlen(key);
    if (ends_with(key, ".x")) {
      ykey[len - 1] = 'y';
      layer = nl_xstrndup(key, len - 2);
    } else if (strncmp(key, "map_x.", 6) == 0 && len > 6) {
      ykey[4] = 'y';
      layer = nl_xstrdup(key + 6);
    }
    int ok = layer && json_object_get(h, ykey) != NULL;
    free(ykey);
    if (!ok) {
      free(layer);
      continue;
    }
    names = nl_xrealloc(names, sizeof(char *) * (size_t)(k + 1));
    names[k++] = layer;
  }
  json_decref(h);
  if (k == 0) {
    free(names);
    return nl_fail(err, NL_EINPUT,
                   "%s: no mappings in this file (expected tensors '<layer>.x' and '<layer>.y')",
                   path);
  }
  qsort(names, (size_t)k, sizeof(char *), cmp_str);
  *out = names;
  *n = k;
  return 0;
}

/* Norm layers of a model: 1-D "<...norm...>.weight" tensors with a bias. */
static int model_layers(const char *path, char ***out, int *n, int *width, nl_error *err) {
  json_t *h;
  if (st_header(path, &h, err) != 0) return -1;
  const char *key;
  json_t *v;
  char **names = NULL;
  int k = 0;
  json_object_foreach(h, key, v) {
    if (!ends_with(key, ".weight")) continue;
    size_t len = strlen(key) - 7;
    char *layer = nl_xstrndup(key, len);
    const char *last = strrchr(layer, '.');
    last = last ? last + 1 : layer;
    json_t *shape = json_object_get(v, "shape");
    char *bkey = nl_xmalloc(len + 6);
    snprintf(bkey, len + 6, "%s.bias", layer);
    int ok = strstr(last, "norm") != NULL && json_is_array(shape) && json_array_size(shape) == 1 &&
             json_object_get(h, bkey) != NULL;
    free(bkey);
    if (!ok) {
      free(layer);
      continue;
    }
    names = nl_xrealloc(names, sizeof(char *) * (size_t)(k + 1));
    names[k++] = layer;
    json_t *d0 = json_array_get(shape, 0);
    if (json_is_integer(d0) && json_integer_value(d0) > 0 && json_integer_value(d0) < (1 << 24))
      *width = (int)json_integer_value(d0);
  }
  json_decref(h);
  qsort(names, (size_t)k, sizeof(char *), cmp_str);
  *out = names;
  *n = k;
  return 0;
}

/* ---- the expression set ---- */

const nl_exprset_entry *nl_session_find(const nl_session *s, const char *layer) {
  return nl_exprset_find(&s->set, layer);
}

static void push_undo(nl_session *s) {
  if (s->nundo == NL_SESSION_UNDO_MAX) {
    nl_exprset_free(&s->undo[0]);
    memmove(s->undo, s->undo + 1, sizeof(nl_exprset) * (size_t)(s->nundo - 1));
    s->nundo--;
  }
  s->undo = nl_xrealloc(s->undo, sizeof(nl_exprset) * (size_t)(s->nundo + 1));
  nl_exprset_copy(&s->undo[s->nundo++], &s->set);
}

int nl_session_set_expr(nl_session *s, const char *layer, const char *expr, const char *comment,
                        nl_error *err) {
  nl_exprset next;
  nl_exprset_copy(&next, &s->set);
  const nl_exprset_entry *old = nl_session_find(s, layer);
  if (nl_exprset_set_text(&next, layer, expr, comment ? comment : old ? old->comment : NULL,
                          NULL, err) != 0) {
    nl_exprset_free(&next);
    return -1;
  }
  push_undo(s);
  nl_exprset_free(&s->set);
  s->set = next;
  s->set_modified = 1;
  drop_tmp(s);
  return 0;
}

void nl_session_replace_set(nl_session *s, nl_exprset *set) {
  push_undo(s);
  nl_exprset_free(&s->set);
  s->set = *set;
  nl_exprset_init(set);
  s->set_modified = 1;
  drop_tmp(s);
}

int nl_session_undo(nl_session *s) {
  if (s->nundo == 0) return -1;
  nl_exprset_free(&s->set);
  s->set = s->undo[--s->nundo];
  s->set_modified = 1;
  drop_tmp(s);
  return 0;
}

/* ---- loading ---- */

static const char *const kinds[4] = {"model", "maps", "exprs", "fronts"};

static int kind_index(const char *what) {
  for (int i = 0; i < 4; i++)
    if (strcmp(kinds[i], what) == 0) return i;
  return -1;
}

static char *abs_path(const char *p);

static void set_origin(nl_session *s, const char *what, const char *path) {
  int k = kind_index(what);
  if (k < 0) return;
  free(s->origin[k]);
  s->origin[k] = path ? abs_path(path) : NULL;
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int load_one(nl_session *s, const char *what, const char *path, nl_error *err);

int nl_session_load(nl_session *s, const char *what, const char *path, nl_error *err) {
  if (load_one(s, what, path, err) != 0) return -1;
  set_origin(s, what, path);
  return 0;
}

static int load_one(nl_session *s, const char *what, const char *path, nl_error *err) {
  if (strcmp(what, "model") == 0) {
    char **names = NULL;
    int n = 0, width = 0;
    if (model_layers(path, &names, &n, &width, err) != 0) return -1;
    free_names(s->model_layers, s->nmodel_layers);
    s->model_layers = names;
    s->nmodel_layers = n;
    s->model_width = width;
    replace_str(&s->model_path, path);
    return 0;
  }
  if (strcmp(what, "maps") == 0) {
    char **names = NULL;
    int n = 0;
    if (maps_layers(path, &names, &n, err) != 0) return -1;
    free_names(s->maps_layers, s->nmaps_layers);
    s->maps_layers = names;
    s->nmaps_layers = n;
    replace_str(&s->maps_path, path);
    return 0;
  }
  if (strcmp(what, "exprs") == 0) {
    nl_exprset set;
    nl_exprset_init(&set);
    if (nl_exprset_load(path, &set, err) != 0) {
      nl_exprset_free(&set);
      return -1;
    }
    push_undo(s);
    nl_exprset_free(&s->set);
    s->set = set;
    s->set_modified = 0;
    drop_tmp(s);
    replace_str(&s->exprs_path, path);
    return 0;
  }
  if (strcmp(what, "fronts") == 0) {
    if (!is_dir(path)) return nl_fail(err, NL_EINPUT, "%s: not a directory", path);
    nl_fronts rows;
    if (nl_fronts_read(path, NULL, &rows, err) != 0) return -1;
    nl_front_summaries_free(s->fronts, s->nfronts);
    nl_fronts_summarize(&rows, &s->fronts, &s->nfronts);
    nl_fronts_free(&rows);
    replace_str(&s->fronts_dir, path);
    return 0;
  }
  return nl_fail(err, NL_EINPUT, "cannot load '%s' (expected model, maps, exprs or fronts)", what);
}

const nl_front_summary *nl_session_front(const nl_session *s, const char *layer) {
  for (int i = 0; i < s->nfronts; i++)
    if (strcmp(s->fronts[i].layer, layer) == 0) return &s->fronts[i];
  return NULL;
}

int nl_session_unload(nl_session *s, const char *what, nl_error *err) {
  int all = strcmp(what, "all") == 0;
  int known = all;
  if (all || strcmp(what, "model") == 0) {
    replace_str(&s->model_path, NULL);
    free_names(s->model_layers, s->nmodel_layers);
    s->model_layers = NULL;
    s->nmodel_layers = 0;
    s->model_width = 0;
    known = 1;
  }
  if (all || strcmp(what, "maps") == 0) {
    replace_str(&s->maps_path, NULL);
    free_names(s->maps_layers, s->nmaps_layers);
    s->maps_layers = NULL;
    s->nmaps_layers = 0;
    known = 1;
  }
  if (all || strcmp(what, "exprs") == 0) {
    if (s->set.n) push_undo(s);
    nl_exprset_free(&s->set);
    replace_str(&s->exprs_path, NULL);
    s->set_modified = 0;
    drop_tmp(s);
    known = 1;
  }
  if (all || strcmp(what, "fronts") == 0) {
    replace_str(&s->fronts_dir, NULL);
    nl_front_summaries_free(s->fronts, s->nfronts);
    s->fronts = NULL;
    s->nfronts = 0;
    known = 1;
  }
  if (!known)
    return nl_fail(err, NL_EINPUT, "cannot unload '%s' (expected model, maps, exprs, fronts or all)",
                   what);
  for (int i = 0; i < 4; i++)
    if (all || strcmp(what, kinds[i]) == 0) set_origin(s, kinds[i], NULL);
  return 0;
}

static const char *base_name(const char *p) {
  const char *b = strrchr(p, '/');
  return b ? b + 1 : p;
}

char *nl_session_name(const nl_session *s) {
  const char *p = s->model_path ? s->model_path
                  : s->maps_path ? s->maps_path
                                 : s->exprs_path;
  if (!p) return s->set.n ? nl_xstrdup("set") : NULL;
  char *name = nl_xstrdup(base_name(p));
  char *dot = strrchr(name, '.');
  if (dot && dot != name) *dot = '\0';
  return name;
}

const char *nl_session_context(void *session, const char *key) {
  nl_session *s = session;
  if (!s) return NULL;
  if (strcmp(key, "model") == 0) return s->model_path;
  if (strcmp(key, "maps") == 0) return s->maps_path;
  if (strcmp(key, "fronts") == 0) return s->fronts_dir;
  if (strcmp(key, "exprs") == 0) {
    if (!s->set_modified) return s->exprs_path;
    if (!s->tmp_exprs) {
      const char *tmpdir = getenv("TMPDIR");
      char tmpl[4096];
      snprintf(tmpl, sizeof tmpl, "%s/normlab-set.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
      int fd = mkstemp(tmpl);
      if (fd < 0) return NULL;
      close(fd);
      nl_error err;
      nl_error_clear(&err);
      if (nl_exprset_save(&s->set, tmpl, &err) != 0) {
        unlink(tmpl);
        return NULL;
      }
      s->tmp_exprs = nl_xstrdup(tmpl);
    }
    return s->tmp_exprs;
  }
  return nl_session_get_setting(s, key);
}

/* ---- layers ---- */

char **nl_session_layers(const nl_session *s) {
  int cap = s->nmaps_layers + s->nmodel_layers + s->set.n + 1, n = 0;
  char **v = nl_xcalloc((size_t)cap, sizeof(char *));
  char *const *base = s->nmaps_layers ? s->maps_layers : s->model_layers;
  int nbase = s->nmaps_layers ? s->nmaps_layers : s->nmodel_layers;
  for (int i = 0; i < nbase; i++) v[n++] = nl_xstrdup(base[i]);
  for (int i = 0; i < s->set.n; i++) {
    int seen = 0;
    for (int k = 0; k < nbase && !seen; k++) seen = strcmp(base[k], s->set.e[i].name) == 0;
    if (!seen) v[n++] = nl_xstrdup(s->set.e[i].name);
  }
  v[n] = NULL;
  return v;
}

void nl_session_free_names(char **names) {
  if (!names) return;
  for (int i = 0; names[i]; i++) free(names[i]);
  free(names);
}

/* ---- settings ---- */

int nl_session_setting(nl_session *s, const char *key, const char *value, nl_error *err) {
  if (!*key) return nl_fail(err, NL_EINPUT, "empty setting name");
  for (const char *p = key; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
      return nl_fail(err, NL_EINPUT, "bad setting name '%s' (letters, digits, '_' and '-')", key);
  if (value)
    for (const char *p = value; *p; p++)
      if ((unsigned char)*p < 0x20)
        return nl_fail(err, NL_EINPUT, "setting '%s': control characters are not allowed", key);
  for (int i = 0; i < s->nsettings; i++)
    if (strcmp(s->settings[i].key, key) == 0) {
      if (value) {
        replace_str(&s->settings[i].value, value);
      } else {
        free(s->settings[i].key);
        free(s->settings[i].value);
        memmove(&s->settings[i], &s->settings[i + 1],
                sizeof(nl_sess_kv) * (size_t)(s->nsettings - i - 1));
        s->nsettings--;
      }
      return 0;
    }
  if (!value) return 0;
  s->settings = nl_xrealloc(s->settings, sizeof(nl_sess_kv) * (size_t)(s->nsettings + 1));
  s->settings[s->nsettings++] = (nl_sess_kv){nl_xstrdup(key), nl_xstrdup(value)};
  return 0;
}

const char *nl_session_get_setting(const nl_session *s, const char *key) {
  for (int i = 0; i < s->nsettings; i++)
    if (strcmp(s->settings[i].key, key) == 0) return s->settings[i].value;
  return NULL;
}

/* ---- save / open ---- */

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = nl_xmalloc(n);
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static int same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Place a copy of src at dst atomically: hard link when possible, else a
 * byte copy through a temporary file. */
static int place_file(const char *src, const char *dst, nl_error *err) {
  if (same_file(src, dst)) return 0;
  size_t n = strlen(dst) + 32;
  char *tmp = nl_xmalloc(n);
  snprintf(tmp, n, "%s.tmp.%ld", dst, (long)getpid());
  unlink(tmp);
  if (link(src, tmp) == 0) {
    if (rename(tmp, dst) != 0) {
      int e = errno;
      unlink(tmp);
      free(tmp);
      return nl_fail(err, NL_EIO, "%s: cannot rename into place: %s", dst, strerror(e));
    }
    free(tmp);
    return 0;
  }
  free(tmp);
  FILE *in = fopen(src, "rb");
  if (!in) return nl_fail(err, NL_EIO, "%s: cannot open: %s", src, strerror(errno));
  nl_atomic_file af;
  if (nl_atomic_open(&af, dst, err) != 0) {
    fclose(in);
    return -1;
  }
  char buf[1 << 16];
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, got, af.fp) != got) break;
  int bad = ferror(in);
  fclose(in);
  if (bad) {
    nl_atomic_abort(&af);
    return nl_fail(err, NL_EIO, "%s: read error", src);
  }
  return nl_atomic_commit(&af, err);
}

static int place_dir(const char *src, const char *dst, nl_error *err) {
  if (nl_mkdir_p(dst, err) != 0) return -1;
  if (same_file(src, dst)) return 0;
  DIR *d = opendir(src);
  if (!d) return nl_fail(err, NL_EIO, "%s: cannot read directory: %s", src, strerror(errno));
  struct dirent *de;
  int rc = 0;
  while (rc == 0 && (de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    char *a = join(src, de->d_name);
    struct stat st;
    if (stat(a, &st) == 0 && S_ISREG(st.st_mode)) {
      char *b = join(dst, de->d_name);
      rc = place_file(a, b, err);
      free(b);
    }
    free(a);
  }
  closedir(d);
  return rc;
}

static char *abs_path(const char *p) {
  char *r = realpath(p, NULL);
  return r ? r : nl_xstrdup(p);
}

int nl_session_save(nl_session *s, const char *dir, nl_error *err) {
  if (nl_mkdir_p(dir, err) != 0) return -1;
  json_t *j = json_object();
  json_object_set_new(j, "normlab_session", json_integer(1));
  json_t *origin = json_object();
  char *model_name = NULL, *maps_name = NULL;
  int rc = 0;
  if (s->model_path) {
    model_name = nl_xstrdup(base_name(s->model_path));
    char *dst = join(dir, model_name);
    rc = place_file(s->model_path, dst, err);
    free(dst);
    /* a hub-style config.json beside the model travels with it */
    if (rc == 0) {
      char *mdir = nl_xstrdup(s->model_path);
      char *slash = strrchr(mdir, '/');
      if (slash) *slash = '\0';
      char *cfg = join(slash ? mdir : ".", "config.json");
      if (nl_file_exists(cfg)) {
        char *cdst = join(dir, "config.json");
        rc = place_file(cfg, cdst, err);
        free(cdst);
      }
      free(cfg);
      free(mdir);
    }
    json_object_set_new(j, "model", json_string(model_name));

  }
  if (rc == 0 && s->maps_path) {
    const char *b = base_name(s->maps_path);
    size_t n = strlen(b) + 8;
    maps_name = nl_xmalloc(n);
    snprintf(maps_name, n, "%s%s", model_name && strcmp(model_name, b) == 0 ? "maps-" : "", b);
    char *dst = join(dir, maps_name);
    rc = place_file(s->maps_path, dst, err);
    free(dst);
    json_object_set_new(j, "maps", json_string(maps_name));

  }
  if (rc == 0 && (s->set.n || s->exprs_path)) {
    char *dst = join(dir, "set.exprs");
    rc = nl_exprset_save(&s->set, dst, err);
    free(dst);
    json_object_set_new(j, "exprs", json_string("set.exprs"));

  }
  if (rc == 0 && s->fronts_dir) {
    char *dst = join(dir, "fronts");
    rc = place_dir(s->fronts_dir, dst, err);
    free(dst);
    json_object_set_new(j, "fronts", json_string("fronts"));

  }
  json_t *settings = json_object();
  for (int i = 0; i < s->nsettings; i++)
    json_object_set_new(settings, s->settings[i].key, json_string(s->settings[i].value));
  json_object_set_new(j, "settings", settings);
  for (int i = 0; i < 4; i++)
    if (s->origin[i]) json_object_set_new(origin, kinds[i], json_string(s->origin[i]));
  json_object_set_new(j, "origin", origin);
  if (rc == 0) {
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    size_t len = strlen(text);
    char *out = nl_xmalloc(len + 2);
    memcpy(out, text, len);
    out[len] = '\n';
    out[len + 1] = '\0';
    free(text);
    char *dst = join(dir, NL_SESSION_FILE);
    rc = nl_write_file_atomic(dst, out, len + 1, err);
    free(dst);
    free(out);
  }
  json_decref(j);
  free(model_name);
  if (rc != 0) {
    free(maps_name);
    return -1;
  }
  /* the session now lives in dir */
  if (s->model_path) {
    char *p = join(dir, base_name(s->model_path));
    free(s->model_path);
    s->model_path = p;
  }
  if (s->maps_path) {
    char *p = join(dir, maps_name);
    free(s->maps_path);
    s->maps_path = p;
  }
  if (s->exprs_path || s->set.n) {
    free(s->exprs_path);
    s->exprs_path = join(dir, "set.exprs");
    s->set_modified = 0;
    drop_tmp(s);
  }
  free(maps_name);
  if (s->fronts_dir) {
    free(s->fronts_dir);
    s->fronts_dir = join(dir, "fronts");
  }
  replace_str(&s->dir, dir);
  return 0;
}

static int get_name(json_t *j, const char *key, const char *dir, char **out, nl_error *err) {
  json_t *v = json_object_get(j, key);
  *out = NULL;
  if (!v || json_is_null(v)) return 0;
  const char *name = json_string_value(v);
  if (!name || !*name || strchr(name, '/') || strcmp(name, "..") == 0 || strcmp(name, ".") == 0)
    return nl_fail(err, NL_EINPUT, "%s/%s: \"%s\" must be a file name inside the session", dir,
                   NL_SESSION_FILE, key);
  *out = join(dir, name);
  return 0;
}

int nl_session_open(nl_session *s, const char *dir, nl_error *err) {
  char *path = join(dir, NL_SESSION_FILE);
  char *text = nl_read_file(path, NULL, err);
  if (!text) {
    free(path);
    return -1;
  }
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  free(text);
  if (!j || !json_is_object(j) || !json_is_integer(json_object_get(j, "normlab_session"))) {
    if (j)
      nl_fail(err, NL_EINPUT, "%s: not a normlab session file", path);
    else
      nl_fail(err, NL_EINPUT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    json_decref(j);
    free(path);
    return -1;
  }
  if (json_integer_value(json_object_get(j, "normlab_session")) != 1) {
    json_decref(j);
    nl_fail(err, NL_EINPUT, "%s: unsupported session version", path);
    free(path);
    return -1;
  }
  nl_session ns;
  nl_session_init(&ns);
  char *model = NULL, *maps = NULL, *exprs = NULL, *fronts = NULL;
  int rc = get_name(j, "model", dir, &model, err);
  if (rc == 0) rc = get_name(j, "maps", dir, &maps, err);
  if (rc == 0) rc = get_name(j, "exprs", dir, &exprs, err);
  if (rc == 0) rc = get_name(j, "fronts", dir, &fronts, err);
  if (rc == 0 && model) rc = nl_session_load(&ns, "model", model, err);
  if (rc == 0 && maps) rc = nl_session_load(&ns, "maps", maps, err);
  if (rc == 0 && exprs) rc = nl_session_load(&ns, "exprs", exprs, err);
  if (rc == 0 && fronts) rc = nl_session_load(&ns, "fronts", fronts, err);
  json_t *org = json_object_get(j, "origin");
  if (rc == 0 && json_is_object(org))
    for (int i = 0; i < 4; i++) {
      const char *v = json_string_value(json_object_get(org, kinds[i]));
      if (v && ns.origin[i]) {
        free(ns.origin[i]);
        ns.origin[i] = nl_xstrdup(v);
      }
    }
  json_t *settings = json_object_get(j, "settings");
  if (rc == 0 && settings) {
    if (!json_is_object(settings)) {
      rc = nl_fail(err, NL_EINPUT, "%s: \"settings\" must be an object", path);
    } else {
      const char *key;
      json_t *v;
      json_object_foreach(settings, key, v) {
        if (!json_is_string(v)) {
          rc = nl_fail(err, NL_EINPUT, "%s: setting \"%s\" must be a string", path, key);
          break;
        }
        if ((rc = nl_session_setting(&ns, key, json_string_value(v), err)) != 0) break;
      }
    }
  }
  json_decref(j);
  free(model);
  free(maps);
  free(exprs);
  free(fronts);
  if (rc != 0) {
    nl_error_prefix(err, "%s", path);
    free(path);
    nl_session_free(&ns);
    return -1;
  }
  free(path);
  clear_undo(&ns);
  ns.dir = nl_xstrdup(dir);
  nl_session_free(s);
  *s = ns;
  return 0;
}
