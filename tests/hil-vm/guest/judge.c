/* The lane's criteria, shared by the backends: see checks_common.h. */
#include "checks_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void monitor_edge(struct monitor *m, int64_t ts, int64_t timeout)
{
    if (m->edges > 0) {
        int64_t gap = ts - m->prev_ts;
        if (m->n_iv < (int)(sizeof m->iv / sizeof m->iv[0]))
            m->iv[m->n_iv++] = gap;
        if (gap > m->max_gap)
            m->max_gap = gap;
        if (gap > timeout) {
            if (!m->stalled) {
                m->stalls++;
                m->late_stalls++;
            }
            if (gap > m->stall_gap)
                m->stall_gap = gap;
        } else if (gap > m->max_regular_gap) {
            m->max_regular_gap = gap;
        }
    }
    m->stalled = false;
    m->prev_ts = ts;
    m->edges++;
}

void monitor_timeout(struct monitor *m, int64_t last_edge, int64_t timeout)
{
    (void)timeout;
    if (m->stalled || m->edges == 0)
        return;
    m->stalled = true;
    m->stalls++;
    m->detect_after = now_ns() - last_edge;
}

void judge_pulses(const char *name, const int64_t *core_start, const int64_t *core_end)
{
    int64_t stamp_err = 0;
    struct trace_ev ev[64];
    int n = trace_collect(ev, 64);
    if (n < 0) {
        result(name, false, "cannot read the kernel trace");
        return;
    }
    /* All "set" events of one line: value 1 then 0, N_PULSES times. */
    int gpio = n > 0 ? ev[0].gpio : -1, pairs = 0;
    bool ok = n == 2 * N_PULSES;
    int64_t worst = 0;
    char detail[600] = "";
    for (int i = 0; i + 1 < n && pairs < N_PULSES; i += 2) {
        if (ev[i].gpio != gpio || ev[i + 1].gpio != gpio || ev[i].value != 1 || ev[i + 1].value != 0) {
            ok = false;
            break;
        }
        int64_t measured = ev[i + 1].t_ns - ev[i].t_ns;
        int64_t err = measured - PULSE_MS[pairs] * MS;
        if (err < -PULSE_EARLY_NS || err > PULSE_LATE_NS)
            ok = false;
        if (llabs(err) > llabs(worst))
            worst = err;
        if (core_start && core_end) {
            int64_t a = llabs(core_start[pairs] - ev[i].t_ns), b = llabs(core_end[pairs] - ev[i + 1].t_ns);
            if (a > stamp_err)
                stamp_err = a;
            if (b > stamp_err)
                stamp_err = b;
        }
        char m[32];
        snprintf(m, sizeof m, "pulse_%dms_err_us", PULSE_MS[pairs]);
        measure(m, (double)err / 1e3, "us");
        size_t l = strlen(detail);
        snprintf(detail + l, sizeof detail - l, "%d ms -> %.3f ms; ", PULSE_MS[pairs],
                 (double)measured / 1e6);
        pairs++;
    }
    measure("pulse_err_max_us", (double)worst / 1e3, "us");
    if (core_start && core_end) {
        measure("pulse_stamp_vs_kernel_max_us", (double)stamp_err / 1e3, "us");
        if (stamp_err > EDGE_LATENCY_NS)
            ok = false;
        size_t l = strlen(detail);
        snprintf(detail + l, sizeof detail - l,
                 "the core's own stamps within %.0f us of the kernel's (bound %.0f); ",
                 stamp_err / 1e3, EDGE_LATENCY_NS / 1e3);
    }
    result(name, ok && pairs == N_PULSES,
           "%d kernel gpio_value events (gpio %d), %d pulses requested vs measured: %s"
           "bounds -%.1f/+%.1f ms", n, gpio, pairs, detail, PULSE_EARLY_NS / 1e6,
           PULSE_LATE_NS / 1e6);
}

void judge_edges(const char *name, const struct toggler *t, const struct edge *ev, int n)
{
    bool order = true, seq = true;
    int64_t max_lat = 0, sum_lat = 0;
    for (int i = 0; i < n; i++) {
        order &= ev[i].rising == (i % 2 == 0);
        seq &= ev[i].line_seqno == (unsigned long)(i + 1);
        if (i < t->n) {
            int64_t lat = llabs(ev[i].t_ns - t->t_ns[i]);
            sum_lat += lat;
            if (lat > max_lat)
                max_lat = lat;
        }
    }
    measure("edge_latency_mean_us", n ? (double)sum_lat / n / 1e3 : -1, "us");
    measure("edge_latency_max_us", (double)max_lat / 1e3, "us");
    result(name, n == t->n && t->n == N_EDGES && t->errors == 0 && order && seq &&
                     max_lat <= EDGE_LATENCY_NS,
           "%d/%d edges for %d pulls (errors %d), alternating %s, line seqno 1..n %s, "
           "edge ts - pull write start: mean %.0f us max %.0f us (bound %.0f)",
           n, N_EDGES, t->n, t->errors, order ? "yes" : "NO", seq ? "yes" : "NO",
           n ? (double)sum_lat / n / 1e3 : -1.0, (double)max_lat / 1e3, EDGE_LATENCY_NS / 1e3);
}

/* The monitor against what the toggler produced. A feeder thread in a TCG guest on a
 * loaded host is sometimes late by tens of ms; such a gap over the timeout is real,
 * and the monitor must report it too. So: every interval the monitor measured must
 * match the produced one; every interval over the timeout must have been reported
 * once; the scheduled stall must be one of them, reported live. */
void judge_watchdog(const char *name, const struct toggler *t, const struct monitor *m,
                    int period_ms, int64_t timeout)
{
    int total = t->count_before + t->count_after;
    int64_t produced = toggler_stall_gap(t);
    int64_t err = m->stall_gap - produced;
    {   /* the same allowance for the writes' windows as for every interval below */
        int b = t->count_before;
        if (b > 0 && b < t->n) {
            int64_t lo = t->t_ns[b] - t->t_post_ns[b - 1];
            int64_t hi = t->t_post_ns[b] - t->t_ns[b - 1];
            err = m->stall_gap < lo ? m->stall_gap - lo : m->stall_gap > hi ? m->stall_gap - hi : 0;
        }
    }
    int64_t worst_iv_err = 0, max_produced_regular = 0;
    int over = 0, stall_idx = t->count_before - 1;
    bool stall_over = false;
    for (int i = 0; i < m->n_iv; i++) {
        if (m->iv[i] > timeout) {
            over++;
            stall_over |= i == stall_idx;
        }
        if (i + 1 < t->n) {
            int64_t p = t->t_ns[i + 1] - t->t_ns[i];
            /* The produced interval is only known within the two writes' windows
             * (start..end stamps); the error is the distance outside that window. */
            int64_t lo = t->t_ns[i + 1] - t->t_post_ns[i];
            int64_t hi = t->t_post_ns[i + 1] - t->t_ns[i];
            int64_t e = m->iv[i] < lo ? lo - m->iv[i] : m->iv[i] > hi ? m->iv[i] - hi : 0;
            if (e > worst_iv_err)
                worst_iv_err = e;
            if (i != stall_idx && p > max_produced_regular)
                max_produced_regular = p;
        }
    }
    char key[64];
    snprintf(key, sizeof key, "%s_gap_produced_ms", name);
    measure(key, (double)produced / 1e6, "ms");
    snprintf(key, sizeof key, "%s_gap_measured_ms", name);
    measure(key, (double)m->stall_gap / 1e6, "ms");
    snprintf(key, sizeof key, "%s_max_regular_gap_ms", name);
    measure(key, (double)m->max_regular_gap / 1e6, "ms");
    snprintf(key, sizeof key, "%s_stall_reported_after_ms", name);
    measure(key, (double)m->detect_after / 1e6, "ms");
    snprintf(key, sizeof key, "%s_interval_error_max_ms", name);
    measure(key, (double)worst_iv_err / 1e6, "ms");
    result(name, t->n == total && t->errors == 0 && m->edges == total && m->n_iv == total - 1 &&
                     stall_over && m->stalls == over && m->late_stalls == 0 &&
                     llabs(err) <= GAP_ERROR_NS && worst_iv_err <= GAP_ERROR_NS &&
                     m->max_gap == m->stall_gap,
           "feed every %d ms, stall %.1f ms produced: %d/%d edges, %d interval(s) over the %.0f ms "
           "timeout, %d stall(s) reported (%d late); the stall reported %.1f ms after its last "
           "edge; largest gap measured %.1f ms vs produced %.1f ms (error %.2f ms outside the "
           "writes' windows, bound %.0f); every interval within %.2f ms of the produced one's "
           "window; largest regular gap %.1f ms measured, %.1f ms produced%s",
           period_ms, produced / 1e6, m->edges, total, over, timeout / 1e6, m->stalls,
           m->late_stalls, m->detect_after / 1e6, m->max_gap / 1e6, produced / 1e6, err / 1e6,
           GAP_ERROR_NS / 1e6, worst_iv_err / 1e6, m->max_regular_gap / 1e6,
           max_produced_regular / 1e6,
           over > 1 ? " (the feeder itself was late: host load; reported, as it must be)" : "");
}

void judge_lost(const char *name, const struct toggler *t, int received,
                unsigned long last_seqno, unsigned long lost)
{
    measure("lost_events_detected", (double)lost, "events");
    result(name, t->n == N_LOSS_TOGGLES && t->errors == 0 && received > 0 && lost > 0 &&
                     last_seqno == (unsigned long)t->n && lost + (unsigned long)received ==
                     (unsigned long)t->n,
           "%d edges into a 16-event buffer nobody read: received %d (last line seqno %lu), "
           "detected %lu lost by sequence number (expected %d)",
           t->n, received, last_seqno, lost, t->n - received);
}
