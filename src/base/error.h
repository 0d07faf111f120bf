/* Errors with messages: every library call that can fail takes an nl_error*
 * and fills it; callers decide how to report. The library never prints. */
#ifndef NL_BASE_ERROR_H
#define NL_BASE_ERROR_H

#include <stddef.h>

enum nl_status {
  NL_OK = 0,
  NL_EINPUT = 2,     /* bad input: malformed file, bad flag, bad expression */
  NL_EIO = 3,        /* I/O failure: cannot open/read/write */
  NL_ENOMEM = 4,     /* allocation failure */
  NL_EINTR = 5,      /* interrupted by the user (SIGINT) */
  NL_EINTERNAL = 6,  /* a bug: invariant violated */
};

#define NL_ERRMSG_MAX 1024

typedef struct nl_error {
  int code;                  /* enum nl_status */
  char msg[NL_ERRMSG_MAX];   /* human-readable, may span lines (caret display) */
} nl_error;

/* Clear an error (code NL_OK, empty message). Accepts NULL. */
void nl_error_clear(nl_error *e);

/* Set code and printf-style message; returns -1 so callers can
 * `return nl_fail(err, NL_EINPUT, "...")`. Accepts e == NULL. */
int nl_fail(nl_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message: "<prefix>: <old message>". Returns -1. */
int nl_error_prefix(nl_error *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The code of a failed open, create or mkdir of a path the user named,
 * from errno: NL_EINPUT when the path is at fault (missing, permission
 * denied, not a directory, a directory, too long, a loop, a read-only
 * file system), NL_EIO for the rest (disk errors, no space, too many
 * open files). */
int nl_errno_code(int errnum);

/* Map an error to a process exit status: NL_EINPUT -> 2, NL_EINTR -> 130,
 * anything else non-zero -> 1. */
int nl_error_exit_status(const nl_error *e);

#endif
