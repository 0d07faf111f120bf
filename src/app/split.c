#include "app/split.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

typedef struct buf {
  char *s;
  size_t n, cap;
} buf;

static void buf_put(buf *b, char c) {
  if (b->n + 1 >= b->cap) {
    b->cap = b->cap ? b->cap * 2 : 32;
    b->s = nl_xrealloc(b->s, b->cap);
  }
  b->s[b->n++] = c;
  b->s[b->n] = '\0';
}

/* Make the word exist even when empty ("" is a word). */
static void buf_touch(buf *b) {
  if (!b->s) {
    b->cap = 32;
    b->s = nl_xmalloc(b->cap);
    b->s[0] = '\0';
  }
}

static void words_push(nl_words *w, char *s) {
  w->argv = nl_xrealloc(w->argv, sizeof(char *) * (size_t)(w->argc + 2));
  w->argv[w->argc++] = s;
  w->argv[w->argc] = NULL;
}

static void cmds_push(nl_words **cmds, int *n, nl_words *w) {
  if (w->argc == 0) return;
  *cmds = nl_xrealloc(*cmds, sizeof(nl_words) * (size_t)(*n + 1));
  (*cmds)[(*n)++] = *w;
  w->argc = 0;
  w->argv = NULL;
}

/* The lexer. tolerant: never fails (completion); *open_word set when the
 * line ends inside a word. Returns -1 with err on an unterminated quote. */
static int lex(const char *line, int tolerant, nl_words **cmds, int *ncmds, int *open_word,
               nl_error *err) {
  nl_words cur = {0, NULL};
  buf word = {NULL, 0, 0};
  int in_word = 0;
  const char *p = line;
  *cmds = NULL;
  *ncmds = 0;
  while (*p) {
    char c = *p;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) {
        words_push(&cur, word.s ? word.s : nl_xstrdup(""));
        word = (buf){NULL, 0, 0};
        in_word = 0;
      }
      p++;
    } else if (c == ';') {
      if (in_word) {
        words_push(&cur, word.s ? word.s : nl_xstrdup(""));
        word = (buf){NULL, 0, 0};
        in_word = 0;
      }
      cmds_push(cmds, ncmds, &cur);
      p++;
    } else if (c == '#' && !in_word) {
      break;
    } else if (c == '~' && !in_word && (p[1] == '/' || p[1] == '\0' || p[1] == ' ' || p[1] == ';') &&
               getenv("HOME") && *getenv("HOME")) {
      /* ~ at the start of an unquoted word is the home directory, as in sh */
      in_word = 1;
      for (const char *h = getenv("HOME"); *h; h++) buf_put(&word, *h);
      p++;
    } else if (c == '\'') {
      const char *q = strchr(p + 1, '\'');
      in_word = 1;
      buf_touch(&word);
      if (!q) {
        if (!tolerant) {
          free(word.s);
          nl_words_clear(&cur);
          nl_words_free(*cmds, *ncmds);
          *cmds = NULL;
          *ncmds = 0;
          return nl_fail(err, NL_EINPUT, "column %d: unterminated single quote",
                         (int)(p - line) + 1);
        }
        for (p++; *p; p++) buf_put(&word, *p);
        break;
      }
      for (p++; p < q; p++) buf_put(&word, *p);
      p = q + 1;
    } else if (c == '"') {
      const char *start = p;
      in_word = 1;
      buf_touch(&word);
      p++;
      while (*p && *p != '"') {
        if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
        buf_put(&word, *p++);
      }
      if (!*p) {
        if (tolerant) break;
        free(word.s);
        nl_words_clear(&cur);
        nl_words_free(*cmds, *ncmds);
        *cmds = NULL;
        *ncmds = 0;
        return nl_fail(err, NL_EINPUT, "column %d: unterminated double quote",
                       (int)(start - line) + 1);
      }
      p++;
    } else if (c == '\\') {
      in_word = 1;
      if (p[1]) {
        buf_put(&word, p[1]);
        p += 2;
      } else {
        buf_touch(&word);
        p++;
      }
    } else {
      in_word = 1;
      buf_put(&word, c);
      p++;
    }
  }
  if (open_word) *open_word = in_word;
  if (in_word) words_push(&cur, word.s ? word.s : nl_xstrdup(""));
  if (tolerant) {
    /* keep the last command even when empty */
    nl_words_free(*cmds, *ncmds);
    *cmds = nl_xmalloc(sizeof(nl_words));
    (*cmds)[0] = cur;
    *ncmds = 1;
    return 0;
  }
  cmds_push(cmds, ncmds, &cur);
  nl_words_clear(&cur);
  return 0;
}

int nl_split_line(const char *line, nl_words **cmds, int *ncmds, nl_error *err) {
  return lex(line, 0, cmds, ncmds, NULL, err);
}

void nl_split_tail(const char *line, nl_words *w, int *open_word) {
  nl_words *cmds;
  int n;
  lex(line, 1, &cmds, &n, open_word, NULL);
  *w = cmds[0];
  free(cmds);
}

void nl_words_clear(nl_words *w) {
  for (int k = 0; k < w->argc; k++) free(w->argv[k]);
  free(w->argv);
  w->argv = NULL;
  w->argc = 0;
}

void nl_words_free(nl_words *cmds, int ncmds) {
  if (!cmds) return;
  for (int i = 0; i < ncmds; i++) nl_words_clear(&cmds[i]);
  free(cmds);
}

int nl_split_incomplete(const char *line) {
  int q = 0; /* 0, '\'' or '"' */
  int in_word = 0;
  for (const char *p = line; *p; p++) {
    char c = *p;
    if (q == '\'') {
      if (c == '\'') q = 0;
    } else if (q == '"') {
      if (c == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
      else if (c == '"') q = 0;
    } else if (c == '\\') {
      if (!p[1]) return 2; /* a trailing backslash continues the line */
      p++;
      in_word = 1;
    } else if (c == '#' && !in_word) {
      return 0; /* the rest is a comment */
    } else if (c == '\'' || c == '"') {
      q = c;
      in_word = 1;
    } else {
      in_word = !(c == ' ' || c == '\t' || c == '\n' || c == ';');
    }
  }
  return q != 0;
}
