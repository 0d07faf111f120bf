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
#include "model/safetensors.h"
#include "model/maps.h"
#include "model/vit.h"

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
  free(s->open_note);
  memset(s, 0, sizeof *s);
}

static void replace_str(char **dst, const char *src) {
  char *v = src ? nl_xstrdup(src) : NULL;
  free(*dst);
  *dst = v;
}

/* ---- the tensors of a safetensors file (model/safetensors.h: mapped, not read) ---- */

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
  nl_st_file f;
  if (nl_st_open(&f, path, err) != 0) return -1;
  char **names = NULL;
  int k = 0;
  for (int i = 0; i < f.n; i++) {
    const char *key = f.t[i].name;
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
    int ok = layer && nl_st_find(&f, ykey) != NULL;
    free(ykey);
    if (!ok) {
      free(layer);
      continue;
    }
    names = nl_xrealloc(names, sizeof(char *) * (size_t)(k + 1));
    names[k++] = layer;
  }
  nl_st_close(&f);
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
  nl_st_file f;
  if (nl_st_open(&f, path, err) != 0) return -1;
  char **names = NULL;
  int k = 0;
  for (int i = 0; i < f.n; i++) {
    const nl_st_tensor *t = &f.t[i];
    if (!ends_with(t->name, ".weight")) continue;
    size_t len = strlen(t->name) - 7;
    char *layer = nl_xstrndup(t->name, len);
    const char *last = strrchr(layer, '.');
    last = last ? last + 1 : layer;
    char *bkey = nl_xmalloc(len + 6);
    snprintf(bkey, len + 6, "%s.bias", layer);
    int ok = strstr(last, "norm") != NULL && t->ndim == 1 && nl_st_find(&f, bkey) != NULL;
    free(bkey);
    if (!ok) {
      free(layer);
      continue;
    }
    names = nl_xrealloc(names, sizeof(char *) * (size_t)(k + 1));
    names[k++] = layer;
    if (t->shape[0] > 0 && t->shape[0] < (1 << 24)) *width = (int)t->shape[0];
  }
  nl_st_close(&f);
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
  s->changes++;
  drop_tmp(s);
  return 0;
}

void nl_session_replace_set(nl_session *s, nl_exprset *set) {
  push_undo(s);
  nl_exprset_free(&s->set);
  s->set = *set;
  nl_exprset_init(set);
  s->set_modified = 1;
  s->changes++;
  drop_tmp(s);
}

int nl_session_undo(nl_session *s) {
  if (s->nundo == 0) return -1;
  nl_exprset_free(&s->set);
  s->set = s->undo[--s->nundo];
  s->set_modified = 1;
  s->changes++;
  drop_tmp(s);
  return 0;
}

int nl_session_unsaved(const nl_session *s) {
  /* an emptied set that never had a file holds nothing to lose */
  return s->set_modified && (s->set.n > 0 || s->exprs_path != NULL);
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
  s->changes++;
  return 0;
}

/* Width and tokens per image of a model: its config as the model loader
 * resolves it; a file the loader does not take keeps the width of its
 * norm weights and no token count. */
static void model_shape(const char *path, int *width, int *tokens) {
  nl_vit_config c;
  *tokens = 0;
  if (nl_vit_read_config(&c, path, NULL, NULL) == 0 && c.dim > 0 && c.tokens > 0) {
    *width = c.dim;
    *tokens = c.tokens;
  }
}

static int load_one(nl_session *s, const char *what, const char *path, nl_error *err) {
  if (strcmp(what, "model") == 0) {
    char **names = NULL;
    int n = 0, width = 0;
    if (model_layers(path, &names, &n, &width, err) != 0) return -1;
    int tokens;
    model_shape(path, &width, &tokens);
    free_names(s->model_layers, s->nmodel_layers);
    s->model_layers = names;
    s->nmodel_layers = n;
    s->model_width = width;
    s->model_tokens = tokens;
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
    s->model_tokens = 0;
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
  s->changes++;
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
  if (strcmp(key, "set") == 0 || strcmp(key, "exprs") == 0) { /* --set (formerly --exprs) */
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
  return nl_session_setting_value(s, key, NULL);
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
  const nl_setting_def *d = nl_setting_find(key);
  if (!d) return nl_setting_unknown(key, err);
  if (value && nl_setting_check(d, value, err) != 0) return -1;
  s->changes++;
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

const char *nl_session_setting_value(const nl_session *s, const char *key, const char **from) {
  const nl_setting_def *d = nl_setting_find(key);
  if (from) *from = NULL;
  if (!d) return NULL;
  const char *v = s ? nl_session_get_setting(s, key) : NULL;
  if (v) {
    if (from) *from = "session";
    return v;
  }
  if ((v = nl_setting_env_value(d, NULL)) != NULL) {
    if (from) *from = d->env;
    return v;
  }
  if (from && d->def) *from = "default";
  return d->def;
}

/* ---- save / open ---- */

static char *join(const char *dir, const char *name) { return nl_path_join(dir, name); }

char *nl_session_path(const nl_session *s, const char *name) {
  return nl_path_join(s->dir ? s->dir : ".", name);
}

/* The directory as kept: without trailing slashes ("/" stays). */
static char *dir_name(const char *dir) {
  char *d = nl_xstrdup(dir);
  size_t n = strlen(d);
  while (n > 1 && d[n - 1] == '/') d[--n] = '\0';
  return d;
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

/* Place the files of directory src in dst; the CSV files dst held that
 * src lacks (an earlier search's fronts) are removed, so dst holds src's
 * fronts and nothing else. */
static int place_dir(const char *src, const char *dst, nl_error *err) {
  if (nl_mkdir_p(dst, err) != 0) return -1;
  if (same_file(src, dst)) return 0;
  DIR *d = opendir(src);
  if (!d)
    return nl_fail(err, nl_errno_code(errno), "%s: cannot read directory: %s", src,
                   strerror(errno));
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
  if (rc != 0 || !(d = opendir(dst))) return rc;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' || !ends_with(de->d_name, ".csv")) continue;
    char *a = join(src, de->d_name), *b = join(dst, de->d_name);
    struct stat st;
    if (!nl_file_exists(a) && lstat(b, &st) == 0 && S_ISREG(st.st_mode)) unlink(b);
    free(a);
    free(b);
  }
  closedir(d);
  return 0;
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
  free(s->dir);
  s->dir = dir_name(dir);
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

/* The session.json at path, checked: a JSON object of a supported
 * version. NULL with err set otherwise (errors name the file). */
static json_t *read_session_file(const char *path, nl_error *err) {
  char *text = nl_read_file(path, NULL, err);
  if (!text) return NULL;
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  free(text);
  if (!j) {
    nl_fail(err, NL_EINPUT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    return NULL;
  }
  if (!json_is_object(j) || !json_is_integer(json_object_get(j, "normlab_session"))) {
    json_decref(j);
    nl_fail(err, NL_EINPUT, "%s: not a normlab session file", path);
    return NULL;
  }
  if (json_integer_value(json_object_get(j, "normlab_session")) != 1) {
    json_decref(j);
    nl_fail(err, NL_EINPUT, "%s: unsupported session version", path);
    return NULL;
  }
  return j;
}

int nl_session_open(nl_session *s, const char *dir, nl_error *err) {
  char *path = join(dir, NL_SESSION_FILE);
  json_t *j = read_session_file(path, err);
  if (!j) {
    free(path);
    return -1;
  }
  nl_session ns;
  nl_session_init(&ns);
  char *model = NULL, *maps = NULL, *exprs = NULL, *fronts = NULL, *dropped = NULL;
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
        /* a setting this version does not know, or a value it does not
         * take, is left out and named (a session saved by another
         * version still opens) */
        nl_error serr;
        if (nl_session_setting(&ns, key, json_string_value(v), &serr) != 0) {
          size_t old = dropped ? strlen(dropped) : 0, add = strlen(serr.msg) + 3;
          dropped = nl_xrealloc(dropped, old + add);
          snprintf(dropped + old, add, "%s%s", old ? "; " : "", serr.msg);
        }
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
    free(dropped);
    nl_session_free(&ns);
    return -1;
  }
  free(path);
  clear_undo(&ns);
  ns.dir = dir_name(dir);
  ns.open_note = dropped;
  ns.changes = s->changes + 1;
  nl_session_free(s);
  *s = ns;
  return 0;
}

int nl_session_record_fronts(nl_session *s, nl_error *err) {
  if (!s->dir) return nl_fail(err, NL_EINPUT, "the session has no directory: 'save DIR' first");
  if (!s->fronts_dir) return nl_fail(err, NL_EINPUT, "the session holds no fronts");
  char *path = join(s->dir, NL_SESSION_FILE);
  json_t *j = read_session_file(path, err);
  if (!j) {
    free(path);
    return -1;
  }
  char *dst = join(s->dir, "fronts");
  int rc = place_dir(s->fronts_dir, dst, err);
  if (rc == 0) {
    json_object_set_new(j, "fronts", json_string("fronts"));
    char *origin = abs_path(s->fronts_dir);
    json_t *org = json_object_get(j, "origin");
    if (!json_is_object(org)) json_object_set_new(j, "origin", org = json_object());
    if (!same_file(s->fronts_dir, dst))
      json_object_set_new(org, "fronts", json_string(s->origin[3] ? s->origin[3] : origin));
    free(origin);
    char *out = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    size_t len = strlen(out);
    out = nl_xrealloc(out, len + 2);
    out[len] = '\n';
    out[len + 1] = '\0';
    rc = nl_write_file_atomic(path, out, len + 1, err);
    free(out);
  }
  json_decref(j);
  free(path);
  if (rc == 0) {
    free(s->fronts_dir);
    s->fronts_dir = dst;
  } else {
    free(dst);
  }
  return rc;
}
