/* Internal: the two serial backends behind fb_serial (serial_pty.c, serial_sp.c).
 * Both give the reader thread a pollable descriptor; reads and writes are
 * non-blocking. */
#ifndef FOTABENCH_SERIAL_BACKEND_H
#define FOTABENCH_SERIAL_BACKEND_H

#include <stdint.h>
#include <sys/types.h>

#include "fotabench/serial.h"

typedef struct serial_dev {
    const struct serial_ops *ops;
    int fd;       /* for poll() */
    void *handle; /* struct sp_port * for libserialport */
    /* A pseudo-terminal has no line, and the kernel reports nothing queued on it
     * (TIOCOUTQ is 0, tcdrain returns at once): the termios backend counts each
     * write's line time at the port's baud instead, so drain waits as a UART would. */
    int line_emulated;
    int64_t byte_ns;         /* one frame (start, data, parity, stop bits) at the baud */
    int64_t line_busy_until; /* fb_now_ns() when the emulated line has sent all */
} serial_dev;

typedef struct serial_ops {
    const char *name;
    fb_status (*open)(serial_dev *dev, const char *path, const fb_serial_config *cfg,
                      fb_error *err);
    void (*close)(serial_dev *dev);
    fb_status (*configure)(serial_dev *dev, const fb_serial_config *cfg, fb_error *err);
    ssize_t (*read)(serial_dev *dev, void *buf, size_t n);        /* -1 with errno */
    ssize_t (*write)(serial_dev *dev, const void *buf, size_t n); /* -1 with errno */
    fb_status (*set_dtr)(serial_dev *dev, int on, fb_error *err);
    fb_status (*set_rts)(serial_dev *dev, int on, fb_error *err);
    fb_status (*signals)(serial_dev *dev, fb_serial_signals *out, fb_error *err);
    fb_status (*send_break)(serial_dev *dev, int ms, fb_error *err);
    fb_status (*flush)(serial_dev *dev, int which, fb_error *err);
    /* Wait for the last bytes once output_waiting says 0 (the chip's FIFO: short). */
    fb_status (*drain)(serial_dev *dev, fb_error *err);
    /* Bytes written and not yet sent (the driver's queue), without waiting. */
    fb_status (*output_waiting)(serial_dev *dev, size_t *n, fb_error *err);
} serial_ops;

extern const serial_ops fb_serial_termios_ops;
extern const serial_ops fb_serial_sp_ops;

/* Is path (after symlinks) a pseudo-terminal? */
int fb_serial_is_pty(const char *path);

#endif
