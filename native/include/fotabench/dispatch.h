/* fotabench C core: a callback dispatcher.
 *
 * Reader threads must never wait on a consumer: a slow callback (Python waiting for
 * the GIL, a test doing work) would stall the port or line it reads, and a real UART
 * without flow control loses bytes when nobody reads. So callbacks are posted here,
 * copied into a bounded queue, and called in order from the dispatcher's own thread.
 * A full queue drops the item and counts it (fb_dispatch_dropped): never silent. */
#ifndef FOTABENCH_DISPATCH_H
#define FOTABENCH_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "fotabench/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fb_dispatch fb_dispatch; /* opaque */

/* Called on the dispatcher's thread with a copy of each posted item. */
typedef void (*fb_dispatch_fn)(void *ctx, const void *item, size_t n);

#define FB_DISPATCH_DEFAULT_MAX 65536

fb_dispatch *fb_dispatch_new(fb_dispatch_fn fn, void *ctx, size_t max_items, fb_error *err);
/* Copy item (n bytes) to the queue. Returns 0, or -1 when it was dropped (full queue
 * or out of memory). Never blocks on the callback. */
int fb_dispatch_post(fb_dispatch *d, const void *item, size_t n);
uint64_t fb_dispatch_dropped(fb_dispatch *d);
/* Block until every item posted so far has been handled, or deadline_ns (the wait
 * rule of fotabench/clock.h). Returns 1 when idle. */
int fb_dispatch_flush(fb_dispatch *d, int64_t deadline_ns);
/* Stop: the call in progress finishes, queued items are discarded, the thread is
 * joined. Call it without holding anything the callback needs (the GIL). */
void fb_dispatch_free(fb_dispatch *d);

#ifdef __cplusplus
}
#endif
#endif
