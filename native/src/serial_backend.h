/* Internal: the two serial backends behind fb_serial (serial_pty.c, serial_sp.c).
 * Both give the reader thread a pollable descriptor; reads and writes are
 * non-blocking. */
#ifndef FOTABENCH_SERIAL_BACKEND_H
#define FOTABENCH_SERIAL_BACKEND_H

#include <sys/types.h>

#include "fotabench/serial.h"

typedef struct serial_dev {
    const struct serial_ops *ops;
    int fd;       /* for poll() */
    void *handle; /* struct sp_port * for libserialport */
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
    fb_status (*drain)(serial_dev *dev, fb_error *err);
} serial_ops;

extern const serial_ops fb_serial_termios_ops;
extern const serial_ops fb_serial_sp_ops;

/* Is path (after symlinks) a pseudo-terminal? */
int fb_serial_is_pty(const char *path);

#endif
