#ifndef NL_BASE_TIMER_H
#define NL_BASE_TIMER_H

/* Monotonic wall clock in seconds. */
double nl_now(void);
/* CPU time of the whole process (all its threads) in seconds: what a
 * computation cost, less dependent than the wall clock on other work
 * sharing the cores. */
double nl_cpu_now(void);

#endif
