#define _POSIX_C_SOURCE 200809L
#include "base/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"

char *nl_read_file(const char *path, size_t *len, nl_error *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    nl_fail(err, errno == ENOENT ? NL_EINPUT : NL_EIO, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = nl_xmalloc(cap + 1);
  for (;;) {
    size_t got = fread(buf + n, 1, cap - n, fp);
    n += got;
    if (n < cap) {
      if (ferror(fp)) {
        nl_fail(err, NL_EIO, "%s: read error: %s", path, strerror(errno));
        fclose(fp);
        free(buf);
        return NULL;
      }
      break;
    }
    cap *= 2;
    buf = nl_xrealloc(buf, cap + 1);
  }
  fclose(fp);
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

int nl_atomic_open(nl_atomic_file *af, const char *path, nl_error *err) {
  memset(af, 0, sizeof *af);
  size_t n = strlen(path);
  af->path = nl_xstrdup(path);
  af->tmppath = nl_xmalloc(n + 32);
  snprintf(af->tmppath, n + 32, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(af->tmppath);
  if (fd < 0) {
    nl_fail(err, NL_EIO, "%s: cannot create temporary file: %s", path, strerror(errno));
    free(af->path);
    free(af->tmppath);
    memset(af, 0, sizeof *af);
    return -1;
  }
  fchmod(fd, 0644);
  af->fp = fdopen(fd, "wb");
  if (!af->fp) {
    close(fd);
    unlink(af->tmppath);
    nl_fail(err, NL_EIO, "%s: fdopen failed: %s", path, strerror(errno));
    free(af->path);
    free(af->tmppath);
    memset(af, 0, sizeof *af);
    return -1;
  }
  return 0;
}

int nl_atomic_commit(nl_atomic_file *af, nl_error *err) {
  int rc = 0;
  if (fflush(af->fp) != 0 || ferror(af->fp)) {
    rc = nl_fail(err, NL_EIO, "%s: write failed: %s", af->path, strerror(errno));
  } else if (fsync(fileno(af->fp)) != 0 && errno != EINVAL) {
    rc = nl_fail(err, NL_EIO, "%s: fsync failed: %s", af->path, strerror(errno));
  }
  if (fclose(af->fp) != 0 && rc == 0)
    rc = nl_fail(err, NL_EIO, "%s: close failed: %s", af->path, strerror(errno));
  af->fp = NULL;
  if (rc == 0 && rename(af->tmppath, af->path) != 0)
    rc = nl_fail(err, NL_EIO, "%s: rename failed: %s", af->path, strerror(errno));
  if (rc != 0) unlink(af->tmppath);
  free(af->path);
  free(af->tmppath);
  af->path = af->tmppath = NULL;
  return rc;
}

void nl_atomic_abort(nl_atomic_file *af) {
  if (af->fp) fclose(af->fp);
  if (af->tmppath) unlink(af->tmppath);
  free(af->path);
  free(af->tmppath);
  memset(af, 0, sizeof *af);
}

/* "NAME.tmp.XXXXXX" with a non-empty NAME and six characters after ".tmp." */
static int is_atomic_tmp(const char *name) {
  size_t n = strlen(name);
  return n > 11 && strncmp(name + n - 11, ".tmp.", 5) == 0;
}

int nl_atomic_cleanup(const char *dir, nl_error *err) {
  DIR *d = opendir(dir);
  if (!d) return nl_fail(err, NL_EIO, "%s: cannot read directory: %s", dir, strerror(errno));
  int removed = 0;
  struct dirent *de;
  size_t dl = strlen(dir);
  while ((de = readdir(d)) != NULL) {
    if (!is_atomic_tmp(de->d_name)) continue;
    size_t cap = dl + strlen(de->d_name) + 2;
    char *p = nl_xmalloc(cap);
    snprintf(p, cap, "%s/%s", dir, de->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISREG(st.st_mode) && unlink(p) == 0) removed++;
    free(p);
  }
  closedir(d);
  return removed;
}

int nl_write_file_atomic(const char *path, const void *data, size_t len, nl_error *err) {
  nl_atomic_file af;
  if (nl_atomic_open(&af, path, err) != 0) return -1;
  if (len && fwrite(data, 1, len, af.fp) != len) {
    nl_fail(err, NL_EIO, "%s: write failed: %s", path, strerror(errno));
    nl_atomic_abort(&af);
    return -1;
  }
  return nl_atomic_commit(&af, err);
}

int nl_mkdir_p(const char *path, nl_error *err) {
  char *p = nl_xstrdup(path);
  size_t n = strlen(p);
  while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      nl_fail(err, NL_EIO, "%s: cannot create directory: %s", p, strerror(errno));
      free(p);
      return -1;
    }
    *s = '/';
  }
  if (mkdir(p, 0777) != 0 && errno != EEXIST) {
    nl_fail(err, NL_EIO, "%s: cannot create directory: %s", p, strerror(errno));
    free(p);
    return -1;
  }
  struct stat st;
  if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
    nl_fail(err, NL_EINPUT, "%s: exists and is not a directory", p);
    free(p);
    return -1;
  }
  free(p);
  return 0;
}

int nl_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}
