/* fotabench._core.SerialPort: a serial port of the C core (libserialport or termios
 * pty backend) with its reader thread, ring, log and timeline events. The AT engine's
 * methods are in at.c. */
#include "serialobj.h"

#include "fotabench/clock.h"

static PyObject *module_of(PyObject *self)
{
    return PyType_GetModule(Py_TYPE(self));
}

static int parse_choice(PyObject *module, PyObject *arg, const char *what,
                        const char *const *names, int *out)
{
    if (!arg || arg == Py_None)
        return 0;
    const char *s = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (!s) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "%s must be a str", what);
        return -1;
    }
    for (int i = 0; names[i]; i++)
        if (PyOS_stricmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    core_arg_error(module, "unknown %s '%.40s'", what, s);
    return -1;
}

static const char *const parity_names[] = {"none", "odd", "even", NULL};
static const char *const flow_names[] = {"none", "rtscts", "xonxoff", NULL};
static const char *const backend_names[] = {"auto", "termios", "libserialport", NULL};

int core_serial_enter(SerialObject *self)
{
    if (!self->port || self->closing) {
        fb_error err;
        fb_error_set(&err, FB_ERR_CLOSED, "the port is closed");
        core_raise(module_of((PyObject *)self), &err);
        return -1;
    }
    self->inflight++;
    return 0;
}

void core_serial_leave(SerialObject *self)
{
    self->inflight--;
}

static PyObject *serial_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path",      "baud",    "data_bits", "parity",   "stop_bits",
                             "flow",      "ring_size", "name",    "log",      "timeline",
                             "backend",   NULL};
    PyObject *path = NULL, *parity = NULL, *flow = NULL, *log = NULL, *timeline = Py_None,
             *backend = NULL;
    fb_serial_config cfg;
    fb_serial_config_init(&cfg);
    Py_ssize_t ring = 0;
    const char *name = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|iiOiOnzOOO:SerialPort", kwlist,
                                     PyUnicode_FSConverter, &path, &cfg.baud, &cfg.data_bits,
                                     &parity, &cfg.stop_bits, &flow, &ring, &name, &log,
                                     &timeline, &backend))
        return NULL;
    PyObject *logb = NULL;
    int par = 0, fl = 0, be = 0;
    PyObject *module = PyType_GetModule(type);
    if (parse_choice(module, parity, "parity", parity_names, &par) < 0 ||
        parse_choice(module, flow, "flow control", flow_names, &fl) < 0 ||
        parse_choice(module, backend, "backend", backend_names, &be) < 0 ||
        (log && log != Py_None && !PyUnicode_FSConverter(log, &logb))) {
        Py_DECREF(path);
        return NULL;
    }
    if (ring < 0) {
        Py_DECREF(path);
        Py_XDECREF(logb);
        return core_arg_error(module, "ring_size must be >= 0, got %zd", ring);
    }
    cfg.parity = (fb_parity)par;
    cfg.flow = (fb_flow)fl;
    cfg.backend = (fb_serial_backend)be;
    cfg.ring_size = (size_t)ring;
    cfg.name = name;
    cfg.log_path = logb ? PyBytes_AS_STRING(logb) : NULL;
    if (timeline != Py_None) {
        cfg.timeline = core_timeline_get(module, timeline);
        if (!cfg.timeline) {
            Py_DECREF(path);
            Py_XDECREF(logb);
            return NULL;
        }
    }
    SerialObject *self = (SerialObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(path);
        Py_XDECREF(logb);
        return NULL;
    }
    if (timeline != Py_None)
        self->timeline = Py_NewRef(timeline);
    fb_error err;
    fb_serial *port;
    Py_BEGIN_ALLOW_THREADS
    port = fb_serial_open(PyBytes_AS_STRING(path), &cfg, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    Py_XDECREF(logb);
    if (!port) {
        Py_DECREF(self);
        return core_raise(module, &err);
    }
    self->port = port;
    return (PyObject *)self;
}

/* Close with the GIL released: the reader thread may be waiting for the GIL inside a
 * URC callback, and joining it while holding the GIL would deadlock. */
static void close_port(SerialObject *self)
{
    if (!self->port)
        return;
    self->at_stop = 1; /* waits on the AT engine watch this flag, not `closing` */
    core_wait_idle(&self->closing, &self->inflight);
    core_serial_at_detach(self);
    fb_serial *port = self->port;
    self->port = NULL;
    Py_BEGIN_ALLOW_THREADS
    fb_serial_close(port);
    Py_END_ALLOW_THREADS
}

static int serial_traverse(PyObject *op, visitproc visit, void *arg)
{
    SerialObject *self = (SerialObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->timeline);
    Py_VISIT(self->urc_cb);
    return 0;
}

static int serial_clear(PyObject *op)
{
    SerialObject *self = (SerialObject *)op;
    /* The timeline must outlive the port: close first. */
    close_port(self);
    Py_CLEAR(self->urc_cb);
    Py_CLEAR(self->timeline);
    return 0;
}

static void serial_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    serial_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *serial_close(PyObject *op, PyObject *unused)
{
    (void)unused;
    close_port((SerialObject *)op);
    Py_RETURN_NONE;
}

static PyObject *serial_enter(PyObject *op, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(op);
}

static PyObject *serial_exit(PyObject *op, PyObject *args)
{
    (void)args;
    close_port((SerialObject *)op);
    Py_RETURN_FALSE;
}

static PyObject *serial_reopen(PyObject *op, PyObject *unused)
{
    (void)unused;
    SerialObject *self = (SerialObject *)op;
    if (core_serial_enter(self) < 0)
        return NULL;
    fb_error err;
    fb_status st;
    Py_BEGIN_ALLOW_THREADS
    st = fb_serial_reopen(self->port, &err);
    Py_END_ALLOW_THREADS
    core_serial_leave(self);
    if (st != FB_OK)
        return core_raise(module_of(op), &err);
    Py_RETURN_NONE;
}

/* A write in slices (fb_serial_write_some), so that Ctrl-C and a close() from another
 * thread end it even when the peer never reads. */
typedef struct write_step {
    fb_serial *port;
    const char *data;
    size_t n, sent;
    fb_status st;
    fb_error err;
} write_step;

static int write_slice(void *ctx, int64_t slice)
{
    write_step *w = ctx;
    size_t sent = 0;
    w->st = fb_serial_write_some(w->port, w->data + w->sent, w->n - w->sent, slice, &sent,
                                 &w->err);
    w->sent += sent;
    return w->st != FB_OK || w->sent == w->n;
}

static PyObject *serial_write(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"data", "timeout", NULL};
    SerialObject *self = (SerialObject *)op;
    Py_buffer data;
    PyObject *timeout_arg = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|O:write", kwlist, &data, &timeout_arg))
        return NULL;
    int64_t deadline;
    if (core_deadline_arg(module_of(op), timeout_arg, "timeout", &deadline) < 0 ||
        core_serial_enter(self) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    write_step w = {self->port, data.buf, (size_t)data.len, 0, FB_OK, {FB_OK, ""}};
    int r = core_wait(module_of(op), deadline, &self->closing, "the port", write_slice, &w);
    core_serial_leave(self);
    PyBuffer_Release(&data);
    if (r < 0)
        return NULL;
    if (w.st == FB_OK && w.sent < w.n)
        w.st = fb_error_set(&w.err, FB_ERR_TIMEOUT,
                            "writing to %s: %zu of %zu bytes not sent in time (flow control "
                            "holding us? the peer not reading?)",
                            fb_serial_path(self->port), w.n - w.sent, w.n);
    if (w.st != FB_OK)
        return core_raise(module_of(op), &w.err);
    return PyLong_FromSize_t(w.sent);
}

typedef struct read_step {
    fb_serial *port;
    char *buf;
    size_t cap, got;
    fb_status st;
    fb_error err;
} read_step;

static int read_slice(void *ctx, int64_t slice)
{
    read_step *r = ctx;
    r->st = fb_serial_read(r->port, r->buf, r->cap, &r->got, slice, &r->err);
    return r->st != FB_OK || r->got > 0;
}

static PyObject *serial_read(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"size", "timeout", NULL};
    SerialObject *self = (SerialObject *)op;
    Py_ssize_t size = 65536;
    PyObject *timeout_arg = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|nO:read", kwlist, &size, &timeout_arg))
        return NULL;
    int64_t deadline = 0; /* no timeout given: poll */
    if (timeout_arg && core_deadline_arg(module_of(op), timeout_arg, "timeout", &deadline) < 0)
        return NULL;
    if (size <= 0) {
        fb_error err;
        fb_error_set(&err, FB_ERR_ARG, "size must be > 0, got %zd", size);
        return core_raise(module_of(op), &err);
    }
    if (core_serial_enter(self) < 0)
        return NULL;
    /* No read returns more than the ring holds: read(2**40) allocates that, not 1 TiB. */
    size_t ring = fb_serial_ring_capacity(self->port);
    if ((size_t)size > ring)
        size = (Py_ssize_t)ring;
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (!out) {
        core_serial_leave(self);
        return NULL;
    }
    read_step r = {self->port, PyBytes_AS_STRING(out), (size_t)size, 0, FB_OK, {FB_OK, ""}};
    int w = core_wait(module_of(op), deadline, &self->closing, "the port", read_slice, &r);
    core_serial_leave(self);
    if (w < 0 || r.st != FB_OK) {
        Py_DECREF(out);
        return w < 0 ? NULL : core_raise(module_of(op), &r.err);
    }
    if (_PyBytes_Resize(&out, (Py_ssize_t)r.got) < 0)
        return NULL;
    return out;
}

static PyObject *serial_tail(PyObject *op, PyObject *args)
{
    SerialObject *self = (SerialObject *)op;
    Py_ssize_t n = FB_SERIAL_TAIL_MAX;
    if (!PyArg_ParseTuple(args, "|n:tail", &n))
        return NULL;
    if (n < 0 || n > FB_SERIAL_TAIL_MAX)
        n = FB_SERIAL_TAIL_MAX;
    if (!self->port)
        return PyBytes_FromStringAndSize("", 0);
    char buf[FB_SERIAL_TAIL_MAX];
    size_t got = fb_serial_tail(self->port, buf, (size_t)n);
    return PyBytes_FromStringAndSize(buf, (Py_ssize_t)got);
}

/* The small control calls: enter, call with the GIL released, leave, raise. */
#define CONTROL_CALL(op, call)                                                          \
    do {                                                                                \
        SerialObject *self_ = (SerialObject *)(op);                                     \
        if (core_serial_enter(self_) < 0)                                               \
            return NULL;                                                                \
        fb_error err;                                                                   \
        fb_status st;                                                                   \
        fb_serial *port = self_->port;                                                  \
        Py_BEGIN_ALLOW_THREADS                                                          \
        st = (call);                                                                    \
        Py_END_ALLOW_THREADS                                                            \
        core_serial_leave(self_);                                                       \
        if (st != FB_OK)                                                                \
            return core_raise(module_of(op), &err);                                     \
    } while (0)

static PyObject *serial_set_dtr(PyObject *op, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    CONTROL_CALL(op, fb_serial_set_dtr(port, on, &err));
    Py_RETURN_NONE;
}

static PyObject *serial_set_rts(PyObject *op, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    CONTROL_CALL(op, fb_serial_set_rts(port, on, &err));
    Py_RETURN_NONE;
}

static PyObject *serial_signals(PyObject *op, PyObject *unused)
{
    (void)unused;
    fb_serial_signals s;
    CONTROL_CALL(op, fb_serial_get_signals(port, &s, &err));
    return Py_BuildValue("{s:O,s:O,s:O,s:O}", "cts", s.cts ? Py_True : Py_False, "dsr",
                         s.dsr ? Py_True : Py_False, "dcd", s.dcd ? Py_True : Py_False, "ri",
                         s.ri ? Py_True : Py_False);
}

static PyObject *serial_send_break(PyObject *op, PyObject *arg)
{
    int ms = PyLong_AsLong(arg);
    if (ms == -1 && PyErr_Occurred())
        return NULL;
    CONTROL_CALL(op, fb_serial_send_break(port, ms, &err));
    Py_RETURN_NONE;
}

static PyObject *serial_flush(PyObject *op, PyObject *arg)
{
    int which = PyLong_AsLong(arg);
    if (which == -1 && PyErr_Occurred())
        return NULL;
    CONTROL_CALL(op, fb_serial_flush(port, which, &err));
    Py_RETURN_NONE;
}

/* A drain in slices (fb_serial_drain_some), like write: a port held by RTS/CTS or XOFF
 * never empties, and Ctrl-C or a close() from another thread must still end the wait. */
typedef struct drain_ctx {
    fb_serial *port;
    int done;
    size_t waiting;
    fb_status st;
    fb_error err;
} drain_ctx;

static int drain_slice(void *ctx, int64_t slice)
{
    drain_ctx *d = ctx;
    d->st = fb_serial_drain_some(d->port, slice, &d->done, &d->waiting, &d->err);
    return d->st != FB_OK || d->done;
}

static PyObject *serial_drain(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"timeout", NULL};
    SerialObject *self = (SerialObject *)op;
    PyObject *timeout_arg = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:drain", kwlist, &timeout_arg))
        return NULL;
    int64_t deadline;
    if (core_deadline_arg(module_of(op), timeout_arg, "timeout", &deadline) < 0 ||
        core_serial_enter(self) < 0)
        return NULL;
    drain_ctx d = {self->port, 0, 0, FB_OK, {FB_OK, ""}};
    int r = core_wait(module_of(op), deadline, &self->closing, "the port", drain_slice, &d);
    core_serial_leave(self);
    if (r < 0)
        return NULL;
    if (d.st == FB_OK && !d.done)
        d.st = fb_error_set(&d.err, FB_ERR_TIMEOUT,
                            "draining %s: %zu bytes still not sent in time (a slow baud, or "
                            "flow control holding them: RTS/CTS with CTS off, an XOFF?)",
                            fb_serial_path(self->port), d.waiting);
    if (d.st != FB_OK)
        return core_raise(module_of(op), &d.err);
    Py_RETURN_NONE;
}

static PyObject *serial_configure(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"baud", "data_bits", "parity", "stop_bits", "flow", NULL};
    fb_serial_config cfg;
    fb_serial_config_init(&cfg);
    PyObject *parity = NULL, *flow = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|iiOiO:configure", kwlist, &cfg.baud,
                                     &cfg.data_bits, &parity, &cfg.stop_bits, &flow))
        return NULL;
    int par = 0, fl = 0;
    PyObject *module = module_of(op);
    if (parse_choice(module, parity, "parity", parity_names, &par) < 0 ||
        parse_choice(module, flow, "flow control", flow_names, &fl) < 0)
        return NULL;
    cfg.parity = (fb_parity)par;
    cfg.flow = (fb_flow)fl;
    CONTROL_CALL(op, fb_serial_configure(port, &cfg, &err));
    Py_RETURN_NONE;
}

static PyObject *serial_stats(PyObject *op, PyObject *unused)
{
    (void)unused;
    SerialObject *self = (SerialObject *)op;
    fb_serial_stats s = {0, 0, 0, 0, 0};
    if (self->port)
        fb_serial_get_stats(self->port, &s);
    return Py_BuildValue("{s:K,s:K,s:K,s:L,s:O}", "rx_bytes", (unsigned long long)s.rx_bytes,
                         "tx_bytes", (unsigned long long)s.tx_bytes, "dropped_bytes",
                         (unsigned long long)s.dropped_bytes, "last_rx_ns",
                         (long long)s.last_rx_ns, "open", s.open ? Py_True : Py_False);
}

static PyObject *get_str(SerialObject *self, const char *(*fn)(const fb_serial *))
{
    if (!self->port)
        Py_RETURN_NONE;
    const char *s = fn(self->port);
    if (!s)
        Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefault(s);
}

static PyObject *serial_get_path(PyObject *op, void *c)
{
    (void)c;
    return get_str((SerialObject *)op, fb_serial_path);
}

static PyObject *serial_get_name(PyObject *op, void *c)
{
    (void)c;
    return get_str((SerialObject *)op, fb_serial_name);
}

static PyObject *serial_get_log(PyObject *op, void *c)
{
    (void)c;
    return get_str((SerialObject *)op, fb_serial_log_path);
}

static PyObject *serial_get_backend(PyObject *op, void *c)
{
    (void)c;
    return get_str((SerialObject *)op, fb_serial_backend_name);
}

static PyObject *serial_get_closed(PyObject *op, void *c)
{
    (void)c;
    return PyBool_FromLong(((SerialObject *)op)->port == NULL);
}

static PyGetSetDef serial_getset[] = {
    {"path", serial_get_path, NULL, "The device path as opened.", NULL},
    {"name", serial_get_name, NULL, "The timeline source name (e.g. 'uart1').", NULL},
    {"log_path", serial_get_log, NULL, "The byte log's path, or None.", NULL},
    {"backend", serial_get_backend, NULL, "'termios' (pseudo-terminal) or 'libserialport'.",
     NULL},
    {"closed", serial_get_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef serial_methods[] = {
    {"close", serial_close, METH_NOARGS, "close() -> None\n\nStop the reader and close."},
    {"__enter__", serial_enter, METH_NOARGS, NULL},
    {"__exit__", serial_exit, METH_VARARGS, NULL},
    {"reopen", serial_reopen, METH_NOARGS,
     "reopen() -> None\n\nOpen the same path again after the port disappeared."},
    {"write", (PyCFunction)(void (*)(void))serial_write, METH_VARARGS | METH_KEYWORDS,
     "write(data, timeout=None) -> int\n\nSend all bytes (GIL released; Ctrl-C and close() "
     "end the wait)."},
    {"read", (PyCFunction)(void (*)(void))serial_read, METH_VARARGS | METH_KEYWORDS,
     "read(size=65536, timeout=0) -> bytes\n\nBuffered bytes (at most the ring's size); "
     "waits up to timeout seconds (None: for ever) for the first; b'' at the timeout."},
    {"tail", serial_tail, METH_VARARGS, "tail(n=4096) -> bytes\n\nThe last bytes received."},
    {"set_dtr", serial_set_dtr, METH_O, "set_dtr(on) -> None"},
    {"set_rts", serial_set_rts, METH_O, "set_rts(on) -> None"},
    {"signals", serial_signals, METH_NOARGS, "signals() -> dict of cts, dsr, dcd, ri"},
    {"send_break", serial_send_break, METH_O, "send_break(ms) -> None"},
    {"flush", serial_flush, METH_O, "flush(which) -> None\n\n1 input, 2 output, 3 both."},
    {"drain", (PyCFunction)(void (*)(void))serial_drain, METH_VARARGS | METH_KEYWORDS,
     "drain(timeout=None) -> None\n\nWait until output is sent (GIL released, in slices)."},
    {"configure", (PyCFunction)(void (*)(void))serial_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(baud=115200, data_bits=8, parity='none', stop_bits=1, flow='none') -> None"},
    {"stats", serial_stats, METH_NOARGS, "stats() -> dict"},
    CORE_SERIAL_AT_METHODS
    {NULL, NULL, 0, NULL},
};

static PyType_Slot serial_slots[] = {
    {Py_tp_doc, "SerialPort(path, baud=115200, data_bits=8, parity='none', stop_bits=1, "
                "flow='none', ring_size=0, name=None, log=None, timeline=None, "
                "backend='auto')\n--\n\nA serial port of the C core. The Python API is "
                "fotabench.SerialPort."},
    {Py_tp_new, serial_new},
    {Py_tp_dealloc, serial_dealloc},
    {Py_tp_traverse, serial_traverse},
    {Py_tp_clear, serial_clear},
    {Py_tp_methods, serial_methods},
    {Py_tp_getset, serial_getset},
    {0, NULL},
};

static PyType_Spec serial_spec = {
    .name = "fotabench._core.SerialPort",
    .basicsize = sizeof(SerialObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = serial_slots,
};

int core_add_serial_type(PyObject *module)
{
    core_state *st = core_get_state(module);
    PyObject *t = PyType_FromModuleAndSpec(module, &serial_spec, NULL);
    if (!t)
        return -1;
    st->serial_type = t;
    return PyModule_AddType(module, (PyTypeObject *)t);
}

static PyObject *serial_list_ports(PyObject *module, PyObject *unused)
{
    (void)unused;
    fb_serial_port_info *list = NULL;
    size_t n = 0;
    fb_error err;
    fb_status st;
    Py_BEGIN_ALLOW_THREADS
    st = fb_serial_list(&list, &n, &err);
    Py_END_ALLOW_THREADS
    if (st != FB_OK)
        return core_raise(module, &err);
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out && i < n; i++) {
        fb_serial_port_info *p = &list[i];
        PyObject *d = Py_BuildValue(
            "{s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:s,s:s,s:s}", "name", p->name, "description",
            p->description, "transport", p->transport, "usb_vid", p->usb_vid, "usb_pid",
            p->usb_pid, "usb_bus", p->usb_bus, "usb_address", p->usb_address,
            "usb_manufacturer", p->usb_manufacturer, "usb_product", p->usb_product,
            "usb_serial", p->usb_serial);
        if (!d || PyList_Append(out, d) < 0)
            Py_CLEAR(out);
        Py_XDECREF(d);
    }
    fb_serial_list_free(list);
    return out;
}

PyMethodDef core_serial_methods[] = {
    {"list_ports", serial_list_ports, METH_NOARGS,
     "list_ports() -> list of dict\n\nSerial ports the system knows, with USB details."},
    {NULL, NULL, 0, NULL},
};
