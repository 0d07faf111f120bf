/* Tab completion for the prompt, generated from the command tables:
 * command names, a command's options, choices of choice options, layer
 * names (options flagged NL_OPTF_LAYER, LAYER positionals), file paths
 * (NL_OPTF_PATH options, FILE/DIR positionals). */
#ifndef NL_REPL_COMPLETE_H
#define NL_REPL_COMPLETE_H

#include "session/session.h"

/* Install the completion function into readline, completing against the
 * session s (layer names, node paths). */
void nl_complete_install(const nl_session *s);
/* Free what completion keeps between calls. */
void nl_complete_cleanup(void);

/* The candidates for the word ending the text `line` (without readline):
 * NULL-terminated, caller frees with nl_session_free_names. *files is set
 * to 1 when file names should be completed instead. For tests. */
char **nl_complete_candidates(const nl_session *s, const char *line, int *files);

#endif
