#define _POSIX_C_SOURCE 200809L
#include "app/cmd.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/text.h"

const nl_cmd *nl_cmd_find(const char *name) {
  for (int i = 0; nl_commands[i]; i++)
    if (strcmp(nl_commands[i]->name, name) == 0) return nl_commands[i];
  return NULL;
}

void nl_cmd_register(const nl_cmd *cmd) {
  int i = 0;
  for (; nl_commands[i]; i++)
    if (nl_commands[i] == cmd) return;
  if (i >= NL_MAX_CMDS) {
    fprintf(stderr, "normlab: internal error: more than %d commands\n", NL_MAX_CMDS);
    abort();
  }
  nl_commands[i] = cmd;
  nl_commands[i + 1] = NULL;
}

/* The prompt's own commands, i = 0, 1, ... until NULL (set by the
 * program's start-up; NULL: none known). */
static const nl_cmd *(*session_command)(int i);

void nl_cmd_set_session_commands(const nl_cmd *(*fn)(int i)) { session_command = fn; }

const char *nl_cmd_suggest(const char *name, int session) {
  const char *cands[2 * NL_MAX_CMDS + 2];
  size_t n = 0;
  for (int i = 0; nl_commands[i]; i++) cands[n++] = nl_commands[i]->name;
  const nl_cmd *c;
  for (int i = 0; session && session_command && (c = session_command(i)) != NULL &&
                  n < sizeof cands / sizeof *cands;
       i++)
    cands[n++] = c->name;
  return nl_closest(name, cands, n);
}

int nl_cmd_session_only(const char *name) {
  if (nl_cmd_find(name) || !session_command) return 0;
  const nl_cmd *c;
  for (int i = 0; (c = session_command(i)) != NULL; i++)
    if (strcmp(c->name, name) == 0) return 1;
  return 0;
}

const char *nl_cmd_prefix(const nl_ctx *ctx) { return ctx && ctx->session ? "" : "normlab "; }

static int opt_index(const nl_cmd *cmd, const char *name, size_t len) {
  for (int i = 0; cmd->opts && cmd->opts[i].name; i++)
    if (strlen(cmd->opts[i].name) == len && strncmp(cmd->opts[i].name, name, len) == 0) return i;
  return -1;
}

static int check_value(const nl_cmd *cmd, const nl_opt *o, const char *v, nl_error *err) {
  char *end;
  switch (o->type) {
    case NL_OPT_INT:
      errno = 0;
      (void)strtol(v, &end, 10);
      if (*v == '\0' || *end != '\0' || errno == ERANGE)
        return nl_fail(err, NL_EINPUT, "--%s expects an integer, got '%s'", o->name, v);
      break;
    case NL_OPT_NUM: {
      errno = 0;
      double d = strtod(v, &end);
      if (*v == '\0' || *end != '\0' || errno == ERANGE || !isfinite(d))
        return nl_fail(err, NL_EINPUT, "--%s expects a finite number, got '%s'", o->name, v);
      break;
    }
    case NL_OPT_CHOICE:
      if (nl_choice_index(o->choices, v) < 0)
        return nl_fail(err, NL_EINPUT, "--%s expects one of %s, got '%s'", o->name, o->choices, v);
      break;
    default:
      break;
  }
  (void)cmd;
  return 0;
}

static const nl_opt_alias *alias_of(const nl_cmd *cmd, const char *name, size_t len) {
  for (int i = 0; cmd->aliases && cmd->aliases[i].old; i++)
    if (strlen(cmd->aliases[i].old) == len && strncmp(cmd->aliases[i].old, name, len) == 0)
      return &cmd->aliases[i];
  return NULL;
}

/* "unknown option '--x'" with the closest option, or where to look. */
static int unknown_option(const nl_cmd *cmd, const char *name, size_t len, const nl_ctx *ctx,
                          nl_error *err) {
  char word[64];
  snprintf(word, sizeof word, "%.*s", (int)(len < 63 ? len : 63), name);
  const char *cands[NL_MAX_OPTS + 1];
  size_t n = 0;
  for (int i = 0; cmd->opts && cmd->opts[i].name && n < NL_MAX_OPTS; i++)
    cands[n++] = cmd->opts[i].name;
  cands[n++] = "help";
  const char *near = nl_closest(word, cands, n);
  if (!near) { /* an old name's neighbour: suggest what it is called now */
    for (int i = 0; cmd->aliases && cmd->aliases[i].old && !near; i++)
      if (cmd->aliases[i].name && nl_closest(word, &cmd->aliases[i].old, 1))
        near = cmd->aliases[i].name;
  }
  if (near)
    return nl_fail(err, NL_EINPUT, "unknown option '--%.*s'; did you mean '--%s'?", (int)len, name,
                   near);
  return nl_fail(err, NL_EINPUT, "unknown option '--%.*s' (see '%shelp %s')", (int)len, name,
                 nl_cmd_prefix(ctx), cmd->name);
}

/* The one-line note on an old option name. */
static void note_alias(const nl_cmd *cmd, const nl_opt_alias *al, const nl_ctx *ctx) {
  FILE *e = ctx && ctx->err ? ctx->err : stderr;
  if (al->name) {
    fprintf(e, "normlab %s: --%s is deprecated; use --%s\n", cmd->name, al->old, al->name);
    return;
  }
  char args[64] = "";
  size_t k = 0;
  for (const char *p = cmd->args ? cmd->args : ""; *p && k + 1 < sizeof args; p++)
    if (*p != '[' && *p != ']') args[k++] = *p;
  args[k] = '\0';
  fprintf(e, "normlab %s: --%s is deprecated; use '%s %s'\n", cmd->name, al->old, cmd->name,
          args);
}

int nl_args_parse(nl_args *a, const nl_cmd *cmd, int argc, char **argv, nl_ctx *ctx,
                  nl_error *err) {
  memset(a, 0, sizeof *a);
  a->cmd = cmd;
  a->pos = calloc((size_t)argc + 1, sizeof(char *));
  if (!a->pos) return nl_fail(err, NL_ENOMEM, "out of memory");
  int only_pos = 0;
  for (int i = 0; i < argc; i++) {
    char *s = argv[i];
    if (cmd->rest_positional && a->npos > 0) only_pos = 1;
    if (!only_pos && strcmp(s, "--") == 0) {
      only_pos = 1;
      continue;
    }
    if (!only_pos && s[0] == '-' && s[1] == '-' && s[2]) {
      const char *name = s + 2;
      const char *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      int k = opt_index(cmd, name, len);
      if (k < 0) {
        const nl_opt_alias *al = alias_of(cmd, name, len);
        if (!al) return unknown_option(cmd, name, len, ctx, err);
        note_alias(cmd, al, ctx);
        if (!al->name) { /* the old option's value is the positional argument now */
          if (!eq && i + 1 >= argc)
            return nl_fail(err, NL_EINPUT, "option --%s needs a value", al->old);
          a->pos[a->npos++] = eq ? (char *)eq + 1 : argv[++i];
          continue;
        }
        k = opt_index(cmd, al->name, strlen(al->name));
        if (k < 0) {
          fprintf(stderr, "normlab: internal error: alias --%s of a missing option --%s\n",
                  al->old, al->name);
          abort();
        }
      }
      const nl_opt *o = &cmd->opts[k];
      const char *v;
      if (o->type == NL_OPT_FLAG) {
        if (eq) return nl_fail(err, NL_EINPUT, "option --%s takes no value", o->name);
        v = "1";
      } else if (eq) {
        v = eq + 1;
      } else {
        if (i + 1 >= argc)
          return nl_fail(err, NL_EINPUT, "option --%s needs a value (%s)", o->name,
                         o->metavar ? o->metavar : "VALUE");
        v = argv[++i];
      }
      if (check_value(cmd, o, v, err) != 0) return -1;
      a->val[k] = v;
      a->given[k] = 1;
      continue;
    }
    a->pos[a->npos++] = s;
  }
  for (int k = 0; cmd->opts && cmd->opts[k].name; k++) {
    const nl_opt *o = &cmd->opts[k];
    if (!a->val[k] && (o->flags & NL_OPTF_SESSION) && ctx && ctx->context) {
      const char *v = ctx->context(ctx->session, o->name);
      if (v) a->val[k] = v;
    }
    if (!a->val[k] && (o->flags & NL_OPTF_REQUIRED))
      return nl_fail(err, NL_EINPUT, "missing required option --%s %s", o->name,
                     o->metavar ? o->metavar : "");
  }
  if (a->npos < cmd->min_pos)
    return nl_fail(err, NL_EINPUT, "expects %s (see '%shelp %s')",
                   cmd->args ? cmd->args : "arguments", nl_cmd_prefix(ctx), cmd->name);
  if (cmd->max_pos >= 0 && a->npos > cmd->max_pos)
    return nl_fail(err, NL_EINPUT, "unexpected argument '%s'", a->pos[cmd->max_pos]);
  return 0;
}

static int find_opt(const nl_args *a, const char *name) {
  int k = opt_index(a->cmd, name, strlen(name));
  if (k < 0) {
    fprintf(stderr, "normlab: internal error: command '%s' has no option --%s\n", a->cmd->name,
            name);
    abort();
  }
  return k;
}

const char *nl_arg_str(const nl_args *a, const char *name) {
  int k = find_opt(a, name);
  return a->val[k] ? a->val[k] : a->cmd->opts[k].def;
}

long nl_arg_int(const nl_args *a, const char *name) {
  const char *v = nl_arg_str(a, name);
  return v ? strtol(v, NULL, 10) : 0;
}

double nl_arg_num(const nl_args *a, const char *name) {
  const char *v = nl_arg_str(a, name);
  return v ? strtod(v, NULL) : 0.0;
}

int nl_arg_flag(const nl_args *a, const char *name) { return a->val[find_opt(a, name)] != NULL; }

int nl_arg_given(const nl_args *a, const char *name) { return a->given[find_opt(a, name)]; }

int nl_arg_int_range(const nl_args *a, const char *name, long lo, long hi, long *out,
                     nl_error *err) {
  long v = nl_arg_int(a, name);
  if (v < lo || v > hi)
    return nl_fail(err, NL_EINPUT, "--%s must be between %ld and %ld, got %ld", name, lo, hi, v);
  *out = v;
  return 0;
}

const char *nl_arg_need(const nl_args *a, const char *name, nl_error *err) {
  const char *v = nl_arg_str(a, name);
  if (!v || !*v) nl_fail(err, NL_EINPUT, "missing required option --%s", name);
  return v;
}

int nl_cmd_dispatch(nl_ctx *ctx, int argc, char **argv) {
  if (argc < 1) return 0;
  const nl_cmd *cmd = nl_cmd_find(argv[0]);
  if (!cmd) {
    const char *near = nl_cmd_suggest(argv[0], 1);
    if (nl_cmd_session_only(argv[0]))
      fprintf(ctx->err,
              "normlab: '%s' is a command of the prompt (it works on a session): run it there, "
              "or as normlab -c '%s ...' (see 'normlab help %s')\n",
              argv[0], argv[0], argv[0]);
    else if (near && nl_cmd_session_only(near))
      fprintf(ctx->err,
              "normlab: unknown command '%s'; did you mean '%s'? (a command of the prompt: "
              "normlab -c '%s ...')\n",
              argv[0], near, near);
    else if (near)
      fprintf(ctx->err, "normlab: unknown command '%s'; did you mean '%s'?\n", argv[0], near);
    else
      fprintf(ctx->err, "normlab: unknown command '%s' (try 'normlab help')\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (cmd->rest_positional && argv[i][0] != '-') break;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      nl_help_command(ctx->out, cmd);
      return 0;
    }
  }
  nl_error err;
  nl_error_clear(&err);
  nl_args a;
  int rc = nl_args_parse(&a, cmd, argc - 1, argv + 1, ctx, &err);
  if (rc == 0) rc = cmd->run(ctx, &a, &err);
  free(a.pos);
  if (rc != 0) {
    if (err.code == NL_OK) err.code = NL_EINTERNAL;
    fprintf(ctx->err, "normlab %s: %s\n", cmd->name, err.msg[0] ? err.msg : "failed");
    return nl_error_exit_status(&err);
  }
  fflush(ctx->out);
  return 0;
}

void nl_help_overview(FILE *out) {
  fprintf(out,
          "usage: normlab [--threads N] [COMMAND [ARGS...]]\n"
          "       normlab [--threads N] [-k] [-f FILE | -c \"CMD; CMD\"]\n"
          "       normlab --help | --version\n\n"
          "Without a command, normlab starts its interactive prompt (or runs the\n"
          "commands piped to it); -f runs a script, -c the given commands, and -k\n"
          "keeps going after a failing command. The prompt adds session commands\n"
          "(load, save, open, ...): 'normlab -c help' lists them.\n\n"
          "Commands:\n");
  for (int i = 0; nl_commands[i]; i++)
    fprintf(out, "  %-10s %s\n", nl_commands[i]->name, nl_commands[i]->summary);
  fprintf(out, "\n'normlab help COMMAND' (or 'normlab COMMAND --help') shows a command's options.\n");
}

void nl_help_command(FILE *out, const nl_cmd *cmd) {
  fprintf(out, "usage: normlab %s", cmd->name);
  if (cmd->opts && cmd->opts[0].name) fprintf(out, " [OPTIONS]");
  if (cmd->args) fprintf(out, " %s", cmd->args);
  fprintf(out, "\n\n%s\n", cmd->summary);
  if (cmd->help) fprintf(out, "\n%s\n", cmd->help);
  if (cmd->opts && cmd->opts[0].name) {
    fprintf(out, "\nOptions:\n");
    for (int k = 0; cmd->opts[k].name; k++) {
      const nl_opt *o = &cmd->opts[k];
      char left[96];
      if (o->type == NL_OPT_FLAG)
        snprintf(left, sizeof left, "--%s", o->name);
      else if (o->type == NL_OPT_CHOICE)
        snprintf(left, sizeof left, "--%s %s", o->name, o->choices);
      else
        snprintf(left, sizeof left, "--%s %s", o->name, o->metavar ? o->metavar : "VALUE");
      fprintf(out, "  %-26s %s", left, o->help);
      if (o->def) fprintf(out, " (default %s)", o->def);
      if (o->flags & NL_OPTF_REQUIRED) fprintf(out, " (required)");
      fputc('\n', out);
    }
  }
}
