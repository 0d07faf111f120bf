#include "base/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void nl_error_clear(nl_error *e) {
  if (!e) return;
  e->code = NL_OK;
  e->msg[0] = '\0';
}

int nl_fail(nl_error *e, int code, const char *fmt, ...) {
  if (!e) return -1;
  e->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return -1;
}

int nl_error_prefix(nl_error *e, const char *fmt, ...) {
  if (!e) return -1;
  char prefix[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  char old[NL_ERRMSG_MAX];
  memcpy(old, e->msg, sizeof old);
  size_t n = strlen(prefix);
  if (n > sizeof e->msg - 3) n = sizeof e->msg - 3;
  memcpy(e->msg, prefix, n);
  e->msg[n] = ':';
  e->msg[n + 1] = ' ';
  size_t room = sizeof e->msg - n - 3;
  size_t m = strnlen(old, room);
  memcpy(e->msg + n + 2, old, m);
  e->msg[n + 2 + m] = '\0';
  return -1;
}

int nl_error_exit_status(const nl_error *e) {
  if (!e || e->code == NL_OK) return 0;
  if (e->code == NL_EINPUT) return 2;
  if (e->code == NL_EINTR) return 130;
  return 1;
}

int nl_errno_code(int errnum) {
  switch (errnum) {
    case ENOENT:
    case EACCES:
    case EPERM:
    case ENOTDIR:
    case EISDIR:
    case ENAMETOOLONG:
    case ELOOP:
    case EROFS:
      return NL_EINPUT;
    default:
      return NL_EIO;
  }
}
