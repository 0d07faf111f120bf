/* The session's settings: one typed table (name, type, range or choices,
 * default, help). A setting fills the option of the same name of the
 * commands listed in its help, where that option is declared to take its
 * value from the session (NL_OPTF_SESSION in src/app/cmd.h): 'setting
 * seed 7' makes 'evolve' and 'train' default to --seed 7. An option given
 * on the command line always wins.
 *
 * A setting's value comes from, in this order: the session ('setting
 * NAME VALUE', saved in session.json), an environment variable (term:
 * $GNUTERM), the table's default. */
#ifndef NL_SESSION_SETTINGS_H
#define NL_SESSION_SETTINGS_H

#include "base/error.h"

typedef enum nl_setting_type {
  NL_SETTING_INT,    /* an integer in [lo, hi] */
  NL_SETTING_CHOICE, /* one of choices "a|b|c" */
} nl_setting_type;

typedef struct nl_setting_def {
  const char *name;
  nl_setting_type type;
  long lo, hi;          /* INT: the range */
  const char *choices;  /* CHOICE: "a|b|c" */
  const char *def;      /* default value; NULL: none (each command keeps its own) */
  const char *env;      /* environment variable giving the default, or NULL */
  const char *help;     /* one line: what it does and which commands it reaches */
} nl_setting_def;

/* The table in listing order: i = 0, 1, ... until NULL. */
const nl_setting_def *nl_setting_at(int i);
/* A setting by name, NULL when there is none. */
const nl_setting_def *nl_setting_find(const char *name);
/* Check a value against the setting's type: NL_EINPUT naming the setting,
 * the value and what it expects. */
int nl_setting_check(const nl_setting_def *d, const char *value, nl_error *err);
/* An unknown name: NL_EINPUT naming it, the nearest setting when there is
 * one, and the list of settings. */
int nl_setting_unknown(const char *name, nl_error *err);
/* The value the environment gives (checked and mapped to the setting's
 * type: GNUTERM=pngcairo gives png), or NULL. *raw (may be NULL) gets the
 * variable's text when it is set but not usable. */
const char *nl_setting_env_value(const nl_setting_def *d, const char **raw);

#endif
