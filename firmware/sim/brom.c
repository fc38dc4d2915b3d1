/* The virtual module's MediaTek BootROM and download agent on UART1 (opencpu-fota.md §10,
 * docs/flashing.md): written from the spec, sharing no code with the bench's flasher.
 *
 * At power-up with PWRKEY held low (or at every power-up with --download always) the
 * BootROM listens for its handshake for ~150 ms, the window restarted by each correct
 * byte. Without a handshake the module boots as before. With one it answers the BootROM
 * commands, takes any agent bytes (their XOR checksum is answered), and after the jump
 * speaks the agent's protocol on the app region of this model's flash: a NOR model
 * (erase sets 0xFF, a write only clears bits), persisted in the state directory's
 * app.bin as it goes, so a power cut leaves what a real flash would hold. The UART is
 * paced at the current baud rate (10 bits a byte) in both directions. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

#define WINDOW_MS 150
#define UNIT 4096u          /* erase unit of the NOR model */
#define PACKET_GAP_MS 250   /* silence inside a packet: the agent gives up on it (A5) */

struct uart {
    int fd;
    int baud;
    int64_t rx_t, tx_t; /* when the line is free again in each direction */
};

static void sleep_until(int64_t t_ns)
{
    struct timespec ts = {(time_t)(t_ns / 1000000000LL), (long)(t_ns % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int64_t byte_ns(const struct uart *u)
{
    return 10LL * 1000000000LL / u->baud;
}

/* Up to n bytes, waiting at most timeout_ms for the first (-1: for ever); paced as if
 * they crossed the line at the baud rate. Returns the count, 0 on timeout, -1 on error. */
static ssize_t u_read_some(struct uart *u, uint8_t *b, size_t n, int timeout_ms)
{
    struct pollfd pf = {u->fd, POLLIN, 0};
    int r;
    do
        r = poll(&pf, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        return r;
    ssize_t k = read(u->fd, b, n);
    if (k <= 0)
        return k < 0 && errno == EAGAIN ? 0 : -1;
    int64_t now = sim_now_ns();
    int64_t t0 = u->rx_t > now ? u->rx_t : now;
    u->rx_t = t0 + (int64_t)k * byte_ns(u);
    sleep_until(u->rx_t);
    return k;
}

/* Exactly n bytes; gap_ms bounds the silence between two chunks (-1: none). */
static int u_read(struct uart *u, uint8_t *b, size_t n, int gap_ms)
{
    size_t have = 0;
    while (have < n) {
        ssize_t k = u_read_some(u, b + have, n - have, gap_ms);
        if (k <= 0)
            return -1;
        have += (size_t)k;
    }
    return 0;
}

static void u_write(struct uart *u, const void *data, size_t n)
{
    const uint8_t *p = data;
    size_t left = n;
    while (left) {
        ssize_t k = write(u->fd, p, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            struct pollfd pf = {u->fd, POLLOUT, 0};
            poll(&pf, 1, 100);
            continue;
        }
        p += k;
        left -= (size_t)k;
    }
    int64_t now = sim_now_ns();
    int64_t t0 = u->tx_t > now ? u->tx_t : now;
    u->tx_t = t0 + (int64_t)n * byte_ns(u);
    sleep_until(u->tx_t);
}

static void put1(struct uart *u, uint8_t b)
{
    u_write(u, &b, 1);
}

static void put16(struct uart *u, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    u_write(u, b, 2);
}

static void put32(struct uart *u, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    u_write(u, b, 4);
}

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* A BootROM parameter: read and echo. */
static int param32(struct uart *u, uint32_t *v)
{
    uint8_t b[4];
    if (u_read(u, b, 4, -1))
        return -1;
    u_write(u, b, 4);
    *v = be32(b);
    return 0;
}

/* ---- the app region as NOR flash ---------------------------------------------------- */

struct nor {
    uint8_t *mem;     /* the region, region_size bytes */
    uint32_t base;    /* flash address of the region (load address & 0x07FFFFFF) */
    uint32_t size;
    int fd;           /* app.bin */
};

static int nor_open(struct nor *f)
{
    const struct sim_model *m = g_cfg.model;
    f->base = m->load_address & 0x07FFFFFFu;
    f->size = m->region_size;
    f->mem = malloc(f->size);
    if (!f->mem)
        return -1;
    memset(f->mem, 0xFF, f->size);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/app.bin", g_cfg.state);
    f->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f->fd < 0)
        return -1;
    ssize_t n = pread(f->fd, f->mem, f->size, 0);
    (void)n; /* what the area held; the rest reads as erased */
    return 0;
}

/* Flash content to the state file (whole region: a half-written app does not pass the
 * boot's length check, as a real half-written one would not run). */
static void nor_persist(struct nor *f, uint32_t off, uint32_t len)
{
    if (pwrite(f->fd, f->mem + off, len, off) != (ssize_t)len)
        module_debug("DA: flash file write failed: %s", strerror(errno));
}

static int nor_in(const struct nor *f, uint32_t addr, uint32_t len)
{
    return addr >= f->base && len <= f->size && addr - f->base <= f->size - len;
}

/* ---- the download agent ---------------------------------------------------------------- */

static uint32_t chip_nor_id(void)
{
    return strcmp(g_cfg.model->chip, "MT6261") == 0 ? 0xC22536u : 0xEF6016u;
}

static int fault_hits(int packet)
{
    return g_cfg.line_fault && packet >= g_cfg.fault_start &&
           packet < g_cfg.fault_start + g_cfg.fault_count;
}

static void da_run(struct uart *u)
{
    struct nor f = {0};
    if (nor_open(&f) != 0) {
        module_debug("DA: cannot open the flash: %s", strerror(errno));
        for (;;)
            pause();
    }
    sim_sleep_ms(9); /* the agent starts ~9 ms after the jump */
    static const uint8_t banner[4] = {0xC0, 0x03, 0x02, 0x8E};
    u_write(u, banner, 4);
    uint8_t b[64];
    if (u_read(u, b, 15, -1))
        goto gone;
    put1(u, 0x5A);
    uint32_t nor_id = chip_nor_id();
    int matched = 0;
    for (;;) { /* descriptors until 00000000 */
        if (u_read(u, b, 4, -1))
            goto gone;
        if (be32(b) == 0)
            break;
        if (u_read(u, b + 4, 32, -1))
            goto gone;
        if (!matched && be32(b + 4) == nor_id) {
            matched = 1;
            put1(u, 0x5A);
            put1(u, 0xA5);
        } else {
            put1(u, 0x69);
        }
    }
    uint8_t info[40] = {0};
    info[3] = matched ? 0 : 1;
    info[4] = (uint8_t)(nor_id >> 24), info[5] = (uint8_t)(nor_id >> 16);
    info[6] = (uint8_t)(nor_id >> 8), info[7] = (uint8_t)nor_id;
    info[12] = 0x00, info[13] = 0x40; /* 4 MB */
    info[19] = info[23] = 1;          /* no NAND, no eMMC */
    info[29] = 0x40;                  /* RAM 4 MB */
    info[32] = info[33] = 0x5A;
    info[39] = 0xC1;
    u_write(u, info, sizeof info);
    module_debug("DA: agent 3.2 running, NOR 0x%06X %s", nor_id,
                 matched ? "matched" : "not offered");

    uint32_t start = 0, len = 0;
    int packet_no = 0;
    for (;;) {
        if (u_read(u, b, 1, -1))
            goto gone;
        switch (b[0]) {
        case 0xD2: { /* speed */
            static const int rates[5] = {0, 921600, 460800, 230400, 115200};
            if (u_read(u, b, 2, -1))
                goto gone;
            if (b[0] < 1 || b[0] > 4) {
                put1(u, 0xA5);
                break;
            }
            put1(u, 0x5A);
            if (u_read(u, b + 2, 1, -1) || b[2] != 0x5A)
                goto gone;
            u->baud = rates[b[0]];
            do {
                if (u_read(u, b, 1, -1))
                    goto gone;
                if (b[0] == 0xC0)
                    put1(u, 0xC0);
            } while (b[0] != 0xC0);
            if (u_read(u, b, 1, -1))
                goto gone;
            put1(u, b[0] == 0x5A ? 0x5A : 0xA5);
            for (int v = 0; v < 256; v++) {
                if (u_read(u, b, 1, -1))
                    goto gone;
                put1(u, b[0]);
            }
            module_debug("DA: UART at %d baud", u->baud);
            break;
        }
        case 0xD3: { /* erase */
            if (u_read(u, b, 12, -1))
                goto gone;
            uint32_t s = be32(b + 2), e = be32(b + 6);
            if (b[0] != 0xA5 || b[1] != 1 || e < s || !nor_in(&f, s, e - s + 1)) {
                module_debug("DA: erase 0x%08X..0x%08X refused (outside the app region "
                             "0x%08X+0x%X)", s, e, f.base, f.size);
                put1(u, 0xA5);
                break;
            }
            start = s;
            len = e - s + 1;
            put1(u, 0x5A);
            put1(u, 1);
            put1(u, 0x5A);
            uint32_t first = (s - f.base) / UNIT, last = (e - f.base) / UNIT;
            put32(u, last - first + 1);
            for (uint32_t k = first; k <= last; k++) {
                uint32_t off = k * UNIT, n = f.size - off < UNIT ? f.size - off : UNIT;
                memset(f.mem + off, 0xFF, n);
                nor_persist(&f, off, n);
                put1(u, 0x5A);
            }
            put1(u, 0x5A);
            module_debug("DA: erased 0x%08X..0x%08X (%u units)", s, e, last - first + 1);
            break;
        }
        case 0xD5: { /* write */
            put1(u, 0x5A);
            if (u_read(u, b, 5, -1))
                goto gone;
            uint32_t plen = be32(b + 1);
            if (!len || plen != 4096) {
                put1(u, 0xA5);
                break;
            }
            put1(u, 0x5A);
            put1(u, 0x5A);
            static uint8_t pkt[4096 + 3];
            uint16_t file_sum = 0;
            for (uint32_t off = 0; off < len;) {
                uint32_t n = len - off < plen ? len - off : plen;
                if (u_read(u, pkt, 1, -1))
                    goto gone;
                if (pkt[0] != 0x5A)
                    continue; /* not a packet start: wait for one */
                int bad = 0;
                size_t need = n + 2, have = 0;
                int fault = fault_hits(packet_no++);
                while (have < need) {
                    ssize_t k = u_read_some(u, pkt + have, need - have, PACKET_GAP_MS);
                    if (k < 0)
                        goto gone;
                    if (k == 0) { /* silence mid-packet: bytes were lost */
                        bad = 1;
                        break;
                    }
                    if (fault && g_cfg.line_fault == LINE_FAULT_DROP) {
                        memmove(pkt + have, pkt + have + 1, (size_t)k - 1); /* lost a byte */
                        k--;
                        fault = 0;
                        module_debug("DA: line fault: a byte of packet %d dropped", packet_no - 1);
                    }
                    have += (size_t)k;
                }
                if (fault && g_cfg.line_fault == LINE_FAULT_FLIP) {
                    pkt[n / 2] ^= 0x08;
                    module_debug("DA: line fault: a bit of packet %d flipped", packet_no - 1);
                }
                uint16_t sum = 0;
                for (uint32_t i = 0; !bad && i < n; i++)
                    sum = (uint16_t)(sum + pkt[i]);
                if (bad || sum != (uint16_t)(pkt[n] << 8 | pkt[n + 1])) {
                    module_debug("DA: packet at 0x%X refused (%s)", off, bad ? "short" : "sum");
                    put1(u, 0xA5);
                    continue;
                }
                uint32_t at = start - f.base + off;
                for (uint32_t i = 0; i < n; i++)
                    f.mem[at + i] &= pkt[i]; /* NOR: programming clears bits only */
                nor_persist(&f, at, n);
                file_sum = (uint16_t)(file_sum + sum);
                put1(u, 0x69);
                off += n;
            }
            put1(u, 0x5A);
            put1(u, 0x5A);
            put1(u, 0x5A);
            if (u_read(u, b, 2, -1))
                goto gone;
            int ok = (uint16_t)(b[0] << 8 | b[1]) == file_sum;
            put1(u, ok ? 0x5A : 0xA5);
            if (ok && start == f.base) {
                /* The app area holds exactly the image now (the boot checks its length). */
                if (ftruncate(f.fd, len) != 0)
                    module_debug("DA: truncate failed: %s", strerror(errno));
            }
            fsync(f.fd);
            module_debug("DA: wrote %u bytes at 0x%08X, file checksum %s", len, start,
                         ok ? "ok" : "WRONG");
            break;
        }
        case 0xD6: { /* read back */
            if (u_read(u, b, 13, -1))
                goto gone;
            uint32_t a = be32(b + 1), n_all = be32(b + 5), plen = be32(b + 9);
            if (!nor_in(&f, a, n_all) || plen == 0 || plen > 4096) {
                put1(u, 0xA5);
                break;
            }
            put1(u, 0x5A);
            for (uint32_t off = 0; off < n_all;) {
                uint32_t n = n_all - off < plen ? n_all - off : plen;
                const uint8_t *p = f.mem + (a - f.base) + off;
                uint16_t sum = 0;
                for (uint32_t i = 0; i < n; i++)
                    sum = (uint16_t)(sum + p[i]);
                u_write(u, p, n);
                put16(u, sum);
                if (u_read(u, b, 1, -1))
                    goto gone;
                if (b[0] == 0x5A)
                    off += n;
            }
            break;
        }
        case 0xB9:
            put1(u, 0x5A);
            break;
        case 0xC9:
            if (u_read(u, b, 1, -1))
                goto gone;
            put1(u, 0x5A);
            break;
        case 0xDB:
            if (u_read(u, b, 6, -1))
                goto gone;
            put1(u, 0x5A);
            fsync(f.fd);
            module_debug("DA: reset by the watchdog");
            sim_sleep_ms(5);
            module_reboot();
        case 0xD9:
            put1(u, 0x5A);
            module_debug("DA: finished without reset: waiting for a power cycle");
            for (;;)
                pause();
        default:
            module_debug("DA: unknown command %02X", b[0]);
            put1(u, 0xA5);
        }
    }
gone:
    module_debug("DA: the host went away: waiting for a power cycle");
    for (;;)
        pause();
}

/* ---- the BootROM --------------------------------------------------------------------- */

static uint16_t chip_hw_id(void)
{
    return strcmp(g_cfg.model->chip, "MT6261") == 0 ? 0x35C0 : 0x3600;
}

static void brom_commands(struct uart *u)
{
    uint8_t b[16];
    uint32_t sent_at[8];
    int parts = 0;
    for (;;) {
        if (u_read(u, b, 1, -1))
            goto gone;
        uint8_t c = b[0];
        if (c == 0xFF) { /* GET_VERSION: no echo */
            put1(u, 0x05);
            continue;
        }
        if (c == 0xA0) { /* a late handshake byte */
            put1(u, 0x5F);
            continue;
        }
        put1(u, c);
        uint32_t addr, n, v, sig;
        switch (c) {
        case 0xA2: /* READ16 (legacy): words, no status */
            if (param32(u, &addr) || param32(u, &n))
                goto gone;
            for (uint32_t k = 0; k < n && k < 64; k++)
                put16(u, addr + 2 * k == 0x80000008u ? (chip_hw_id() == 0x35C0 ? 0x6261 : 0x2503)
                                                     : 0);
            break;
        case 0xD0:
        case 0xD1: /* READ16 / READ32 */
            if (param32(u, &addr) || param32(u, &n))
                goto gone;
            put16(u, 0);
            for (uint32_t k = 0; k < n && k < 64; k++) {
                uint32_t a = addr + (c == 0xD1 ? 4 : 2) * k;
                uint32_t val = a == 0xA01C0108u ? (uint32_t)chip_hw_id() << 16 | 0x8A00 : 0;
                if (c == 0xD1)
                    put32(u, val);
                else
                    put16(u, (uint16_t)val);
            }
            put16(u, 0);
            break;
        case 0xD2:
        case 0xD4: { /* WRITE16 / WRITE32 */
            if (param32(u, &addr) || param32(u, &n))
                goto gone;
            put16(u, 1);
            size_t sz = c == 0xD2 ? 2 : 4;
            for (uint32_t k = 0; k < n && k < 64; k++) {
                if (u_read(u, b, sz, -1))
                    goto gone;
                u_write(u, b, sz);
                v = sz == 2 ? (uint32_t)(b[0] << 8 | b[1]) : be32(b);
                if (addr == 0xA0030000u && v == 0x2200)
                    module_debug("BROM: watchdog off");
            }
            put16(u, 1);
            break;
        }
        case 0xD8:
            put32(u, 0); /* no secure boot */
            put16(u, 0);
            break;
        case 0xE1: {
            put32(u, 16);
            uint8_t me[16];
            for (int k = 0; k < 16; k++)
                me[k] = (uint8_t)(g_cfg.imei[k % 15] ^ (0x5A + k));
            u_write(u, me, 16);
            put16(u, 0);
            break;
        }
        case 0xD7: { /* SEND_DA */
            if (param32(u, &addr) || param32(u, &n) || param32(u, &sig))
                goto gone;
            if (n == 0 || n > 4u << 20) {
                put16(u, 0x1D0C);
                break;
            }
            put16(u, 0);
            uint8_t *data = malloc(n);
            if (!data || u_read(u, data, n, -1)) {
                free(data);
                goto gone;
            }
            uint16_t x = 0;
            for (uint32_t k = 0; k + 1 < n; k += 2)
                x ^= (uint16_t)(data[k] | data[k + 1] << 8);
            if (n & 1)
                x ^= data[n - 1];
            free(data);
            put16(u, x);
            put16(u, 0);
            if (parts < 8)
                sent_at[parts++] = addr;
            module_debug("BROM: agent part of %u bytes at 0x%08X", n, addr);
            break;
        }
        case 0xD5: /* JUMP_DA */
            if (param32(u, &addr))
                goto gone;
            if (parts == 0 || addr != sent_at[0]) {
                put16(u, 0x1D0D);
                break;
            }
            put16(u, 0);
            module_debug("BROM: jump to the agent at 0x%08X", addr);
            da_run(u);
        default:
            break; /* FE and others: echoed only */
        }
    }
gone:
    for (;;)
        pause();
}

/* The handshake window at power-up. Returns only when no handshake came. A byte other
 * than the next expected one restarts the sequence (answered with byte+1); before any
 * A0 nothing is answered, so AT traffic at power-up meets no stray bytes (our choice). */
void brom_power_up(int uart1_fd, int pwrkey_low)
{
    if (!pwrkey_low && !g_cfg.download_always)
        return;
    static const uint8_t seq[4] = {0xA0, 0x0A, 0x50, 0x05};
    static const uint8_t answer[4] = {0x5F, 0xF5, 0xAF, 0xFA};
    struct uart u = {uart1_fd, 115200, 0, 0};
    int64_t end = sim_now_ns() + (int64_t)WINDOW_MS * 1000000LL;
    int i = 0;
    for (;;) {
        int64_t left = (end - sim_now_ns()) / 1000000LL;
        if (!g_cfg.download_always && left <= 0)
            return;
        uint8_t b;
        ssize_t k = u_read_some(&u, &b, 1, g_cfg.download_always ? 1000 : (int)left + 1);
        if (k < 0)
            return;
        if (k == 0)
            continue;
        if (b == seq[0]) {
            i = 1;
            put1(&u, answer[0]);
        } else if (i > 0 && b == seq[i]) {
            put1(&u, answer[i]);
            i++;
        } else {
            if (i > 0)
                put1(&u, (uint8_t)(b + 1));
            i = 0;
            continue;
        }
        end = sim_now_ns() + (int64_t)WINDOW_MS * 1000000LL;
        if (i == 4)
            break;
    }
    module_debug("BROM: handshake, download mode (%s)", g_cfg.model->chip);
    brom_commands(&u);
}
