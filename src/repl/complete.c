#define _POSIX_C_SOURCE 200809L
#include "repl/complete.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <readline/readline.h>

#include "app/split.h"
#include "app/workbench.h"
#include "base/mem.h"
#include "expr/expr.h"
#include "model/maps.h"
#include "search/fit.h"
#include "session/session.h"

typedef struct list {
  char **v;
  int n;
} list;

static void add(list *l, const char *s, size_t len) {
  for (int i = 0; i < l->n; i++)
    if (strlen(l->v[i]) == len && strncmp(l->v[i], s, len) == 0) return;
  l->v = nl_xrealloc(l->v, sizeof(char *) * (size_t)(l->n + 2));
  l->v[l->n++] = nl_xstrndup(s, len);
  l->v[l->n] = NULL;
}

static void add_commands(list *l) {
  const nl_cmd *c;
  for (int i = 0; (c = nl_wb_command(i)) != NULL; i++) add(l, c->name, strlen(c->name));
  for (int i = 0; nl_commands[i]; i++) add(l, nl_commands[i]->name, strlen(nl_commands[i]->name));
}

static void add_layers(list *l, const nl_session *s) {
  char **names = nl_session_layers(s);
  for (int i = 0; names[i]; i++) add(l, names[i], strlen(names[i]));
  nl_session_free_names(names);
}

static void add_choices(list *l, const char *choices) {
  const char *p = choices;
  while (p && *p) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    add(l, p, len);
    p = bar ? bar + 1 : NULL;
  }
}

static int is_metavar(const char *s, size_t len) {
  if (len == 0) return 0;
  for (size_t i = 0; i < len; i++)
    if (!isupper((unsigned char)s[i]) && s[i] != '_') return 0;
  return 1;
}

/* Candidates for the positional argument `index` from the synopsis: a word
 * "a|b|LAYER" offers the literals a and b and the layer names; FILE, DIR
 * and PATH ask for file names; COMMAND offers command names. */
/* The node paths of a layer's current expression (fold's NODE). */
static void add_node_paths(list *l, const nl_session *s, const char *layer) {
  const nl_exprset_entry *e = layer ? nl_session_find(s, layer) : NULL;
  if (!e) return;
  for (int i = e->prog.len - 1; i >= 0; i--) {
    char *path = nl_fit_node_path(&e->prog, i);
    add(l, path, strlen(path));
    free(path);
  }
}

static void add_positional(list *l, const nl_session *s, const char *synopsis, int index,
                           int *files, const char *first) {
  if (!synopsis) return;
  char *syn = nl_xstrdup(synopsis);
  int k = 0;
  for (char *save = NULL, *w = strtok_r(syn, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
    /* strip [ ] ( ) and a trailing ... */
    char *a = w;
    while (*a == '[' || *a == '(') a++;
    char *b = a + strlen(a);
    while (b > a && (b[-1] == ']' || b[-1] == ')' || b[-1] == '.')) b--;
    int repeat = strstr(w, "...") != NULL;
    if (k == index || (repeat && index > k)) {
      const char *p = a;
      while (p < b) {
        const char *bar = memchr(p, '|', (size_t)(b - p));
        size_t len = bar ? (size_t)(bar - p) : (size_t)(b - p);
        if (is_metavar(p, len)) {
          if (len == 5 && strncmp(p, "LAYER", 5) == 0) add_layers(l, s);
          else if (len == 7 && strncmp(p, "COMMAND", 7) == 0) add_commands(l);
          else if (len == 4 && strncmp(p, "NODE", 4) == 0) add_node_paths(l, s, first);
          else if ((len == 4 && (strncmp(p, "FILE", 4) == 0 || strncmp(p, "PATH", 4) == 0)) ||
                   (len == 3 && strncmp(p, "DIR", 3) == 0))
            *files = 1;
        } else if (len) {
          add(l, p, len);
        }
        p = bar ? bar + 1 : b;
      }
      break;
    }
    k++;
  }
  free(syn);
}

static const nl_opt *find_opt(const nl_cmd *cmd, const char *word) {
  if (strncmp(word, "--", 2) != 0 || strchr(word, '=')) return NULL;
  for (int i = 0; cmd->opts && cmd->opts[i].name; i++)
    if (strcmp(cmd->opts[i].name, word + 2) == 0) return &cmd->opts[i];
  return NULL;
}

static void candidates(list *l, const nl_session *s, const nl_words *w, const char *text,
                       int *files) {
  *files = 0;
  if (w->argc == 0) {
    add_commands(l);
    return;
  }
  const nl_cmd *cmd = nl_wb_find(w->argv[0]);
  if (!cmd) return;
  const nl_opt *prev = w->argc >= 2 ? find_opt(cmd, w->argv[w->argc - 1]) : NULL;
  if (prev && prev->type != NL_OPT_FLAG) {
    if (prev->type == NL_OPT_CHOICE) add_choices(l, prev->choices);
    else if (prev->flags & NL_OPTF_LAYER) add_layers(l, s);
    else if (prev->flags & NL_OPTF_PATH) *files = 1;
    return;
  }
  if (text[0] == '-') {
    char buf[128];
    for (int i = 0; cmd->opts && cmd->opts[i].name; i++) {
      snprintf(buf, sizeof buf, "--%s", cmd->opts[i].name);
      add(l, buf, strlen(buf));
    }
    add(l, "--help", 6);
    return;
  }
  /* count positionals so far */
  int npos = 0;
  const char *first = NULL;
  for (int i = 1; i < w->argc; i++) {
    const nl_opt *o = find_opt(cmd, w->argv[i]);
    if (o) {
      if (o->type != NL_OPT_FLAG) i++;
      continue;
    }
    if (strncmp(w->argv[i], "--", 2) == 0) continue;
    if (npos == 0) first = w->argv[i];
    npos++;
  }
  add_positional(l, s, cmd->args, npos, files, first);
}

/* Natural order (blocks.2 before blocks.10), as the layers are listed. */
static int natural_cmp(const void *pa, const void *pb) {
  return nl_natural_cmp(*(char *const *)pa, *(char *const *)pb);
}

/* Words before the one being completed, for the command the cursor is in. */
static void words_before(const char *line, nl_words *w) {
  int open;
  nl_split_tail(line, w, &open);
  if (open && w->argc > 0) { /* the current word (e.g. an opening quote) */
    free(w->argv[--w->argc]);
    w->argv[w->argc] = NULL;
  }
}

char **nl_complete_candidates(const nl_session *s, const char *line, int *files) {
  nl_words w;
  int open;
  nl_split_tail(line, &w, &open);
  char *text = nl_xstrdup("");
  if (open && w.argc > 0) {
    free(text);
    text = w.argv[--w.argc];
    w.argv[w.argc] = NULL;
  }
  list l = {NULL, 0};
  candidates(&l, s, &w, text, files);
  nl_words_clear(&w);
  list out = {NULL, 0};
  for (int i = 0; i < l.n; i++)
    if (strncmp(l.v[i], text, strlen(text)) == 0) add(&out, l.v[i], strlen(l.v[i]));
  for (int i = 0; i < l.n; i++) free(l.v[i]);
  free(l.v);
  free(text);
  if (!out.v) out.v = nl_xcalloc(1, sizeof(char *));
  return out.v;
}

/* ---- readline glue ---- */

static list g_cands;
static int g_index;
static const nl_session *g_sess; /* the session completed against */

static char *generator(const char *text, int state) {
  if (state == 0) g_index = 0;
  size_t n = strlen(text);
  while (g_index < g_cands.n) {
    const char *c = g_cands.v[g_index++];
    if (strncmp(c, text, n) == 0) return nl_xstrdup(c);
  }
  return NULL;
}

static char **attempt(const char *text, int start, int end) {
  (void)end;
  rl_attempted_completion_over = 1;
  for (int i = 0; i < g_cands.n; i++) free(g_cands.v[i]);
  free(g_cands.v);
  g_cands = (list){NULL, 0};
  char *before = nl_xstrndup(rl_line_buffer, (size_t)start);
  nl_words w;
  words_before(before, &w);
  free(before);
  int files = 0;
  candidates(&g_cands, g_sess, &w, text, &files);
  nl_words_clear(&w);
  if (files) {
    rl_sort_completion_matches = 1;
    return rl_completion_matches(text, rl_filename_completion_function);
  }
  /* shown in natural order (readline would put blocks.10 before blocks.2) */
  if (g_cands.n > 1) qsort(g_cands.v, (size_t)g_cands.n, sizeof(char *), natural_cmp);
  rl_sort_completion_matches = 0;
  return rl_completion_matches(text, generator);
}

void nl_complete_install(const nl_session *s) {
  g_sess = s;
  rl_attempted_completion_function = attempt;
  rl_completer_word_break_characters = " \t\n;";
  rl_completer_quote_characters = "\"'";
  rl_filename_quote_characters = " \t\n\"\\'`@$><=;|&{(";
}

void nl_complete_cleanup(void) {
  for (int i = 0; i < g_cands.n; i++) free(g_cands.v[i]);
  free(g_cands.v);
  g_cands = (list){NULL, 0};
  g_sess = NULL;
}
