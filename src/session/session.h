/* Session state of the interactive workbench: what is loaded (model,
 * mappings, expression set, fronts directory), settings, and the current
 * expression set with an undo history. A session is saved to a directory
 * holding session.json and the artifacts, and reopened from it.
 *
 * The expression set is an nl_exprset (expr/expr.h): parsed once, when it
 * is loaded or an entry is set, each entry keeping its tree, its text as
 * written and its comment; it is read and written by expr/exprset.c. */
#ifndef NL_SESSION_SESSION_H
#define NL_SESSION_SESSION_H

#include "base/error.h"
#include "expr/expr.h"
#include "search/fronts.h"

typedef struct nl_sess_kv {
  char *key, *value;
} nl_sess_kv;

typedef struct nl_session {
  char *model_path;  /* NULL: none */
  char *maps_path;
  char *exprs_path;  /* file the set was loaded from / last saved to */
  char *fronts_dir;
  char *dir;         /* session directory after save/open */
  char *origin[4];   /* where model, maps, exprs, fronts were first loaded from */
  nl_sess_kv *settings;
  int nsettings;
  nl_exprset set;    /* current expression set */
  int set_modified;  /* changed since loaded or saved */
  nl_exprset *undo;  /* earlier versions of the set, newest last */
  int nundo;
  char **model_layers; /* norm layers of the model (from tensor names) */
  int nmodel_layers;
  int model_width;     /* embedding width (length of a norm weight), 0: unknown */
  char **maps_layers;  /* layers of the mappings file */
  int nmaps_layers;
  nl_front_summary *fronts; /* per layer, from the fronts directory's CSV files */
  int nfronts;
  char *tmp_exprs;     /* private file holding a modified set for commands */
} nl_session;

#define NL_SESSION_UNDO_MAX 100
#define NL_SESSION_FILE "session.json"

void nl_session_init(nl_session *s);
void nl_session_free(nl_session *s);

/* Load an artifact into the session. `what` is "model", "maps", "exprs" or
 * "fronts". Models and mappings must be safetensors files (their header is
 * read to list the layers); exprs is an expression-set text file; fronts a
 * directory. */
int nl_session_load(nl_session *s, const char *what, const char *path, nl_error *err);
/* Forget an artifact ("model", "maps", "exprs", "fronts" or "all"). */
int nl_session_unload(nl_session *s, const char *what, nl_error *err);

/* Short name for the prompt: the model's file name without extension, else
 * the mappings', else the set's; NULL when nothing is loaded. Caller frees. */
char *nl_session_name(const nl_session *s);

/* Values for NL_OPTF_SESSION options (the nl_ctx.context callback): "model",
 * "maps", "fronts", "exprs" (the current set's file; a modified set is
 * written to a private file for the shell's commands that read one), else a
 * setting of that name. NULL when unknown. */
const char *nl_session_context(void *session, const char *key);

/* Layer names: the mappings' layers, else the model's norm layers, then
 * set entries not among them. Returns a NULL-terminated array the caller
 * frees with nl_session_free_names. */
char **nl_session_layers(const nl_session *s);
void nl_session_free_names(char **names);

/* The front summary of a layer, or NULL. */
const nl_front_summary *nl_session_front(const nl_session *s, const char *layer);

/* Settings (free-form key/value; keys [A-Za-z0-9_-]+). value NULL removes. */
int nl_session_setting(nl_session *s, const char *key, const char *value, nl_error *err);
const char *nl_session_get_setting(const nl_session *s, const char *key);

/* The expression set. */
const nl_exprset_entry *nl_session_find(const nl_session *s, const char *layer);
/* Replace or add an entry from its text as written (parsed here: errors
 * give the column with a caret); the previous set goes on the undo stack.
 * A NULL comment keeps the entry's comment. */
int nl_session_set_expr(nl_session *s, const char *layer, const char *expr, const char *comment,
                        nl_error *err);
/* Replace the whole set in one step (one undo step); takes ownership of
 * *set and leaves it empty. */
void nl_session_replace_set(nl_session *s, nl_exprset *set);
/* Restore the previous set; -1 when there is nothing to undo. */
int nl_session_undo(nl_session *s);

/* Save to directory `dir` (created if needed): artifacts are hard-linked or
 * copied in atomically, the set is written to set.exprs, and session.json
 * (written last, atomically) records what is loaded and the settings. */
int nl_session_save(nl_session *s, const char *dir, nl_error *err);
/* Replace the session's state by the one saved in `dir`. On error the
 * session is unchanged. */
int nl_session_open(nl_session *s, const char *dir, nl_error *err);

#endif
