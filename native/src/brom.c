/* The host side of the MediaTek BootROM protocol on UART1 (opencpu-fota.md §10):
 * handshake, echoed commands, chip identification, sending and starting the agent.
 * Parameters are big-endian u32, each echoed; statuses are big-endian u16. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "flash_link.h"
#include "fotabench/clock.h"

/* hw_id: upper 16 bits of 0xA01C0108 (§10). The DA hw codes are our reading of how
 * QFlash's DA file names the two chips (docs/flashing.md). */
static const fb_chip chips[] = {
    {"MT6261", 0x35C0u, 0x6261u, {"M66", "M26", NULL, NULL}},
    {"MT2503", 0x3600u, 0x2503u, {"MC60", "MC60E", "MC20", NULL}},
    {"MT2503DV", 0x7640u, 0x2503u, {"MC60", "MC60E", "MC20", NULL}},
};

size_t fb_chip_count(void)
{
    return sizeof chips / sizeof chips[0];
}

const fb_chip *fb_chip_at(size_t index)
{
    return index < fb_chip_count() ? &chips[index] : NULL;
}

const fb_chip *fb_chip_by_hw_id(uint16_t hw_id)
{
    for (size_t i = 0; i < fb_chip_count(); i++)
        if (chips[i].hw_id == hw_id)
            return &chips[i];
    return NULL;
}

int fb_chip_has_model(const fb_chip *chip, const char *model)
{
    for (size_t i = 0; chip && model && i < 4 && chip->models[i]; i++)
        if (strcasecmp(chip->models[i], model) == 0)
            return 1;
    return 0;
}

uint16_t fb_brom_xor16(const uint8_t *data, size_t n)
{
    uint16_t x = 0;
    size_t i = 0;
    for (; i + 1 < n; i += 2)
        x ^= (uint16_t)(data[i] | (data[i + 1] << 8));
    if (i < n) /* an odd last byte counts as the low byte of a word */
        x ^= data[i];
    return x;
}

#define HANDSHAKE_PERIOD_NS (20 * FB_NS_PER_MS)

fb_status brom_handshake(fb_flash_link *l, int64_t deadline_ns, fb_error *err)
{
    static const uint8_t seq[4] = {0xA0, 0x0A, 0x50, 0x05};
    static const uint8_t answer[4] = {0x5F, 0xF5, 0xAF, 0xFA}; /* the complements */
    unsigned restarts = 0;
    for (;;) {
        /* A0 every ~20 ms until its complement comes back. */
        for (;;) {
            int64_t now = fb_now_ns();
            if (now >= deadline_ns)
                return fb_error_set(
                    err, FB_ERR_TIMEOUT,
                    "no answer to the BootROM handshake on %s within %.0f s: start the flash "
                    "first, then power the module with PWRKEY held low (download mode); check "
                    "that %s is the module's main UART (UART1, TXD/RXD) and nothing else has "
                    "the port open",
                    fb_serial_path(l->port),
                    (double)l->cfg->handshake_timeout_ns / FB_NS_PER_S,
                    fb_serial_path(l->port));
            fb_status st = link_write_u8(l, seq[0], err);
            if (st != FB_OK)
                return st;
            uint8_t b;
            size_t got;
            int64_t slice = deadline_ns - now < HANDSHAKE_PERIOD_NS ? deadline_ns - now
                                                                     : HANDSHAKE_PERIOD_NS;
            st = link_read_some(l, &b, 1, slice, &got, err);
            if (st != FB_OK)
                return st;
            if (got == 1 && b == answer[0])
                break;
        }
        int ok = 1;
        for (int i = 1; i < 4 && ok; i++) {
            fb_status st = link_write_u8(l, seq[i], err);
            if (st != FB_OK)
                return st;
            uint8_t b;
            do { /* late answers to earlier A0s may still be on their way */
                st = link_read(l, &b, 1, l->cfg->answer_timeout_ns, "the handshake", err);
                if (st != FB_OK)
                    return st;
            } while (i == 1 && b == 0x5F);
            ok = b == answer[i];
        }
        if (ok)
            break;
        if (++restarts > 50)
            return fb_error_set(err, FB_ERR_PROTOCOL,
                                "the BootROM handshake on %s failed %u times (wrong answers): "
                                "the line corrupts bytes or another device answers; check the "
                                "wiring and the baud rate (115200)",
                                fb_serial_path(l->port), restarts);
        link_event(l, "flash.handshake_restart", "{\"restarts\":%u}", restarts);
    }
    return FB_OK;
}

static fb_status cmd(fb_flash_link *l, uint8_t c, fb_error *err)
{
    fb_status st = link_write_u8(l, c, err);
    if (st != FB_OK)
        return st;
    uint8_t b;
    char what[48];
    snprintf(what, sizeof what, "the echo of command %02X", c);
    st = link_read(l, &b, 1, l->cfg->answer_timeout_ns, what, err);
    if (st == FB_OK && b != c)
        st = fb_error_set(err, FB_ERR_PROTOCOL,
                          "the BootROM echoed %02X to command %02X: the module is not in its "
                          "BootROM any more (power it again with PWRKEY held low)", b, c);
    return st;
}

static fb_status echo_bytes(fb_flash_link *l, const uint8_t *p, size_t n, fb_error *err)
{
    fb_status st = link_write(l, p, n, err);
    if (st != FB_OK)
        return st;
    uint8_t back[4];
    st = link_read(l, back, n, l->cfg->answer_timeout_ns, "a parameter's echo", err);
    if (st == FB_OK && memcmp(back, p, n) != 0)
        st = fb_error_set(err, FB_ERR_PROTOCOL,
                          "the BootROM echoed a parameter wrongly (%02X%02X.. for %02X%02X..): "
                          "bytes are corrupted on the line", back[0], back[1], p[0], p[1]);
    return st;
}

static fb_status echo_u32(fb_flash_link *l, uint32_t v, fb_error *err)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return echo_bytes(l, b, 4, err);
}

static fb_status echo_u16(fb_flash_link *l, uint16_t v, fb_error *err)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return echo_bytes(l, b, 2, err);
}

static fb_status read_u16(fb_flash_link *l, uint16_t *v, const char *what, fb_error *err)
{
    uint8_t b[2];
    fb_status st = link_read(l, b, 2, l->cfg->answer_timeout_ns, what, err);
    if (st == FB_OK)
        *v = (uint16_t)(b[0] << 8 | b[1]);
    return st;
}

static fb_status read_u32(fb_flash_link *l, uint32_t *v, const char *what, fb_error *err)
{
    uint8_t b[4];
    fb_status st = link_read(l, b, 4, l->cfg->answer_timeout_ns, what, err);
    if (st == FB_OK)
        *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return st;
}

/* max: the highest status that means success (reads answer 0000, writes 0001). */
static fb_status status(fb_flash_link *l, uint16_t max, const char *what, fb_error *err)
{
    uint16_t s;
    fb_status st = read_u16(l, &s, what, err);
    if (st == FB_OK && s > max)
        st = fb_error_set(err, FB_ERR_PROTOCOL, "the BootROM refused %s with status 0x%04X",
                          what, s);
    return st;
}

fb_status brom_get_version(fb_flash_link *l, uint8_t *version, fb_error *err)
{
    fb_status st = link_write_u8(l, 0xFF, err);
    if (st == FB_OK)
        st = link_read(l, version, 1, l->cfg->answer_timeout_ns, "GET_VERSION (FF)", err);
    return st;
}

fb_status brom_read32(fb_flash_link *l, uint32_t addr, uint32_t *value, fb_error *err)
{
    fb_status st = cmd(l, 0xD1, err);
    if (st == FB_OK)
        st = echo_u32(l, addr, err);
    if (st == FB_OK)
        st = echo_u32(l, 1, err);
    if (st == FB_OK)
        st = status(l, 0, "READ32", err);
    if (st == FB_OK)
        st = read_u32(l, value, "READ32's data", err);
    if (st == FB_OK)
        st = status(l, 0, "READ32", err);
    return st;
}

fb_status brom_write16(fb_flash_link *l, uint32_t addr, uint16_t value, fb_error *err)
{
    fb_status st = cmd(l, 0xD2, err);
    if (st == FB_OK)
        st = echo_u32(l, addr, err);
    if (st == FB_OK)
        st = echo_u32(l, 1, err);
    if (st == FB_OK)
        st = status(l, 3, "WRITE16", err);
    if (st == FB_OK)
        st = echo_u16(l, value, err);
    if (st == FB_OK)
        st = status(l, 3, "WRITE16", err);
    return st;
}

fb_status brom_write32(fb_flash_link *l, uint32_t addr, uint32_t value, fb_error *err)
{
    fb_status st = cmd(l, 0xD4, err);
    if (st == FB_OK)
        st = echo_u32(l, addr, err);
    if (st == FB_OK)
        st = echo_u32(l, 1, err);
    if (st == FB_OK)
        st = status(l, 3, "WRITE32", err);
    if (st == FB_OK)
        st = echo_u32(l, value, err);
    if (st == FB_OK)
        st = status(l, 3, "WRITE32", err);
    return st;
}

fb_status brom_target_config(fb_flash_link *l, uint32_t *config, fb_error *err)
{
    fb_status st = cmd(l, 0xD8, err);
    if (st == FB_OK)
        st = read_u32(l, config, "GET_TARGET_CONFIG", err);
    if (st == FB_OK)
        st = status(l, 0, "GET_TARGET_CONFIG", err);
    return st;
}

fb_status brom_me_id(fb_flash_link *l, uint8_t me_id[16], fb_error *err)
{
    uint32_t len;
    fb_status st = cmd(l, 0xE1, err);
    if (st == FB_OK)
        st = read_u32(l, &len, "GET_ME_ID", err);
    if (st == FB_OK && len != 16)
        st = fb_error_set(err, FB_ERR_PROTOCOL,
                          "the BootROM announced a %u-byte ME id, 16 expected", len);
    if (st == FB_OK)
        st = link_read(l, me_id, 16, l->cfg->answer_timeout_ns, "the ME id", err);
    if (st == FB_OK)
        st = status(l, 0, "GET_ME_ID", err);
    return st;
}

fb_status brom_send_da(fb_flash_link *l, uint32_t addr, const uint8_t *data, uint32_t len,
                       uint32_t sig_len, fb_error *err)
{
    fb_status st = cmd(l, 0xD7, err);
    if (st == FB_OK)
        st = echo_u32(l, addr, err);
    if (st == FB_OK)
        st = echo_u32(l, len, err);
    if (st == FB_OK)
        st = echo_u32(l, sig_len, err);
    if (st == FB_OK)
        st = status(l, 0, "SEND_DA", err);
    for (uint32_t off = 0; st == FB_OK && off < len; off += FB_FLASH_PACKET) {
        uint32_t n = len - off < FB_FLASH_PACKET ? len - off : FB_FLASH_PACKET;
        st = link_write(l, data + off, n, err);
        if (st == FB_OK)
            st = link_progress(l, "agent", off + n, len, err);
    }
    uint16_t sum = 0;
    if (st == FB_OK)
        st = read_u16(l, &sum, "SEND_DA's checksum", err);
    if (st == FB_OK && sum != fb_brom_xor16(data, len))
        st = fb_error_set(err, FB_ERR_CHECKSUM,
                          "the BootROM received the agent part for 0x%08X with checksum 0x%04X, "
                          "0x%04X was sent: bytes were corrupted on the line; check the cable "
                          "and try again",
                          addr, sum, fb_brom_xor16(data, len));
    if (st == FB_OK)
        st = status(l, 0, "SEND_DA", err);
    return st;
}

fb_status brom_jump_da(fb_flash_link *l, uint32_t addr, fb_error *err)
{
    fb_status st = cmd(l, 0xD5, err);
    if (st == FB_OK)
        st = echo_u32(l, addr, err);
    if (st == FB_OK)
        st = status(l, 0, "JUMP_DA", err);
    return st;
}
