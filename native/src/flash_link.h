/* Internal: the wire of a flash session, shared by brom.c, da.c and flash.c. Every
 * read and write goes through here so it is traced, counted and cancellable. */
#ifndef FOTABENCH_FLASH_LINK_H
#define FOTABENCH_FLASH_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "fotabench/flash.h"

typedef struct fb_flash_link {
    fb_serial *port;
    const fb_flash_config *cfg;
    fb_flash_result *res;
    int baud; /* the port's current rate */
    int64_t line_free_ns; /* when the bytes written so far have crossed the line */
} fb_flash_link;

/* Write all bytes (traced). */
fb_status link_write(fb_flash_link *l, const void *data, size_t n, fb_error *err);
fb_status link_write_u8(fb_flash_link *l, uint8_t v, fb_error *err);
/* Read exactly n bytes within timeout_ns; FB_ERR_TIMEOUT naming `what` and what came. */
fb_status link_read(fb_flash_link *l, uint8_t *buf, size_t n, int64_t timeout_ns,
                    const char *what, fb_error *err);
/* Read up to n bytes within timeout_ns; *got may be short (0 when nothing came). */
fb_status link_read_some(fb_flash_link *l, uint8_t *buf, size_t n, int64_t timeout_ns,
                         size_t *got, fb_error *err);
/* Read one byte and require it to be `want`. */
fb_status link_expect(fb_flash_link *l, uint8_t want, const char *what, fb_error *err);
/* Wait (cancellable), discarding nothing. */
fb_status link_pause(fb_flash_link *l, int64_t ns, fb_error *err);
fb_status link_set_baud(fb_flash_link *l, int baud, fb_error *err);
/* A timeline event from the session (data printf-style JSON object). */
void link_event(fb_flash_link *l, const char *kind, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Report progress (callback and timeline); FB_ERR_CANCELLED when the callback says so. */
fb_status link_progress(fb_flash_link *l, const char *phase, uint64_t done, uint64_t total,
                        fb_error *err);

/* BootROM steps (brom.c). */
fb_status brom_handshake(fb_flash_link *l, int64_t deadline_ns, fb_error *err);
fb_status brom_get_version(fb_flash_link *l, uint8_t *version, fb_error *err);
fb_status brom_read32(fb_flash_link *l, uint32_t addr, uint32_t *value, fb_error *err);
fb_status brom_write16(fb_flash_link *l, uint32_t addr, uint16_t value, fb_error *err);
fb_status brom_write32(fb_flash_link *l, uint32_t addr, uint32_t value, fb_error *err);
fb_status brom_target_config(fb_flash_link *l, uint32_t *config, fb_error *err);
fb_status brom_me_id(fb_flash_link *l, uint8_t me_id[16], fb_error *err);
fb_status brom_send_da(fb_flash_link *l, uint32_t addr, const uint8_t *data, uint32_t len,
                       uint32_t sig_len, fb_error *err);
fb_status brom_jump_da(fb_flash_link *l, uint32_t addr, fb_error *err);

/* Download agent steps (da.c). */
fb_status da_start(fb_flash_link *l, fb_error *err);
fb_status da_set_speed(fb_flash_link *l, int baud, fb_error *err);
fb_status da_erase(fb_flash_link *l, uint32_t start, uint32_t length, uint16_t type,
                   fb_error *err);
fb_status da_write(fb_flash_link *l, const uint8_t *data, uint32_t length, fb_error *err);
fb_status da_verify(fb_flash_link *l, uint32_t start, const uint8_t *data, uint32_t length,
                    fb_error *err);
fb_status da_finish(fb_flash_link *l, int reset, fb_error *err);

#endif
