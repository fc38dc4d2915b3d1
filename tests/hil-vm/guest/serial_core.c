/* The lane's serial checks through the C core (fotabench/serial.h, libserialport
 * backend) on real 8250 UARTs: the same checks serial_direct.c made against
 * libserialport itself, plus what only the core has (its reader thread and ring,
 * reconfiguration, statistics, the timeline).
 *
 * What the core cannot show is read from the driver directly, never from the core:
 * the termios the core set (through a second descriptor on the same tty), and the
 * UART's internal loopback is switched on through that descriptor too (TIOCM_LOOP is
 * a test fixture, not something a bench does). */
#define _GNU_SOURCE
#include "util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "fotabench/serial.h"
#include "fotabench/timeline.h"

const char *serial_backend(void) { return "core"; }

#define STEP(cond, ...)                                                                      \
    do {                                                                                     \
        bool c_ = (cond);                                                                    \
        ok &= c_;                                                                            \
        if (!c_) {                                                                           \
            size_t l_ = strlen(detail);                                                      \
            snprintf(detail + l_, sizeof detail - l_, __VA_ARGS__);                          \
        }                                                                                    \
    } while (0)

static fb_serial *open_core(const char *path, fb_timeline *tl, const char *name, fb_error *err)
{
    fb_serial_config cfg;
    fb_serial_config_init(&cfg);
    cfg.baud = 115200;
    cfg.backend = FB_SERIAL_LIBSERIALPORT; /* a real UART: the libserialport backend */
    cfg.name = name;
    cfg.timeline = tl;
    return fb_serial_open(path, &cfg, err);
}

/* Reads exactly n bytes through the core within the deadline; returns bytes read. */
static size_t read_n(fb_serial *p, void *buf, size_t n, int64_t deadline, fb_error *err,
                     fb_status *st_out)
{
    size_t have = 0;
    fb_status st = FB_OK;
    while (have < n && now_ns() < deadline) {
        size_t got = 0;
        st = fb_serial_read(p, (char *)buf + have, n - have, &got, deadline, err);
        if (st != FB_OK)
            break;
        have += got;
    }
    if (st_out)
        *st_out = st;
    return have;
}

/* termios as the driver holds it: baud, data bits, parity, stop bits. */
static void termios_of(int fd, char out[32])
{
    struct termios t;
    if (tcgetattr(fd, &t) != 0) {
        snprintf(out, 32, "tcgetattr failed");
        return;
    }
    speed_t s = cfgetospeed(&t);
    int baud = s == B115200 ? 115200 : s == B9600 ? 9600 : s == B57600 ? 57600 : -1;
    int bits = (t.c_cflag & CSIZE) == CS8 ? 8 : (t.c_cflag & CSIZE) == CS7 ? 7
             : (t.c_cflag & CSIZE) == CS6 ? 6 : 5;
    char par = !(t.c_cflag & PARENB) ? 'N' : (t.c_cflag & PARODD) ? 'O' : 'E';
    snprintf(out, 32, "%d %d%c%d%s", baud, bits, par, (t.c_cflag & CSTOPB) ? 2 : 1,
             (t.c_cflag & CRTSCTS) ? " rtscts" : "");
}

void check_serial_list(void)
{
    fb_serial_port_info *list = NULL;
    size_t n = 0;
    fb_error err = { 0 };
    if (fb_serial_list(&list, &n, &err) != FB_OK) {
        result("serial_list", false, "fb_serial_list: %s", err.message);
        return;
    }
    char names[256] = "";
    bool s1 = false, s2 = false, s3 = false, native = true;
    for (size_t i = 0; i < n; i++) {
        strncat(names, list[i].name, sizeof names - strlen(names) - 2);
        strcat(names, " ");
        s1 |= strcmp(list[i].name, HOST_UART) == 0;
        s2 |= strcmp(list[i].name, LOOP_UART) == 0;
        s3 |= strcmp(list[i].name, ABSENT_UART) == 0;
        native &= strcmp(list[i].transport, "native") == 0;
    }
    fb_serial_list_free(list);
    result("serial_list", s1 && s2 && !s3 && native,
           "fb_serial_list: [%s] transport native %s: expected %s and %s (UARTs with "
           "hardware), not %s (no UART behind it)",
           names, native ? "yes" : "NO", HOST_UART, LOOP_UART, ABSENT_UART);
}

void check_serial_loopback(void)
{
    bool ok = true;
    char detail[900] = "";
    /* The fixture's descriptor: opened first, so the core's open is not the tty's
     * first (which would reset the modem control register). */
    int fix = open(LOOP_UART, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fix < 0) {
        result("serial_loopback", false, "cannot open %s for the loopback fixture", LOOP_UART);
        return;
    }
    int loop = 0x8000; /* TIOCM_LOOP: the 16550's MCR loop bit */
    STEP(ioctl(fix, TIOCMBIS, &loop) == 0, "TIOCMBIS(LOOP) failed; ");

    fb_timeline *tl = fb_timeline_new(NULL);
    fb_error err = { 0 };
    fb_serial *p = open_core(LOOP_UART, tl, "loop", &err);
    if (!p) {
        result("serial_loopback", false, "fb_serial_open(%s): %s", LOOP_UART, err.message);
        close(fix);
        fb_timeline_free(tl);
        return;
    }
    STEP(strcmp(fb_serial_backend_name(p), "libserialport") == 0, "backend %s; ",
         fb_serial_backend_name(p));
    char tio[32];
    termios_of(fix, tio);
    STEP(strcmp(tio, "115200 8N1") == 0, "driver termios after open '%s'; ", tio);

    /* Reconfigure on the open port, check the driver took it, and back. */
    fb_serial_config cfg;
    fb_serial_config_init(&cfg);
    cfg.baud = 9600;
    cfg.data_bits = 7;
    cfg.parity = FB_PARITY_EVEN;
    cfg.stop_bits = 2;
    STEP(fb_serial_configure(p, &cfg, &err) == FB_OK, "configure 9600 7E2: %s; ", err.message);
    termios_of(fix, tio);
    STEP(strcmp(tio, "9600 7E2") == 0, "driver termios after 7E2 '%s'; ", tio);
    fb_serial_config_init(&cfg);
    STEP(fb_serial_configure(p, &cfg, &err) == FB_OK, "configure 8N1: %s; ", err.message);
    termios_of(fix, tio);
    STEP(strcmp(tio, "115200 8N1") == 0, "driver termios back '%s'; ", tio);

    STEP(fb_serial_flush(p, FB_SERIAL_FLUSH_INPUT | FB_SERIAL_FLUSH_OUTPUT, &err) == FB_OK,
         "flush: %s; ", err.message);
    /* Data: TX returns on RX, through the core's reader thread and ring. */
    unsigned char tx[1024], rx[1024];
    for (size_t i = 0; i < sizeof tx; i++)
        tx[i] = (unsigned char)(i * 13 + 1);
    int64_t deadline = now_ns() + 5000 * MS;
    STEP(fb_serial_write(p, tx, sizeof tx, deadline, &err) == FB_OK, "write: %s; ", err.message);
    STEP(fb_serial_drain(p, &err) == FB_OK, "drain: %s; ", err.message);
    fb_status st;
    size_t r = read_n(p, rx, sizeof rx, deadline, &err, &st);
    STEP(r == sizeof rx && memcmp(tx, rx, sizeof tx) == 0, "read back %zu bytes%s (%s); ", r,
         r == sizeof rx ? " (different)" : "", st == FB_OK ? "ok" : err.message);

    /* Modem lines in loopback: DTR shows as DSR, RTS as CTS. */
    fb_serial_signals sig = { 0 };
    STEP(fb_serial_set_dtr(p, 1, &err) == FB_OK && fb_serial_set_rts(p, 0, &err) == FB_OK &&
             fb_serial_get_signals(p, &sig, &err) == FB_OK && sig.dsr && !sig.cts,
         "DTR on/RTS off: dsr %d cts %d (%s); ", sig.dsr, sig.cts, err.message);
    STEP(fb_serial_set_dtr(p, 0, &err) == FB_OK && fb_serial_set_rts(p, 1, &err) == FB_OK &&
             fb_serial_get_signals(p, &sig, &err) == FB_OK && !sig.dsr && sig.cts,
         "DTR off/RTS on: dsr %d cts %d (%s); ", sig.dsr, sig.cts, err.message);
    STEP(fb_serial_set_rts(p, 0, &err) == FB_OK && fb_serial_get_signals(p, &sig, &err) == FB_OK &&
             !sig.dsr && !sig.cts,
         "both off: dsr %d cts %d; ", sig.dsr, sig.cts);

    /* Break: qemu's 16550 does not loop a break back; the driver must take it and the
     * line carry data afterwards. */
    int64_t tb = now_ns();
    STEP(fb_serial_send_break(p, 50, &err) == FB_OK, "break: %s; ", err.message);
    int64_t break_ns = now_ns() - tb;
    STEP(break_ns >= 50 * MS, "break returned after %.1f ms (< 50); ", break_ns / 1e6);
    fb_serial_flush(p, FB_SERIAL_FLUSH_INPUT, &err);
    deadline = now_ns() + 2000 * MS;
    STEP(fb_serial_write(p, "after-break", 11, deadline, &err) == FB_OK, "write after break; ");
    r = read_n(p, rx, 11, deadline, &err, NULL);
    STEP(r == 11 && memcmp(rx, "after-break", 11) == 0, "data after break %zu bytes; ", r);

    fb_serial_stats stats;
    fb_serial_get_stats(p, &stats);
    STEP(stats.tx_bytes == 1024 + 11 && stats.rx_bytes == 1024 + 11 && stats.dropped_bytes == 0 &&
             stats.open,
         "stats tx %llu rx %llu dropped %llu open %d; ", (unsigned long long)stats.tx_bytes,
         (unsigned long long)stats.rx_bytes, (unsigned long long)stats.dropped_bytes, stats.open);
    fb_serial_close(p);
    uint64_t events = fb_timeline_count(tl);
    STEP(events > 0, "no timeline events from the port; ");
    fb_timeline_free(tl);
    int clear = 0x8000;
    ioctl(fix, TIOCMBIC, &clear);
    close(fix);
    measure("serial_break_ms", break_ns / 1e6, "ms");
    result("serial_loopback", ok,
           "core on %s (libserialport): termios 115200 8N1 / 9600 7E2 seen in the driver, "
           "1024 bytes through the UART's loopback, DTR->DSR, RTS->CTS, 50 ms break, stats, "
           "%llu timeline events; %s",
           LOOP_UART, (unsigned long long)events, ok ? "all as expected" : detail);
}

/* One '\n'-terminated line through the core, within the deadline. */
static int read_line(fb_serial *p, char *buf, size_t n, int64_t deadline)
{
    size_t len = 0;
    fb_error err = { 0 };
    while (len + 1 < n) {
        char c;
        size_t got = 0;
        if (fb_serial_read(p, &c, 1, &got, deadline, &err) != FB_OK || got == 0)
            break;
        if (c == '\n') {
            buf[len] = 0;
            return (int)len;
        }
        buf[len++] = c;
    }
    buf[len] = 0;
    return -1;
}

void check_serial_host(void)
{
    fb_error err = { 0 };
    fb_serial *p = open_core(HOST_UART, NULL, "uart1", &err);
    if (!p) {
        result("serial_host", false, "fb_serial_open(%s): %s", HOST_UART, err.message);
        return;
    }
    fb_serial_flush(p, FB_SERIAL_FLUSH_INPUT | FB_SERIAL_FLUSH_OUTPUT, &err);
    char nonce[32];
    snprintf(nonce, sizeof nonce, "%lx", (unsigned long)(now_ns() & 0xffffffff));
    printf("HOSTPEER READY %s\n", nonce);
    fflush(stdout);
    char line[128];
    snprintf(line, sizeof line, "PING %s\n", nonce);
    int64_t deadline = now_ns() + 20000 * MS;
    bool ok = fb_serial_write(p, line, strlen(line), deadline, &err) == FB_OK;
    char pong[128] = "", head[128] = "", want[64];
    ok = ok && read_line(p, pong, sizeof pong, deadline) >= 0;
    snprintf(want, sizeof want, "PONG %s", nonce);
    ok = ok && strcmp(pong, want) == 0;
    ok = ok && read_line(p, head, sizeof head, deadline) >= 0;
    int len = 0;
    char digest[40] = "", mine[17] = "";
    ok = ok && sscanf(head, "BLOCK %d %39s", &len, digest) == 2 && len > 0 && len <= 65536;
    unsigned char *block = ok ? malloc((size_t)len) : NULL;
    size_t got = 0;
    if (block) {
        got = read_n(p, block, (size_t)len, deadline, &err, NULL);
        hex16(block, got, mine);
        ok = got == (size_t)len && strcmp(mine, digest) == 0;
        snprintf(line, sizeof line, "GOT %zu %s\n", got, mine);
        fb_serial_write(p, line, strlen(line), deadline, &err);
        fb_serial_drain(p, &err);
    }
    free(block);
    fb_serial_close(p);
    result("serial_host", ok,
           "core on %s <-> host socket: PING, '%s', '%s', block %zu/%d bytes sha256 %s "
           "(host said %s)", HOST_UART, pong, head, got, len, mine, digest);
}
