/* clock.h - the one clock of lostd: milliseconds on the monotonic clock for
 * every timing and deadline (stage timings, request deadlines, benchmarks),
 * and the absolute time a condition variable waits until. Cannot fail. */
#ifndef LOSTD_CLOCK_H
#define LOSTD_CLOCK_H

#include <time.h>

/* Milliseconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double clock_now_ms(void);

/* *ts = now + ms on the given clock (CLOCK_MONOTONIC or CLOCK_REALTIME: the
 * clock of the condition variable it is passed to). ms < 0 counts as 0. */
void clock_deadline(clockid_t clock, double ms, struct timespec *ts);

#endif
