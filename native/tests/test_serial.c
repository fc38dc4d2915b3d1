/* C-level checks of fb_serial over a pseudo-terminal pair: reads, writes, the log,
 * overflow reporting, loss when the peer goes away (also under ASan/UBSan/LSan). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <libserialport.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fotabench/clock.h"
#include "fotabench/serial.h"

static int make_pty(int *master, char *name, size_t cap)
{
    int slave;
    if (openpty(master, &slave, NULL, NULL, NULL) != 0)
        return -1;
    snprintf(name, cap, "%s", ttyname(slave));
    /* Keep the slave open in the peer too? No: the port opens it; close ours so a
     * master close is seen as a hang-up by the port alone. */
    close(slave);
    return 0;
}

static size_t read_until(fb_serial *p, char *buf, size_t cap, size_t want)
{
    size_t have = 0, got;
    fb_error err;
    int64_t deadline = fb_now_ns() + 5 * FB_NS_PER_S;
    while (have < want && fb_now_ns() < deadline) {
        fb_status st = fb_serial_read(p, buf + have, cap - have, &got, deadline, &err);
        if (st != FB_OK)
            break;
        have += got;
    }
    return have;
}

static void test_round_trip(const char *dir)
{
    int m;
    char name[128], log[512];
    CHECK(make_pty(&m, name, sizeof name) == 0);
    snprintf(log, sizeof log, "%s/port.log", dir);
    fb_error err;
    fb_serial_config cfg;
    fb_serial_config_init(&cfg);
    cfg.name = "uart1";
    cfg.log_path = log;
    fb_timeline *tl = fb_timeline_new(&err);
    cfg.timeline = tl;
    fb_serial *p = fb_serial_open(name, &cfg, &err);
    CHECK(p != NULL);
    if (!p)
        return;
    CHECK(strcmp(fb_serial_backend_name(p), "termios") == 0);
    /* Bytes from the module, with a NUL and a high byte. */
    CHECK(write(m, "AT\r\n\0\xff", 6) == 6);
    char buf[64];
    CHECK_EQ_INT(read_until(p, buf, sizeof buf, 6), 6);
    CHECK(memcmp(buf, "AT\r\n\0\xff", 6) == 0);
    /* An empty ring and a deadline now: FB_OK with nothing. */
    size_t got = 99;
    CHECK_EQ_INT(fb_serial_read(p, buf, sizeof buf, &got, 0, &err), FB_OK);
    CHECK_EQ_INT(got, 0);
    /* Bench to module. */
    CHECK_EQ_INT(fb_serial_write(p, "ATI\r", 4, fb_now_ns() + FB_NS_PER_S, &err), FB_OK);
    char in[16] = {0};
    int64_t deadline = fb_now_ns() + 5 * FB_NS_PER_S;
    ssize_t n = 0;
    while (n < 4 && fb_now_ns() < deadline) {
        ssize_t r = read(m, in + n, sizeof in - 1 - (size_t)n);
        if (r > 0)
            n += r;
    }
    CHECK(memcmp(in, "ATI\r", 4) == 0);
    char tail[16];
    CHECK_EQ_INT(fb_serial_tail(p, tail, 3), 3);
    CHECK(memcmp(tail, "\n\0\xff", 3) == 0);
    fb_serial_signals sig;
    CHECK_EQ_INT(fb_serial_set_dtr(p, 1, &err), FB_ERR_UNSUPPORTED);
    CHECK_EQ_INT(fb_serial_get_signals(p, &sig, &err), FB_ERR_UNSUPPORTED);
    CHECK_EQ_INT(fb_serial_flush(p, 3, &err), FB_OK);
    CHECK_EQ_INT(fb_serial_drain(p, &err), FB_OK);
    fb_serial_stats stats;
    fb_serial_get_stats(p, &stats);
    CHECK_EQ_INT(stats.rx_bytes, 6);
    CHECK_EQ_INT(stats.tx_bytes, 4);
    CHECK(stats.open);

    /* The peer goes away: waits end with FB_ERR_CLOSED naming the port. */
    close(m);
    CHECK_EQ_INT(fb_serial_read(p, buf, sizeof buf, &got, fb_now_ns() + 5 * FB_NS_PER_S, &err),
                 FB_ERR_CLOSED);
    CHECK_CONTAINS(err.message, name);
    CHECK_CONTAINS(err.message, "reopen");
    CHECK_EQ_INT(fb_serial_write(p, "x", 1, 0, &err), FB_ERR_CLOSED);
    fb_serial_close(p);

    FILE *f = fopen(log, "r");
    CHECK(f != NULL);
    char text[4096] = {0};
    size_t tn = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[tn] = '\0';
    if (f)
        fclose(f);
    CHECK_CONTAINS(text, " < AT\\r\\n\\x00\\xff\n");
    CHECK_CONTAINS(text, " > ATI\\r\n");
    CHECK_CONTAINS(text, "disappeared");
    CHECK(fb_timeline_count(tl) >= 4); /* open, rx, tx, lost */
    fb_timeline_free(tl);
}

static void test_overflow(void)
{
    int m;
    char name[128];
    CHECK(make_pty(&m, name, sizeof name) == 0);
    fb_error err;
    fb_serial_config cfg;
    fb_serial_config_init(&cfg);
    cfg.ring_size = 64;
    fb_serial *p = fb_serial_open(name, &cfg, &err);
    CHECK(p != NULL);
    if (!p)
        return;
    char data[200];
    for (int i = 0; i < 200; i++)
        data[i] = (char)i;
    CHECK(write(m, data, sizeof data) == (ssize_t)sizeof data);
    /* Wait until the reader has taken all of it. */
    fb_serial_stats s;
    int64_t deadline = fb_now_ns() + 5 * FB_NS_PER_S;
    do
        fb_serial_get_stats(p, &s);
    while (s.rx_bytes < 200 && fb_now_ns() < deadline);
    CHECK_EQ_INT(s.rx_bytes, 200);
    CHECK_EQ_INT(s.dropped_bytes, 136);
    char buf[256];
    size_t got;
    CHECK_EQ_INT(fb_serial_read(p, buf, sizeof buf, &got, 0, &err), FB_ERR_LOST);
    CHECK_CONTAINS(err.message, "136 bytes");
    /* Then the newest 64 bytes, in order. */
    CHECK_EQ_INT(fb_serial_read(p, buf, sizeof buf, &got, 0, &err), FB_OK);
    CHECK_EQ_INT(got, 64);
    CHECK(memcmp(buf, data + 136, 64) == 0);
    fb_serial_close(p);
    close(m);
}

static void test_bad_open(void)
{
    fb_error err;
    CHECK(fb_serial_open("/dev/pts/does-not-exist", NULL, &err) == NULL);
    CHECK_EQ_INT(err.code, FB_ERR_CLOSED);
    CHECK(fb_serial_open("/dev/null", NULL, &err) == NULL);
    fb_serial_config cfg;
    fb_serial_config_init(&cfg);
    cfg.data_bits = 9;
    CHECK(fb_serial_open("/dev/null", &cfg, &err) == NULL);
    CHECK_EQ_INT(err.code, FB_ERR_ARG);
    /* What serial_pty.c's comment says: libserialport does not take a pty. */
    int m;
    char name[128];
    CHECK(make_pty(&m, name, sizeof name) == 0);
    struct sp_port *sp = NULL;
    CHECK(sp_get_port_by_name(name, &sp) != SP_OK);
    if (sp)
        sp_free_port(sp);
    fb_serial_config_init(&cfg);
    cfg.backend = FB_SERIAL_LIBSERIALPORT;
    CHECK(fb_serial_open(name, &cfg, &err) == NULL);
    close(m);
    fb_serial_port_info *list;
    size_t count;
    CHECK_EQ_INT(fb_serial_list(&list, &count, &err), FB_OK);
    fb_serial_list_free(list);
}

/* The peer writes one byte after a pause (a read with no deadline must wake for it). */
typedef struct late_writer {
    int fd;
    int64_t delay_ns;
} late_writer;

static void *write_late(void *arg)
{
    late_writer *w = arg;
    struct timespec ts = fb_ns_to_timespec(w->delay_ns);
    nanosleep(&ts, NULL);
    if (write(w->fd, "L", 1) != 1)
        perror("write_late");
    return NULL;
}

static void no_rx(void *ctx, const uint8_t *d, size_t n, int64_t t)
{
    (void)ctx;
    (void)d;
    (void)n;
    (void)t;
}

typedef struct busy_setter {
    fb_serial *port;
} busy_setter;

static void *set_consumer_late(void *arg)
{
    busy_setter *b = arg;
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    fb_serial_set_consumer(b->port, no_rx, NULL, NULL);
    return NULL;
}

/* One wait rule (fotabench/clock.h): a deadline at or before now polls, and
 * FB_DEADLINE_NEVER waits until something happens, for read and write alike. A
 * consumer (the AT engine) owns the stream: reads refuse with FB_ERR_BUSY. */
static void test_wait_rule(void)
{
    int m;
    char name[128];
    CHECK(make_pty(&m, name, sizeof name) == 0);
    fb_error err;
    fb_serial *p = fb_serial_open(name, NULL, &err);
    CHECK(p != NULL);
    if (!p)
        return;
    char buf[64];
    size_t got = 99;
    /* Poll: 0 and a deadline in the past return at once with nothing. */
    int64_t t0 = fb_now_ns();
    CHECK_EQ_INT(fb_serial_read(p, buf, sizeof buf, &got, 0, &err), FB_OK);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_INT(fb_serial_read(p, buf, sizeof buf, &got, t0 - FB_NS_PER_S, &err), FB_OK);
    CHECK_EQ_INT(got, 0);
    CHECK(fb_now_ns() - t0 < 20 * FB_NS_PER_MS);
    /* For ever: wakes for a byte that comes later. */
    late_writer lw = {m, 80 * FB_NS_PER_MS};
    pthread_t th;
    t0 = fb_now_ns();
    CHECK_EQ_INT(pthread_create(&th, NULL, write_late, &lw), 0);
    CHECK_EQ_INT(fb_serial_read(p, buf, sizeof buf, &got, FB_DEADLINE_NEVER, &err), FB_OK);
    CHECK_EQ_INT(got, 1);
    CHECK(fb_now_ns() - t0 >= 70 * FB_NS_PER_MS);
    pthread_join(th, NULL);
    CHECK_EQ_INT(fb_deadline_in(FB_DEADLINE_NEVER), FB_DEADLINE_NEVER);
    CHECK_EQ_INT(fb_deadline_in(FB_DEADLINE_NEVER - 1), FB_DEADLINE_NEVER);
    CHECK(fb_deadline_in(0) <= fb_now_ns());
    CHECK_EQ_INT(fb_deadline_add(5, FB_DEADLINE_NEVER), FB_DEADLINE_NEVER);

    /* Writes to a peer that never reads: fill the pty, then a poll (0) sends nothing
     * more, write() says FB_ERR_TIMEOUT and write_some FB_OK with what it sent. */
    static char block[65536];
    memset(block, 'w', sizeof block);
    size_t sent = 0, total = 0;
    do {
        CHECK_EQ_INT(fb_serial_write_some(p, block, sizeof block, fb_now_ns() + 20 * FB_NS_PER_MS,
                                          &sent, &err),
                     FB_OK);
        total += sent;
    } while (sent == sizeof block && total < (64u << 20));
    CHECK(sent < sizeof block); /* the pty's buffer is full */
    t0 = fb_now_ns();
    CHECK_EQ_INT(fb_serial_write_some(p, block, sizeof block, 0, &sent, &err), FB_OK);
    CHECK_EQ_INT(sent, 0);
    CHECK_EQ_INT(fb_serial_write(p, block, 10, 0, &err), FB_ERR_TIMEOUT);
    CHECK_CONTAINS(err.message, "10 of 10 bytes not sent");
    CHECK(fb_now_ns() - t0 < 50 * FB_NS_PER_MS);

    /* One data path per stream: with a consumer, a read refuses, and a read already
     * waiting for ever ends so. */
    busy_setter bs = {p};
    CHECK_EQ_INT(pthread_create(&th, NULL, set_consumer_late, &bs), 0);
    CHECK_EQ_INT(fb_serial_read(p, buf, sizeof buf, &got, FB_DEADLINE_NEVER, &err), FB_ERR_BUSY);
    pthread_join(th, NULL);
    CHECK_CONTAINS(err.message, "Modem.expect()");
    CHECK_EQ_INT(fb_serial_read(p, buf, sizeof buf, &got, 0, &err), FB_ERR_BUSY);
    fb_serial_set_consumer(p, NULL, NULL, NULL);
    CHECK_EQ_INT(fb_serial_read(p, buf, sizeof buf, &got, 0, &err), FB_OK);
    CHECK(fb_serial_ring_capacity(p) == 1u << 20);
    fb_serial_close(p);
    close(m);
}

/* Drain in slices: on a pty the queue is the line time at the baud (9600 8N1: 1.04 ms a
 * byte); a deadline ends a slice with what is left, a flush of output empties it. */
static void test_drain_some(void)
{
    int m;
    char name[128];
    CHECK(make_pty(&m, name, sizeof name) == 0);
    fb_error err;
    fb_serial_config cfg;
    fb_serial_config_init(&cfg);
    cfg.baud = 9600;
    fb_serial *p = fb_serial_open(name, &cfg, &err);
    CHECK(p != NULL);
    if (!p) {
        close(m);
        return;
    }
    int done = -1;
    size_t waiting = 99;
    CHECK_EQ_INT(fb_serial_drain_some(p, 0, &done, &waiting, &err), FB_OK);
    CHECK(done == 1 && waiting == 0); /* nothing written */
    char data[192];
    memset(data, 'd', sizeof data);
    int64_t t0 = fb_now_ns();
    CHECK_EQ_INT(fb_serial_write(p, data, sizeof data, t0 + FB_NS_PER_S, &err), FB_OK);
    CHECK_EQ_INT(fb_serial_drain_some(p, fb_now_ns() + 50 * FB_NS_PER_MS, &done, &waiting, &err),
                 FB_OK);
    CHECK(done == 0 && waiting > 0 && waiting < sizeof data);
    CHECK_EQ_INT(fb_serial_drain(p, &err), FB_OK);
    CHECK(fb_now_ns() - t0 >= 190 * FB_NS_PER_MS); /* 192 bytes of line time */
    CHECK_EQ_INT(fb_serial_write(p, data, sizeof data, fb_now_ns() + FB_NS_PER_S, &err), FB_OK);
    CHECK_EQ_INT(fb_serial_flush(p, FB_SERIAL_FLUSH_OUTPUT, &err), FB_OK);
    CHECK_EQ_INT(fb_serial_drain_some(p, 0, &done, &waiting, &err), FB_OK);
    CHECK(done == 1);
    fb_serial_close(p);
    close(m);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    test_round_trip(dir);
    test_overflow();
    test_bad_open();
    test_wait_rule();
    test_drain_some();
    CHECK_DONE();
}
