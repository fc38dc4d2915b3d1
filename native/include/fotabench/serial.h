/* fotabench C core: serial ports, the bench's wire to a module's UART.
 *
 * One fb_serial per port. A reader thread per port takes every byte the moment it
 * arrives (so nothing waits on Python), stamps it with the one clock, writes it to the
 * port's log and hands it to the consumer: by default a bounded ring that
 * fb_serial_read drains, or the AT engine (fotabench/at.h). When the ring is full the
 * oldest bytes go and the next read reports how many (FB_ERR_LOST): never silent.
 *
 * Two backends behind the same calls: libserialport for real devices (/dev/ttyUSB0,
 * /dev/serial/by-id/...), and a small termios backend for pseudo-terminals (the
 * virtual module's UARTs), which libserialport refuses (serial_pty.c says why).
 *
 * A port that disappears (USB unplugged, the virtual board exited) makes waits and
 * writes fail with FB_ERR_CLOSED naming the cause; fb_serial_reopen opens the same
 * path with the same settings when it is back. */
#ifndef FOTABENCH_SERIAL_H
#define FOTABENCH_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "fotabench/error.h"
#include "fotabench/timeline.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fb_serial fb_serial; /* opaque */

typedef enum fb_parity { FB_PARITY_NONE = 0, FB_PARITY_ODD = 1, FB_PARITY_EVEN = 2 } fb_parity;

typedef enum fb_flow {
    FB_FLOW_NONE = 0,
    FB_FLOW_RTSCTS = 1, /* hardware flow control, as on the module's UART1 */
    FB_FLOW_XONXOFF = 2
} fb_flow;

typedef enum fb_serial_backend {
    FB_SERIAL_AUTO = 0,       /* termios for pseudo-terminals, libserialport otherwise */
    FB_SERIAL_TERMIOS = 1,    /* pseudo-terminals (and any tty, for tests) */
    FB_SERIAL_LIBSERIALPORT = 2
} fb_serial_backend;

typedef struct fb_serial_config {
    int baud;            /* default 115200 */
    int data_bits;       /* 5..8, default 8 */
    fb_parity parity;    /* default none */
    int stop_bits;       /* 1 or 2, default 1 */
    fb_flow flow;        /* default none */
    size_t ring_size;    /* bytes kept for fb_serial_read; 0 = 1 MiB */
    const char *name;    /* timeline source, e.g. "uart1"; NULL = the path's last part */
    const char *log_path;      /* every byte in and out with its time; NULL = no log */
    fb_timeline *timeline;     /* optional; must outlive the port */
    fb_serial_backend backend; /* default FB_SERIAL_AUTO */
} fb_serial_config;

void fb_serial_config_init(fb_serial_config *cfg);

fb_serial *fb_serial_open(const char *path, const fb_serial_config *cfg, fb_error *err);
/* Stop the reader, close the device and the log, free. NULL is fine. Free an AT engine
 * attached to the port (fb_at_free) first. */
void fb_serial_close(fb_serial *port);
/* After a loss: open the same path with the same settings (the log continues). */
fb_status fb_serial_reopen(fb_serial *port, fb_error *err);

/* Write all n bytes, waiting for room until deadline_ns (the wait rule of
 * fotabench/clock.h: 0 = only what fits now, FB_DEADLINE_NEVER = no limit);
 * FB_ERR_TIMEOUT when some are still unsent at the deadline. */
fb_status fb_serial_write(fb_serial *port, const void *data, size_t n, int64_t deadline_ns,
                          fb_error *err);
/* As fb_serial_write, but the deadline is not an error: FB_OK with *sent < n when it
 * passed (for callers that wait in slices, e.g. to see Ctrl-C or a close()). */
fb_status fb_serial_write_some(fb_serial *port, const void *data, size_t n, int64_t deadline_ns,
                               size_t *sent, fb_error *err);

/* Take up to cap buffered bytes, waiting until some arrive or deadline_ns (0 = do not
 * wait, FB_DEADLINE_NEVER = no limit). *got 0 with FB_OK means the deadline passed.
 * FB_ERR_LOST once after bytes were dropped (then reading goes on), FB_ERR_CLOSED when
 * the port is gone and the ring is empty, FB_ERR_BUSY while a consumer (the AT
 * engine) takes the byte stream: one data path per stream. */
fb_status fb_serial_read(fb_serial *port, void *buf, size_t cap, size_t *got,
                         int64_t deadline_ns, fb_error *err);

/* The last received bytes (up to cap, at most FB_SERIAL_TAIL_MAX), for diagnostics:
 * independent of what was read. Returns the count. */
#define FB_SERIAL_TAIL_MAX 4096
size_t fb_serial_tail(fb_serial *port, void *buf, size_t cap);

/* Bytes the ring can hold (ring_size): no read returns more. */
size_t fb_serial_ring_capacity(const fb_serial *port);

/* Modem control and line state. Pseudo-terminals have no modem lines:
 * FB_ERR_UNSUPPORTED. */
fb_status fb_serial_set_dtr(fb_serial *port, int on, fb_error *err);
fb_status fb_serial_set_rts(fb_serial *port, int on, fb_error *err);
typedef struct fb_serial_signals {
    int cts, dsr, dcd, ri;
} fb_serial_signals;
fb_status fb_serial_get_signals(fb_serial *port, fb_serial_signals *out, fb_error *err);
fb_status fb_serial_send_break(fb_serial *port, int duration_ms, fb_error *err);
#define FB_SERIAL_FLUSH_INPUT 1
#define FB_SERIAL_FLUSH_OUTPUT 2
/* Discard unread input (device and ring) and/or unsent output. */
fb_status fb_serial_flush(fb_serial *port, int which, fb_error *err);
/* Wait until all output has been sent (for ever: a port held by RTS/CTS never ends it;
 * callers that must see Ctrl-C or a close() use fb_serial_drain_some). */
fb_status fb_serial_drain(fb_serial *port, fb_error *err);
/* As fb_serial_drain, but until deadline_ns at most: FB_OK with *done = 0 when it passed
 * and *waiting bytes still queued. It polls the driver's queue (TIOCOUTQ,
 * sp_output_waiting) and, once that is empty, waits for the chip's FIFO (tcdrain,
 * sp_drain: short). On a pseudo-terminal the queue is the line time of what was
 * written at the port's baud (the kernel has no line there). */
fb_status fb_serial_drain_some(fb_serial *port, int64_t deadline_ns, int *done, size_t *waiting,
                               fb_error *err);
/* Change baud/framing/flow control on the open port. */
fb_status fb_serial_configure(fb_serial *port, const fb_serial_config *cfg, fb_error *err);

typedef struct fb_serial_stats {
    uint64_t rx_bytes, tx_bytes;
    uint64_t dropped_bytes; /* ring overflow, all time */
    int64_t last_rx_ns;     /* 0 before the first byte */
    int open;               /* 0 after a loss, until reopen */
} fb_serial_stats;
void fb_serial_get_stats(fb_serial *port, fb_serial_stats *out);

const char *fb_serial_path(const fb_serial *port);
const char *fb_serial_name(const fb_serial *port);
const char *fb_serial_log_path(const fb_serial *port); /* NULL without a log */
const char *fb_serial_backend_name(const fb_serial *port); /* "termios" / "libserialport" */

/* Consumer of the byte stream instead of the ring (the AT engine). Called on the
 * reader thread with each chunk as it arrives; lost is called once when the port
 * disappears. Setting or clearing waits for a call in progress to finish, so after
 * fb_serial_set_consumer(port, NULL, NULL, NULL) returns, no call is running. While a
 * consumer is set, fb_serial_read refuses (FB_ERR_BUSY) and a waiting read ends so. */
typedef void (*fb_serial_rx_fn)(void *ctx, const uint8_t *data, size_t n, int64_t t_ns);
typedef void (*fb_serial_lost_fn)(void *ctx, const char *why);
void fb_serial_set_consumer(fb_serial *port, fb_serial_rx_fn rx, fb_serial_lost_fn lost,
                            void *ctx);

/* Ports the system knows (libserialport), with USB details when there are any. */
typedef struct fb_serial_port_info {
    char name[128];
    char description[128];
    char transport[12]; /* "usb", "native", "bluetooth" */
    int usb_vid, usb_pid, usb_bus, usb_address; /* -1 when unknown */
    char usb_manufacturer[128];
    char usb_product[128];
    char usb_serial[128];
} fb_serial_port_info;
fb_status fb_serial_list(fb_serial_port_info **out, size_t *count, fb_error *err);
void fb_serial_list_free(fb_serial_port_info *list);

#ifdef __cplusplus
}
#endif
#endif
