/* Serial backend for real devices through libserialport (USB-UART adapters, on-board
 * UARTs), and the port listing with USB details. */
#include <errno.h>
#include <libserialport.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serial_backend.h"

/* libserialport's own sentence for its last error, freed here. */
static fb_status sp_fail(fb_error *err, enum sp_return r, const char *what, const char *path)
{
    if (r == SP_ERR_MEM)
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory in libserialport (%s)", what);
    char *msg = sp_last_error_message();
    fb_status st = fb_error_set(err, r == SP_ERR_ARG ? FB_ERR_ARG : r == SP_ERR_SUPP
                                                                      ? FB_ERR_UNSUPPORTED
                                                                      : FB_ERR_IO,
                                "%s%s%s failed: %s", what, path ? " " : "", path ? path : "",
                                r == SP_ERR_FAIL && msg ? msg
                                : r == SP_ERR_ARG       ? "invalid argument or no such port"
                                                        : "not supported by this port");
    sp_free_error_message(msg);
    return st;
}

static fb_status sp_configure(serial_dev *dev, const fb_serial_config *cfg, fb_error *err)
{
    struct sp_port *p = dev->handle;
    enum sp_return r;
    if ((r = sp_set_baudrate(p, cfg->baud)) != SP_OK)
        return sp_fail(err, r, "setting the baud rate", NULL);
    if ((r = sp_set_bits(p, cfg->data_bits)) != SP_OK)
        return sp_fail(err, r, "setting the data bits", NULL);
    enum sp_parity par = cfg->parity == FB_PARITY_ODD    ? SP_PARITY_ODD
                         : cfg->parity == FB_PARITY_EVEN ? SP_PARITY_EVEN
                                                         : SP_PARITY_NONE;
    if ((r = sp_set_parity(p, par)) != SP_OK)
        return sp_fail(err, r, "setting the parity", NULL);
    if ((r = sp_set_stopbits(p, cfg->stop_bits)) != SP_OK)
        return sp_fail(err, r, "setting the stop bits", NULL);
    enum sp_flowcontrol fc = cfg->flow == FB_FLOW_RTSCTS    ? SP_FLOWCONTROL_RTSCTS
                             : cfg->flow == FB_FLOW_XONXOFF ? SP_FLOWCONTROL_XONXOFF
                                                            : SP_FLOWCONTROL_NONE;
    if ((r = sp_set_flowcontrol(p, fc)) != SP_OK)
        return sp_fail(err, r, "setting the flow control", NULL);
    return FB_OK;
}

static fb_status sp_open_dev(serial_dev *dev, const char *path, const fb_serial_config *cfg,
                             fb_error *err)
{
    struct sp_port *p = NULL;
    enum sp_return r = sp_get_port_by_name(path, &p);
    if (r != SP_OK) {
        if (access(path, F_OK) != 0)
            return fb_error_set(err, FB_ERR_CLOSED,
                                "no serial port %s: is the USB adapter plugged in? "
                                "(fotabench.list_ports() shows what is there)",
                                path);
        return sp_fail(err, r, "looking up the port", path);
    }
    r = sp_open(p, SP_MODE_READ_WRITE);
    if (r != SP_OK) {
        int e = errno;
        fb_status st = e == EACCES
                           ? fb_error_set(err, FB_ERR_IO,
                                          "cannot open %s: permission denied (add yourself to "
                                          "the dialout group)",
                                          path)
                       : e == EBUSY ? fb_error_set(err, FB_ERR_IO,
                                                   "cannot open %s: it is in use by another "
                                                   "program",
                                                   path)
                                    : sp_fail(err, r, "opening", path);
        sp_free_port(p);
        return st;
    }
    dev->handle = p;
    if (sp_get_port_handle(p, &dev->fd) != SP_OK) {
        sp_close(p);
        sp_free_port(p);
        dev->handle = NULL;
        return fb_error_set(err, FB_ERR_IO, "libserialport gave no descriptor for %s", path);
    }
    fb_status st = sp_configure(dev, cfg, err);
    if (st != FB_OK) {
        sp_close(p);
        sp_free_port(p);
        dev->handle = NULL;
        dev->fd = -1;
    }
    return st;
}

static void sp_close_dev(serial_dev *dev)
{
    if (dev->handle) {
        sp_close(dev->handle);
        sp_free_port(dev->handle);
    }
    dev->handle = NULL;
    dev->fd = -1;
}

/* libserialport's byte count or error as read(2)/write(2) would give it: -1 with errno
 * set (EIO when libserialport left none), and 0 bytes as EAGAIN. */
static ssize_t sp_io_result(enum sp_return r)
{
    if (r > 0)
        return r;
    if (r == 0)
        errno = EAGAIN;
    else if (errno == 0)
        errno = EIO;
    return -1;
}

static ssize_t sp_read_dev(serial_dev *dev, void *buf, size_t n)
{
    /* The reader polls first: readable with no byte (EAGAIN here) means the device
     * went away. */
    return sp_io_result(sp_nonblocking_read(dev->handle, buf, n));
}

static ssize_t sp_write_dev(serial_dev *dev, const void *buf, size_t n)
{
    return sp_io_result(sp_nonblocking_write(dev->handle, buf, n));
}

static fb_status sp_set_dtr_dev(serial_dev *dev, int on, fb_error *err)
{
    enum sp_return r = sp_set_dtr(dev->handle, on ? SP_DTR_ON : SP_DTR_OFF);
    return r == SP_OK ? FB_OK : sp_fail(err, r, "setting DTR", NULL);
}

static fb_status sp_set_rts_dev(serial_dev *dev, int on, fb_error *err)
{
    enum sp_return r = sp_set_rts(dev->handle, on ? SP_RTS_ON : SP_RTS_OFF);
    return r == SP_OK ? FB_OK : sp_fail(err, r, "setting RTS", NULL);
}

static fb_status sp_signals_dev(serial_dev *dev, fb_serial_signals *out, fb_error *err)
{
    enum sp_signal s;
    enum sp_return r = sp_get_signals(dev->handle, &s);
    if (r != SP_OK)
        return sp_fail(err, r, "reading modem lines", NULL);
    out->cts = !!(s & SP_SIG_CTS);
    out->dsr = !!(s & SP_SIG_DSR);
    out->dcd = !!(s & SP_SIG_DCD);
    out->ri = !!(s & SP_SIG_RI);
    return FB_OK;
}

static fb_status sp_break_dev(serial_dev *dev, int ms, fb_error *err)
{
    enum sp_return r = sp_start_break(dev->handle);
    if (r != SP_OK)
        return sp_fail(err, r, "starting a break", NULL);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    r = sp_end_break(dev->handle);
    return r == SP_OK ? FB_OK : sp_fail(err, r, "ending a break", NULL);
}

static fb_status sp_flush_dev(serial_dev *dev, int which, fb_error *err)
{
    enum sp_buffer b = which == (FB_SERIAL_FLUSH_INPUT | FB_SERIAL_FLUSH_OUTPUT) ? SP_BUF_BOTH
                       : which == FB_SERIAL_FLUSH_OUTPUT                          ? SP_BUF_OUTPUT
                                                                                  : SP_BUF_INPUT;
    enum sp_return r = sp_flush(dev->handle, b);
    return r == SP_OK ? FB_OK : sp_fail(err, r, "flushing", NULL);
}

static fb_status sp_drain_dev(serial_dev *dev, fb_error *err)
{
    enum sp_return r = sp_drain(dev->handle);
    return r == SP_OK ? FB_OK : sp_fail(err, r, "draining", NULL);
}

static fb_status sp_output_waiting_dev(serial_dev *dev, size_t *n, fb_error *err)
{
    enum sp_return r = sp_output_waiting(dev->handle);
    if (r < 0)
        return sp_fail(err, r, "reading the output queue", NULL);
    *n = (size_t)r;
    return FB_OK;
}

const serial_ops fb_serial_sp_ops = {
    "libserialport", sp_open_dev,    sp_close_dev,   sp_configure,
    sp_read_dev,     sp_write_dev,   sp_set_dtr_dev, sp_set_rts_dev,
    sp_signals_dev,  sp_break_dev,   sp_flush_dev,   sp_drain_dev,
    sp_output_waiting_dev,
};

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

fb_status fb_serial_list(fb_serial_port_info **out, size_t *count, fb_error *err)
{
    struct sp_port **ports = NULL;
    *out = NULL;
    *count = 0;
    enum sp_return r = sp_list_ports(&ports);
    if (r != SP_OK)
        return sp_fail(err, r, "listing serial ports", NULL);
    size_t n = 0;
    while (ports[n])
        n++;
    fb_serial_port_info *list = calloc(n ? n : 1, sizeof *list);
    if (!list) {
        sp_free_port_list(ports);
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory listing %zu ports", n);
    }
    for (size_t i = 0; i < n; i++) {
        struct sp_port *p = ports[i];
        fb_serial_port_info *info = &list[i];
        copy_str(info->name, sizeof info->name, sp_get_port_name(p));
        copy_str(info->description, sizeof info->description, sp_get_port_description(p));
        enum sp_transport t = sp_get_port_transport(p);
        copy_str(info->transport, sizeof info->transport,
                 t == SP_TRANSPORT_USB ? "usb" : t == SP_TRANSPORT_BLUETOOTH ? "bluetooth"
                                                                             : "native");
        info->usb_vid = info->usb_pid = info->usb_bus = info->usb_address = -1;
        if (t == SP_TRANSPORT_USB) {
            int vid, pid, bus, addr;
            if (sp_get_port_usb_vid_pid(p, &vid, &pid) == SP_OK) {
                info->usb_vid = vid;
                info->usb_pid = pid;
            }
            if (sp_get_port_usb_bus_address(p, &bus, &addr) == SP_OK) {
                info->usb_bus = bus;
                info->usb_address = addr;
            }
            copy_str(info->usb_manufacturer, sizeof info->usb_manufacturer,
                     sp_get_port_usb_manufacturer(p));
            copy_str(info->usb_product, sizeof info->usb_product, sp_get_port_usb_product(p));
            copy_str(info->usb_serial, sizeof info->usb_serial, sp_get_port_usb_serial(p));
        }
    }
    sp_free_port_list(ports);
    *out = list;
    *count = n;
    return FB_OK;
}

void fb_serial_list_free(fb_serial_port_info *list)
{
    free(list);
}
