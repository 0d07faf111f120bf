/* Expression sets (*.exprs): one "NAME = EXPR  # comment" per line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "base/mem.h"
#include "expr/local.h"

void nl_exprset_init(nl_exprset *s) {
  s->e = NULL;
  s->n = s->cap = 0;
}

void nl_exprset_free(nl_exprset *s) {
  for (int i = 0; i < s->n; i++) {
    free(s->e[i].name);
    free(s->e[i].comment);
    free(s->e[i].text);
    nl_prog_free(&s->e[i].prog);
  }
  free(s->e);
  nl_exprset_init(s);
}

const nl_exprset_entry *nl_exprset_find(const nl_exprset *s, const char *name) {
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->e[i].name, name) == 0) return &s->e[i];
  return NULL;
}

/* The entry of `name`, added (empty) when the set has none. */
static nl_exprset_entry *entry(nl_exprset *s, const char *name) {
  nl_exprset_entry *e = (nl_exprset_entry *)nl_exprset_find(s, name);
  if (!e) {
    if (s->n == s->cap) {
      s->cap = s->cap ? 2 * s->cap : 16;
      s->e = nl_xrealloc(s->e, sizeof(*s->e) * (size_t)s->cap);
    }
    e = &s->e[s->n++];
    e->name = nl_xstrdup(name);
    e->comment = NULL;
    e->text = NULL;
    e->line = 0;
    nl_prog_init(&e->prog);
  }
  return e;
}

static void set_comment(nl_exprset_entry *e, const char *comment) {
  char *c = comment ? nl_xstrdup(comment) : NULL;
  free(e->comment);
  e->comment = c;
}

void nl_exprset_set(nl_exprset *s, const char *name, const nl_prog *p, const char *comment) {
  nl_exprset_entry *e = entry(s, name);
  set_comment(e, comment);
  nl_prog_copy(&e->prog, p);
  free(e->text);
  e->text = nl_print(&e->prog, NL_PRINT_EXACT);
}

int nl_exprset_set_text(nl_exprset *s, const char *name, const char *text, const char *comment,
                        const char *origin, nl_error *err) {
  nl_prog p;
  nl_prog_init(&p);
  size_t len = strlen(text);
  const char *nl = memchr(text, '\n', len);
  if (nl_parse_span(text, len, origin, 1, 0, nl ? NULL : text, len, &p, err) != 0) {
    nl_prog_free(&p);
    return -1;
  }
  nl_exprset_entry *e = entry(s, name);
  set_comment(e, comment);
  nl_prog_free(&e->prog);
  e->prog = p;
  free(e->text);
  e->text = nl_xstrdup(text);
  e->line = 0;
  return 0;
}

void nl_exprset_remove(nl_exprset *s, const char *name) {
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->e[i].name, name) == 0) {
      free(s->e[i].name);
      free(s->e[i].comment);
      free(s->e[i].text);
      nl_prog_free(&s->e[i].prog);
      memmove(&s->e[i], &s->e[i + 1], sizeof(*s->e) * (size_t)(s->n - i - 1));
      s->n--;
      return;
    }
}

void nl_exprset_copy(nl_exprset *dst, const nl_exprset *src) {
  nl_exprset_init(dst);
  for (int i = 0; i < src->n; i++) {
    const nl_exprset_entry *f = &src->e[i];
    nl_exprset_entry *e = entry(dst, f->name);
    set_comment(e, f->comment);
    nl_prog_copy(&e->prog, &f->prog);
    e->text = f->text ? nl_xstrdup(f->text) : nl_print(&f->prog, NL_PRINT_EXACT);
    e->line = f->line;
  }
}

static int name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.' || c == '-' || c == ':' || c == '/' || c == '[' || c == ']';
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

static int line_error(nl_error *err, const char *file, int line, int col, const char *src,
                      size_t len, const char *msg) {
  return nl_expr_caret_error(err, file, line, col, src, len, msg);
}

int nl_exprset_parse(const char *text, const char *filename, nl_exprset *s, nl_error *err) {
  const char *file = filename ? filename : "<input>";
  int lineno = 0;
  const char *p = text;
  nl_prog prog;
  nl_prog_init(&prog);
  int *first_line = NULL; /* line where each entry was defined */
  int rc = 0;
  while (*p) {
    lineno++;
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    const char *next = eol ? eol + 1 : p + len;
    size_t ll = len;
    if (ll > 0 && p[ll - 1] == '\r') ll--;
    /* strip the comment */
    const char *hash = memchr(p, '#', ll);
    size_t body = hash ? (size_t)(hash - p) : ll;
    size_t i = 0;
    while (i < body && is_space(p[i])) i++;
    if (i == body) { /* blank or comment-only line */
      p = next;
      continue;
    }
    const char *eq = memchr(p, '=', body);
    if (!eq) {
      rc = line_error(err, file, lineno, (int)i + 1, p, ll,
                      "expected 'NAME = EXPR' (no '=' on this line)");
      break;
    }
    size_t ns = i, ne = (size_t)(eq - p);
    while (ne > ns && is_space(p[ne - 1])) ne--;
    if (ne == ns) {
      rc = line_error(err, file, lineno, (int)(eq - p) + 1, p, ll, "missing layer name before '='");
      break;
    }
    size_t bad = ns;
    while (bad < ne && name_char(p[bad])) bad++;
    if (bad < ne) {
      rc = line_error(err, file, lineno, (int)bad + 1, p, ll,
                      "invalid character in layer name (use letters, digits and _ . - : / [ ])");
      break;
    }
    char *name = nl_xstrndup(p + ns, ne - ns);
    size_t es = (size_t)(eq - p) + 1;
    if (nl_parse_span(p + es, body - es, file, lineno, (int)es, p, ll, &prog, err) != 0) {
      free(name);
      rc = -1;
      break;
    }
    const nl_exprset_entry *dup = nl_exprset_find(s, name);
    if (dup) {
      char msg[300];
      snprintf(msg, sizeof msg, "duplicate layer name '%.200s' (first defined on line %d)", name,
               first_line[dup - s->e]);
      free(name);
      rc = line_error(err, file, lineno, (int)ns + 1, p, ll, msg);
      break;
    }
    char *comment = NULL;
    if (hash) {
      size_t cs = (size_t)(hash - p) + 1, ce = ll;
      while (cs < ce && is_space(p[cs])) cs++;
      while (ce > cs && is_space(p[ce - 1])) ce--;
      if (ce > cs) comment = nl_xstrndup(p + cs, ce - cs);
    }
    nl_exprset_set(s, name, &prog, comment);
    first_line = nl_xrealloc(first_line, sizeof(int) * (size_t)s->cap);
    first_line[s->n - 1] = lineno;
    s->e[s->n - 1].line = lineno;
    { /* the expression as written, without the blanks around it */
      size_t ts = es, te = body;
      while (ts < te && is_space(p[ts])) ts++;
      while (te > ts && is_space(p[te - 1])) te--;
      free(s->e[s->n - 1].text);
      s->e[s->n - 1].text = nl_xstrndup(p + ts, te - ts);
    }
    free(name);
    free(comment);
    p = next;
  }
  free(first_line);
  nl_prog_free(&prog);
  return rc;
}

int nl_exprset_load(const char *path, nl_exprset *s, nl_error *err) {
  size_t len = 0;
  char *text = nl_read_file(path, &len, err);
  if (!text) return -1;
  if (strlen(text) != len) {
    free(text);
    return nl_fail(err, NL_EINPUT, "%s: contains a NUL byte; not an expression set", path);
  }
  int rc = nl_exprset_parse(text, path, s, err);
  free(text);
  return rc;
}

int nl_exprset_save(const nl_exprset *s, const char *path, nl_error *err) {
  for (int i = 0; i < s->n; i++) {
    const nl_prog *p = &s->e[i].prog;
    if (p->len < 1) return nl_fail(err, NL_EINPUT, "%s: layer '%s' has no expression", path, s->e[i].name);
    for (int k = 0; k < p->len; k++)
      if (p->nodes[k].op == NL_OP_CONST && !isfinite(p->nodes[k].val))
        return nl_fail(err, NL_EINPUT, "%s: layer '%s' has a constant that is not finite",
                       path, s->e[i].name);
    for (const char *c = s->e[i].name; *c; c++)
      if (!name_char(*c))
        return nl_fail(err, NL_EINPUT, "%s: layer name '%s' cannot be written", path,
                       s->e[i].name);
  }
  nl_atomic_file af;
  if (nl_atomic_open(&af, path, err) != 0) return -1;
  fprintf(af.fp, "# normlab expression set: NAME = EXPR, one per line\n");
  for (int i = 0; i < s->n; i++) {
    /* the text as written, unless it could not be read back as one line */
    const char *t = s->e[i].text;
    int as_written = t && !strchr(t, '\n') && !strchr(t, '#');
    char *e = as_written ? NULL : nl_print(&s->e[i].prog, NL_PRINT_EXACT);
    fprintf(af.fp, "%s = %s", s->e[i].name, e ? e : t);
    if (s->e[i].comment) {
      /* a comment never spans lines */
      fprintf(af.fp, "  # ");
      for (const char *c = s->e[i].comment; *c; c++) fputc(*c == '\n' ? ' ' : *c, af.fp);
    }
    fputc('\n', af.fp);
    free(e);
  }
  return nl_atomic_commit(&af, err);
}
