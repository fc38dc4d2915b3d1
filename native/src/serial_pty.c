/* Serial backend for pseudo-terminals: plain termios.
 *
 * Why not libserialport here: it only opens what the kernel lists as a serial device.
 * sp_get_port_by_name() looks the port up under /sys/class/tty/<name>, and a
 * pseudo-terminal slave (/dev/pts/N) has no entry there (the brief measured
 * "Device not found" / SP_ERR_ARG), by design: a pty has no UART, baud rate or modem
 * lines. The virtual module's UARTs are ptys, so they get this small backend behind
 * the same interface; the termios calls below are the same ones libserialport makes
 * on Linux for a real port. */
#define _DEFAULT_SOURCE /* cfmakeraw, cfsetspeed, TIOCM_*, CRTSCTS */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "fotabench/clock.h"
#include "serial_backend.h"

/* Unix98 pty slaves: majors 136..143 (Documentation/admin-guide/devices.txt). */
int fb_serial_is_pty(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISCHR(st.st_mode))
        return 0;
    unsigned maj = (unsigned)(st.st_rdev >> 8) & 0xfff;
    return maj >= 136 && maj <= 143;
}

static speed_t baud_const(int baud)
{
    switch (baud) {
    case 1200: return B1200;
    case 2400: return B2400;
    case 4800: return B4800;
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    case 460800: return B460800;
    case 921600: return B921600;
    default: return 0;
    }
}

static fb_status termios_configure(serial_dev *dev, const fb_serial_config *cfg, fb_error *err)
{
    struct termios t;
    if (tcgetattr(dev->fd, &t) != 0)
        return fb_error_set(err, FB_ERR_IO, "cannot read the port's settings: %s",
                            strerror(errno));
    speed_t sp = baud_const(cfg->baud);
    if (!sp)
        return fb_error_set(err, FB_ERR_ARG,
                            "baud %d is not a standard rate of this backend: use 1200..921600",
                            cfg->baud);
    /* The emulated line's frame: start + data + parity + stop bits. */
    dev->byte_ns = (int64_t)(1 + cfg->data_bits + (cfg->parity != FB_PARITY_NONE) +
                             cfg->stop_bits) * 1000000000LL / cfg->baud;
    cfmakeraw(&t);
    cfsetispeed(&t, sp);
    cfsetospeed(&t, sp);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
    t.c_cflag |= CLOCAL | CREAD;
    switch (cfg->data_bits) {
    case 5: t.c_cflag |= CS5; break;
    case 6: t.c_cflag |= CS6; break;
    case 7: t.c_cflag |= CS7; break;
    default: t.c_cflag |= CS8; break;
    }
    if (cfg->parity != FB_PARITY_NONE)
        t.c_cflag |= PARENB | (cfg->parity == FB_PARITY_ODD ? PARODD : 0);
    if (cfg->stop_bits == 2)
        t.c_cflag |= CSTOPB;
    t.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY);
    if (cfg->flow == FB_FLOW_RTSCTS)
        t.c_cflag |= CRTSCTS;
    else if (cfg->flow == FB_FLOW_XONXOFF)
        t.c_iflag |= IXON | IXOFF;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(dev->fd, TCSANOW, &t) != 0)
        return fb_error_set(err, FB_ERR_IO, "cannot apply the port's settings: %s",
                            strerror(errno));
    return FB_OK;
}

static fb_status termios_open(serial_dev *dev, const char *path, const fb_serial_config *cfg,
                              fb_error *err)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return fb_error_set(err, e == ENOENT ? FB_ERR_CLOSED : FB_ERR_IO,
                            "cannot open %s: %s%s", path, strerror(e),
                            e == ENOENT ? " (is the module's board running?)"
                            : e == EACCES ? " (add yourself to the dialout group)"
                                          : "");
    }
    if (!isatty(fd)) {
        close(fd);
        return fb_error_set(err, FB_ERR_ARG, "%s is not a terminal device", path);
    }
    dev->fd = fd;
    dev->handle = NULL;
    dev->line_emulated = fb_serial_is_pty(path);
    dev->line_busy_until = 0;
    fb_status st = termios_configure(dev, cfg, err);
    if (st != FB_OK) {
        close(fd);
        dev->fd = -1;
    }
    return st;
}

static void termios_close(serial_dev *dev)
{
    if (dev->fd >= 0)
        close(dev->fd);
    dev->fd = -1;
}

static ssize_t termios_read(serial_dev *dev, void *buf, size_t n)
{
    return read(dev->fd, buf, n);
}

static ssize_t termios_write(serial_dev *dev, const void *buf, size_t n)
{
    ssize_t w = write(dev->fd, buf, n);
    if (w > 0 && dev->line_emulated) {
        int64_t now = fb_now_ns();
        int64_t start = dev->line_busy_until > now ? dev->line_busy_until : now;
        dev->line_busy_until = start + (int64_t)w * dev->byte_ns;
    }
    return w;
}

static fb_status modem_bit(serial_dev *dev, int bit, int on, const char *what, fb_error *err)
{
    if (ioctl(dev->fd, on ? TIOCMBIS : TIOCMBIC, &bit) != 0) {
        int e = errno;
        if (e == ENOTTY || e == EINVAL)
            return fb_error_set(err, FB_ERR_UNSUPPORTED,
                                "%s: this port has no modem control lines (a pseudo-terminal?)",
                                what);
        return fb_error_set(err, FB_ERR_IO, "setting %s failed: %s", what, strerror(e));
    }
    return FB_OK;
}

static fb_status termios_set_dtr(serial_dev *dev, int on, fb_error *err)
{
    return modem_bit(dev, TIOCM_DTR, on, "DTR", err);
}

static fb_status termios_set_rts(serial_dev *dev, int on, fb_error *err)
{
    return modem_bit(dev, TIOCM_RTS, on, "RTS", err);
}

static fb_status termios_signals(serial_dev *dev, fb_serial_signals *out, fb_error *err)
{
    int bits = 0;
    if (ioctl(dev->fd, TIOCMGET, &bits) != 0) {
        int e = errno;
        if (e == ENOTTY || e == EINVAL)
            return fb_error_set(err, FB_ERR_UNSUPPORTED,
                                "this port has no modem status lines (a pseudo-terminal?)");
        return fb_error_set(err, FB_ERR_IO, "reading modem lines failed: %s", strerror(e));
    }
    out->cts = !!(bits & TIOCM_CTS);
    out->dsr = !!(bits & TIOCM_DSR);
    out->dcd = !!(bits & TIOCM_CAR);
    out->ri = !!(bits & TIOCM_RNG);
    return FB_OK;
}

static fb_status termios_break(serial_dev *dev, int ms, fb_error *err)
{
    /* tcsendbreak's duration is implementation-defined; set and clear the break
     * condition ourselves for the time asked. */
    if (ioctl(dev->fd, TIOCSBRK) != 0)
        return fb_error_set(err, FB_ERR_IO, "starting a break failed: %s", strerror(errno));
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    if (ioctl(dev->fd, TIOCCBRK) != 0)
        return fb_error_set(err, FB_ERR_IO, "ending a break failed: %s", strerror(errno));
    return FB_OK;
}

static fb_status termios_flush(serial_dev *dev, int which, fb_error *err)
{
    int q = which == (FB_SERIAL_FLUSH_INPUT | FB_SERIAL_FLUSH_OUTPUT) ? TCIOFLUSH
            : which == FB_SERIAL_FLUSH_OUTPUT                          ? TCOFLUSH
                                                                       : TCIFLUSH;
    if (tcflush(dev->fd, q) != 0)
        return fb_error_set(err, FB_ERR_IO, "flushing the port failed: %s", strerror(errno));
    if (which & FB_SERIAL_FLUSH_OUTPUT)
        dev->line_busy_until = 0; /* unsent output discarded */
    return FB_OK;
}

static fb_status termios_drain(serial_dev *dev, fb_error *err)
{
    if (tcdrain(dev->fd) != 0)
        return fb_error_set(err, FB_ERR_IO, "waiting for output to drain failed: %s",
                            strerror(errno));
    return FB_OK;
}

static fb_status termios_output_waiting(serial_dev *dev, size_t *n, fb_error *err)
{
    if (dev->line_emulated) {
        int64_t left = dev->line_busy_until - fb_now_ns();
        *n = left > 0 ? (size_t)((left + dev->byte_ns - 1) / dev->byte_ns) : 0;
        return FB_OK;
    }
    int q = 0;
    if (ioctl(dev->fd, TIOCOUTQ, &q) != 0)
        return fb_error_set(err, FB_ERR_IO, "reading the port's output queue failed: %s",
                            strerror(errno));
    *n = q > 0 ? (size_t)q : 0;
    return FB_OK;
}

const serial_ops fb_serial_termios_ops = {
    "termios",        termios_open,    termios_close,   termios_configure,
    termios_read,     termios_write,   termios_set_dtr, termios_set_rts,
    termios_signals,  termios_break,   termios_flush,   termios_drain,
    termios_output_waiting,
};
