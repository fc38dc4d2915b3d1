/* What every backend's checks share: the schedules, and the judging, so the direct
 * and the core backends are held to exactly the same criteria. */
#ifndef HIL_CHECKS_COMMON_H
#define HIL_CHECKS_COMMON_H

#include "util.h"

#define N_PULSES 4
static const int PULSE_MS[N_PULSES] = { 5, 20, 100, 300 };
#define N_EDGES 40
#define N_LOSS_TOGGLES 200

/* Timing bounds. TCG, no KVM: sleep wake-ups are late by ~1 ms on a quiet host, and
 * by up to ~20 ms when the host is overloaded (qemu's vCPU thread descheduled; seen
 * with three lanes and other builds on 2 cores). The bounds catch wrong code (a
 * pulse cut short or twice as long, a stamp from the wrong clock, a gap measured
 * between the wrong edges), not a busy host; the figures show the real errors. */
#define PULSE_EARLY_NS (200 * 1000LL)  /* trace timestamps are µs; a pulse is never short */
#define PULSE_LATE_NS (50 * MS)
#define EDGE_LATENCY_NS (20 * MS)      /* |edge timestamp - pull write|, |core stamp - kernel| */
#define GAP_ERROR_NS (20 * MS)         /* |stall gap measured - produced| */

struct monitor {
    int edges;
    int stalls;           /* reported stalls */
    int late_stalls;      /* found only when the next edge came (no live report) */
    bool stalled;
    int64_t prev_ts;
    int64_t max_gap;      /* largest gap between edges (kernel timestamps) */
    int64_t stall_gap;    /* the gap that was a stall */
    int64_t max_regular_gap;
    int64_t detect_after; /* the scheduled stall reported this long after the last edge */
    int64_t iv[512];      /* intervals between consecutive edges, as the monitor measured */
    int n_iv;
};
void monitor_edge(struct monitor *m, int64_t ts, int64_t timeout);
void monitor_timeout(struct monitor *m, int64_t last_edge, int64_t timeout);

/* core_start/core_end (optional): the code under test's own stamps of each pulse's
 * edges, compared with the kernel's. */
void judge_pulses(const char *name, const int64_t *core_start, const int64_t *core_end);
void judge_edges(const char *name, const struct toggler *t, const struct edge *ev, int n);
void judge_watchdog(const char *name, const struct toggler *t, const struct monitor *m,
                    int period_ms, int64_t timeout);
void judge_lost(const char *name, const struct toggler *t, int received,
                unsigned long last_seqno, unsigned long lost);

#endif
