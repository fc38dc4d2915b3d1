/* Waiting on a condition variable until a deadline of the one wait rule
 * (fotabench/clock.h): FB_DEADLINE_NEVER waits without a limit, a deadline at or
 * before now returns at once. Every cond var of the core is created with
 * CLOCK_MONOTONIC (pthread_condattr_setclock), the clock of fb_now_ns. */
#ifndef FOTABENCH_DEADLINE_H
#define FOTABENCH_DEADLINE_H

#include <errno.h>
#include <pthread.h>

#include "fotabench/clock.h"

/* 0 when woken (or spuriously), ETIMEDOUT when the deadline has passed. */
static inline int fb_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock,
                                     int64_t deadline)
{
    if (deadline == FB_DEADLINE_NEVER)
        return pthread_cond_wait(cond, lock);
    if (fb_now_ns() >= deadline)
        return ETIMEDOUT;
    struct timespec ts = fb_ns_to_timespec(deadline);
    return pthread_cond_timedwait(cond, lock, &ts);
}

#endif
