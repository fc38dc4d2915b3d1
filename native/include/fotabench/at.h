/* fotabench C core: the AT engine on a serial port.
 *
 * Attached to an fb_serial, it takes the port's byte stream on the reader thread,
 * splits lines and sorts each one: the echo of the pending command (ATE1) is dropped,
 * the command's own lines are collected until its final result (OK, ERROR,
 * +CME ERROR: n, +CMS ERROR: n, NO CARRIER, BUSY, NO ANSWER, NO DIALTONE, or a custom
 * terminator), and everything else is unsolicited: lines with a known URC prefix
 * (+FBSTATE:, +FBREADY:, RDY, ...) go to the URC callback, and every unsolicited line
 * goes to a bounded queue for expect() and onto the timeline. A URC that arrives in
 * the middle of a command is never mixed into its response: a line with a URC prefix
 * belongs to the command only when the prefix is the command's own (+CREG: for
 * AT+CREG?).
 *
 * Waits take a slice deadline so the caller can check for Ctrl-C between slices, an
 * absolute deadline and an inactivity limit (no byte for N ns: an upgrade may take
 * minutes while the module keeps talking). Every deadline follows the one wait rule
 * of fotabench/clock.h (0 polls, FB_DEADLINE_NEVER waits for ever). */
#ifndef FOTABENCH_AT_H
#define FOTABENCH_AT_H

#include <stddef.h>
#include <stdint.h>

#include "fotabench/error.h"
#include "fotabench/serial.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fb_at fb_at; /* opaque */

typedef enum fb_at_result {
    FB_AT_OK = 0,
    FB_AT_ERROR = 1,     /* plain ERROR */
    FB_AT_CME_ERROR = 2, /* +CME ERROR: <code> */
    FB_AT_CMS_ERROR = 3, /* +CMS ERROR: <code> */
    FB_AT_CUSTOM = 4,    /* the caller's terminator */
    FB_AT_OTHER = 5      /* NO CARRIER, BUSY, NO ANSWER, NO DIALTONE */
} fb_at_result;

/* Stable name of a result: "OK", "ERROR", "CME_ERROR", "CMS_ERROR", "CUSTOM", "OTHER". */
const char *fb_at_result_name(fb_at_result result);

typedef struct fb_at_response {
    fb_at_result result;
    long error_code;  /* of +CME/+CMS ERROR (-1 when not a number, e.g. text mode) */
    char *final;      /* the final line */
    size_t final_len;
    char **lines;     /* the command's own lines, in order (no echo, no URCs) */
    size_t *lens;
    size_t count;
    int echoed;       /* the module echoed the command (ATE1) */
    int64_t t_sent, t_done;
} fb_at_response;

void fb_at_response_free(fb_at_response *r);

/* Classify one line as a final result: returns 1 and fills *result / *code, else 0.
 * terminator (optional) is a prefix that also ends the command. */
int fb_at_final(const char *line, size_t n, const char *terminator, fb_at_result *result,
                long *code);

#define FB_AT_QUEUE_DEFAULT 4096 /* unsolicited lines kept for fb_at_next_line */
#define FB_AT_LINE_MAX_DEFAULT 4096

/* Attach to port (it takes the byte stream from the port's ring from now on). port
 * may be NULL for a detached engine fed by fb_at_feed (tests, fuzzing). */
fb_at *fb_at_new(fb_serial *port, fb_timeline *timeline, const char *source, size_t line_max,
                 size_t queue_max, fb_error *err);
/* Detach and free. Waits for a callback in progress; call it without locks the
 * callback might take (the Python binding releases the GIL first). */
void fb_at_free(fb_at *at);

/* Add a URC prefix to the defaults (+FBSTATE:, +FBREADY:, +FBUPG:, RDY, +CFUN:,
 * +CPIN:, Call Ready, SMS Ready, +CREG:, +CGREG:, NORMAL POWER DOWN, UNDER-VOLTAGE). */
fb_status fb_at_add_urc(fb_at *at, const char *prefix, fb_error *err);

/* Called for every URC line (with a known prefix), in order, on the engine's callback
 * thread (fotabench/dispatch.h): never on the port's reader, so a slow callback
 * cannot stall reading. Setting or clearing waits for a call in progress. */
typedef void (*fb_at_urc_fn)(void *ctx, const char *line, size_t n, int64_t t_ns);
fb_status fb_at_set_urc_callback(fb_at *at, fb_at_urc_fn fn, void *ctx, fb_error *err);
/* URCs not called back because the callback queue (65536) was full. */
uint64_t fb_at_urc_dropped(fb_at *at);
/* Wait until every URC so far has been called back, or deadline (the wait rule of
 * fotabench/clock.h); 1 when done. */
int fb_at_flush_callbacks(fb_at *at, int64_t deadline);

/* Send cmd + CR and start collecting its response. cmd must not contain CR or LF.
 * One command at a time: FB_ERR_ARG while another is pending. */
fb_status fb_at_start(fb_at *at, const char *cmd, const char *terminator, fb_error *err);

/* Wait for the pending command's final result until slice_deadline (then *done 0,
 * FB_OK). deadline and inactivity_ns (no byte for that long; both by the wait rule of
 * fotabench/clock.h: FB_DEADLINE_NEVER = no limit, 0 = already over) end it with
 * FB_ERR_TIMEOUT, whose message shows what arrived and the last bytes. On FB_OK with
 * *done 1, out is filled (free with fb_at_response_free). A final result that is an
 * error (ERROR, +CME ERROR) is still FB_OK: out->result tells. */
fb_status fb_at_wait(fb_at *at, int64_t slice_deadline, int64_t deadline, int64_t inactivity_ns,
                     fb_at_response *out, int *done, fb_error *err);

/* Forget the pending command (Ctrl-C): its late lines become unsolicited. */
void fb_at_cancel(fb_at *at);

/* Take the next unsolicited line, waiting until deadline (0 = do not wait,
 * FB_DEADLINE_NEVER = no limit). *line is
 * NULL at the deadline; else malloc'd (free it). FB_ERR_LOST once after lines were
 * dropped from a full queue, FB_ERR_CLOSED when the port is gone and the queue empty. */
fb_status fb_at_next_line(fb_at *at, int64_t deadline, char **line, size_t *n, int64_t *t_ns,
                          int *is_urc, fb_error *err);

/* The line being received, not yet ended (e.g. a "> " prompt). Returns its length
 * (copied up to cap). */
size_t fb_at_partial(fb_at *at, char *buf, size_t cap);

/* Wait until the partial line or a new unsolicited line exists, or deadline: for
 * expect() loops. Returns 1 when something changed since `since_rx` bytes. */
uint64_t fb_at_rx_count(fb_at *at);
void fb_at_wait_rx(fb_at *at, uint64_t since_rx, int64_t deadline);

/* The byte stream, as the port's reader delivers it (exposed for detached engines). */
void fb_at_feed(fb_at *at, const uint8_t *data, size_t n, int64_t t_ns);

#ifdef __cplusplus
}
#endif
#endif
