/* fotabench C core: one timeline for every bench event.
 *
 * A thread-safe, append-only list of events {seq, t_ns, source, kind, data}
 * (docs/architecture.md, "Timeline"): seq is the event's position (0, 1, 2, ...),
 * t_ns a CLOCK_MONOTONIC nanosecond stamp (fotabench/clock.h), source the origin
 * ("uart1", "gpio:WDI", "watchdog", "http", ...), kind what happened ("line",
 * "at.command", "urc", "edge", ...), data a JSON object as text. Serial readers, GPIO
 * watchers and Python code append from any thread; export is JSON lines in seq order.
 *
 * The core never frees a timeline it was handed: whoever creates it frees it after
 * every port, line and monitor writing to it is closed. */
#ifndef FOTABENCH_TIMELINE_H
#define FOTABENCH_TIMELINE_H

#include <stddef.h>
#include <stdint.h>

#include "fotabench/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fb_timeline fb_timeline; /* opaque */

typedef struct fb_event {
    uint64_t seq;
    int64_t t_ns;
    const char *source;
    const char *kind;
    const char *data; /* a JSON object, e.g. {"text":"OK"} */
} fb_event;

#define FB_TIMELINE_NAME_MAX 64 /* source and kind: at most this many bytes */

fb_timeline *fb_timeline_new(fb_error *err);
void fb_timeline_free(fb_timeline *tl);

/* Append an event. t_ns 0 stamps it now; data NULL means {}. data is stored as given:
 * the caller passes a JSON object (Python's json.dumps, or the core's own writers).
 * seq_out (optional) receives the event's seq. */
fb_status fb_timeline_add(fb_timeline *tl, int64_t t_ns, const char *source, const char *kind,
                          const char *data, uint64_t *seq_out, fb_error *err);

/* Same, with data written printf-style (the core's own events). */
fb_status fb_timeline_addf(fb_timeline *tl, int64_t t_ns, const char *source, const char *kind,
                           fb_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/* Number of events so far (the next event's seq). */
uint64_t fb_timeline_count(fb_timeline *tl);

/* Block until the timeline has more than `count` events or until deadline_ns
 * (the wait rule of fotabench/clock.h: 0 = do not wait, FB_DEADLINE_NEVER = no
 * limit). Returns the count then. */
uint64_t fb_timeline_wait(fb_timeline *tl, uint64_t count, int64_t deadline_ns);

/* Call fn for each event with seq >= from_seq, in order, until fn returns non-zero
 * (which is then returned). The timeline's lock is held during the calls: fn must
 * not add to this timeline. Events are never moved or freed while it lives, so the
 * pointers stay valid until fb_timeline_free. */
typedef int (*fb_timeline_visit_fn)(void *ctx, const fb_event *ev);
int fb_timeline_visit(fb_timeline *tl, uint64_t from_seq, fb_timeline_visit_fn fn, void *ctx);

/* Write one JSON line per event with seq >= from_seq to path (replaced atomically). */
fb_status fb_timeline_write_jsonl(fb_timeline *tl, const char *path, uint64_t from_seq,
                                  fb_error *err);

/* Write s (n bytes, any content) as a JSON string literal with quotes into out (cap
 * bytes, always NUL-terminated, cut at a character boundary). Valid UTF-8 is kept,
 * control characters are escaped, and each byte that is not valid UTF-8 becomes
 * U+FFFD. Returns the length written; *lossy (optional) is set when a byte was
 * replaced or the string was cut. */
size_t fb_json_string(char *out, size_t cap, const char *s, size_t n, int *lossy);

#ifdef __cplusplus
}
#endif
#endif
