/* The command table: one entry per command (name, options, help, handler).
 * The shell (`normlab CMD ARGS`), the REPL (`CMD ARGS`) and Lua
 * (`normlab.cmd("CMD ARGS")`) all dispatch through it, and help text and
 * completion are generated from it. */
#ifndef NL_APP_CMD_H
#define NL_APP_CMD_H

#include <stdio.h>

#include "base/error.h"
#include "base/progress.h"

typedef enum {
  NL_OPT_FLAG,    /* --json */
  NL_OPT_STR,     /* --output FILE */
  NL_OPT_INT,     /* --limit N (validated integer) */
  NL_OPT_NUM,     /* --lr X (validated finite number) */
  NL_OPT_CHOICE,  /* --complexity nodes|flops (validated against choices) */
} nl_opt_type;

enum {
  NL_OPTF_REQUIRED = 1u << 0, /* must be given (or come from the session) */
  NL_OPTF_PATH = 1u << 1,     /* value is a file path (completion) */
  NL_OPTF_LAYER = 1u << 2,    /* value is a layer name (completion) */
  NL_OPTF_SESSION = 1u << 3,  /* may be filled from session context (model, maps) */
};

typedef struct nl_opt {
  const char *name;    /* long name without dashes */
  nl_opt_type type;
  const char *metavar; /* "N", "FILE"; NULL for flags */
  const char *def;     /* default shown in help and returned when unset; NULL: none */
  const char *help;
  const char *choices; /* "a|b|c" for NL_OPT_CHOICE */
  unsigned flags;
} nl_opt;

#define NL_MAX_OPTS 40

typedef struct nl_args {
  const struct nl_cmd *cmd;
  const char *val[NL_MAX_OPTS]; /* value per option (NULL: unset); flags "1" */
  int given[NL_MAX_OPTS];       /* 1 if given on the command line */
  int npos;
  char **pos;                   /* positional arguments (not owned) */
} nl_args;

/* Everything a handler may use to talk to its caller. */
typedef struct nl_ctx {
  FILE *out;          /* results */
  FILE *err;          /* progress and diagnostics */
  int tty;            /* err is an interactive terminal: show live progress */
  void *session;      /* front-end state (REPL session), may be NULL */
  /* Session context for NL_OPTF_SESSION options; may be NULL. */
  const char *(*context)(void *session, const char *key);
  /* Progress of a long command (epochs, batches) for a front-end that
   * wants it live (Lua callbacks); may be NULL. A non-zero return asks
   * the command to stop at its next safe point. */
  nl_progress_fn progress;
  void *progress_user;
} nl_ctx;

typedef struct nl_cmd {
  const char *name;
  const char *args;    /* positional synopsis, e.g. "MODEL"; NULL: none */
  const char *summary; /* one line */
  const char *help;    /* longer description (may be NULL) */
  const nl_opt *opts;  /* terminated by an entry with name NULL */
  int min_pos, max_pos; /* max_pos < 0: unlimited */
  /* Return 0 on success; on failure fill err and return -1. */
  int (*run)(nl_ctx *ctx, const nl_args *a, nl_error *err);
  /* 1: every word after the first positional argument is positional too,
   * options included (they belong to a script: 'lua FILE --flag'). */
  int rest_positional;
} nl_cmd;

/* The table, terminated by NULL: the commands of src/app (commands.c),
 * then those a front-end owns (the 'lua' command), registered at start-up
 * by src/cli. */
#define NL_MAX_CMDS 40
extern const nl_cmd *nl_commands[NL_MAX_CMDS + 1];

const nl_cmd *nl_cmd_find(const char *name);
/* Add a command to the table (after those there); registering one twice
 * is a no-op. Aborts when the table is full (a build-time limit). */
void nl_cmd_register(const nl_cmd *cmd);

/* Parse argv (argv[0] is the first argument after the command name). */
int nl_args_parse(nl_args *a, const nl_cmd *cmd, int argc, char **argv, nl_ctx *ctx,
                  nl_error *err);

/* Accessors: options are looked up by name; asking for an option the
 * command does not declare is a bug and aborts. Unset options return the
 * declared default (NULL / 0 when there is none). */
const char *nl_arg_str(const nl_args *a, const char *name);
long nl_arg_int(const nl_args *a, const char *name);
double nl_arg_num(const nl_args *a, const char *name);
int nl_arg_flag(const nl_args *a, const char *name);
int nl_arg_given(const nl_args *a, const char *name);
/* Integer option within [lo, hi], else an NL_EINPUT error naming it. */
int nl_arg_int_range(const nl_args *a, const char *name, long lo, long hi, long *out,
                     nl_error *err);
/* Required string option: present or error naming it. */
const char *nl_arg_need(const nl_args *a, const char *name, nl_error *err);

/* Run one command line (argv[0] = command name). Prints errors to ctx->err
 * as "normlab CMD: message" and returns the process exit status. */
int nl_cmd_dispatch(nl_ctx *ctx, int argc, char **argv);

/* Help text generated from the table. */
void nl_help_overview(FILE *out);
void nl_help_command(FILE *out, const nl_cmd *cmd);

#endif
