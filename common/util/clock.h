/* clock.h - the one clock: monotonic seconds for intervals, timeouts and
 * rates (immune to the wall clock being set), wall seconds for times that
 * are stored or shown. All functions are thread-safe. */
#ifndef HYDRA_CLOCK_H
#define HYDRA_CLOCK_H

#include <time.h>

/* Seconds on CLOCK_MONOTONIC (from an unspecified start: only differences
 * mean anything). */
double clock_monotonic(void);

/* Seconds since the Unix epoch (CLOCK_REALTIME). */
double clock_wall(void);

/* The CLOCK_MONOTONIC time `seconds` (>= 0) from now, as
 * pthread_cond_timedwait takes it on a condition made with
 * pthread_condattr_setclock(CLOCK_MONOTONIC). */
struct timespec clock_monotonic_after(double seconds);

#endif
