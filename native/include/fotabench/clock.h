/* fotabench C core: the one clock.
 *
 * Every timestamp in fotabench, in every process, is CLOCK_MONOTONIC in integer
 * nanoseconds (docs/architecture.md, "One clock"): serial bytes, AT lines, GPIO edges
 * (the kernel's and the virtual board's stamps use the same clock), package server
 * requests. Python's time.monotonic_ns() reads the same clock.
 *
 * One wait rule for every call of the core that waits (docs/bench-io.md, "Timeouts"):
 * a deadline is an absolute time on this clock; a deadline at or before now polls
 * (0 is the usual way to say "do not wait"), FB_DEADLINE_NEVER waits for ever. A
 * duration limit (the AT engine's inactivity) follows the same rule: 0 or less is
 * already over, FB_DEADLINE_NEVER is no limit. */
#ifndef FOTABENCH_CLOCK_H
#define FOTABENCH_CLOCK_H

#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FB_NS_PER_S 1000000000LL
#define FB_NS_PER_MS 1000000LL

/* The deadline (or duration) that never comes. */
#define FB_DEADLINE_NEVER INT64_MAX

static inline int64_t fb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * FB_NS_PER_S + ts.tv_nsec;
}

/* The deadline `ns` from now, saturating: FB_DEADLINE_NEVER (or anything that would
 * pass it) stays FB_DEADLINE_NEVER; ns <= 0 is now (a poll). */
static inline int64_t fb_deadline_in(int64_t ns)
{
    int64_t now = fb_now_ns();
    if (ns <= 0)
        return now;
    return ns >= FB_DEADLINE_NEVER - now ? FB_DEADLINE_NEVER : now + ns;
}

/* t + ns, saturating at FB_DEADLINE_NEVER (for "last byte + inactivity limit"). */
static inline int64_t fb_deadline_add(int64_t t, int64_t ns)
{
    if (ns <= 0)
        return t;
    return ns >= FB_DEADLINE_NEVER - t ? FB_DEADLINE_NEVER : t + ns;
}

static inline struct timespec fb_ns_to_timespec(int64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / FB_NS_PER_S);
    ts.tv_nsec = (long)(ns % FB_NS_PER_S);
    return ts;
}

#ifdef __cplusplus
}
#endif
#endif
