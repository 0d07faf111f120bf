/* Shell-like splitting of command lines: words separated by blanks,
 * 'single quotes' taken literally, "double quotes" with \" and \\ escapes,
 * a backslash outside quotes escaping the next character, an unquoted ';'
 * separating commands, an unquoted '#' at the start of a word starting a
 * comment that runs to the end of the line, and an unquoted '~' starting a
 * word ("~" or "~/...") standing for $HOME. */
#ifndef NL_APP_SPLIT_H
#define NL_APP_SPLIT_H

#include "base/error.h"

typedef struct nl_words {
  int argc;
  char **argv; /* argc words, NULL-terminated; owned */
} nl_words;

/* Split `line` into commands. Empty commands are dropped, so a blank or
 * comment-only line gives *ncmds == 0. An unterminated quote is an
 * NL_EINPUT error naming the column. */
int nl_split_line(const char *line, nl_words **cmds, int *ncmds, nl_error *err);
/* Free an array from nl_split_line (words and array). */
void nl_words_free(nl_words *cmds, int ncmds);
/* Free the words of one nl_words (not the struct itself). */
void nl_words_clear(nl_words *w);

/* Whether `line` cannot end here and the next input line continues it:
 * 1 when it ends inside quotes (the newline belongs to the word), 2 when
 * it ends with a single trailing backslash (the lines are glued); else 0. */
int nl_split_incomplete(const char *line);

/* For completion: the words of the last command in `line` (tolerating an
 * open quote). If the line ends inside a word, that unfinished word is the
 * last one and *open_word is 1; if it ends in blanks, *open_word is 0. */
void nl_split_tail(const char *line, nl_words *w, int *open_word);

#endif
