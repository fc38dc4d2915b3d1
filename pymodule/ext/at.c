/* fotabench._core.SerialPort's AT engine methods (fotabench/at.h): commands with
 * sliced, interruptible waits; URC callbacks from the reader thread with the GIL. */
#include "serialobj.h"

#include <string.h>

#include "fotabench/clock.h"

static PyObject *module_of(PyObject *self)
{
    return PyType_GetModule(Py_TYPE(self));
}

static PyObject *raise_code(PyObject *op, fb_status code, const char *msg)
{
    fb_error err;
    fb_error_set(&err, code, "%s", msg);
    return core_raise(module_of(op), &err);
}

/* Runs on the engine's callback thread (never the port's reader). */
static void urc_trampoline(void *ctx, const char *line, size_t n, int64_t t_ns)
{
    SerialObject *self = ctx;
    if (self->closing || !self->urc_cb)
        return;
    if (!core_interpreter_alive())
        return;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *cb = self->closing ? NULL : Py_XNewRef(self->urc_cb);
    if (cb) {
        PyObject *r = PyObject_CallFunction(cb, "y#L", line, (Py_ssize_t)n, (long long)t_ns);
        if (!r)
            PyErr_WriteUnraisable(cb);
        Py_XDECREF(r);
        Py_DECREF(cb);
    }
    PyGILState_Release(g);
}

void core_serial_at_detach(SerialObject *self)
{
    if (!self->at)
        return;
    /* A Modem closed from one thread while another waits in next_line or command
     * (Upgrade.cancel does this): end those waits first, as close() ends the port's;
     * freeing the engine under them crashed the bench. */
    core_wait_idle(&self->at_stop, &self->at_inflight);
    fb_at *at = self->at;
    self->at = NULL;
    /* Waits for a callback in progress, which may need the GIL. */
    Py_BEGIN_ALLOW_THREADS
    fb_at_free(at);
    Py_END_ALLOW_THREADS
    self->at_stop = 0; /* a later Modem may attach to the port again */
}

/* An AT-engine call: counted for the port (close waits) and for the engine (detach
 * waits); at_leave undoes both. */
static int at_enter(SerialObject *self)
{
    if (core_serial_enter(self) < 0)
        return -1;
    self->at_inflight++;
    return 0;
}

static void at_leave(SerialObject *self)
{
    self->at_inflight--;
    core_serial_leave(self);
}

PyObject *core_at_attach(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"line_max", "queue_max", NULL};
    SerialObject *self = (SerialObject *)op;
    Py_ssize_t line_max = 0, queue_max = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|nn:at_attach", kwlist, &line_max,
                                     &queue_max))
        return NULL;
    if (line_max < 0 || queue_max < 0)
        return core_arg_error(module_of(op), "line_max and queue_max must be >= 0");
    if (!self->port || self->closing)
        return raise_code(op, FB_ERR_CLOSED, "the port is closed");
    if (self->at)
        return raise_code(op, FB_ERR_BUSY, "an AT engine (a Modem) is already attached to this "
                                           "port: use that Modem, or close it first");
    fb_error err;
    fb_timeline *tl = NULL;
    if (self->timeline && !(tl = core_timeline_get(module_of(op), self->timeline)))
        return NULL;
    fb_at *at;
    Py_BEGIN_ALLOW_THREADS
    at = fb_at_new(self->port, tl, NULL, (size_t)line_max, (size_t)queue_max, &err);
    Py_END_ALLOW_THREADS
    if (!at)
        return core_raise(module_of(op), &err);
    self->at = at;
    if (fb_at_set_urc_callback(at, urc_trampoline, self, &err) != FB_OK) {
        core_serial_at_detach(self);
        return core_raise(module_of(op), &err);
    }
    Py_RETURN_NONE;
}

PyObject *core_at_detach(PyObject *op, PyObject *unused)
{
    (void)unused;
    core_serial_at_detach((SerialObject *)op);
    Py_RETURN_NONE;
}

static fb_at *need_at(PyObject *op)
{
    SerialObject *self = (SerialObject *)op;
    if (!self->port || self->closing) {
        raise_code(op, FB_ERR_CLOSED, "the port is closed");
        return NULL;
    }
    if (!self->at || self->at_stop) {
        /* The Modem was closed (its engine detached), or never attached. */
        raise_code(op, FB_ERR_CLOSED, "the Modem is closed: its AT engine was detached from "
                                      "the port");
        return NULL;
    }
    return self->at;
}

PyObject *core_at_add_urc(PyObject *op, PyObject *arg)
{
    fb_at *at = need_at(op);
    if (!at)
        return NULL;
    const char *prefix = PyUnicode_AsUTF8(arg);
    if (!prefix)
        return NULL;
    fb_error err;
    if (fb_at_add_urc(at, prefix, &err) != FB_OK)
        return core_raise(module_of(op), &err);
    Py_RETURN_NONE;
}

PyObject *core_at_set_urc_callback(PyObject *op, PyObject *arg)
{
    SerialObject *self = (SerialObject *)op;
    if (arg != Py_None && !PyCallable_Check(arg))
        return PyErr_Format(PyExc_TypeError, "the URC callback must be callable or None");
    /* Swapped with the GIL held; the trampoline reads it with the GIL held too. */
    Py_XSETREF(self->urc_cb, arg == Py_None ? NULL : Py_NewRef(arg));
    Py_RETURN_NONE;
}

static PyObject *response_tuple(const fb_at_response *r)
{
    PyObject *lines = PyList_New((Py_ssize_t)r->count);
    if (!lines)
        return NULL;
    for (size_t i = 0; i < r->count; i++) {
        PyObject *b = PyBytes_FromStringAndSize(r->lines[i], (Py_ssize_t)r->lens[i]);
        if (!b) {
            Py_DECREF(lines);
            return NULL;
        }
        PyList_SET_ITEM(lines, (Py_ssize_t)i, b);
    }
    return Py_BuildValue("(sly#NOLL)", fb_at_result_name(r->result), r->error_code,
                         r->final ? r->final : "", (Py_ssize_t)r->final_len, lines,
                         r->echoed ? Py_True : Py_False, (long long)r->t_sent,
                         (long long)r->t_done);
}

typedef struct command_step {
    fb_at *at;
    int64_t deadline, inactivity;
    fb_at_response resp;
    int done;
    fb_status st;
    fb_error err;
} command_step;

/* fb_at_wait keeps the command's own deadline and inactivity limit: the slices only
 * bring us back to see Ctrl-C and close(). */
static int command_slice(void *ctx, int64_t slice)
{
    command_step *c = ctx;
    c->st = fb_at_wait(c->at, slice, c->deadline, c->inactivity, &c->resp, &c->done, &c->err);
    return c->st != FB_OK || c->done;
}

PyObject *core_at_command(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"cmd", "timeout", "inactivity", "terminator", NULL};
    SerialObject *self = (SerialObject *)op;
    const char *cmd, *terminator = NULL;
    PyObject *timeout_arg = Py_None, *inact_arg = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|OOz:at_command", kwlist, &cmd,
                                     &timeout_arg, &inact_arg, &terminator))
        return NULL;
    command_step c;
    memset(&c, 0, sizeof c);
    if (core_timeout_arg(module_of(op), timeout_arg, "timeout", &c.deadline) < 0 ||
        core_timeout_arg(module_of(op), inact_arg, "inactivity", &c.inactivity) < 0)
        return NULL;
    fb_at *at = need_at(op);
    if (!at || at_enter(self) < 0)
        return NULL;
    c.at = at;
    fb_status st;
    Py_BEGIN_ALLOW_THREADS
    st = fb_at_start(at, cmd, terminator, &c.err);
    Py_END_ALLOW_THREADS
    if (st != FB_OK) {
        at_leave(self);
        return core_raise(module_of(op), &c.err);
    }
    c.deadline = fb_deadline_in(c.deadline); /* from the moment it was sent */
    int r = core_wait(module_of(op), FB_DEADLINE_NEVER, &self->at_stop, "the Modem", command_slice,
                      &c);
    if (r < 0)
        fb_at_cancel(at); /* Ctrl-C or close(): its late lines become unsolicited */
    at_leave(self);
    if (r < 0)
        return NULL;
    if (c.st != FB_OK)
        return core_raise(module_of(op), &c.err);
    PyObject *t = response_tuple(&c.resp);
    fb_at_response_free(&c.resp);
    return t;
}

typedef struct line_step {
    fb_at *at;
    char *line;
    size_t n;
    int64_t t;
    int urc;
    fb_status st;
    fb_error err;
} line_step;

static int line_slice(void *ctx, int64_t slice)
{
    line_step *l = ctx;
    l->st = fb_at_next_line(l->at, slice, &l->line, &l->n, &l->t, &l->urc, &l->err);
    return l->st != FB_OK || l->line != NULL;
}

PyObject *core_at_next_line(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"timeout", NULL};
    SerialObject *self = (SerialObject *)op;
    PyObject *timeout_arg = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:at_next_line", kwlist, &timeout_arg))
        return NULL;
    int64_t deadline = 0; /* no timeout given: poll */
    if (timeout_arg && core_deadline_arg(module_of(op), timeout_arg, "timeout", &deadline) < 0)
        return NULL;
    fb_at *at = need_at(op);
    if (!at || at_enter(self) < 0)
        return NULL;
    line_step l;
    memset(&l, 0, sizeof l);
    l.at = at;
    int r = core_wait(module_of(op), deadline, &self->at_stop, "the Modem", line_slice, &l);
    at_leave(self);
    if (r < 0) {
        free(l.line);
        return NULL;
    }
    if (l.st != FB_OK)
        return core_raise(module_of(op), &l.err);
    if (!l.line)
        Py_RETURN_NONE;
    PyObject *t = Py_BuildValue("(y#LO)", l.line, (Py_ssize_t)l.n, (long long)l.t,
                                l.urc ? Py_True : Py_False);
    free(l.line);
    return t;
}

PyObject *core_at_partial(PyObject *op, PyObject *unused)
{
    (void)unused;
    fb_at *at = need_at(op);
    if (!at)
        return NULL;
    char buf[FB_AT_LINE_MAX_DEFAULT];
    size_t n = fb_at_partial(at, buf, sizeof buf);
    return PyBytes_FromStringAndSize(buf, (Py_ssize_t)(n < sizeof buf ? n : sizeof buf));
}

typedef struct rx_step {
    fb_at *at;
    uint64_t since, count;
} rx_step;

static int rx_slice(void *ctx, int64_t slice)
{
    rx_step *x = ctx;
    fb_at_wait_rx(x->at, x->since, slice);
    x->count = fb_at_rx_count(x->at);
    return x->count != x->since;
}

PyObject *core_at_wait_rx(PyObject *op, PyObject *args)
{
    SerialObject *self = (SerialObject *)op;
    unsigned long long since;
    PyObject *timeout_arg;
    if (!PyArg_ParseTuple(args, "KO:at_wait_rx", &since, &timeout_arg))
        return NULL;
    int64_t deadline;
    if (core_deadline_arg(module_of(op), timeout_arg, "timeout", &deadline) < 0)
        return NULL;
    fb_at *at = need_at(op);
    if (!at || at_enter(self) < 0)
        return NULL;
    rx_step x = {at, since, since};
    int r = core_wait(module_of(op), deadline, &self->at_stop, "the Modem", rx_slice, &x);
    at_leave(self);
    if (r < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(x.count);
}
