/* The whole path: the C core in the guest drives a firmware upgrade of the virtual
 * module over a real 8250 UART while it watches the module's WDI line through
 * libgpiod on a real GPIO chip.
 *
 *   host: fotabench-sim (virtual module) uart1 pty <-> lane.py <-> qemu socket <-> ttyS1
 *         fotabench-sim gpio.sock "EDGE WDI v t seq" -> lane.py -> qemu socket -> ttyS3
 *   guest: ttyS3 relay thread -> gpio-sim pull of line WDI -> libgpiod edge events
 *          fb_serial (libserialport) + fb_at on ttyS1: +FBREADY, AT+FBVER?, AT+FBUPG
 *
 * The relay over ttyS3 stands in for the copper between the module's WDI pin and
 * the bench's GPIO input; it is test fixture, not code under test. The host set-up
 * (package server, module image, URL) is written by lane.py into /etc/wholepath.env;
 * without it (no virtual module on the host) nothing runs and the host reports why.
 *
 * Console protocol: "WHOLEPATH READY" (ttyS1 and the WDI watch are open: the host
 * may start the module and relay now), "WHOLEPATH DONE" (stop the module). */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#ifndef HIL_WHOLE_PATH
void check_whole_path(void) {}
#else
#include "fotabench/at.h"
#include "fotabench/clock.h" /* FB_DEADLINE_NEVER */
#include "fotabench/serial.h"

struct wp_env {
    char url[256], from[32], to[32];
};

static int read_env(struct wp_env *e)
{
    FILE *f = fopen("/etc/wholepath.env", "r");
    if (!f)
        return -1;
    char line[300];
    memset(e, 0, sizeof *e);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!strncmp(line, "URL=", 4))
            snprintf(e->url, sizeof e->url, "%.255s", line + 4);
        else if (!strncmp(line, "FROM=", 5))
            snprintf(e->from, sizeof e->from, "%.31s", line + 5);
        else if (!strncmp(line, "TO=", 3))
            snprintf(e->to, sizeof e->to, "%.31s", line + 3);
    }
    fclose(f);
    return e->url[0] && e->from[0] && e->to[0] ? 0 : -1;
}

/* --- the WDI relay (fixture) ------------------------------------------------------ */

struct relay {
    int fd;
    pthread_t thread;
    int stop;
    unsigned long received, seq_gaps, last_seq, pull_errors;
};

static void *relay_main(void *arg)
{
    struct relay *r = arg;
    char buf[256];
    size_t len = 0;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        ssize_t n = read(r->fd, buf + len, sizeof buf - 1 - len); /* VTIME 1: 100 ms */
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            break;
        if (n <= 0)
            continue;
        len += (size_t)n;
        buf[len] = 0;
        char *nl;
        while ((nl = memchr(buf, '\n', len))) {
            *nl = 0;
            int v;
            unsigned long seq;
            if (sscanf(buf, "W %d %lu", &v, &seq) == 2) {
                if (sim_pull(L_WDI, v))
                    r->pull_errors++;
                if (r->last_seq && seq != r->last_seq + 1)
                    r->seq_gaps++;
                r->last_seq = seq;
                r->received++;
            }
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, len - used);
            len -= used;
        }
        if (len == sizeof buf - 1)
            len = 0; /* garbage without newline: drop */
    }
    return NULL;
}

static int relay_start(struct relay *r)
{
    memset(r, 0, sizeof *r);
    r->fd = open(RELAY_UART, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (r->fd < 0)
        return -1;
    struct termios t;
    tcgetattr(r->fd, &t);
    cfmakeraw(&t);
    cfsetspeed(&t, B115200);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 1;
    tcsetattr(r->fd, TCSANOW, &t);
    tcflush(r->fd, TCIOFLUSH);
    return pthread_create(&r->thread, NULL, relay_main, r) ? -1 : 0;
}

static void relay_stop(struct relay *r)
{
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
    pthread_join(r->thread, NULL);
    close(r->fd);
}

/* --- AT helpers through the core ------------------------------------------------- */

/* One command, its response lines joined with '|' into out; returns the result. */
static int at_cmd(fb_at *at, const char *cmd, char *out, size_t cap, int64_t timeout,
                  fb_error *err)
{
    out[0] = 0;
    if (fb_at_start(at, cmd, NULL, err) != FB_OK)
        return -1;
    int64_t deadline = now_ns() + timeout;
    fb_at_response resp;
    memset(&resp, 0, sizeof resp);
    int done = 0;
    while (!done) {
        if (fb_at_wait(at, now_ns() + 500 * MS, deadline, FB_DEADLINE_NEVER, &resp, &done, err) != FB_OK)
            return -1;
    }
    for (size_t i = 0; i < resp.count; i++) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%.*s", i ? "|" : "", (int)resp.lens[i], resp.lines[i]);
    }
    int res = (int)resp.result;
    fb_at_response_free(&resp);
    return res;
}

/* Waits for an unsolicited line starting with prefix (and containing `has`, if
 * given); copies it. Collects +FBSTATE lines into states. */
static bool wait_line(fb_at *at, const char *prefix, const char *has, int64_t deadline,
                      char *out, size_t cap, char *states, size_t states_cap, int *n_states)
{
    fb_error err = { 0 };
    while (now_ns() < deadline) {
        char *line = NULL;
        size_t n = 0;
        int64_t t = 0;
        int urc = 0;
        fb_status st = fb_at_next_line(at, deadline, &line, &n, &t, &urc, &err);
        if (st != FB_OK && st != FB_ERR_LOST)
            return false;
        if (!line)
            continue;
        if (states && !strncmp(line, "+FBSTATE:", 9)) {
            (*n_states)++;
            size_t l = strlen(states);
            if (l + n + 2 < states_cap)
                snprintf(states + l, states_cap - l, "%s%.*s", l ? ";" : "", (int)n - 10,
                         line + 10);
        }
        bool hit = !strncmp(line, prefix, strlen(prefix)) && (!has || strstr(line, has));
        bool failed = states && !strncmp(line, "+FBSTATE:", 9) && strstr(line, "FAIL");
        if (hit)
            snprintf(out, cap, "%.*s", (int)n, line);
        free(line);
        if (hit)
            return true;
        if (failed)
            return false; /* the upgrade failed: no new version is coming */
    }
    return false;
}

void check_whole_path(void)
{
    struct wp_env env;
    if (read_env(&env))
        return; /* the host had no virtual module: it reports the reason */
    char detail[900] = "";
    bool ok = true;
#define FAIL_IF(cond, ...)                                                                   \
    do {                                                                                     \
        if (cond) {                                                                          \
            ok = false;                                                                      \
            size_t l_ = strlen(detail);                                                      \
            snprintf(detail + l_, sizeof detail - l_, __VA_ARGS__);                          \
        }                                                                                    \
    } while (0)

    sim_pull(L_WDI, 0);
    struct relay relay;
    if (relay_start(&relay)) {
        result("whole_path", false, "cannot open the WDI relay port %s", RELAY_UART);
        return;
    }
    struct edge_watch *watch = edge_watch_start(L_WDI);
    fb_error err = { 0 };
    fb_serial_config cfg;
    fb_serial_config_init(&cfg);
    cfg.backend = FB_SERIAL_LIBSERIALPORT;
    cfg.name = "uart1";
    fb_timeline *tl = fb_timeline_new(NULL);
    fb_serial *port = fb_serial_open(HOST_UART, &cfg, &err);
    fb_at *at = port ? fb_at_new(port, tl, "uart1", 0, 0, &err) : NULL;
    if (!watch || !port || !at) {
        result("whole_path", false, "set-up failed: watch %s, port/AT: %s", watch ? "ok" : "FAILED",
               err.message);
        if (at)
            fb_at_free(at);
        fb_serial_close(port);
        fb_timeline_free(tl);
        if (watch) {
            struct edge *e;
            edge_watch_stop(watch, &e);
            free(e);
        }
        relay_stop(&relay);
        return;
    }
    printf("WHOLEPATH READY\n");
    fflush(stdout);

    char line[300] = "", resp[300] = "", states[600] = "";
    int n_states = 0;
    int64_t t_ready = 0, t_upg = 0, t_new = 0;
    /* 1. the module powers on (the host holds PWRKEY) and the agent says +FBREADY */
    bool ready = wait_line(at, "+FBREADY:", env.from, now_ns() + 30000 * MS, line, sizeof line,
                           NULL, 0, NULL);
    FAIL_IF(!ready, "no +FBREADY with %s in 30 s; ", env.from);
    t_ready = now_ns();
    if (ready) {
        int r = at_cmd(at, "AT+FBVER?", resp, sizeof resp, 5000 * MS, &err);
        FAIL_IF(r != FB_AT_OK || !strstr(resp, env.from), "AT+FBVER? before: %d '%s' %s; ", r,
                resp, r < 0 ? err.message : "");
        /* FOTA needs GPRS: wait for the registration URC (queued if it came already) */
        FAIL_IF(!wait_line(at, "+CGREG: 1", NULL, now_ns() + 30000 * MS, line, sizeof line, NULL,
                           0, NULL),
                "no +CGREG: 1 within 30 s; ");
        /* 2. the upgrade */
        char cmd[300];
        snprintf(cmd, sizeof cmd, "AT+FBUPG=\"%s\"", env.url);
        t_upg = now_ns();
        r = at_cmd(at, cmd, resp, sizeof resp, 10000 * MS, &err);
        FAIL_IF(r != FB_AT_OK, "AT+FBUPG: %d '%s' %s; ", r, resp, r < 0 ? err.message : "");
        if (r == FB_AT_OK) {
            /* 3. states, reboot, the new version's +FBREADY */
            bool upgraded = wait_line(at, "+FBREADY:", env.to, now_ns() + 60000 * MS, line,
                                      sizeof line, states, sizeof states, &n_states);
            t_new = now_ns();
            FAIL_IF(!upgraded, "no +FBREADY with %s within 60 s (states: %s); ", env.to, states);
            FAIL_IF(n_states == 0, "no +FBSTATE lines; ");
            if (upgraded) {
                r = at_cmd(at, "AT+FBVER?", resp, sizeof resp, 5000 * MS, &err);
                FAIL_IF(r != FB_AT_OK || !strstr(resp, env.to), "AT+FBVER? after: %d '%s'; ", r,
                        resp);
            }
        }
    }
    /* keep watching one more second of feeding after the new boot */
    sleep_ns(1000 * MS);
    printf("WHOLEPATH DONE\n");
    fflush(stdout);
    /* The relay first (no more pulls), then let the watch see the last relayed edge
     * (bounded), then stop the watch: every relayed edge is counted on both sides. */
    relay_stop(&relay);
    int64_t until = now_ns() + 1000 * MS;
    while (edge_watch_count(watch) < (int)relay.received && now_ns() < until)
        sleep_ns(2 * MS);
    struct edge *ev = NULL;
    int n = edge_watch_stop(watch, &ev);
    fb_at_free(at);
    fb_serial_close(port);
    fb_timeline_free(tl);

    /* WDI as the bench saw it: the largest gap between edges from +FBREADY on
     * (upgrade and reboot included), by the kernel's timestamps, and which edge pair
     * it was (the host measures the same pair on the module's side). */
    int64_t max_gap = 0;
    int max_i = -1, in_window = 0;
    for (int i = 1; i < n; i++) {
        if (ev[i - 1].t_ns < t_ready)
            continue;
        in_window++;
        if (ev[i].t_ns - ev[i - 1].t_ns > max_gap) {
            max_gap = ev[i].t_ns - ev[i - 1].t_ns;
            max_i = i;
        }
    }
    bool seq_ok = true;
    for (int i = 0; i < n; i++)
        seq_ok &= ev[i].line_seqno == (unsigned long)(i + 1);
    free(ev);
    FAIL_IF(relay.received == 0 || (unsigned long)n != relay.received,
            "relay forwarded %lu edges, libgpiod saw %d; ", relay.received, n);
    FAIL_IF(relay.seq_gaps || relay.pull_errors, "relay seq gaps %lu, pull errors %lu; ",
            relay.seq_gaps, relay.pull_errors);
    FAIL_IF(!seq_ok, "edge sequence numbers not 1..n; ");
    FAIL_IF(max_gap <= 0, "no WDI edges after +FBREADY; ");
    /* The module's own watchdog chip (fotabench-sim --wdt-timeout, 1.6 s) resets it
     * after a longer gap: what the bench watches for. */
    FAIL_IF(max_gap >= 1600 * MS, "WDI gap %.1f ms: the module's watchdog would bite; ",
            max_gap / 1e6);
    measure("wholepath_upgrade_s", t_new && t_upg ? (t_new - t_upg) / 1e9 : -1, "s");
    measure("wholepath_wdi_edges", n, "edges");
    measure("wholepath_wdi_max_gap_ms", max_gap / 1e6, "ms");
    /* relay seq of the edge that ended the largest gap = its index + 1 */
    measure("wholepath_wdi_max_gap_edge", max_i + 1, "seq");
    result("whole_path", ok,
           "core AT engine on %s: %s -> %s via AT+FBUPG, %d +FBSTATE (%s), upgrade %.1f s; "
           "WDI through relay + gpio-sim + libgpiod: %d edges (%d after +FBREADY), largest gap "
           "%.1f ms; %s",
           HOST_UART, env.from, env.to, n_states, states,
           t_new && t_upg ? (t_new - t_upg) / 1e9 : -1.0, n, in_window, max_gap / 1e6,
           ok ? "all as expected" : detail);
#undef FAIL_IF
}
#endif
