/* fotabench C core: the one clock.
 *
 * Every timestamp in fotabench, in every process, is CLOCK_MONOTONIC in integer
 * nanoseconds (docs/architecture.md, "One clock"): serial bytes, AT lines, GPIO edges
 * (the kernel's and the virtual board's stamps use the same clock), package server
 * requests. Python's time.monotonic_ns() reads the same clock. */
#ifndef FOTABENCH_CLOCK_H
#define FOTABENCH_CLOCK_H

#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FB_NS_PER_S 1000000000LL
#define FB_NS_PER_MS 1000000LL

static inline int64_t fb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * FB_NS_PER_S + ts.tv_nsec;
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
