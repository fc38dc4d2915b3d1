/* The watchdog monitor: gap arithmetic on edge timestamps, a live stall thread. */
#include "fotabench/watchdog.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "fotabench/clock.h"

struct fb_watchdog {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    fb_timeline *tl;
    char source[FB_TIMELINE_NAME_MAX + 1];
    fb_gpio_line *line; /* NULL when detached or stopped */

    int64_t timeout_ns, start_ns, stop_ns;
    int running;
    int live; /* started now on the clock (not a recorded waveform): open gaps count */
    uint64_t edges, lost;
    int64_t last_ns; /* start or the last edge */
    int64_t first_edge_ns, last_edge_ns;
    int64_t longest, longest_at, shortest_interval;
    int over_two_thirds, over_timeout;
    int warned_gap, stalled_gap; /* live events already given for the current gap */
    int64_t *intervals;
    size_t n_intervals, cap_intervals;

    pthread_t thread;
    int thread_started, quit;
};

static void gap_closed(fb_watchdog *w, int64_t gap, int64_t began)
{
    if (gap > w->longest) {
        w->longest = gap;
        w->longest_at = began;
    }
    if (gap * 3 > w->timeout_ns * 2)
        w->over_two_thirds = 1;
    if (gap > w->timeout_ns)
        w->over_timeout = 1;
}

void fb_watchdog_feed(fb_watchdog *w, int64_t t)
{
    pthread_mutex_lock(&w->lock);
    if (!w->running || t < w->last_ns) {
        if (w->running)
            w->edges++; /* out of order: counted, not measured */
        pthread_mutex_unlock(&w->lock);
        return;
    }
    gap_closed(w, t - w->last_ns, w->last_ns);
    if (w->edges) {
        int64_t iv = t - w->last_edge_ns;
        if (!w->shortest_interval || iv < w->shortest_interval)
            w->shortest_interval = iv;
        if (w->n_intervals == w->cap_intervals) {
            size_t cap = w->cap_intervals ? w->cap_intervals * 2 : 256;
            int64_t *g = realloc(w->intervals, cap * sizeof *g);
            if (g) {
                w->intervals = g;
                w->cap_intervals = cap;
            }
        }
        if (w->n_intervals < w->cap_intervals)
            w->intervals[w->n_intervals++] = iv;
    } else {
        w->first_edge_ns = t;
    }
    w->edges++;
    w->last_edge_ns = t;
    w->last_ns = t;
    w->warned_gap = w->stalled_gap = 0;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void fb_watchdog_add_lost(fb_watchdog *w, uint64_t n)
{
    pthread_mutex_lock(&w->lock);
    w->lost += n;
    pthread_mutex_unlock(&w->lock);
}

static void on_edge(void *ctx, const fb_gpio_edge *e)
{
    fb_watchdog_feed(ctx, e->t_ns);
}

/* Live events: sleeps until the open gap would pass 2/3 of the timeout, then the
 * timeout. */
/* A live verdict on the open gap: on the timeline, and to anyone in wait_stall.
 * Called with w->lock held. */
static void report_gap(fb_watchdog *w, int64_t now, const char *kind)
{
    if (w->tl)
        fb_timeline_addf(w->tl, now, w->source, kind, NULL,
                         "{\"gap_ns\":%" PRId64 ",\"since_ns\":%" PRId64 "}",
                         now - w->last_ns, w->last_ns);
    pthread_cond_broadcast(&w->cond);
}

static void *stall_main(void *arg)
{
    fb_watchdog *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->quit) {
        int64_t warn_at = w->last_ns + w->timeout_ns * 2 / 3;
        int64_t stall_at = w->last_ns + w->timeout_ns;
        int64_t now = fb_now_ns();
        if (w->running && !w->warned_gap && now > warn_at) {
            w->warned_gap = 1;
            w->over_two_thirds = 1;
            report_gap(w, now, "watchdog.warning");
            continue;
        }
        if (w->running && !w->stalled_gap && now > stall_at) {
            w->stalled_gap = 1;
            w->over_timeout = 1;
            report_gap(w, now, "watchdog.stall");
            continue;
        }
        int64_t wake = !w->running ? now + FB_NS_PER_S
                       : !w->warned_gap ? warn_at + 1
                       : !w->stalled_gap ? stall_at + 1
                                         : now + FB_NS_PER_S;
        struct timespec ts = fb_ns_to_timespec(wake);
        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

fb_watchdog *fb_watchdog_new(int64_t timeout_ns, int64_t start_ns, fb_timeline *tl,
                             const char *source, fb_error *err)
{
    if (timeout_ns <= 0)
        timeout_ns = FB_WATCHDOG_DEFAULT_TIMEOUT_NS;
    if (!source)
        source = "watchdog";
    if (!*source || strlen(source) > FB_TIMELINE_NAME_MAX) {
        fb_error_set(err, FB_ERR_ARG, "watchdog source must be 1 to %d bytes",
                     FB_TIMELINE_NAME_MAX);
        return NULL;
    }
    fb_watchdog *w = calloc(1, sizeof *w);
    if (!w) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory for a watchdog monitor");
        return NULL;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(w->source, sizeof w->source, "%s", source);
    w->tl = tl;
    w->timeout_ns = timeout_ns;
    w->live = start_ns == 0;
    w->start_ns = start_ns ? start_ns : fb_now_ns();
    w->last_ns = w->start_ns;
    w->running = 1;
    /* Recorded waveforms (a given start) are judged by their own stamps alone. */
    if (w->live) {
        if (pthread_create(&w->thread, NULL, stall_main, w) != 0) {
            fb_error_set(err, FB_ERR_IO, "cannot start the watchdog monitor's thread");
            fb_watchdog_free(w);
            return NULL;
        }
        w->thread_started = 1;
    }
    if (tl)
        fb_timeline_addf(tl, w->start_ns, w->source, "watchdog.start", NULL,
                         "{\"timeout_ns\":%" PRId64 "}", timeout_ns);
    return w;
}

fb_watchdog *fb_watchdog_watch(fb_gpio_line *line, int64_t timeout_ns, fb_timeline *tl,
                               const char *source, fb_error *err)
{
    char src[FB_TIMELINE_NAME_MAX + 1];
    if (!source) {
        snprintf(src, sizeof src, "watchdog:%s", fb_gpio_line_name(line));
        source = src;
    }
    fb_watchdog *w = fb_watchdog_new(timeout_ns, 0, tl, source, err);
    if (!w)
        return NULL;
    if (fb_gpio_add_listener(line, on_edge, w, err) != FB_OK) {
        fb_watchdog_free(w);
        return NULL;
    }
    w->line = line;
    return w;
}

static void fill(fb_watchdog *w, int64_t now, fb_watchdog_result *r)
{
    memset(r, 0, sizeof *r);
    r->start_ns = w->start_ns;
    r->stop_ns = w->running ? now : w->stop_ns;
    r->edges = w->edges;
    r->longest_gap_ns = w->longest;
    r->longest_gap_at_ns = w->longest_at;
    r->over_two_thirds = w->over_two_thirds;
    r->over_timeout = w->over_timeout;
    if (w->running && w->live) { /* the open gap, so far */
        int64_t open = now - w->last_ns;
        if (open > r->longest_gap_ns) {
            r->longest_gap_ns = open;
            r->longest_gap_at_ns = w->last_ns;
        }
        if (open * 3 > w->timeout_ns * 2)
            r->over_two_thirds = 1;
        if (open > w->timeout_ns)
            r->over_timeout = 1;
    }
    r->shortest_interval_ns = w->shortest_interval;
    r->mean_interval_ns = w->edges > 1 ? (w->last_edge_ns - w->first_edge_ns) /
                                             (int64_t)(w->edges - 1)
                                       : 0;
    r->first_edge_ns = w->first_edge_ns;
    r->last_edge_ns = w->last_edge_ns;
    r->timeout_ns = w->timeout_ns;
    r->lost = w->lost;
    r->running = w->running;
}

void fb_watchdog_get(fb_watchdog *w, fb_watchdog_result *out)
{
    pthread_mutex_lock(&w->lock);
    fill(w, fb_now_ns(), out);
    pthread_mutex_unlock(&w->lock);
}

void fb_watchdog_stop(fb_watchdog *w, int64_t stop_ns, fb_watchdog_result *out)
{
    fb_gpio_line *line = NULL;
    pthread_mutex_lock(&w->lock);
    line = w->line;
    w->line = NULL;
    pthread_mutex_unlock(&w->lock);
    if (line) { /* outside our lock: the listener takes it */
        fb_gpio_line_stats s;
        fb_gpio_remove_listener(line, on_edge, w);
        fb_gpio_line_get_stats(line, &s);
        fb_watchdog_add_lost(w, s.lost);
    }
    pthread_mutex_lock(&w->lock);
    int was_running = w->running;
    if (w->running) {
        int64_t t = stop_ns ? stop_ns : fb_now_ns();
        if (t < w->last_ns)
            t = w->last_ns;
        gap_closed(w, t - w->last_ns, w->last_ns);
        w->stop_ns = t;
        w->running = 0;
        pthread_cond_broadcast(&w->cond);
    }
    fb_watchdog_result r;
    fill(w, w->stop_ns, &r);
    pthread_mutex_unlock(&w->lock);
    if (was_running && w->tl)
        fb_timeline_addf(w->tl, r.stop_ns, w->source, "watchdog.verdict", NULL,
                         "{\"edges\":%" PRIu64 ",\"longest_gap_ns\":%" PRId64
                         ",\"longest_gap_at_ns\":%" PRId64 ",\"timeout_ns\":%" PRId64
                         ",\"over_two_thirds\":%s,\"over_timeout\":%s,\"lost\":%" PRIu64 "}",
                         r.edges, r.longest_gap_ns, r.longest_gap_at_ns, r.timeout_ns,
                         r.over_two_thirds ? "true" : "false", r.over_timeout ? "true" : "false",
                         r.lost);
    if (out)
        *out = r;
}

size_t fb_watchdog_intervals(fb_watchdog *w, int64_t *out, size_t cap)
{
    pthread_mutex_lock(&w->lock);
    size_t n = w->n_intervals;
    if (out)
        memcpy(out, w->intervals, (n < cap ? n : cap) * sizeof *out);
    pthread_mutex_unlock(&w->lock);
    return n;
}

void fb_watchdog_wait_stall(fb_watchdog *w, int64_t threshold_ns, int64_t deadline, int *stalled,
                            int64_t *gap_ns)
{
    *stalled = 0;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        int64_t now = fb_now_ns();
        int64_t gap = (w->running ? (w->live ? now : w->last_ns) : w->stop_ns) - w->last_ns;
        if (gap > threshold_ns) {
            *stalled = 1;
            if (gap_ns)
                *gap_ns = gap;
            break;
        }
        if (!w->running || now >= deadline)
            break;
        int64_t wake = fb_deadline_add(w->last_ns, threshold_ns);
        wake = wake == FB_DEADLINE_NEVER ? wake : wake + 1;
        fb_cond_wait_until(&w->cond, &w->lock, wake < deadline ? wake : deadline);
    }
    pthread_mutex_unlock(&w->lock);
}

void fb_watchdog_free(fb_watchdog *w)
{
    if (!w)
        return;
    if (w->line)
        fb_watchdog_stop(w, 0, NULL);
    if (w->thread_started) {
        pthread_mutex_lock(&w->lock);
        w->quit = 1;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    }
    free(w->intervals);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
