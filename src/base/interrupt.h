/* Cooperative interruption: a SIGINT handler sets a flag that long-running
 * library loops poll between units of work (a generation, a batch). */
#ifndef NL_BASE_INTERRUPT_H
#define NL_BASE_INTERRUPT_H

/* Install the SIGINT handler (idempotent). A second SIGINT while the flag
 * is already set restores the default action, so a stuck job can be killed. */
void nl_interrupt_install(void);
int nl_interrupted(void);
void nl_interrupt_clear(void);
/* From now on nl_interrupted() is 0 in the calling thread: for background
 * jobs that are stopped by other means, so a Ctrl-C meant for the
 * foreground does not end them. */
void nl_interrupt_ignore_thread(void);
/* Raise the flag by hand (tests, Lua callbacks). */
void nl_interrupt_raise(void);

#endif
