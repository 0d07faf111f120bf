/* Full-screen views (ncursesw) of a workbench session. */
#ifndef NL_TUI_DASHBOARD_H
#define NL_TUI_DASHBOARD_H

#include "app/cmd.h"
#include "base/error.h"
#include "session/session.h"

/* The layer table of a session: layer, current expression, cost columns
 * and fit figures where known (src/app/workbench.h), a running search's
 * progress; arrows move, Enter opens a layer's detail, q leaves. The
 * terminal is restored on return. */
int nl_dashboard_run(nl_session *s, nl_error *err);

/* The prompt's 'dashboard' command (registered by src/cli). */
extern const nl_cmd nl_cmd_dashboard;

#endif
