/* The host side of the download agent's protocol (opencpu-fota.md §10, as implemented:
 * docs/flashing.md). ACK 5A, NACK A5; multi-byte values big-endian. */
#include <stdio.h>
#include <string.h>

#include "flash_link.h"
#include "fotabench/clock.h"

#define ACK 0x5A
#define NACK 0xA5
#define CONT 0x69 /* "good packet" / "not my flash" */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint16_t fb_da_sum16(const uint8_t *data, size_t n)
{
    uint16_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint16_t)(s + data[i]);
    return s;
}

fb_status fb_da_parse_banner(const uint8_t *b, size_t n, fb_da_banner *out, fb_error *err)
{
    if (n < FB_DA_BANNER_SIZE || b[0] != 0xC0)
        return fb_error_set(err, FB_ERR_PROTOCOL,
                            "the download agent did not start (no C0 banner after the jump): "
                            "the agent in the DA file does not run on this chip; use the DA "
                            "file of the QFlash version made for this module");
    out->major = b[1];
    out->minor = b[2];
    out->baseband = b[3];
    return FB_OK;
}

fb_status fb_da_parse_info(const uint8_t *b, size_t n, fb_da_info *out, fb_error *err)
{
    if (n < FB_DA_INFO_SIZE)
        return fb_error_set(err, FB_ERR_PROTOCOL, "the agent's flash report is %zu bytes, %u "
                            "expected", n, FB_DA_INFO_SIZE);
    memset(out, 0, sizeof *out);
    out->nor_ret = be32(b);
    out->nor_id = be32(b + 4);
    out->nor_base = be32(b + 8);
    out->nor_size = be32(b + 12);
    out->nand_ret = be32(b + 16);
    out->emmc_ret = be32(b + 20);
    out->ram_ret = be32(b + 24);
    out->ram_size = be32(b + 28);
    out->status = be32(b + 34);
    out->boot_style = b[38];
    if (b[32] != ACK || b[33] != ACK || b[39] != 0xC1)
        return fb_error_set(err, FB_ERR_PROTOCOL,
                            "the agent's flash report is malformed (markers %02X %02X .. %02X, "
                            "expected 5A 5A .. C1): the agent speaks another protocol version",
                            b[32], b[33], b[39]);
    if (out->nor_ret != 0)
        return fb_error_set(err, FB_ERR_PROTOCOL,
                            "the agent found no NOR flash (code 0x%08X): the module's flash is "
                            "not supported by this agent", out->nor_ret);
    if (out->status != 0)
        return fb_error_set(err, FB_ERR_PROTOCOL, "the agent reported status 0x%08X after "
                            "detecting the flash", out->status);
    return FB_OK;
}

/* The 36-byte flash descriptors the host offers. The real FlashTool sends records from
 * its flash database, whose fields are not published: these are fotabench's stand-ins
 * (u16 type 1 = serial NOR, u16 0, u32 JEDEC id, u32 size, zero-filled), a reading
 * that a real DA may refuse (docs/flashing.md). */
static const struct { uint32_t jedec, size; } descriptors[] = {
    {0xC22536u, 4u << 20}, /* Macronix MX25U3235 */
    {0xEF6016u, 4u << 20}, /* Winbond W25Q32FW */
    {0xC86016u, 4u << 20}, /* GigaDevice GD25LQ32 */
    {0xC86017u, 8u << 20}, /* GigaDevice GD25LQ64 */
};

static fb_status expect_ack(fb_flash_link *l, const char *what, fb_error *err)
{
    return link_expect(l, ACK, what, err);
}

fb_status da_start(fb_flash_link *l, fb_error *err)
{
    uint8_t b[FB_DA_INFO_SIZE];
    fb_status st = link_read(l, b, FB_DA_BANNER_SIZE, l->cfg->answer_timeout_ns,
                             "the agent's banner (C0 ..) after the jump", err);
    if (st == FB_OK)
        st = fb_da_parse_banner(b, FB_DA_BANNER_SIZE, &l->res->da, err);
    if (st != FB_OK)
        return st;
    link_event(l, "flash.agent", "{\"version\":\"%u.%u\",\"baseband\":%u}", l->res->da.major,
               l->res->da.minor, l->res->da.baseband);
    static const uint8_t setup[15] = {0x5A, 0x05, 0xFE, 0x00, 0x08, 0x00, 0x70, 0x07,
                                      0xFF, 0xFF, 0x02, 0x00, 0x00, 0x01, 0x03};
    st = link_write(l, setup, sizeof setup, err);
    if (st == FB_OK)
        st = expect_ack(l, "the agent's setup", err);
    int matched = 0;
    for (size_t i = 0; st == FB_OK && !matched && i < sizeof descriptors / sizeof descriptors[0];
         i++) {
        uint8_t d[36] = {0, 1};
        put_be32(d + 4, descriptors[i].jedec);
        put_be32(d + 8, descriptors[i].size);
        st = link_write(l, d, sizeof d, err);
        uint8_t a = 0;
        if (st == FB_OK)
            st = link_read(l, &a, 1, l->cfg->answer_timeout_ns, "a flash descriptor's answer",
                           err);
        if (st == FB_OK && a == ACK) {
            matched = 1;
            st = link_expect(l, NACK, "the end of the descriptor exchange", err);
        } else if (st == FB_OK && a != CONT) {
            st = fb_error_set(err, FB_ERR_PROTOCOL,
                              "the agent answered %02X to a flash descriptor (69 or 5A "
                              "expected)", a);
        }
    }
    if (st == FB_OK) {
        static const uint8_t end[4] = {0, 0, 0, 0};
        st = link_write(l, end, 4, err);
    }
    if (st == FB_OK)
        st = link_read(l, b, FB_DA_INFO_SIZE, l->cfg->answer_timeout_ns,
                       "the agent's flash report", err);
    if (st == FB_OK && !matched)
        return fb_error_set(err, FB_ERR_UNSUPPORTED,
                            "the agent recognised none of fotabench's flash descriptors: they "
                            "are stand-ins for MediaTek's flash database (docs/flashing.md); "
                            "this module's flash needs its real record");
    if (st == FB_OK)
        st = fb_da_parse_info(b, FB_DA_INFO_SIZE, &l->res->info, err);
    if (st == FB_OK)
        link_event(l, "flash.flash_info",
                   "{\"nor_id\":\"0x%06X\",\"nor_size\":%u,\"ram_size\":%u,\"boot_style\":%u}",
                   l->res->info.nor_id, l->res->info.nor_size, l->res->info.ram_size,
                   l->res->info.boot_style);
    return st;
}

static int speed_index(int baud)
{
    switch (baud) {
    case 921600: return 1;
    case 460800: return 2;
    case 230400: return 3;
    case 115200: return 4;
    }
    return 0;
}

fb_status da_set_speed(fb_flash_link *l, int baud, fb_error *err)
{
    int idx = speed_index(baud);
    if (!idx)
        return fb_error_set(err, FB_ERR_ARG, "baud %d: the agent knows 921600, 460800, 230400 "
                            "and 115200", baud);
    if (baud == l->baud)
        return FB_OK;
    uint8_t req[3] = {0xD2, (uint8_t)idx, 0x01};
    fb_status st = link_write(l, req, 3, err);
    if (st == FB_OK)
        st = expect_ack(l, "the speed switch", err);
    if (st == FB_OK)
        st = link_write_u8(l, ACK, err);
    if (st == FB_OK)
        st = link_set_baud(l, baud, err);
    if (st == FB_OK)
        st = link_pause(l, 200 * FB_NS_PER_MS, err);
    if (st == FB_OK)
        st = fb_serial_flush(l->port, FB_SERIAL_FLUSH_INPUT, err);
    /* Sync: C0 until it comes back, 5A -> 5A, then every byte value echoed. */
    int synced = 0;
    for (int i = 0; st == FB_OK && !synced && i < 20; i++) {
        uint8_t b;
        size_t got;
        st = link_write_u8(l, 0xC0, err);
        if (st == FB_OK)
            st = link_read_some(l, &b, 1, 100 * FB_NS_PER_MS, &got, err);
        synced = st == FB_OK && got == 1 && b == 0xC0;
    }
    const char *bad = NULL;
    if (st == FB_OK && !synced)
        bad = "C0 never came back";
    if (st == FB_OK && !bad) {
        st = link_write_u8(l, ACK, err);
        uint8_t b = 0;
        if (st == FB_OK)
            st = link_read(l, &b, 1, l->cfg->answer_timeout_ns, "the speed sync", err);
        if (st == FB_OK && b != ACK)
            bad = "5A was not answered with 5A";
    }
    for (int v = 0; st == FB_OK && !bad && v < 256; v++) {
        uint8_t b = 0;
        st = link_write_u8(l, (uint8_t)v, err);
        if (st == FB_OK)
            st = link_read(l, &b, 1, l->cfg->answer_timeout_ns, "the speed check", err);
        if (st == FB_OK && b != v)
            bad = "a byte of the 00..FF check came back changed";
    }
    if (st == FB_OK && bad)
        st = fb_error_set(err, FB_ERR_PROTOCOL,
                          "the line is not clean at %d baud after the speed switch (%s): use a "
                          "lower --baud (460800, 230400 or 115200) or a better USB-UART adapter",
                          baud, bad);
    if (st == FB_OK)
        link_event(l, "flash.speed", "{\"baud\":%d}", baud);
    return st;
}

fb_status da_erase(fb_flash_link *l, uint32_t start, uint32_t length, uint16_t type,
                   fb_error *err)
{
    uint8_t req[13] = {0xD3, NACK, 1};
    put_be32(req + 3, start);
    put_be32(req + 7, start + length - 1);
    req[11] = (uint8_t)(type >> 8);
    req[12] = (uint8_t)type;
    fb_status st = link_write(l, req, sizeof req, err);
    if (st == FB_OK)
        st = expect_ack(l, "the erase request", err);
    uint8_t b[4];
    if (st == FB_OK)
        st = link_read(l, b, 2, l->cfg->answer_timeout_ns, "the erase's file count", err);
    if (st == FB_OK && (b[0] != 1 || b[1] != ACK))
        st = fb_error_set(err, FB_ERR_PROTOCOL, "the agent answered %02X %02X to an erase of "
                          "one file (01 5A expected)", b[0], b[1]);
    if (st == FB_OK)
        st = link_read(l, b, 4, l->cfg->answer_timeout_ns, "the erase's unit count", err);
    if (st != FB_OK)
        return st;
    uint32_t units = be32(b);
    if (units == 0 || units > 0x10000)
        return fb_error_set(err, FB_ERR_PROTOCOL, "the agent announced %u erase units for "
                            "%u bytes", units, length);
    l->res->erase_units = units;
    /* Every unit's acknowledgement must be read, or the session loses sync (the known
     * "large image not flashed" bug of a tool that stops early). */
    for (uint32_t i = 0; st == FB_OK && i < units; i++) {
        st = expect_ack(l, "an erase unit's acknowledgement", err);
        if (st == FB_OK)
            st = link_progress(l, "erase", i + 1, units, err);
    }
    if (st == FB_OK)
        st = expect_ack(l, "the end of the erase", err);
    return st;
}

fb_status da_write(fb_flash_link *l, const uint8_t *data, uint32_t length, fb_error *err)
{
    uint8_t req[6] = {0xD5};
    fb_status st = link_write(l, req, 1, err);
    if (st == FB_OK)
        st = expect_ack(l, "the write request", err);
    req[0] = 0; /* mode */
    put_be32(req + 1, FB_FLASH_PACKET);
    if (st == FB_OK)
        st = link_write(l, req, 5, err);
    if (st == FB_OK)
        st = expect_ack(l, "the packet size", err);
    if (st == FB_OK)
        st = expect_ack(l, "the packet size", err);
    uint64_t tx0 = l->res->tx_bytes + l->res->rx_bytes;
    uint16_t file_sum = 0;
    uint8_t pkt[1 + FB_FLASH_PACKET + 2];
    for (uint32_t off = 0; st == FB_OK && off < length; off += FB_FLASH_PACKET) {
        uint32_t n = length - off < FB_FLASH_PACKET ? length - off : FB_FLASH_PACKET;
        uint16_t sum = fb_da_sum16(data + off, n);
        pkt[0] = ACK;
        memcpy(pkt + 1, data + off, n);
        pkt[1 + n] = (uint8_t)(sum >> 8);
        pkt[2 + n] = (uint8_t)sum;
        for (int tries = 0;; tries++) {
            uint8_t a = 0;
            st = link_write(l, pkt, n + 3, err);
            if (st == FB_OK)
                st = link_read(l, &a, 1, l->cfg->answer_timeout_ns, "a packet's answer", err);
            if (st != FB_OK || a == CONT)
                break;
            if (a != NACK) {
                st = fb_error_set(err, FB_ERR_PROTOCOL, "the agent answered %02X to packet %u "
                                  "(69 or A5 expected): the session lost sync", a,
                                  off / FB_FLASH_PACKET);
                break;
            }
            l->res->resends++;
            link_event(l, "flash.resend", "{\"packet\":%u,\"offset\":%u,\"try\":%d}",
                       off / FB_FLASH_PACKET, off, tries + 1);
            if (tries + 1 > l->cfg->max_resends) {
                st = fb_error_set(err, FB_ERR_CHECKSUM,
                                  "packet %u (offset 0x%X) was refused %d times for a bad "
                                  "checksum: the line corrupts bytes at %d baud; use a lower "
                                  "--baud or a shorter cable, then flash again",
                                  off / FB_FLASH_PACKET, off, tries + 1, l->baud);
                break;
            }
        }
        if (st == FB_OK) {
            file_sum = (uint16_t)(file_sum + sum);
            l->res->packets++;
            st = link_progress(l, "write", off + n, length, err);
        }
    }
    for (int i = 0; st == FB_OK && i < 3; i++)
        st = expect_ack(l, "the end of the data", err);
    l->res->data_tx_bytes = l->res->tx_bytes + l->res->rx_bytes - tx0;
    if (st == FB_OK) {
        uint8_t s[2] = {(uint8_t)(file_sum >> 8), (uint8_t)file_sum};
        st = link_write(l, s, 2, err);
    }
    uint8_t a = 0;
    if (st == FB_OK)
        st = link_read(l, &a, 1, l->cfg->answer_timeout_ns, "the file checksum's answer", err);
    if (st == FB_OK && a != ACK)
        st = fb_error_set(err, FB_ERR_CHECKSUM,
                          "the agent refused the file checksum 0x%04X (answer %02X): what it "
                          "wrote differs from the image; flash again", file_sum, a);
    l->res->checksum = file_sum;
    return st;
}

fb_status da_verify(fb_flash_link *l, uint32_t start, const uint8_t *data, uint32_t length,
                    fb_error *err)
{
    uint8_t req[14] = {0xD6, 0};
    put_be32(req + 2, start);
    put_be32(req + 6, length);
    put_be32(req + 10, FB_FLASH_PACKET);
    fb_status st = link_write(l, req, sizeof req, err);
    if (st == FB_OK)
        st = expect_ack(l, "the read-back request", err);
    uint8_t pkt[FB_FLASH_PACKET + 2];
    for (uint32_t off = 0; st == FB_OK && off < length;) {
        uint32_t n = length - off < FB_FLASH_PACKET ? length - off : FB_FLASH_PACKET;
        st = link_read(l, pkt, n + 2, l->cfg->answer_timeout_ns, "a read-back packet", err);
        if (st != FB_OK)
            break;
        uint16_t sum = (uint16_t)(pkt[n] << 8 | pkt[n + 1]);
        if (sum != fb_da_sum16(pkt, n))
            /* Corrupted on the way back: the flash itself may be right, but a verify
             * that cannot read it cleanly has not verified it. */
            st = fb_error_set(err, FB_ERR_CHECKSUM, "read-back packet at offset 0x%X arrived "
                              "with a bad sum: the line corrupts bytes; flash again with a "
                              "lower --baud", off);
        else if (memcmp(pkt, data + off, n) != 0) {
            uint32_t i = 0;
            while (pkt[i] == data[off + i])
                i++;
            st = fb_error_set(err, FB_ERR_CHECKSUM,
                              "verify failed: flash at 0x%08X reads %02X, the image has %02X "
                              "(offset 0x%X): the flash is worn or was not erased; flash again",
                              start + off + i, pkt[i], data[off + i], off + i);
        }
        if (st == FB_OK)
            st = link_write_u8(l, ACK, err);
        if (st == FB_OK) {
            off += n;
            st = link_progress(l, "verify", off, length, err);
        }
    }
    return st;
}

fb_status da_finish(fb_flash_link *l, int reset, fb_error *err)
{
    if (!reset) {
        fb_status st = link_write_u8(l, 0xD9, err);
        return st == FB_OK ? expect_ack(l, "the finish", err) : st;
    }
    static const uint8_t b9[1] = {0xB9}, c9[2] = {0xC9, 0x00},
                         db[7] = {0xDB, 0x01, 0x40, 0, 0, 0, 0};
    fb_status st = link_write(l, b9, 1, err);
    if (st == FB_OK)
        st = expect_ack(l, "B9", err);
    if (st == FB_OK)
        st = link_write(l, c9, 2, err);
    if (st == FB_OK)
        st = expect_ack(l, "C9", err);
    if (st == FB_OK)
        st = link_write(l, db, 7, err);
    if (st == FB_OK)
        st = expect_ack(l, "the reset request", err);
    return st;
}
