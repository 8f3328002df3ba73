/* clock.c - the monotonic millisecond clock and deadlines (see clock.h). */
#include "clock.h"

double clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void clock_deadline(clockid_t clock, double ms, struct timespec *ts)
{
    clock_gettime(clock, ts);
    long long ns = ts->tv_nsec + (long long)((ms > 0 ? ms : 0) * 1e6);
    ts->tv_sec += (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
}
