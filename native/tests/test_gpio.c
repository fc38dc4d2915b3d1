/* C-level checks of GPIO (virtual backend against a tiny board in a thread, the
 * protocol parser, libgpiod's open errors) and the watchdog arithmetic on known
 * waveforms; under ASan/UBSan/LSan too. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "fotabench/clock.h"
#include "fotabench/gpio.h"
#include "fotabench/watchdog.h"

#define MS FB_NS_PER_MS

static void test_parser(void)
{
    fb_vline v;
    CHECK_EQ_INT(fb_vline_parse("OK 123", 6, &v), 0);
    CHECK(v.kind == FB_VLINE_OK && v.t_ns == 123);
    CHECK_EQ_INT(fb_vline_parse("EDGE WDI 1 5000 7", 17, &v), 0);
    CHECK(v.kind == FB_VLINE_EDGE && strcmp(v.name, "WDI") == 0 && v.value == 1 &&
          v.t_ns == 5000 && v.seq == 7);
    CHECK_EQ_INT(fb_vline_parse("VAL PWRKEY 0 9\r", 15, &v), 0);
    CHECK(v.kind == FB_VLINE_VAL && v.value == 0);
    CHECK_EQ_INT(fb_vline_parse("LINE STATUS out 1", 17, &v), 0);
    CHECK(v.kind == FB_VLINE_LINE && v.is_output && v.value == 1);
    CHECK_EQ_INT(fb_vline_parse("ERR no such line", 16, &v), 0);
    CHECK(v.kind == FB_VLINE_ERR && strcmp(v.name, "no such line") == 0);
    CHECK_EQ_INT(fb_vline_parse("BYE too many clients (limit 9)", 30, &v), 0);
    CHECK(v.kind == FB_VLINE_BYE && strcmp(v.name, "too many clients (limit 9)") == 0);
    const char *bad[] = {"", "OK", "OK x", "EDGE WDI 2 1 1", "EDGE WDI 1 1 0", "EDGE WDI 1 1",
                         "VAL WDI 1 99999999999999999999", "LINE X sideways 1", "OK 1 extra",
                         "HELLO", "EDGE \x01 1 1 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(fb_vline_parse(bad[i], strlen(bad[i]), &v), -1);
    CHECK_EQ_INT(fb_vline_parse("OK 1\0", 5, &v), -1);
}

static void test_watchdog_waveforms(void)
{
    fb_error err;
    fb_timeline *tl = fb_timeline_new(&err);
    /* A square wave every 400 ms for 4 s from t=1 s: 10 edges, longest gap 400 ms. */
    int64_t t0 = 1000 * MS;
    fb_watchdog *w = fb_watchdog_new(0, t0, tl, NULL, &err);
    CHECK(w != NULL);
    for (int i = 1; i <= 10; i++)
        fb_watchdog_feed(w, t0 + i * 400 * MS);
    fb_watchdog_result r;
    fb_watchdog_stop(w, t0 + 4200 * MS, &r);
    CHECK_EQ_INT(r.edges, 10);
    CHECK_EQ_INT(r.longest_gap_ns, 400 * MS);
    CHECK_EQ_INT(r.shortest_interval_ns, 400 * MS);
    CHECK_EQ_INT(r.mean_interval_ns, 400 * MS);
    CHECK_EQ_INT(r.over_two_thirds, 0);
    CHECK_EQ_INT(r.over_timeout, 0);
    CHECK_EQ_INT(r.timeout_ns, FB_WATCHDOG_DEFAULT_TIMEOUT_NS);
    int64_t iv[16];
    CHECK_EQ_INT(fb_watchdog_intervals(w, iv, 16), 9);
    fb_watchdog_free(w);

    /* One gap of 1.2 s (> 2/3 of 1.6 s, < 1.6 s) then one of 1.7 s: both flags; the
     * longest and when it began. */
    w = fb_watchdog_new(0, t0, tl, "wd2", &err);
    fb_watchdog_feed(w, t0 + 100 * MS);
    fb_watchdog_feed(w, t0 + 1300 * MS);
    fb_watchdog_get(w, &r);
    CHECK_EQ_INT(r.over_two_thirds, 1);
    fb_watchdog_feed(w, t0 + 3000 * MS);
    fb_watchdog_stop(w, t0 + 3100 * MS, &r);
    CHECK_EQ_INT(r.longest_gap_ns, 1700 * MS);
    CHECK_EQ_INT(r.longest_gap_at_ns, t0 + 1300 * MS);
    CHECK_EQ_INT(r.over_timeout, 1);
    fb_watchdog_free(w);

    /* No edge at all: the whole watch is one gap. */
    w = fb_watchdog_new(0, t0, tl, "wd3", &err);
    fb_watchdog_stop(w, t0 + 2000 * MS, &r);
    CHECK_EQ_INT(r.edges, 0);
    CHECK_EQ_INT(r.longest_gap_ns, 2000 * MS);
    CHECK_EQ_INT(r.over_timeout, 1);
    fb_watchdog_free(w);

    /* 10 kHz for 2 s: 20000 edges, 100 us apart. */
    w = fb_watchdog_new(0, t0, tl, "wd4", &err);
    for (int i = 1; i <= 20000; i++)
        fb_watchdog_feed(w, t0 + (int64_t)i * 100000);
    fb_watchdog_stop(w, t0 + 2000 * MS, &r);
    CHECK_EQ_INT(r.edges, 20000);
    CHECK_EQ_INT(r.longest_gap_ns, 100000);
    CHECK_EQ_INT(r.over_two_thirds, 0);
    fb_watchdog_free(w);

    /* Live: a running monitor with no edge reports the stall by itself. */
    w = fb_watchdog_new(30 * MS, 0, tl, "wd5", &err);
    int stalled = 0;
    int64_t gap = 0;
    fb_watchdog_wait_stall(w, 20 * MS, fb_now_ns() + 5 * FB_NS_PER_S, &stalled, &gap);
    CHECK_EQ_INT(stalled, 1);
    CHECK(gap > 20 * MS);
    int64_t deadline = fb_now_ns() + 5 * FB_NS_PER_S;
    uint64_t seen = 0;
    int has_stall = 0;
    while (!has_stall && fb_now_ns() < deadline) {
        seen = fb_timeline_wait(tl, seen, deadline);
        has_stall = 0;
        fb_watchdog_get(w, &r);
        has_stall = r.over_timeout;
    }
    CHECK_EQ_INT(has_stall, 1);
    fb_watchdog_free(w);

    /* The one wait rule in wait_stall: 0 and a past deadline return at once (no stall
     * yet), FB_DEADLINE_NEVER waits until the gap passes the threshold. */
    w = fb_watchdog_new(FB_NS_PER_S, 0, NULL, "wd6", &err);
    int64_t t1 = fb_now_ns();
    fb_watchdog_wait_stall(w, 500 * MS, 0, &stalled, &gap);
    CHECK_EQ_INT(stalled, 0);
    fb_watchdog_wait_stall(w, 500 * MS, t1 - FB_NS_PER_S, &stalled, &gap);
    CHECK_EQ_INT(stalled, 0);
    CHECK(fb_now_ns() - t1 < 20 * MS);
    fb_watchdog_wait_stall(w, 30 * MS, FB_DEADLINE_NEVER, &stalled, &gap);
    CHECK_EQ_INT(stalled, 1);
    CHECK(gap > 30 * MS && fb_now_ns() - t1 >= 30 * MS);
    fb_watchdog_free(w);
    fb_timeline_free(tl);
}

/* A board with PWRKEY (module input) and WDI (module output) in a thread. */
typedef struct {
    int listen_fd;
    int64_t last_set;
} board;

static void say(int fd, const char *s)
{
    size_t n = strlen(s);
    CHECK((size_t)write(fd, s, n) == n);
}

static void *board_main(void *arg)
{
    board *b = arg;
    int fd = accept(b->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    char buf[4096];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
        char *nl;
        while ((nl = memchr(buf, '\n', len))) {
            *nl = '\0';
            char out[256];
            if (strcmp(buf, "LINES") == 0) {
                say(fd, "LINE PWRKEY in 1\nLINE WDI out 0\ngarbage line\nOK 1\n");
            } else if (strncmp(buf, "SET WDI", 7) == 0) {
                say(fd, "ERR WDI is an output of the module\n");
            } else if (strncmp(buf, "SET ", 4) == 0) {
                b->last_set = fb_now_ns();
                snprintf(out, sizeof out, "OK %lld\n", (long long)b->last_set);
                say(fd, out);
            } else if (strncmp(buf, "GET PWRKEY", 10) == 0) {
                say(fd, "VAL PWRKEY 0 5\n");
            } else if (strncmp(buf, "WATCH WDI", 9) == 0) {
                /* The answer, then edges 1, 2 and 4: edge 3 was missed. */
                say(fd, "OK 2\nEDGE WDI 1 100 1\nEDGE WDI 0 200 2\nEDGE WDI 1 400 4\n");
            } else {
                say(fd, "OK 3\n");
            }
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, len - used);
            len -= used;
        }
    }
    close(fd);
    return NULL;
}

static void test_virtual(const char *dir)
{
    char path[100];
    if ((size_t)snprintf(path, sizeof path, "%s/gpio.sock", dir) >= sizeof path)
        snprintf(path, sizeof path, "/tmp/fb-test-gpio-%d.sock", (int)getpid());
    unlink(path);
    board b = {socket(AF_UNIX, SOCK_STREAM, 0), 0};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    CHECK(bind(b.listen_fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(b.listen_fd, 1) == 0);
    pthread_t t;
    pthread_create(&t, NULL, board_main, &b);

    fb_error err;
    fb_timeline *tl = fb_timeline_new(&err);
    fb_gpio *g = fb_gpio_open_virtual(path, tl, &err);
    CHECK(g != NULL);
    if (g) {
        fb_gpio_line_config cfg;
        fb_gpio_line_config_init(&cfg);
        cfg.direction = FB_GPIO_OUTPUT;
        cfg.active_low = 1;
        fb_gpio_line *pwr = fb_gpio_request(g, "PWRKEY", -1, &cfg, &err);
        CHECK(pwr != NULL);
        CHECK(fb_gpio_request(g, "WDI", -1, &cfg, &err) == NULL); /* module output */
        CHECK_CONTAINS(err.message, "request it as an input");
        CHECK(fb_gpio_request(g, "NOPE", -1, &cfg, &err) == NULL);
        CHECK_CONTAINS(err.message, "no line NOPE");
        CHECK(fb_gpio_request(g, NULL, 3, &cfg, &err) == NULL);
        CHECK_CONTAINS(err.message, "by name");
        int v = -1;
        if (pwr) {
            CHECK_EQ_INT(fb_gpio_get(pwr, &v, &err), FB_OK);
            CHECK_EQ_INT(v, 1); /* physical 0, active low */
            int64_t a = 0, z = 0;
            CHECK_EQ_INT(fb_gpio_pulse(pwr, 1, 20 * MS, &a, &z, &err), FB_OK);
            CHECK(z - a >= 20 * MS);
        }
        fb_gpio_line_config_init(&cfg);
        cfg.edges = 1;
        fb_gpio_line *wdi = fb_gpio_request(g, "WDI", -1, &cfg, &err);
        CHECK(wdi != NULL);
        if (wdi) {
            fb_gpio_edge e;
            int got;
            int64_t deadline = fb_now_ns() + 5 * FB_NS_PER_S;
            CHECK_EQ_INT(fb_gpio_next_edge(wdi, deadline, &e, &got, &err), FB_OK);
            CHECK(got && e.value == 1 && e.t_ns == 100 && e.seq == 1);
            CHECK_EQ_INT(fb_gpio_next_edge(wdi, deadline, &e, &got, &err), FB_OK);
            CHECK(got && e.seq == 2);
            /* The third edge came with seq 4: one missed, reported once. */
            fb_gpio_line_stats s;
            do
                fb_gpio_line_get_stats(wdi, &s);
            while (s.edges < 3 && fb_now_ns() < deadline);
            CHECK_EQ_INT(fb_gpio_next_edge(wdi, deadline, &e, &got, &err), FB_ERR_LOST);
            CHECK_CONTAINS(err.message, "1 edge(s) missed");
            CHECK_EQ_INT(fb_gpio_next_edge(wdi, deadline, &e, &got, &err), FB_OK);
            CHECK(got && e.seq == 4);
            CHECK_EQ_INT(s.lost, 1);
            /* The one wait rule: 0 and a past deadline poll (no edge left: got 0 at
             * once), a short deadline waits that long. */
            int64_t t0 = fb_now_ns();
            CHECK_EQ_INT(fb_gpio_next_edge(wdi, 0, &e, &got, &err), FB_OK);
            CHECK_EQ_INT(got, 0);
            CHECK_EQ_INT(fb_gpio_next_edge(wdi, t0 - FB_NS_PER_S, &e, &got, &err), FB_OK);
            CHECK_EQ_INT(got, 0);
            CHECK(fb_now_ns() - t0 < 20 * MS);
            CHECK_EQ_INT(fb_gpio_next_edge(wdi, fb_now_ns() + 30 * MS, &e, &got, &err), FB_OK);
            CHECK_EQ_INT(got, 0);
            CHECK(fb_now_ns() - t0 >= 30 * MS);
        }
        fb_gpio_close(g);
    }
    pthread_join(t, NULL);
    close(b.listen_fd);
    unlink(path);
    /* Nothing listening there now. */
    CHECK(fb_gpio_open_virtual(path, NULL, &err) == NULL);
    CHECK_EQ_INT(err.code, FB_ERR_CLOSED);
    CHECK_CONTAINS(err.message, "virtual module running");
    fb_timeline_free(tl);
}

static void test_gpiod_open_errors(void)
{
    fb_error err;
    CHECK(fb_gpio_open_chip("/dev/gpiochip-none", NULL, &err) == NULL);
    CHECK_EQ_INT(err.code, FB_ERR_CLOSED);
    CHECK_CONTAINS(err.message, "gpiochip-none");
    CHECK(fb_gpio_open_chip("/dev/null", NULL, &err) == NULL);
    /* no '/': a chip label (station files allow it); none has this one */
    CHECK(fb_gpio_open_chip("no-such-label", NULL, &err) == NULL);
    CHECK_EQ_INT(err.code, FB_ERR_CLOSED);
    CHECK_CONTAINS(err.message, "no GPIO chip named or labelled no-such-label");
    CHECK(fb_gpio_open_chip("gpiochip-none", NULL, &err) == NULL);
    CHECK_EQ_INT(err.code, FB_ERR_CLOSED);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    test_parser();
    test_watchdog_waveforms();
    test_virtual(dir);
    test_gpiod_open_errors();
    CHECK_DONE();
}
