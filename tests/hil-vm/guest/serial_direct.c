/* The lane's serial checks against libserialport directly: they validated the lane
 * (8250 driver, loopback, host socket) before the C core's serial API existed;
 * serial_core.c runs the same checks through fb_serial_*. */
#define _GNU_SOURCE
#include "util.h"

#include <libserialport.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

const char *serial_backend(void) { return "libserialport"; }

/* --- serial --------------------------------------------------------------------------- */

static struct sp_port *open_port(const char *name, char *why, size_t whylen)
{
    struct sp_port *p = NULL;
    if (sp_get_port_by_name(name, &p) != SP_OK) {
        snprintf(why, whylen, "sp_get_port_by_name(%s): %s", name, sp_last_error_message());
        return NULL;
    }
    if (sp_open(p, SP_MODE_READ_WRITE) != SP_OK) {
        snprintf(why, whylen, "sp_open(%s): %s", name, sp_last_error_message());
        sp_free_port(p);
        return NULL;
    }
    if (sp_set_baudrate(p, 115200) || sp_set_bits(p, 8) || sp_set_parity(p, SP_PARITY_NONE) ||
        sp_set_stopbits(p, 1) || sp_set_flowcontrol(p, SP_FLOWCONTROL_NONE)) {
        snprintf(why, whylen, "configuring %s: %s", name, sp_last_error_message());
        sp_close(p);
        sp_free_port(p);
        return NULL;
    }
    return p;
}

void check_serial_list(void)
{
    struct sp_port **ports = NULL;
    if (sp_list_ports(&ports) != SP_OK) {
        result("serial_list", false, "sp_list_ports: %s", sp_last_error_message());
        return;
    }
    char names[256] = "";
    bool s1 = false, s2 = false, s3 = false, native = true;
    for (int i = 0; ports[i]; i++) {
        const char *n = sp_get_port_name(ports[i]);
        strncat(names, n, sizeof names - strlen(names) - 2);
        strcat(names, " ");
        s1 |= strcmp(n, HOST_UART) == 0;
        s2 |= strcmp(n, LOOP_UART) == 0;
        s3 |= strcmp(n, ABSENT_UART) == 0;
        native &= sp_get_port_transport(ports[i]) == SP_TRANSPORT_NATIVE;
    }
    sp_free_port_list(ports);
    result("serial_list", s1 && s2 && !s3 && native,
           "listed [%s]: expected %s and %s (UARTs with hardware), not %s (no UART behind it)",
           names, HOST_UART, LOOP_UART, ABSENT_UART);
}

void check_serial_loopback(void)
{
    char why[256];
    struct sp_port *p = open_port(LOOP_UART, why, sizeof why);
    if (!p) {
        result("serial_loopback", false, "%s", why);
        return;
    }
    int fd = -1;
    sp_get_port_handle(p, &fd);
    int loop = 0x8000; /* TIOCM_LOOP: the 16550's MCR loop bit */
    bool ok = true;
    char detail[700] = "";
#define STEP(cond, ...)                                                                          \
    do {                                                                                         \
        bool c_ = (cond);                                                                        \
        ok &= c_;                                                                                \
        if (!c_) {                                                                               \
            size_t l_ = strlen(detail);                                                          \
            snprintf(detail + l_, sizeof detail - l_, __VA_ARGS__);                              \
        }                                                                                        \
    } while (0)
    STEP(ioctl(fd, TIOCMBIS, &loop) == 0, "TIOCMBIS(LOOP) failed; ");
    /* config read back */
    struct sp_port_config *cfg = NULL;
    int baud = 0, bits = 0, stop = 0;
    enum sp_parity par = SP_PARITY_INVALID;
    sp_new_config(&cfg);
    STEP(sp_get_config(p, cfg) == SP_OK, "sp_get_config; ");
    sp_get_config_baudrate(cfg, &baud);
    sp_get_config_bits(cfg, &bits);
    sp_get_config_parity(cfg, &par);
    sp_get_config_stopbits(cfg, &stop);
    sp_free_config(cfg);
    STEP(baud == 115200 && bits == 8 && par == SP_PARITY_NONE && stop == 1,
         "config read back %d %d%d%d; ", baud, bits, (int)par, stop);
    STEP(sp_flush(p, SP_BUF_BOTH) == SP_OK, "flush; ");
    /* data: TX returns on RX */
    unsigned char tx[1024], rx[1024];
    for (size_t i = 0; i < sizeof tx; i++)
        tx[i] = (unsigned char)(i * 13 + 1);
    int w = sp_blocking_write(p, tx, sizeof tx, 3000);
    STEP(w == (int)sizeof tx, "wrote %d; ", w);
    STEP(sp_drain(p) == SP_OK, "drain; ");
    int r = sp_blocking_read(p, rx, sizeof rx, 3000);
    STEP(r == (int)sizeof rx && memcmp(tx, rx, sizeof tx) == 0, "read back %d bytes%s; ", r,
         r == (int)sizeof rx ? " (different)" : "");
    /* DTR -> DSR, RTS -> CTS in loopback */
    enum sp_signal sig = 0;
    sp_set_dtr(p, SP_DTR_ON);
    sp_set_rts(p, SP_RTS_OFF);
    sp_get_signals(p, &sig);
    STEP((sig & SP_SIG_DSR) && !(sig & SP_SIG_CTS), "DTR on/RTS off gave signals 0x%x; ", sig);
    sp_set_dtr(p, SP_DTR_OFF);
    sp_set_rts(p, SP_RTS_ON);
    sp_get_signals(p, &sig);
    STEP(!(sig & SP_SIG_DSR) && (sig & SP_SIG_CTS), "DTR off/RTS on gave signals 0x%x; ", sig);
    sp_set_rts(p, SP_RTS_OFF);
    sp_get_signals(p, &sig);
    STEP(!(sig & (SP_SIG_DSR | SP_SIG_CTS)), "both off gave signals 0x%x; ", sig);
    /* break: qemu's 16550 does not loop a break back; the driver must accept it and
     * the line must carry data afterwards */
    STEP(sp_start_break(p) == SP_OK, "start_break; ");
    sleep_ns(20 * MS);
    STEP(sp_end_break(p) == SP_OK, "end_break; ");
    sp_flush(p, SP_BUF_INPUT);
    w = sp_blocking_write(p, "after-break", 11, 1000);
    r = sp_blocking_read(p, rx, 11, 1000);
    STEP(w == 11 && r == 11 && memcmp(rx, "after-break", 11) == 0, "data after break %d/%d; ", w, r);
    int clear = 0x8000;
    ioctl(fd, TIOCMBIC, &clear);
    sp_close(p);
    sp_free_port(p);
    result("serial_loopback", ok,
           "%s: 115200 8N1 read back, 1024 bytes through the UART's loopback, DTR->DSR, "
           "RTS->CTS, break; %s", LOOP_UART, ok ? "all as expected" : detail);
#undef STEP
}

/* Reads one '\n'-terminated line within the deadline. */
static int read_line(struct sp_port *p, char *buf, size_t n, int64_t deadline)
{
    size_t len = 0;
    while (len + 1 < n) {
        int64_t left = (deadline - now_ns()) / MS;
        if (left <= 0)
            break;
        char c;
        int r = sp_blocking_read(p, &c, 1, (unsigned)left);
        if (r < 0)
            return -1;
        if (r == 0)
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
    char why[256];
    struct sp_port *p = open_port(HOST_UART, why, sizeof why);
    if (!p) {
        result("serial_host", false, "%s", why);
        return;
    }
    sp_flush(p, SP_BUF_BOTH);
    char nonce[32];
    snprintf(nonce, sizeof nonce, "%lx", (unsigned long)(now_ns() & 0xffffffff));
    printf("HOSTPEER READY %s\n", nonce);
    fflush(stdout);
    char line[128];
    snprintf(line, sizeof line, "PING %s\n", nonce);
    int64_t deadline = now_ns() + 20000 * MS;
    bool ok = sp_blocking_write(p, line, strlen(line), 2000) == (int)strlen(line);
    char pong[128] = "", head[128] = "";
    ok = ok && read_line(p, pong, sizeof pong, deadline) >= 0;
    char want[64];
    snprintf(want, sizeof want, "PONG %s", nonce);
    ok = ok && strcmp(pong, want) == 0;
    ok = ok && read_line(p, head, sizeof head, deadline) >= 0;
    int len = 0;
    char digest[40] = "", mine[17] = "";
    ok = ok && sscanf(head, "BLOCK %d %39s", &len, digest) == 2 && len > 0 && len <= 65536;
    unsigned char *block = ok ? malloc((size_t)len) : NULL;
    int got = 0;
    if (block) {
        got = sp_blocking_read(p, block, (size_t)len, 10000);
        hex16(block, got > 0 ? (size_t)got : 0, mine);
        ok = got == len && strcmp(mine, digest) == 0;
        snprintf(line, sizeof line, "GOT %d %s\n", got, mine);
        sp_blocking_write(p, line, strlen(line), 2000);
        sp_drain(p);
    }
    free(block);
    sp_close(p);
    sp_free_port(p);
    result("serial_host", ok,
           "%s <-> host socket: PING, '%s', '%s', block %d/%d bytes sha256 %s (host said %s)",
           HOST_UART, pong, head, got, len, mine, digest);
}
