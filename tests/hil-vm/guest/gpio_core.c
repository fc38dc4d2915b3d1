/* The lane's GPIO checks through the C core (fotabench/gpio.h, fotabench/watchdog.h,
 * libgpiod backend) on a real GPIO chip (gpio-sim): the same checks gpio_direct.c
 * made against libgpiod itself, judged by the same code (judge.c). What drives the
 * inputs (the simulator's pull) and what observes the outputs (the simulator's value,
 * the kernel's gpio_value trace) is never the core. */
#define _GNU_SOURCE
#include "util.h"
#include "checks_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fotabench/gpio.h"
#include "fotabench/timeline.h"
#include "fotabench/watchdog.h"

const char *gpio_backend(void) { return "core"; }

static fb_gpio *open_chip(fb_timeline *tl, const char *check)
{
    fb_error err = { 0 };
    fb_gpio *g = fb_gpio_open_chip(hil_chip(), tl, &err);
    if (!g)
        result(check, false, "fb_gpio_open_chip(%s): %s", hil_chip(), err.message);
    else if (strcmp(fb_gpio_backend_name(g), "gpiod") != 0) {
        result(check, false, "backend %s, expected gpiod", fb_gpio_backend_name(g));
        fb_gpio_close(g);
        g = NULL;
    }
    return g;
}

static fb_gpio_line *request(fb_gpio *g, const char *name, bool output, int initial,
                             int active_low, size_t queue_max, fb_error *err)
{
    fb_gpio_line_config cfg;
    fb_gpio_line_config_init(&cfg);
    cfg.direction = output ? FB_GPIO_OUTPUT : FB_GPIO_INPUT;
    cfg.initial = initial;
    cfg.active_low = active_low;
    cfg.edges = !output;
    cfg.queue_max = queue_max;
    return fb_gpio_request(g, name, -1, &cfg, err); /* by name, as a bench config does */
}

struct count_ctx {
    const char *kind;
    int n;
};

static int count_kind(void *ctx, const fb_event *ev)
{
    struct count_ctx *c = ctx;
    if (!strcmp(ev->kind, c->kind))
        c->n++;
    return 0;
}

static int timeline_count(fb_timeline *tl, const char *kind)
{
    struct count_ctx c = { kind, 0 };
    fb_timeline_visit(tl, 0, count_kind, &c);
    return c.n;
}

void check_gpio_hold(void)
{
    fb_gpio *g = open_chip(NULL, "gpio_hold");
    if (!g)
        return;
    fb_error err = { 0 };
    fb_gpio_line *reset = request(g, "RESET", true, 0, 0, 0, &err);
    fb_gpio_line *vbat = reset ? request(g, "VBAT", true, 0, 0, 0, &err) : NULL;
    /* active low: logical 0 at request is the physical high level */
    fb_gpio_line *spare = vbat ? request(g, "SPARE", true, 0, 1, 0, &err) : NULL;
    if (!spare) {
        result("gpio_hold", false, "requesting RESET, VBAT, SPARE by name: %s", err.message);
        fb_gpio_close(g);
        return;
    }
    int initial = sim_value(L_RESET), spare_idle = sim_value(L_SPARE);
    int64_t t_set = 0;
    bool ok = fb_gpio_set(reset, 1, &t_set, &err) == FB_OK && fb_gpio_set(vbat, 1, NULL, &err) == FB_OK &&
              fb_gpio_set(spare, 1, NULL, &err) == FB_OK;
    sleep_ns(200 * MS);
    int held = sim_value(L_RESET), vb = sim_value(L_VBAT), spare_active = sim_value(L_SPARE);
    int readback = -1;
    ok = ok && fb_gpio_get(reset, &readback, &err) == FB_OK;
    ok = ok && fb_gpio_set(reset, 0, NULL, &err) == FB_OK;
    int released = sim_value(L_RESET), vb2 = sim_value(L_VBAT);
    fb_gpio_close(g);
    result("gpio_hold", ok && initial == 0 && held == 1 && readback == 1 && released == 0 && vb == 1 &&
                            vb2 == 1 && spare_idle == 1 && spare_active == 0 && t_set > 0,
           "core: RESET initial %d, held 200 ms %d (fb_gpio_get %d), released %d; VBAT %d,%d; "
           "active-low SPARE physical %d at logical 0, %d at logical 1 (simulator's view)%s%s",
           initial, held, readback, released, vb, vb2, spare_idle, spare_active,
           ok ? "" : "; error: ", ok ? "" : err.message);
}

void check_gpio_pulse(void)
{
    fb_gpio *g = open_chip(NULL, "gpio_pulse");
    if (!g)
        return;
    fb_error err = { 0 };
    fb_gpio_line *pwrkey = request(g, "PWRKEY", true, 0, 0, 0, &err);
    if (!pwrkey) {
        result("gpio_pulse", false, "request PWRKEY: %s", err.message);
        fb_gpio_close(g);
        return;
    }
    if (trace_start()) {
        fb_gpio_close(g);
        result("gpio_pulse", false, "tracefs gpio_value unavailable: no kernel timestamps");
        return;
    }
    int64_t t0[N_PULSES] = { 0 }, t1[N_PULSES] = { 0 };
    bool ok = true;
    for (int i = 0; i < N_PULSES && ok; i++) {
        ok = fb_gpio_pulse(pwrkey, 1, PULSE_MS[i] * MS, &t0[i], &t1[i], &err) == FB_OK;
        sleep_ns(20 * MS);
    }
    fb_gpio_close(g);
    if (!ok) {
        trace_collect(NULL, 0);
        result("gpio_pulse", false, "fb_gpio_pulse: %s", err.message);
        return;
    }
    judge_pulses("gpio_pulse", t0, t1);
}

/* Reads edges through the core until `want` or no edge for idle_ns. */
static int read_edges(fb_gpio_line *line, struct edge *out, int want, int64_t idle_ns,
                      int *lost_reports, char *why, size_t whylen)
{
    int n = 0;
    fb_error err = { 0 };
    while (n < want) {
        fb_gpio_edge e;
        int got = 0;
        fb_status st = fb_gpio_next_edge(line, now_ns() + idle_ns, &e, &got, &err);
        if (st == FB_ERR_LOST) {
            (*lost_reports)++;
            if (why && !why[0])
                snprintf(why, whylen, "%.250s", err.message);
            continue;
        }
        if (st != FB_OK || !got)
            break;
        out[n].t_ns = e.t_ns;
        out[n].rising = e.value == 1;
        out[n].line_seqno = (unsigned long)e.seq;
        out[n].offset = L_WDI;
        n++;
    }
    return n;
}

void check_gpio_edges(void)
{
    sim_pull(L_WDI, 0);
    fb_timeline *tl = fb_timeline_new(NULL);
    fb_gpio *g = open_chip(tl, "gpio_edges");
    if (!g) {
        fb_timeline_free(tl);
        return;
    }
    fb_error err = { 0 };
    fb_gpio_line *wdi = request(g, "WDI", false, 0, 0, 0, &err);
    if (!wdi) {
        result("gpio_edges", false, "request WDI with edges: %s", err.message);
        fb_gpio_close(g);
        fb_timeline_free(tl);
        return;
    }
    struct toggler t = { .line = L_WDI, .period_ns = 10 * MS, .count_before = N_EDGES,
                         .start_delay_ns = 20 * MS };
    struct edge ev[N_EDGES + 4];
    int lost_reports = 0;
    toggler_start(&t, 0);
    int n = read_edges(wdi, ev, N_EDGES + 4, 500 * MS, &lost_reports, NULL, 0);
    toggler_join(&t);
    fb_gpio_line_stats stats;
    fb_gpio_line_get_stats(wdi, &stats);
    fb_gpio_close(g);
    int tl_edges = timeline_count(tl, "edge");
    fb_timeline_free(tl);
    judge_edges("gpio_edges", &t, ev, n);
    if (lost_reports || stats.lost || stats.dropped || stats.edges != (uint64_t)N_EDGES ||
        tl_edges != N_EDGES)
        result("gpio_edges", false,
               "core bookkeeping: %d FB_ERR_LOST, stats edges %llu lost %llu dropped %llu, "
               "%d timeline edge events (expected %d, none lost)", lost_reports,
               (unsigned long long)stats.edges, (unsigned long long)stats.lost,
               (unsigned long long)stats.dropped, tl_edges, N_EDGES);
    free(t.t_ns);
}

/* The core's watchdog monitor on WDI: timeout 3 feed periods, a stall in the middle. */
void check_watchdog(int period_ms, int stall_ms)
{
    char name[32];
    snprintf(name, sizeof name, "watchdog_%dms", period_ms);
    sim_pull(L_WDI, 0);
    fb_timeline *tl = fb_timeline_new(NULL);
    fb_gpio *g = open_chip(tl, name);
    if (!g) {
        fb_timeline_free(tl);
        return;
    }
    fb_error err = { 0 };
    fb_gpio_line *wdi = request(g, "WDI", false, 0, 0, 0, &err);
    int64_t timeout = 3LL * period_ms * MS;
    fb_watchdog *w = wdi ? fb_watchdog_watch(wdi, timeout, tl, "watchdog", &err) : NULL;
    if (!w) {
        result(name, false, "request WDI / fb_watchdog_watch: %s", err.message);
        fb_gpio_close(g);
        fb_timeline_free(tl);
        return;
    }
    int feeds = 2000 / period_ms;
    struct toggler t = { .line = L_WDI, .period_ns = period_ms * MS, .count_before = feeds,
                         .stall_ns = stall_ms * MS, .count_after = 10, .start_delay_ns = 20 * MS };
    int total = t.count_before + t.count_after;
    struct monitor m = { 0 };
    toggler_start(&t, 0);
    /* Live: wait for stalls until the scheduled one (after the regular feeds). A stall
     * reported earlier is a late feed on a loaded host: judged against the produced
     * intervals below, not here. */
    int stalled = 0, feeds_before_report = -1, early_reports = 0;
    int64_t gap = 0;
    fb_watchdog_result r;
    int64_t deadline = now_ns() + (feeds * period_ms + stall_ms + 3000) * MS;
    for (;;) {
        fb_watchdog_wait_stall(w, timeout, deadline, &stalled, &gap);
        if (!stalled)
            break;
        feeds_before_report = __atomic_load_n(&t.n, __ATOMIC_ACQUIRE);
        fb_watchdog_get(w, &r);
        if (feeds_before_report >= t.count_before) {
            m.detect_after = r.last_edge_ns ? now_ns() - r.last_edge_ns : -1;
            break;
        }
        early_reports++;
        /* wait (bounded) for the next edge, which closes this gap */
        uint64_t seen = r.edges;
        do {
            sleep_ns(2 * MS);
            fb_watchdog_get(w, &r);
        } while (r.edges == seen && now_ns() < deadline);
    }
    toggler_join(&t);
    /* Every feed's edge reaches the monitor (bounded wait, no fixed sleep). */
    int64_t until = now_ns() + 2000 * MS;
    do {
        fb_watchdog_get(w, &r);
        if (r.edges >= (uint64_t)total)
            break;
        sleep_ns(5 * MS);
    } while (now_ns() < until);
    /* Stop at the last edge: after it feeding really ends (not the stall under test). */
    fb_watchdog_stop(w, r.last_edge_ns, &r);
    size_t n_iv = fb_watchdog_intervals(w, m.iv, sizeof m.iv / sizeof m.iv[0]);
    m.n_iv = (int)(n_iv < sizeof m.iv / sizeof m.iv[0] ? n_iv : sizeof m.iv / sizeof m.iv[0]);
    for (int i = 0; i < m.n_iv; i++)
        if (m.iv[i] <= timeout && m.iv[i] > m.max_regular_gap)
            m.max_regular_gap = m.iv[i];
    fb_watchdog_free(w);
    fb_gpio_close(g);
    int stall_events = timeline_count(tl, "watchdog.stall");
    fb_timeline_free(tl);

    m.edges = (int)r.edges;
    m.stalls = stall_events;
    m.late_stalls = stalled && feeds_before_report == t.count_before ? 0 : 1;
    m.stall_gap = r.longest_gap_ns;
    m.max_gap = r.longest_gap_ns;
    char key[64];
    snprintf(key, sizeof key, "%s_core_verdict_over_timeout", name);
    measure(key, r.over_timeout, "bool");
    judge_watchdog(name, &t, &m, period_ms, timeout);
    if (!stalled || feeds_before_report != t.count_before || !r.over_timeout || r.lost)
        result(name, false,
               "core monitor: the scheduled stall %s after %d/%d feeds (expected after %d; %d "
               "earlier report(s)), verdict over_timeout %d, lost %llu",
               stalled ? "reported" : "NOT reported", feeds_before_report, total, t.count_before,
               early_reports, r.over_timeout, (unsigned long long)r.lost);
    free(t.t_ns);
}

/* A slow consumer: once armed, the listener blocks the core's reader thread on the
 * next edge until gate_open(). */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int armed, holding, open;
};

static void gate_listener(void *ctx, const fb_gpio_edge *e)
{
    (void)e;
    struct gate *g = ctx;
    pthread_mutex_lock(&g->lock);
    if (g->armed) {
        g->armed = 0;
        g->holding = 1;
        pthread_cond_broadcast(&g->cond);
        int64_t limit = now_ns() + 5000 * MS; /* never hold forever */
        struct timespec ts = { .tv_sec = limit / 1000000000LL, .tv_nsec = limit % 1000000000LL };
        while (!g->open)
            if (pthread_cond_timedwait(&g->cond, &g->lock, &ts) != 0)
                break;
        g->holding = 0;
    }
    pthread_mutex_unlock(&g->lock);
}

static void gate_init(struct gate *g)
{
    pthread_condattr_t a; /* deadlines are CLOCK_MONOTONIC, like everything here */
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cond, &a);
    pthread_condattr_destroy(&a);
}

static void gate_arm(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->armed = 1;
    g->open = 0;
    pthread_mutex_unlock(&g->lock);
}

/* Releases the reader; returns whether it was being held. */
static bool gate_open(struct gate *g, int64_t deadline)
{
    pthread_mutex_lock(&g->lock);
    struct timespec ts = { .tv_sec = deadline / 1000000000LL, .tv_nsec = deadline % 1000000000LL };
    while (g->armed) /* the first burst edge has not reached the listener yet */
        if (pthread_cond_timedwait(&g->cond, &g->lock, &ts) != 0)
            break;
    bool held = g->holding;
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return held;
}

/* Lost edges, two ways: the kernel's 16-event buffer overflowing while the core's
 * reader thread is held (a gap in the kernel's sequence numbers, mid-stream), and
 * the core's own queue overflowing because nobody reads. Then (c): edges dropped
 * before the first one is read. */
void check_lost_events(void)
{
    sim_pull(L_LOSS, 0);
    fb_timeline *tl = fb_timeline_new(NULL);
    fb_gpio *g = open_chip(tl, "lost_events");
    if (!g) {
        fb_timeline_free(tl);
        return;
    }
    fb_error err = { 0 };
    fb_gpio_line *loss = request(g, "LOSS", false, 0, 0, 0, &err);
    if (!loss) {
        result("lost_events", false, "request LOSS: %s", err.message);
        fb_gpio_close(g);
        fb_timeline_free(tl);
        return;
    }
    /* a) 4 slow edges the core reads (seq 1..4); then a slow consumer: a listener
     * (which runs on the core's reader thread) holds that thread on the next edge
     * while 200 more come, so the kernel's 16-event buffer overflows for certain; then
     * it lets go and the core must see the gap in the kernel's sequence numbers. */
    struct toggler slow = { .line = L_LOSS, .period_ns = 10 * MS, .count_before = 4 };
    struct edge ev[N_LOSS_TOGGLES + 8];
    int lost_reports = 0;
    char why[300] = "";
    struct gate gate = { .lock = PTHREAD_MUTEX_INITIALIZER };
    gate_init(&gate);
    bool listening = fb_gpio_add_listener(loss, gate_listener, &gate, &err) == FB_OK;
    toggler_start(&slow, 0);
    toggler_join(&slow);
    int first = read_edges(loss, ev, 4, 500 * MS, &lost_reports, why, sizeof why);
    gate_arm(&gate);
    struct toggler burst = { .line = L_LOSS, .period_ns = 1 * MS, .count_before = N_LOSS_TOGGLES };
    toggler_start(&burst, slow.level);
    toggler_join(&burst);
    bool held = gate_open(&gate, now_ns() + 2000 * MS); /* was the reader really held? */
    int n = read_edges(loss, ev + first, N_LOSS_TOGGLES, 300 * MS, &lost_reports, why, sizeof why);
    if (listening)
        fb_gpio_remove_listener(loss, gate_listener, &gate);
    pthread_cond_destroy(&gate.cond);
    fb_gpio_line_stats st;
    fb_gpio_line_get_stats(loss, &st);
    unsigned long last = n ? ev[first + n - 1].line_seqno : 0;
    int lost_events_tl = timeline_count(tl, "edge.lost");
    unsigned long produced = (unsigned long)(slow.n + burst.n);
    measure("lost_events_detected", (double)st.lost, "events");
    bool a_ok = listening && held && first == 4 && slow.errors == 0 && burst.errors == 0 && st.lost > 0 &&
                lost_reports >= 1 && lost_events_tl >= 1 && last == produced &&
                st.lost + st.edges == produced && st.dropped == 0;
    char a_detail[600];
    snprintf(a_detail, sizeof a_detail,
             "kernel overflow: %d slow edges read, then %d toggles while a listener held the "
             "core's reader (held %s): core "
             "delivered %llu edges, counted %llu lost by sequence number (expected %lu), last "
             "seq %lu, FB_ERR_LOST %d time(s) ('%s'), %d edge.lost timeline event(s)",
             first, burst.n, held ? "yes" : "NO", (unsigned long long)st.edges,
             (unsigned long long)st.lost,
             produced - (unsigned long)st.edges, last, lost_reports, why, lost_events_tl);
    fb_gpio_release(loss);
    loss = NULL;

    /* b) the core's queue: 8 slots, 50 edges, nobody reading */
    loss = request(g, "LOSS", false, 0, 0, 8, &err);
    bool b_ok = loss != NULL;
    char b_detail[800] = "";
    if (loss) {
        struct toggler q = { .line = L_LOSS, .period_ns = 2 * MS, .count_before = 50 };
        toggler_start(&q, sim_value(L_LOSS) == 1);
        toggler_join(&q);
        int64_t until = now_ns() + 1000 * MS;
        fb_gpio_line_stats qs;
        do { /* bounded wait for the reader thread to take every edge */
            fb_gpio_line_get_stats(loss, &qs);
            if (qs.edges + qs.lost >= (uint64_t)q.n)
                break;
            sleep_ns(5 * MS);
        } while (now_ns() < until);
        int reports = 0;
        char qwhy[300] = "";
        int got = read_edges(loss, ev, 64, 100 * MS, &reports, qwhy, sizeof qwhy);
        fb_gpio_line_get_stats(loss, &qs);
        b_ok = got == 8 && reports == 1 && qs.dropped == (uint64_t)(q.n - 8) && qs.lost == 0 &&
               q.errors == 0;
        snprintf(b_detail, sizeof b_detail,
                 "core queue of 8: %d edges unread, then read %d, dropped %llu (expected %d), "
                 "FB_ERR_LOST %d time(s) ('%s')", q.n, got, (unsigned long long)qs.dropped,
                 q.n - 8, reports, qwhy);
        free(q.t_ns);
    } else {
        snprintf(b_detail, sizeof b_detail, "re-request LOSS: %s", err.message);
    }
    if (loss)
        fb_gpio_release(loss);

    /* c) a burst right after the request: the kernel numbers a new request's edges
     * from 1, so edges dropped before the first one read are a gap too. */
    loss = request(g, "LOSS", false, 0, 0, 0, &err);
    if (loss) {
        struct toggler b2 = { .line = L_LOSS, .period_ns = 0, .count_before = N_LOSS_TOGGLES,
                              .rt_priority = 10 };
        int reports = 0;
        char cwhy[300] = "";
        toggler_start(&b2, sim_value(L_LOSS) == 1);
        toggler_join(&b2);
        int got = read_edges(loss, ev, N_LOSS_TOGGLES, 300 * MS, &reports, cwhy, sizeof cwhy);
        fb_gpio_line_stats cs;
        fb_gpio_line_get_stats(loss, &cs);
        unsigned long first_seq = got ? ev[0].line_seqno : 0;
        unsigned long last_seq = got ? ev[got - 1].line_seqno : 0;
        result("lost_events_first",
               got > 0 && b2.errors == 0 && last_seq == (unsigned long)b2.n &&
                   cs.lost + cs.edges == (uint64_t)b2.n && (first_seq == 1 || reports >= 1),
               "burst of %d right after the request: first delivered seq %lu, last %lu, core "
               "delivered %llu, counted %llu lost (expected %lu), FB_ERR_LOST %d time(s)%s%s",
               b2.n, first_seq, last_seq, (unsigned long long)cs.edges,
               (unsigned long long)cs.lost, (unsigned long)b2.n - (unsigned long)cs.edges, reports,
               cwhy[0] ? ": " : "", cwhy);
        free(b2.t_ns);
    } else {
        result("lost_events_first", false, "re-request LOSS: %s", err.message);
    }
    fb_gpio_close(g);
    fb_timeline_free(tl);
    result("lost_events", a_ok && b_ok, "%s; %s", a_detail, b_detail);
    free(slow.t_ns);
    free(burst.t_ns);
}

/* --- the whole path's WDI watch: the core's line, listener and watchdog ---------- */

struct edge_watch {
    fb_gpio *g;
    fb_gpio_line *line;
    pthread_mutex_t lock;
    struct edge *ev;
    int n, cap;
};

static void on_edge(void *ctx, const fb_gpio_edge *e)
{
    struct edge_watch *w = ctx;
    pthread_mutex_lock(&w->lock);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 1024;
        struct edge *ev = realloc(w->ev, (size_t)cap * sizeof *ev);
        if (!ev) {
            pthread_mutex_unlock(&w->lock);
            return;
        }
        w->ev = ev;
        w->cap = cap;
    }
    w->ev[w->n].t_ns = e->t_ns;
    w->ev[w->n].rising = e->value == 1;
    w->ev[w->n].line_seqno = (unsigned long)e->seq;
    w->ev[w->n].offset = L_WDI;
    w->n++;
    pthread_mutex_unlock(&w->lock);
}

struct edge_watch *edge_watch_start(unsigned line)
{
    (void)line; /* by name, as a bench does: WDI */
    struct edge_watch *w = calloc(1, sizeof *w);
    fb_error err = { 0 };
    if (!w)
        return NULL;
    pthread_mutex_init(&w->lock, NULL);
    w->g = fb_gpio_open_chip(hil_chip(), NULL, &err);
    w->line = w->g ? request(w->g, "WDI", false, 0, 0, 0, &err) : NULL;
    if (!w->line || fb_gpio_add_listener(w->line, on_edge, w, &err) != FB_OK) {
        fb_gpio_close(w->g);
        free(w);
        return NULL;
    }
    return w;
}

int edge_watch_count(struct edge_watch *w)
{
    pthread_mutex_lock(&w->lock);
    int n = w->n;
    pthread_mutex_unlock(&w->lock);
    return n;
}

int edge_watch_stop(struct edge_watch *w, struct edge **edges)
{
    fb_gpio_remove_listener(w->line, on_edge, w);
    fb_gpio_close(w->g);
    int n = w->n;
    *edges = w->ev;
    pthread_mutex_destroy(&w->lock);
    free(w);
    return n;
}
