/* Small text helpers shared by every front: the closest name to a
 * mistyped one ("did you mean"), and environment variables under the one
 * prefix NORMLAB_ with their older names as fallbacks. */
#ifndef NL_BASE_TEXT_H
#define NL_BASE_TEXT_H

#include <stddef.h>

/* Edit distance of a and b (insert, delete, substitute, swap two
 * neighbours: 1 each); strings longer than 64 bytes count as far from
 * everything (99). */
int nl_edit_distance(const char *a, const char *b);

/* The candidate closest to `word`, or NULL when none is close enough:
 * at most 1 edit for words up to 4 characters, 2 for longer ones, or
 * `word` a prefix (of 2 characters or more) of exactly one candidate.
 * `cands` holds n names; NULL entries are skipped. Ties go to the first. */
const char *nl_closest(const char *word, const char *const *cands, size_t n);

/* getenv(name), else getenv(old) (an older name kept working; NULL for
 * none). */
const char *nl_getenv(const char *name, const char *old);

/* Index of v among the choices "a|b|c" (exact match), or -1. */
int nl_choice_index(const char *choices, const char *v);

#endif
