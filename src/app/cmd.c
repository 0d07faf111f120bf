#define _POSIX_C_SOURCE 200809L
#include "app/cmd.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

static int opt_index(const nl_cmd *cmd, const char *name, size_t len) {
  for (int i = 0; cmd->opts && cmd->opts[i].name; i++)
    if (strlen(cmd->opts[i].name) == len && strncmp(cmd->opts[i].name, name, len) == 0) return i;
  return -1;
}

static int choice_ok(const char *choices, const char *v) {
  size_t n = strlen(v);
  const char *p = choices;
  while (p && *p) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && strncmp(p, v, n) == 0) return 1;
    p = bar ? bar + 1 : NULL;
  }
  return 0;
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
      if (!choice_ok(o->choices, v))
        return nl_fail(err, NL_EINPUT, "--%s expects one of %s, got '%s'", o->name, o->choices, v);
      break;
    default:
      break;
  }
  (void)cmd;
  return 0;
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
      if (k < 0)
        return nl_fail(err, NL_EINPUT, "unknown option '--%.*s' (see 'normlab help %s')", (int)len,
                       name, cmd->name);
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
    return nl_fail(err, NL_EINPUT, "expects %s%s (see 'normlab help %s')",
                   cmd->args ? cmd->args : "arguments", "", cmd->name);
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
