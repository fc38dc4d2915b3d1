/* fotabench._core.SerialPort's object, shared by serial.c (the port) and at.c (the AT
 * engine attached to it: one object, so the engine can never outlive its port). */
#ifndef FOTABENCH_EXT_SERIALOBJ_H
#define FOTABENCH_EXT_SERIALOBJ_H

#include "core.h"

#include "fotabench/at.h"
#include "fotabench/serial.h"

typedef struct {
    PyObject_HEAD
    fb_serial *port;
    fb_at *at;          /* NULL unless at_attach() */
    PyObject *timeline; /* the Timeline object the port writes to, or NULL */
    PyObject *urc_cb;   /* callable or NULL */
    int closing;        /* set by close(): callbacks and waits stop */
    int inflight;       /* blocking calls with the GIL released (close waits for them) */
    int at_stop;        /* set by at_detach() and close(): waits on the AT engine end */
    int at_inflight;    /* AT-engine calls in flight (at_detach waits for them) */
} SerialObject;

/* Enter/leave a blocking call: refuse on a closed port. */
int core_serial_enter(SerialObject *self);
void core_serial_leave(SerialObject *self);

/* The AT engine's methods (at.c), listed in SerialPort's method table. */
PyObject *core_at_attach(PyObject *op, PyObject *args, PyObject *kwargs);
PyObject *core_at_detach(PyObject *op, PyObject *unused);
PyObject *core_at_add_urc(PyObject *op, PyObject *arg);
PyObject *core_at_set_urc_callback(PyObject *op, PyObject *arg);
PyObject *core_at_command(PyObject *op, PyObject *args, PyObject *kwargs);
PyObject *core_at_next_line(PyObject *op, PyObject *args, PyObject *kwargs);
PyObject *core_at_partial(PyObject *op, PyObject *unused);
PyObject *core_at_wait_rx(PyObject *op, PyObject *args);

#define CORE_KW(f) (PyCFunction)(void (*)(void))(f), METH_VARARGS | METH_KEYWORDS
#define CORE_SERIAL_AT_METHODS                                                            \
    {"at_attach", CORE_KW(core_at_attach),                                                \
     "at_attach(line_max=0, queue_max=0) -> None\n\nHand the byte stream to the AT "      \
     "engine."},                                                                          \
    {"at_detach", core_at_detach, METH_NOARGS, "at_detach() -> None"},                    \
    {"at_add_urc", core_at_add_urc, METH_O, "at_add_urc(prefix) -> None"},                \
    {"at_set_urc_callback", core_at_set_urc_callback, METH_O,                             \
     "at_set_urc_callback(fn or None) -> None\n\nfn(line: bytes, t_ns: int) on the "      \
     "reader thread, with the GIL."},                                                     \
    {"at_command", CORE_KW(core_at_command),                                              \
     "at_command(cmd, timeout=None, inactivity=None, terminator=None) -> tuple"},         \
    {"at_next_line", CORE_KW(core_at_next_line),                                          \
     "at_next_line(timeout=0) -> (bytes, t_ns, is_urc) or None"},                         \
    {"at_partial", core_at_partial, METH_NOARGS, "at_partial() -> bytes"},                \
    {"at_wait_rx", core_at_wait_rx, METH_VARARGS,                                         \
     "at_wait_rx(since, timeout) -> int\n\nBytes received so far by the engine, after "   \
     "waiting for more than `since`."},
/* Detach the AT engine (GIL released inside). */
void core_serial_at_detach(SerialObject *self);

#endif
