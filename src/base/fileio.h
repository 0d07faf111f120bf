/* File helpers: whole-file reads and atomic writes (temporary file in the
 * same directory, fsync, rename), so an interrupt never leaves half a file. */
#ifndef NL_BASE_FILEIO_H
#define NL_BASE_FILEIO_H

#include <stdio.h>
#include <stddef.h>

#include "base/error.h"

/* Read a whole file into a NUL-terminated buffer (caller frees). */
char *nl_read_file(const char *path, size_t *len, nl_error *err);

typedef struct nl_atomic_file {
  FILE *fp;
  char *path;     /* final path */
  char *tmppath;  /* temporary path beside it */
} nl_atomic_file;

/* Open a temporary file beside `path` for writing. */
int nl_atomic_open(nl_atomic_file *af, const char *path, nl_error *err);
/* Flush, fsync, close and rename into place. On failure the temporary
 * file is removed and the destination is untouched. */
int nl_atomic_commit(nl_atomic_file *af, nl_error *err);
/* Close and remove the temporary file; destination untouched. */
void nl_atomic_abort(nl_atomic_file *af);

/* Remove the temporary files an interrupted atomic write left in `dir`
 * (names "NAME.tmp.XXXXXX", as nl_atomic_open makes them). Returns how
 * many were removed, or -1 (err set) when dir cannot be read. */
int nl_atomic_cleanup(const char *dir, nl_error *err);

/* Write a buffer to `path` atomically. */
int nl_write_file_atomic(const char *path, const void *data, size_t len, nl_error *err);

/* mkdir -p (mode 0777 & umask). */
int nl_mkdir_p(const char *path, nl_error *err);

int nl_file_exists(const char *path);

#endif
