/* fotabench C core: the watchdog monitor.
 *
 * Watches a WDI line from a start to a stop (opencpu-fota.md section 7: the external
 * watchdog chip, e.g. a TPS3823, resets the module when WDI has no transition for its
 * timeout, at least 1.6 s; it should be fed within 2/3 of that). Every edge is a feed.
 * A gap runs from the start (or an edge) to the next edge (or the stop, or now, while
 * running), so a line that never moves has one gap as long as the watch.
 *
 * Live: a thread per monitor marks the moment the current gap passes 2/3 of the
 * timeout and the timeout itself (timeline events watchdog.warning /
 * watchdog.stall), and wakes fb_watchdog_wait_stall, so a test fails when the line
 * stalls, not at the end. The arithmetic (fb_watchdog_feed) takes the edge's own
 * timestamp, so it is exact for any waveform, recorded or live. */
#ifndef FOTABENCH_WATCHDOG_H
#define FOTABENCH_WATCHDOG_H

#include <stddef.h>
#include <stdint.h>

#include "fotabench/error.h"
#include "fotabench/gpio.h"
#include "fotabench/timeline.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fb_watchdog fb_watchdog; /* opaque */

#define FB_WATCHDOG_DEFAULT_TIMEOUT_NS 1600000000LL /* 1.6 s: the chip's minimum */

typedef struct fb_watchdog_result {
    int64_t start_ns, stop_ns;  /* stop_ns: now while running */
    uint64_t edges;
    int64_t longest_gap_ns;
    int64_t longest_gap_at_ns;  /* when that gap began */
    int64_t shortest_interval_ns; /* between two edges; 0 with fewer than 2 edges */
    int64_t mean_interval_ns;     /* between edges; 0 with fewer than 2 edges */
    int64_t first_edge_ns, last_edge_ns; /* 0 without edges */
    int64_t timeout_ns;
    int over_two_thirds; /* some gap > 2/3 of the timeout */
    int over_timeout;    /* some gap > the timeout: the chip would have reset */
    uint64_t lost;       /* edges missed per the line's sequence numbers */
    int running;
} fb_watchdog_result;

/* A detached monitor: fed with fb_watchdog_feed (recorded waveforms, tests). start_ns
 * 0 = now. timeline/source optional (source default "watchdog"). */
fb_watchdog *fb_watchdog_new(int64_t timeout_ns, int64_t start_ns, fb_timeline *timeline,
                             const char *source, fb_error *err);
/* Watch a line: the monitor listens to its edges from now (the line must be an input
 * with edges). */
fb_watchdog *fb_watchdog_watch(fb_gpio_line *line, int64_t timeout_ns, fb_timeline *timeline,
                               const char *source, fb_error *err);
/* One edge at t_ns (edges must come in time order; older ones are counted, not
 * measured). */
void fb_watchdog_feed(fb_watchdog *w, int64_t t_ns);
/* Count edges the line reports missed. */
void fb_watchdog_add_lost(fb_watchdog *w, uint64_t n);
/* Stop at stop_ns (0 = now): the last gap ends there; the verdict goes on the timeline.
 * Stops listening to the line. Idempotent. */
void fb_watchdog_stop(fb_watchdog *w, int64_t stop_ns, fb_watchdog_result *out);
/* The figures so far (while running, the open gap counts up to now). */
void fb_watchdog_get(fb_watchdog *w, fb_watchdog_result *out);
/* Copy up to cap intervals between consecutive edges; returns how many there are. */
size_t fb_watchdog_intervals(fb_watchdog *w, int64_t *out, size_t cap);
/* Wait until the current gap exceeds threshold_ns (e.g. 2/3 of the timeout) or until
 * deadline (0 = do not wait, FB_DEADLINE_NEVER = no limit) or the stop; *stalled 1
 * when it did (and *gap_ns the gap then). */
void fb_watchdog_wait_stall(fb_watchdog *w, int64_t threshold_ns, int64_t deadline,
                            int *stalled, int64_t *gap_ns);
void fb_watchdog_free(fb_watchdog *w);

#ifdef __cplusplus
}
#endif
#endif
