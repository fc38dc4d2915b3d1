/* The flasher (fotabench/flash.h) against a scripted fake BootROM + download agent on a
 * pseudo-terminal, written from opencpu-fota.md §10 and not from the host's code: good
 * sessions at both chips, faults (no handshake, flipped packets, wrong chip, cancel),
 * and the DA file parser on synthetic agent files. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fotabench/appimage.h"
#include "fotabench/clock.h"
#include "fotabench/flash.h"

#define FLASH_SIZE (4u << 20)

typedef struct peer {
    int fd, slave, stop[2]; /* the slave stays open: a master reads EIO while no slave is */
    pthread_t thread;
    /* script */
    uint16_t hw_id;
    int silent;          /* never answer the handshake */
    int wrong_once;      /* answer the first 0A wrongly */
    int flip_packets;    /* corrupt this many write packets (as if the line flipped a bit) */
    const uint8_t *agent[2];
    uint32_t agent_len[2];
    /* record */
    uint8_t *flash;
    int handshakes, restarts, agent_parts, agent_ok, jumped, erased_units, nacks, packets;
    int wdt_off, remapped, verified, reset, finished, file_sum_ok, speed;
    uint32_t erase_start, erase_end;
    char fail[200];
} peer;

static int rd(peer *p, uint8_t *buf, size_t n)
{
    size_t have = 0;
    while (have < n) {
        struct pollfd pf[2] = {{p->fd, POLLIN, 0}, {p->stop[0], POLLIN, 0}};
        if (poll(pf, 2, 10000) <= 0 || pf[1].revents)
            return -1;
        ssize_t k = read(p->fd, buf + have, n - have);
        if (k <= 0)
            return -1;
        have += (size_t)k;
    }
    return 0;
}

static void wr(peer *p, const void *b, size_t n)
{
    const uint8_t *c = b;
    while (n) {
        ssize_t k = write(p->fd, c, n);
        if (k <= 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return;
        }
        c += k;
        n -= (size_t)k;
    }
}

static void wr1(peer *p, uint8_t b)
{
    wr(p, &b, 1);
}

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void put16(uint8_t *b, uint16_t v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static void put32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

/* Read a u32 and echo it (BootROM parameters). */
static int param(peer *p, uint32_t *v)
{
    uint8_t b[4];
    if (rd(p, b, 4))
        return -1;
    wr(p, b, 4);
    *v = be32(b);
    return 0;
}

static void status(peer *p, uint16_t s)
{
    uint8_t b[2];
    put16(b, s);
    wr(p, b, 2);
}

#define FAIL(...) do { snprintf(p->fail, sizeof p->fail, __VA_ARGS__); return; } while (0)

static void run_da(peer *p)
{
    uint8_t b[64];
    static const uint8_t banner[4] = {0xC0, 0x03, 0x02, 0x8E};
    wr(p, banner, 4);
    static const uint8_t setup[15] = {0x5A, 0x05, 0xFE, 0x00, 0x08, 0x00, 0x70, 0x07,
                                      0xFF, 0xFF, 0x02, 0x00, 0x00, 0x01, 0x03};
    if (rd(p, b, 15) || memcmp(b, setup, 15))
        FAIL("setup");
    wr1(p, 0x5A);
    /* Descriptors: this flash is the Winbond one (second in the host's table). */
    for (;;) {
        if (rd(p, b, 4))
            FAIL("descriptor");
        if (be32(b) == 0)
            break;
        if (rd(p, b + 4, 32))
            FAIL("descriptor body");
        if (be32(b + 4) == 0xEF6016u) {
            wr1(p, 0x5A);
            wr1(p, 0xA5);
        } else {
            wr1(p, 0x69);
        }
    }
    uint8_t info[40] = {0};
    put32(info + 4, 0xEF6016u);
    put32(info + 12, FLASH_SIZE);
    put32(info + 28, 4u << 20);
    info[32] = info[33] = 0x5A;
    info[39] = 0xC1;
    wr(p, info, 40);
    uint32_t start = 0, len = 0;
    for (;;) {
        if (rd(p, b, 1))
            return; /* the host went away */
        switch (b[0]) {
        case 0xD2: /* speed */
            if (rd(p, b, 2))
                FAIL("speed");
            p->speed = b[0];
            wr1(p, 0x5A);
            if (rd(p, b, 1) || b[0] != 0x5A)
                FAIL("speed ack");
            do { /* C0 until echoed */
                if (rd(p, b, 1))
                    FAIL("sync");
                wr1(p, b[0]);
            } while (b[0] != 0xC0);
            if (rd(p, b, 1) || b[0] != 0x5A)
                FAIL("sync 5A");
            wr1(p, 0x5A);
            for (int v = 0; v < 256; v++) {
                if (rd(p, b, 1))
                    FAIL("speed check");
                wr1(p, b[0]);
            }
            break;
        case 0xD3: { /* erase */
            if (rd(p, b, 12) || b[0] != 0xA5 || b[1] != 1)
                FAIL("erase");
            start = be32(b + 2);
            uint32_t end = be32(b + 6);
            p->erase_start = start;
            p->erase_end = end;
            len = end - start + 1;
            if (end >= FLASH_SIZE || end < start)
                FAIL("erase range");
            wr1(p, 0x5A);
            wr1(p, 1);
            wr1(p, 0x5A);
            uint32_t units = (len + 4095) / 4096;
            uint8_t k[4];
            put32(k, units);
            wr(p, k, 4);
            for (uint32_t u = 0; u < units; u++) {
                memset(p->flash + start + u * 4096, 0xFF, 4096);
                p->erased_units++;
                wr1(p, 0x5A);
            }
            wr1(p, 0x5A);
            break;
        }
        case 0xD5: { /* write */
            wr1(p, 0x5A);
            if (rd(p, b, 5) || be32(b + 1) != 4096)
                FAIL("write header");
            wr1(p, 0x5A);
            wr1(p, 0x5A);
            uint16_t file_sum = 0;
            static uint8_t pkt[4096 + 2];
            for (uint32_t off = 0; off < len;) {
                uint32_t n = len - off < 4096 ? len - off : 4096;
                if (rd(p, b, 1) || b[0] != 0x5A || rd(p, pkt, n + 2))
                    FAIL("packet %u", off / 4096);
                if (p->flip_packets > 0) { /* the line flipped a bit of this packet */
                    p->flip_packets--;
                    pkt[n / 2] ^= 0x10;
                }
                uint16_t sum = 0;
                for (uint32_t i = 0; i < n; i++)
                    sum = (uint16_t)(sum + pkt[i]);
                if (sum != (uint16_t)(pkt[n] << 8 | pkt[n + 1])) {
                    p->nacks++;
                    wr1(p, 0xA5);
                    continue;
                }
                for (uint32_t i = 0; i < n; i++) /* NOR: writing only clears bits */
                    p->flash[start + off + i] &= pkt[i];
                file_sum = (uint16_t)(file_sum + sum);
                p->packets++;
                wr1(p, 0x69);
                off += n;
            }
            wr1(p, 0x5A);
            wr1(p, 0x5A);
            wr1(p, 0x5A);
            if (rd(p, b, 2))
                FAIL("file sum");
            p->file_sum_ok = (uint16_t)(b[0] << 8 | b[1]) == file_sum;
            wr1(p, p->file_sum_ok ? 0x5A : 0xA5);
            break;
        }
        case 0xD6: { /* read back */
            if (rd(p, b, 13))
                FAIL("read back");
            uint32_t a = be32(b + 1), n_all = be32(b + 5);
            wr1(p, 0x5A);
            for (uint32_t off = 0; off < n_all;) {
                uint32_t n = n_all - off < 4096 ? n_all - off : 4096;
                uint16_t sum = 0;
                for (uint32_t i = 0; i < n; i++)
                    sum = (uint16_t)(sum + p->flash[a + off + i]);
                wr(p, p->flash + a + off, n);
                uint8_t s[2];
                put16(s, sum);
                wr(p, s, 2);
                if (rd(p, b, 1) || b[0] != 0x5A)
                    FAIL("read back ack");
                off += n;
            }
            p->verified = 1;
            break;
        }
        case 0xB9:
            wr1(p, 0x5A);
            break;
        case 0xC9:
            if (rd(p, b, 1))
                FAIL("C9");
            wr1(p, 0x5A);
            break;
        case 0xDB:
            if (rd(p, b, 6))
                FAIL("DB");
            p->reset = 1;
            p->finished = 1;
            wr1(p, 0x5A);
            return;
        case 0xD9:
            p->finished = 1;
            wr1(p, 0x5A);
            return;
        default:
            FAIL("unknown DA command %02X", b[0]);
        }
    }
}

static void *peer_main(void *arg)
{
    peer *p = arg;
    uint8_t b[16];
    static const uint8_t seq[4] = {0xA0, 0x0A, 0x50, 0x05};
    /* Handshake: complements of the sequence; anything wrong restarts it. */
    int i = 0;
    while (i < 4) {
        if (rd(p, b, 1))
            return NULL;
        if (p->silent)
            continue;
        if (b[0] == seq[i]) {
            if (i == 1 && p->wrong_once) {
                p->wrong_once = 0;
                p->restarts++;
                wr1(p, (uint8_t)(b[0] + 1));
                i = 0;
                continue;
            }
            wr1(p, (uint8_t)~b[0]);
            i++;
        } else {
            if (i > 0)
                p->restarts++;
            i = 0;
        }
    }
    p->handshakes++;
    uint32_t da_addr[2] = {0, 0};
    for (;;) {
        if (rd(p, b, 1))
            return NULL;
        uint8_t c = b[0];
        if (c == 0xA0) /* a late A0 of the handshake */
            continue;
        if (c == 0xFF) {
            wr1(p, 0x05);
            continue;
        }
        wr1(p, c);
        uint32_t addr, n, v, sig;
        switch (c) {
        case 0xD1:
            if (param(p, &addr) || param(p, &n))
                return NULL;
            status(p, 0);
            for (uint32_t k = 0; k < n; k++) {
                uint8_t w[4];
                put32(w, addr == FB_CHIP_ID_ADDR ? (uint32_t)p->hw_id << 16 | 0x8A00 : 0);
                wr(p, w, 4);
            }
            status(p, 0);
            break;
        case 0xD2:
        case 0xD4: {
            if (param(p, &addr) || param(p, &n))
                return NULL;
            status(p, 1);
            size_t sz = c == 0xD2 ? 2 : 4;
            for (uint32_t k = 0; k < n; k++) {
                if (rd(p, b, sz))
                    return NULL;
                wr(p, b, sz);
                v = sz == 2 ? (uint32_t)(b[0] << 8 | b[1]) : be32(b);
                if (addr == 0xA0030000u && v == 0x2200)
                    p->wdt_off = 1;
                if (addr == 0xA0510000u && v == 2)
                    p->remapped = 1;
            }
            status(p, 1);
            break;
        }
        case 0xD8:
            put32(b, 0);
            wr(p, b, 4);
            status(p, 0);
            break;
        case 0xE1:
            put32(b, 16);
            wr(p, b, 4);
            for (int k = 0; k < 16; k++)
                b[k] = (uint8_t)(0xA0 + k);
            wr(p, b, 16);
            status(p, 0);
            break;
        case 0xD7: {
            if (param(p, &addr) || param(p, &n) || param(p, &sig))
                return NULL;
            status(p, 0);
            uint8_t *data = malloc(n ? n : 1);
            if (!data || rd(p, data, n)) {
                free(data);
                return NULL;
            }
            uint16_t x = 0;
            for (uint32_t k = 0; k + 1 < n; k += 2)
                x ^= (uint16_t)(data[k] | data[k + 1] << 8);
            if (n & 1)
                x ^= data[n - 1];
            int part = p->agent_parts < 2 ? p->agent_parts : 1;
            if (n == p->agent_len[part] && memcmp(data, p->agent[part], n) == 0)
                p->agent_ok++;
            da_addr[part] = addr;
            p->agent_parts++;
            free(data);
            put16(b, x);
            wr(p, b, 2);
            status(p, 0);
            break;
        }
        case 0xD5:
            if (param(p, &addr))
                return NULL;
            status(p, 0);
            p->jumped = addr == da_addr[0];
            run_da(p);
            return NULL;
        default:
            break; /* FE and others: echoed only */
        }
    }
}

static int peer_start(peer *p, char *name, size_t cap)
{
    int slave;
    if (pipe(p->stop) != 0 || openpty(&p->fd, &slave, NULL, NULL, NULL) != 0)
        return -1;
    struct termios t;
    tcgetattr(slave, &t);
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
    snprintf(name, cap, "%s", ttyname(slave));
    p->slave = slave;
    p->flash = malloc(FLASH_SIZE);
    memset(p->flash, 0x00, FLASH_SIZE); /* not erased: programmed garbage */
    return pthread_create(&p->thread, NULL, peer_main, p);
}

static void peer_stop(peer *p)
{
    if (write(p->stop[1], "x", 1) != 1) /* ends its reads */
        perror("stop");
    pthread_join(p->thread, NULL);
    close(p->fd);
    close(p->stop[0]);
    close(p->stop[1]);
    close(p->slave);
}

/* ---- fixtures ------------------------------------------------------------------ */

static uint8_t agent1[0x718], agent2[0x3001];

static uint8_t *make_da(size_t *len)
{
    for (size_t i = 0; i < sizeof agent1; i++)
        agent1[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof agent2; i++)
        agent2[i] = (uint8_t)(i * 13 + 5);
    fb_da_build_entry e[2] = {
        {0x6261, 2, {{0x70007000u, 0, agent1, sizeof agent1}, {0x10020000u, 0, agent2,
                                                               sizeof agent2}}},
        {0x2503, 2, {{0x70007000u, 0, agent1, sizeof agent1}, {0x10020000u, 0, agent2,
                                                               sizeof agent2}}},
    };
    uint8_t *out = NULL;
    fb_error err;
    if (fb_da_file_build("SYNTHETIC test agent", e, 2, &out, len, &err) != FB_OK)
        return NULL;
    return out;
}

static uint8_t *make_image(const char *model, size_t n)
{
    uint8_t *img = malloc(n);
    for (size_t i = 0; i < n; i++)
        img[i] = (uint8_t)(i * 31 + 7);
    fb_app_image_header(img, fb_model_find(model)->load_address, (uint32_t)n);
    return img;
}

typedef struct cb_state {
    uint64_t traced_tx, traced_rx;
    int64_t last_t;
    int monotonic;
    uint64_t write_done, write_total, erase_done, erase_total;
    int cancel_after_write; /* cancel once this many bytes were written */
    int cancel_now;
} cb_state;

static void on_trace(void *ctx, int dir, const uint8_t *data, size_t n, int64_t t)
{
    cb_state *s = ctx;
    if (getenv("FLASH_TRACE"))
        fprintf(stderr, "%s %zu %02X\n", dir == FB_FLASH_TRACE_TX ? ">" : "<", n, data[0]);
    if (dir == FB_FLASH_TRACE_TX)
        s->traced_tx += n;
    else
        s->traced_rx += n;
    if (t < s->last_t)
        s->monotonic = 0;
    s->last_t = t;
}

static int on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    cb_state *s = ctx;
    if (strcmp(phase, "write") == 0) {
        s->write_done = done;
        s->write_total = total;
        if (s->cancel_after_write && done >= (uint64_t)s->cancel_after_write)
            s->cancel_now = 1;
    } else if (strcmp(phase, "erase") == 0) {
        s->erase_done = done;
        s->erase_total = total;
    }
    return 0;
}

static int on_cancel(void *ctx)
{
    return ((cb_state *)ctx)->cancel_now;
}

typedef struct kinds {
    int phases, progress, chip, done, error, resend;
} kinds;

static int count_kind(void *ctx, const fb_event *ev)
{
    kinds *k = ctx;
    k->phases += strcmp(ev->kind, "flash.phase") == 0;
    k->progress += strcmp(ev->kind, "flash.progress") == 0;
    k->chip += strcmp(ev->kind, "flash.chip") == 0;
    k->done += strcmp(ev->kind, "flash.done") == 0;
    k->error += strcmp(ev->kind, "flash.error") == 0;
    k->resend += strcmp(ev->kind, "flash.resend") == 0;
    return 0;
}

typedef struct run {
    peer p;
    fb_status st;
    fb_error err;
    fb_flash_result res;
    cb_state cb;
    kinds k;
} run;

static void flash_with(run *r, const fb_da_file *da, const uint8_t *img, size_t n,
                       fb_flash_config *cfg)
{
    char name[128];
    r->p.agent[0] = agent1;
    r->p.agent[1] = agent2;
    r->p.agent_len[0] = sizeof agent1;
    r->p.agent_len[1] = sizeof agent2;
    r->cb.monotonic = 1;
    if (peer_start(&r->p, name, sizeof name) != 0) {
        CHECK(!"pty");
        return;
    }
    fb_serial_config sc;
    fb_serial_config_init(&sc);
    fb_serial *port = fb_serial_open(name, &sc, &r->err);
    CHECK(port != NULL);
    fb_timeline *tl = fb_timeline_new(NULL);
    cfg->timeline = tl;
    cfg->trace = on_trace;
    cfg->progress = on_progress;
    cfg->cancel.stop = on_cancel;
    cfg->cancel.ctx = &r->cb;
    cfg->ctx = &r->cb;
    fb_flasher *fl = port ? fb_flasher_new(port, da, cfg, &r->err) : NULL;
    r->st = fl ? fb_flasher_flash(fl, img, n, &r->res, &r->err) : FB_ERR_IO;
    fb_timeline_visit(tl, 0, count_kind, &r->k);
    fb_flasher_free(fl);
    fb_serial_close(port);
    peer_stop(&r->p);
    fb_timeline_free(tl);
    if (r->p.fail[0])
        fprintf(stderr, "peer: %s\n", r->p.fail);
}

static void test_good(const fb_da_file *da, const char *model, uint16_t hw_id, int verify,
                      int baud, size_t n)
{
    uint8_t *img = make_image(model, n);
    run *r = calloc(1, sizeof *r);
    r->p.hw_id = hw_id;
    r->p.wrong_once = 1;
    fb_flash_config cfg;
    fb_flash_config_init(&cfg);
    cfg.verify = verify;
    cfg.baud = baud;
    flash_with(r, da, img, n, &cfg);
    if (r->st != FB_OK)
        fprintf(stderr, "flash: %s\n", r->err.message);
    CHECK_EQ_INT(r->st, FB_OK);
    CHECK(r->p.fail[0] == 0);
    CHECK_EQ_INT(r->p.restarts, 1); /* the handshake restarted after a wrong answer */
    CHECK_EQ_INT(r->p.wdt_off, 1);
    CHECK_EQ_INT(r->p.remapped, 1);
    CHECK_EQ_INT(r->p.agent_parts, 2);
    CHECK_EQ_INT(r->p.agent_ok, 2);
    CHECK_EQ_INT(r->p.jumped, 1);
    uint32_t start = fb_model_find(model)->load_address & 0x07FFFFFFu;
    CHECK_EQ_INT(r->p.erase_start, start);
    CHECK_EQ_INT(r->p.erase_end, start + n - 1);
    CHECK_EQ_INT(r->p.erased_units, (n + 4095) / 4096);
    CHECK(memcmp(r->p.flash + start, img, n) == 0);
    CHECK_EQ_INT(r->p.file_sum_ok, 1);
    CHECK_EQ_INT(r->p.verified, verify);
    CHECK_EQ_INT(r->p.reset, 1);
    CHECK_EQ_INT(r->p.speed, baud == 921600 ? 1 : baud == 460800 ? 2 : 0);
    CHECK_EQ_INT(r->res.hw_id, hw_id);
    CHECK(r->res.chip && r->res.chip->hw_id == hw_id);
    CHECK(r->res.model && strcmp(r->res.model->name, model) == 0);
    CHECK_EQ_INT(r->res.brom_version, 5);
    CHECK_EQ_INT(r->res.da.major, 3);
    CHECK_EQ_INT(r->res.da.minor, 2);
    CHECK_EQ_INT(r->res.info.nor_id, 0xEF6016);
    CHECK_EQ_INT(r->res.me_id[15], 0xAF);
    CHECK_EQ_INT(r->res.packets, (n + 4095) / 4096);
    CHECK_EQ_INT(r->res.resends, 0);
    CHECK_EQ_INT(r->res.baud, baud);
    CHECK_EQ_INT(r->res.verified, verify);
    CHECK(r->res.data_tx_bytes >= n + 3 * r->res.packets);
    /* Every byte on the wire reached the trace, in time order. */
    CHECK_EQ_INT(r->cb.traced_tx, r->res.tx_bytes);
    CHECK_EQ_INT(r->cb.traced_rx, r->res.rx_bytes);
    CHECK(r->cb.monotonic);
    CHECK_EQ_INT(r->cb.write_done, n);
    CHECK_EQ_INT(r->cb.write_total, n);
    CHECK_EQ_INT(r->cb.erase_done, r->p.erased_units);
    CHECK(r->k.phases >= 6);
    CHECK_EQ_INT(r->k.chip, 1);
    CHECK_EQ_INT(r->k.done, 1);
    CHECK_EQ_INT(r->k.error, 0);
    CHECK(r->k.progress >= (int)(r->res.packets + r->res.erase_units));
    free(r->p.flash);
    free(r);
    free(img);
}

static void test_flipped(const fb_da_file *da, int flips, int expect_ok)
{
    size_t n = 40 * 1024;
    uint8_t *img = make_image("M66", n);
    run *r = calloc(1, sizeof *r);
    r->p.hw_id = 0x35C0;
    r->p.flip_packets = flips;
    fb_flash_config cfg;
    fb_flash_config_init(&cfg);
    cfg.max_resends = 3;
    flash_with(r, da, img, n, &cfg);
    if (expect_ok) {
        CHECK_EQ_INT(r->st, FB_OK);
        CHECK_EQ_INT(r->p.nacks, flips); /* the fake line really corrupted them */
        CHECK_EQ_INT(r->res.resends, flips);
        CHECK_EQ_INT(r->k.resend, flips);
        CHECK(memcmp(r->p.flash + (fb_model_find("M66")->load_address & 0x07FFFFFFu), img,
                     n) == 0);
    } else {
        CHECK_EQ_INT(r->st, FB_ERR_CHECKSUM);
        CHECK_EQ_INT(r->p.nacks, 4); /* the first try and 3 resends */
        CHECK_CONTAINS(r->err.message, "refused 4 times");
        CHECK_CONTAINS(r->err.message, "lower --baud");
        CHECK_EQ_INT(r->k.error, 1);
        CHECK_EQ_INT(r->p.reset, 0);
    }
    free(r->p.flash);
    free(r);
    free(img);
}

static void test_silent(const fb_da_file *da)
{
    size_t n = 8192;
    uint8_t *img = make_image("M66", n);
    run *r = calloc(1, sizeof *r);
    r->p.silent = 1;
    fb_flash_config cfg;
    fb_flash_config_init(&cfg);
    cfg.handshake_timeout_ns = 300 * FB_NS_PER_MS;
    int64_t t0 = fb_now_ns();
    flash_with(r, da, img, n, &cfg);
    int64_t took = fb_now_ns() - t0;
    CHECK_EQ_INT(r->st, FB_ERR_TIMEOUT);
    CHECK_CONTAINS(r->err.message, "no answer to the BootROM handshake");
    CHECK_CONTAINS(r->err.message, "power the module");
    CHECK_CONTAINS(r->err.message, "PWRKEY");
    CHECK(took < 5 * FB_NS_PER_S);
    /* A0 about every 20 ms: several in 300 ms, not a flood. */
    CHECK(r->res.tx_bytes >= 5 && r->res.tx_bytes <= 40);
    CHECK_EQ_INT(r->p.handshakes, 0);
    free(r->p.flash);
    free(r);
    free(img);
}

static void test_wrong_chip(const fb_da_file *da)
{
    size_t n = 8192;
    uint8_t *img = make_image("MC60", n);
    run *r = calloc(1, sizeof *r);
    r->p.hw_id = 0x35C0; /* an MT6261: M66/M26 */
    fb_flash_config cfg;
    fb_flash_config_init(&cfg);
    flash_with(r, da, img, n, &cfg);
    CHECK_EQ_INT(r->st, FB_ERR_MODEL);
    CHECK_CONTAINS(r->err.message, "MC60");
    CHECK_CONTAINS(r->err.message, "MT6261");
    CHECK_EQ_INT(r->p.agent_parts, 0); /* refused before anything was sent */
    CHECK_EQ_INT(r->p.erased_units, 0);
    free(r->p.flash);
    free(r);
    free(img);
}

static void test_unknown_chip(const fb_da_file *da)
{
    size_t n = 8192;
    uint8_t *img = make_image("M66", n);
    run *r = calloc(1, sizeof *r);
    r->p.hw_id = 0x6580;
    fb_flash_config cfg;
    fb_flash_config_init(&cfg);
    flash_with(r, da, img, n, &cfg);
    CHECK_EQ_INT(r->st, FB_ERR_UNSUPPORTED);
    CHECK_CONTAINS(r->err.message, "0x6580");
    free(r->p.flash);
    free(r);
    free(img);
}

static void test_cancel(const fb_da_file *da)
{
    size_t n = 100 * 1024;
    uint8_t *img = make_image("M66", n);
    run *r = calloc(1, sizeof *r);
    r->p.hw_id = 0x35C0;
    r->cb.cancel_after_write = 20 * 1024;
    fb_flash_config cfg;
    fb_flash_config_init(&cfg);
    flash_with(r, da, img, n, &cfg);
    CHECK_EQ_INT(r->st, FB_ERR_CANCELLED);
    CHECK(r->cb.write_done >= 20 * 1024 && r->cb.write_done < n);
    CHECK_EQ_INT(r->p.reset, 0);
    free(r->p.flash);
    free(r);
    free(img);
}

static void test_bad_image(const fb_da_file *da)
{
    size_t n = 8192;
    uint8_t *img = make_image("M66", n);
    img[0] = 'X';
    run *r = calloc(1, sizeof *r);
    r->p.hw_id = 0x35C0;
    fb_flash_config cfg;
    fb_flash_config_init(&cfg);
    flash_with(r, da, img, n, &cfg);
    CHECK_EQ_INT(r->st, FB_ERR_IMAGE);
    CHECK_EQ_INT(r->res.tx_bytes, 0); /* nothing on the wire */
    /* Length field differing from the file size. */
    img[0] = 'M';
    free(r->p.flash);
    memset(&r->p, 0, sizeof r->p);
    r->p.hw_id = 0x35C0;
    flash_with(r, da, img, n - 1, &cfg);
    CHECK_EQ_INT(r->st, FB_ERR_IMAGE);
    free(r->p.flash);
    free(r);
    free(img);
}

static void test_da_file(const uint8_t *file, size_t len, const char *dir)
{
    fb_error err;
    fb_da_file *da = fb_da_file_parse(file, len, &err);
    CHECK(da != NULL);
    if (!da)
        return;
    CHECK_EQ_INT(fb_da_file_count(da), 2);
    CHECK(strcmp(fb_da_file_id(da), "SYNTHETIC test agent") == 0);
    const fb_da_entry *e = fb_da_file_find(da, 0x6261);
    CHECK(e != NULL);
    CHECK_EQ_INT(e->entry_region_index, 1);
    CHECK_EQ_INT(e->region_count, 3);
    CHECK_EQ_INT(e->regions[1].start_address, 0x70007000u);
    CHECK_EQ_INT(e->regions[1].length, sizeof agent1);
    CHECK(memcmp(fb_da_file_region_data(da, &e->regions[2]), agent2, sizeof agent2) == 0);
    CHECK(fb_da_file_find(da, 0x1234) == NULL);
    fb_da_file_free(da);

    uint8_t *bad = malloc(len);
    memcpy(bad, file, len);
    bad[0] = 'X';
    CHECK(fb_da_file_parse(bad, len, &err) == NULL);
    CHECK_EQ_INT(err.code, FB_ERR_IMAGE);
    CHECK_CONTAINS(err.message, "QFlash");
    memcpy(bad, file, len);
    CHECK(fb_da_file_parse(bad, len - 100, &err) == NULL); /* region past the end */
    CHECK_CONTAINS(err.message, "past the end");
    bad[0x6C] = 0; /* entry magic */
    CHECK(fb_da_file_parse(bad, len, &err) == NULL);
    CHECK_CONTAINS(err.message, "0xDADA");
    free(bad);
    char path[512];
    snprintf(path, sizeof path, "%s/missing-da.bin", dir);
    CHECK(fb_da_file_load(path, &err) == NULL);
    CHECK_EQ_INT(err.code, FB_ERR_IO);
    CHECK_CONTAINS(err.message, "MTK_AllInOne_DA.bin");
    snprintf(path, sizeof path, "%s/da.bin", dir);
    FILE *f = fopen(path, "wb");
    fwrite(file, 1, len, f);
    fclose(f);
    da = fb_da_file_load(path, &err);
    CHECK(da != NULL);
    fb_da_file_free(da);
}

static void test_parsers(void)
{
    static const uint8_t d[5] = {0x01, 0x02, 0x03, 0x04, 0x05};
    CHECK_EQ_INT(fb_brom_xor16(d, 4), 0x0201 ^ 0x0403);
    CHECK_EQ_INT(fb_brom_xor16(d, 5), 0x0201 ^ 0x0403 ^ 0x05);
    CHECK_EQ_INT(fb_da_sum16(d, 5), 15);
    fb_da_banner bn;
    fb_error err;
    static const uint8_t ban[4] = {0xC0, 3, 2, 0x8E};
    CHECK_EQ_INT(fb_da_parse_banner(ban, 4, &bn, &err), FB_OK);
    CHECK_EQ_INT(bn.baseband, 0x8E);
    CHECK_EQ_INT(fb_da_parse_banner(d, 4, &bn, &err), FB_ERR_PROTOCOL);
    uint8_t info[40] = {0};
    info[32] = info[33] = 0x5A;
    info[39] = 0xC1;
    fb_da_info di;
    CHECK_EQ_INT(fb_da_parse_info(info, 40, &di, &err), FB_OK);
    info[3] = 1;
    CHECK_EQ_INT(fb_da_parse_info(info, 40, &di, &err), FB_ERR_PROTOCOL);
    CHECK_CONTAINS(err.message, "no NOR flash");
    CHECK(fb_chip_by_hw_id(0x35C0) && fb_chip_has_model(fb_chip_by_hw_id(0x35C0), "m66"));
    CHECK(fb_chip_has_model(fb_chip_by_hw_id(0x3600), "MC60E"));
    CHECK(!fb_chip_has_model(fb_chip_by_hw_id(0x3600), "M26"));
    CHECK(fb_chip_by_hw_id(0x7640) != NULL);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    size_t len = 0;
    uint8_t *file = make_da(&len);
    CHECK(file != NULL);
    if (!file)
        CHECK_DONE();
    test_parsers();
    test_da_file(file, len, dir);
    fb_error err;
    fb_da_file *da = fb_da_file_parse(file, len, &err);
    /* Sizes with a short last packet. */
    test_good(da, "M66", 0x35C0, 1, 921600, 300 * 1024 + 123);
    test_good(da, "MC60", 0x3600, 0, 115200, 200 * 1024 + 1);
    test_good(da, "MC60E", 0x7640, 0, 460800, 100 * 1024 + 4095);
    test_flipped(da, 2, 1);
    test_flipped(da, 1000, 0);
    test_silent(da);
    test_wrong_chip(da);
    test_unknown_chip(da);
    test_cancel(da);
    test_bad_image(da);
    fb_da_file_free(da);
    free(file);
    CHECK_DONE();
}
