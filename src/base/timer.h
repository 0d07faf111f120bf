#ifndef NL_BASE_TIMER_H
#define NL_BASE_TIMER_H

/* Monotonic wall clock in seconds. */
double nl_now(void);

#endif
