/* The lane's GPIO checks against libgpiod 2 directly.
 *
 * This backend validates the lane itself (kernel, gpio-sim, tracing, event
 * sequence numbers); gpio_core.c runs the same checks through the C core's gpio and
 * watchdog API, which is what the lane is for. The watchdog monitor and pulse timing
 * here are the test's own minimal versions of what the core provides. */
#define _GNU_SOURCE
#include "util.h"
#include "checks_common.h"

#include <gpiod.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *gpio_backend(void) { return "libgpiod"; }

/* --- libgpiod helpers --------------------------------------------------------------- */

static struct gpiod_line_request *request(const unsigned *offs, size_t n, bool output,
                                          size_t event_buffer)
{
    struct gpiod_chip *chip = gpiod_chip_open(hil_chip());
    if (!chip)
        return NULL;
    struct gpiod_line_settings *s = gpiod_line_settings_new();
    struct gpiod_line_config *lc = gpiod_line_config_new();
    struct gpiod_request_config *rc = gpiod_request_config_new();
    struct gpiod_line_request *req = NULL;
    if (s && lc && rc) {
        if (output) {
            gpiod_line_settings_set_direction(s, GPIOD_LINE_DIRECTION_OUTPUT);
            gpiod_line_settings_set_output_value(s, GPIOD_LINE_VALUE_INACTIVE);
        } else {
            gpiod_line_settings_set_direction(s, GPIOD_LINE_DIRECTION_INPUT);
            gpiod_line_settings_set_edge_detection(s, GPIOD_LINE_EDGE_BOTH);
            gpiod_line_settings_set_event_clock(s, GPIOD_LINE_CLOCK_MONOTONIC);
        }
        gpiod_request_config_set_consumer(rc, "hiltest");
        if (event_buffer)
            gpiod_request_config_set_event_buffer_size(rc, event_buffer);
        if (gpiod_line_config_add_line_settings(lc, offs, n, s) == 0)
            req = gpiod_chip_request_lines(chip, rc, lc);
    }
    gpiod_request_config_free(rc);
    gpiod_line_config_free(lc);
    gpiod_line_settings_free(s);
    gpiod_chip_close(chip);
    return req;
}

/* Reads edge events until `want` arrived or `timeout_ns` passed without one. */
static int read_edges(struct gpiod_line_request *req, struct edge *out, int want,
                      int64_t idle_timeout_ns)
{
    struct gpiod_edge_event_buffer *buf = gpiod_edge_event_buffer_new(64);
    int n = 0;
    while (buf && n < want) {
        int r = gpiod_line_request_wait_edge_events(req, idle_timeout_ns);
        if (r <= 0)
            break;
        int got = gpiod_line_request_read_edge_events(req, buf, 64);
        for (int i = 0; i < got && n < want; i++) {
            struct gpiod_edge_event *e = gpiod_edge_event_buffer_get_event(buf, (unsigned long)i);
            out[n].t_ns = (int64_t)gpiod_edge_event_get_timestamp_ns(e);
            out[n].rising = gpiod_edge_event_get_event_type(e) == GPIOD_EDGE_EVENT_RISING_EDGE;
            out[n].line_seqno = gpiod_edge_event_get_line_seqno(e);
            out[n].offset = gpiod_edge_event_get_line_offset(e);
            n++;
        }
    }
    gpiod_edge_event_buffer_free(buf);
    return n;
}

/* --- GPIO ------------------------------------------------------------------------------ */

void check_gpio_hold(void)
{
    unsigned offs[] = { L_RESET, L_VBAT };
    struct gpiod_line_request *req = request(offs, 2, true, 0);
    if (!req) {
        result("gpio_hold", false, "request RESET+VBAT as outputs on %s failed", hil_chip());
        return;
    }
    int initial = sim_value(L_RESET);
    gpiod_line_request_set_value(req, L_RESET, GPIOD_LINE_VALUE_ACTIVE);
    gpiod_line_request_set_value(req, L_VBAT, GPIOD_LINE_VALUE_ACTIVE);
    sleep_ns(200 * MS);
    int held = sim_value(L_RESET), vbat = sim_value(L_VBAT);
    int readback = gpiod_line_request_get_value(req, L_RESET);
    gpiod_line_request_set_value(req, L_RESET, GPIOD_LINE_VALUE_INACTIVE);
    int released = sim_value(L_RESET), vbat2 = sim_value(L_VBAT);
    gpiod_line_request_release(req);
    result("gpio_hold", initial == 0 && held == 1 && vbat == 1 && readback == 1 && released == 0 &&
                            vbat2 == 1,
           "RESET initial %d, held 200 ms %d (readback %d), released %d; VBAT %d,%d "
           "(simulator's view of the output)", initial, held, readback, released, vbat, vbat2);
}

void check_gpio_pulse(void)
{
    unsigned off = L_PWRKEY;
    struct gpiod_line_request *req = request(&off, 1, true, 0);
    if (!req) {
        result("gpio_pulse", false, "request PWRKEY as output failed");
        return;
    }
    if (trace_start()) {
        gpiod_line_request_release(req);
        result("gpio_pulse", false, "tracefs gpio_value unavailable: no kernel timestamps");
        return;
    }
    for (int i = 0; i < N_PULSES; i++) {
        gpiod_line_request_set_value(req, off, GPIOD_LINE_VALUE_ACTIVE);
        sleep_ns(PULSE_MS[i] * MS);
        gpiod_line_request_set_value(req, off, GPIOD_LINE_VALUE_INACTIVE);
        sleep_ns(20 * MS);
    }
    gpiod_line_request_release(req);
    judge_pulses("gpio_pulse", NULL, NULL);
}

void check_gpio_edges(void)
{
    unsigned off = L_WDI;
    sim_pull(L_WDI, 0);
    struct gpiod_line_request *req = request(&off, 1, false, 0);
    if (!req) {
        result("gpio_edges", false, "request WDI as input with both edges failed");
        return;
    }
    struct toggler t = { .line = L_WDI, .period_ns = 10 * MS, .count_before = N_EDGES,
                         .start_delay_ns = 20 * MS };
    struct edge ev[N_EDGES + 4];
    toggler_start(&t, 0);
    int n = read_edges(req, ev, N_EDGES + 4, 500 * MS);
    toggler_join(&t);
    gpiod_line_request_release(req);
    judge_edges("gpio_edges", &t, ev, n);
    free(t.t_ns);
}

/* The test's own watchdog monitor: a gap between WDI edges longer than timeout is a
 * stall, reported as soon as the timeout passes and measured when feeding resumes. */
void check_watchdog(int period_ms, int stall_ms)
{
    char name[32];
    snprintf(name, sizeof name, "watchdog_%dms", period_ms);
    unsigned off = L_WDI;
    sim_pull(L_WDI, 0);
    struct gpiod_line_request *req = request(&off, 1, false, 0);
    if (!req) {
        result(name, false, "request WDI failed");
        return;
    }
    int feeds = 2000 / period_ms;
    struct toggler t = { .line = L_WDI, .period_ns = period_ms * MS, .count_before = feeds,
                         .stall_ns = stall_ms * MS, .count_after = 10, .start_delay_ns = 20 * MS };
    int64_t timeout = 3LL * period_ms * MS;
    struct monitor m = { 0 };
    toggler_start(&t, 0);
    struct gpiod_edge_event_buffer *buf = gpiod_edge_event_buffer_new(64);
    int total = t.count_before + t.count_after;
    int64_t last = now_ns();
    /* Until the last feed's edge: after it, feeding really stops (not a stall to test). */
    while (m.edges < total) {
        /* While stalled, wait (bounded) for feeding to resume. */
        int64_t wait = m.stalled ? 5000 * MS : last + timeout - now_ns();
        if (wait < 0)
            wait = 0;
        int r = gpiod_line_request_wait_edge_events(req, wait);
        if (r < 0)
            break;
        if (r == 0) {
            if (m.stalled)
                break; /* nothing for 5 s after a stall: the toggler is dead */
            monitor_timeout(&m, last, timeout);
            continue;
        }
        int got = gpiod_line_request_read_edge_events(req, buf, 64);
        for (int i = 0; i < got; i++) {
            struct gpiod_edge_event *e = gpiod_edge_event_buffer_get_event(buf, (unsigned long)i);
            int64_t ts = (int64_t)gpiod_edge_event_get_timestamp_ns(e);
            monitor_edge(&m, ts, timeout);
            last = ts;
        }
    }
    toggler_join(&t);
    gpiod_edge_event_buffer_free(buf);
    gpiod_line_request_release(req);
    judge_watchdog(name, &t, &m, period_ms, timeout);
    free(t.t_ns);
}

void check_lost_events(void)
{
    unsigned off = L_LOSS;
    sim_pull(L_LOSS, 0);
    /* A 16-event kernel buffer that nobody reads while 200 edges happen. */
    struct gpiod_line_request *req = request(&off, 1, false, 16);
    if (!req) {
        result("lost_events", false, "request LOSS failed");
        return;
    }
    struct toggler t = { .line = L_LOSS, .period_ns = 2 * MS, .count_before = N_LOSS_TOGGLES };
    toggler_start(&t, 0);
    toggler_join(&t);
    sleep_ns(50 * MS); /* let the last irq_work run; only then is the count final */
    struct edge ev[N_LOSS_TOGGLES];
    int n = read_edges(req, ev, N_LOSS_TOGGLES, 100 * MS);
    gpiod_line_request_release(req);
    /* Detection by sequence number: the kernel numbers every edge it saw from 1. */
    unsigned long expect = 1, lost = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].line_seqno > expect)
            lost += ev[i].line_seqno - expect;
        expect = ev[i].line_seqno + 1;
    }
    judge_lost("lost_events", &t, n, n ? ev[n - 1].line_seqno : 0, lost);
    pending("lost_events_first", "a check of the core's gap accounting (gpio_core.c); the "
                                 "direct check above already counts from seq 1");
    free(t.t_ns);
}


/* --- a background edge watcher (the whole path's WDI) ------------------------------- */

struct edge_watch {
    struct gpiod_line_request *req;
    pthread_t thread;
    int stop;
    struct edge *ev;
    int n, cap;
};

static void *watch_main(void *arg)
{
    struct edge_watch *w = arg;
    struct gpiod_edge_event_buffer *buf = gpiod_edge_event_buffer_new(64);
    while (buf && !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        int r = gpiod_line_request_wait_edge_events(w->req, 100 * MS); /* to see stop */
        if (r < 0)
            break;
        if (r == 0)
            continue;
        int got = gpiod_line_request_read_edge_events(w->req, buf, 64);
        for (int i = 0; i < got; i++) {
            if (w->n == w->cap) {
                int cap = w->cap ? 2 * w->cap : 1024;
                struct edge *ev = realloc(w->ev, (size_t)cap * sizeof *ev);
                if (!ev)
                    break;
                w->ev = ev;
                w->cap = cap;
            }
            struct gpiod_edge_event *e = gpiod_edge_event_buffer_get_event(buf, (unsigned long)i);
            w->ev[w->n].t_ns = (int64_t)gpiod_edge_event_get_timestamp_ns(e);
            w->ev[w->n].rising = gpiod_edge_event_get_event_type(e) == GPIOD_EDGE_EVENT_RISING_EDGE;
            w->ev[w->n].line_seqno = gpiod_edge_event_get_line_seqno(e);
            w->ev[w->n].offset = gpiod_edge_event_get_line_offset(e);
            __atomic_store_n(&w->n, w->n + 1, __ATOMIC_RELEASE);
        }
    }
    gpiod_edge_event_buffer_free(buf);
    return NULL;
}

struct edge_watch *edge_watch_start(unsigned line)
{
    struct edge_watch *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->req = request(&line, 1, false, 0);
    if (!w->req || pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        if (w->req)
            gpiod_line_request_release(w->req);
        free(w);
        return NULL;
    }
    return w;
}

int edge_watch_count(struct edge_watch *w) { return __atomic_load_n(&w->n, __ATOMIC_ACQUIRE); }

int edge_watch_stop(struct edge_watch *w, struct edge **edges)
{
    __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
    pthread_join(w->thread, NULL);
    gpiod_line_request_release(w->req);
    int n = w->n;
    *edges = w->ev;
    free(w);
    return n;
}
