/* Exception classes of fotabench._core and the mapping from fb_status. */
#include "core.h"

#include <stdarg.h>
#include <stdio.h>

typedef struct exc_def {
    size_t offset; /* into core_state */
    fb_status code;
    const char *name;
    const char *doc;
    PyObject *const *extra_base; /* second base class, or NULL */
} exc_def;

static const exc_def exc_defs[] = {
    {offsetof(core_state, arg_error), FB_ERR_ARG, "fotabench._core.ArgumentError",
     "An argument is out of range (a ValueError too).", &PyExc_ValueError},
    {offsetof(core_state, file_error), FB_ERR_IO, "fotabench._core.FileError",
     "A file could not be opened, read or written (an OSError too).", &PyExc_OSError},
    {offsetof(core_state, image_error), FB_ERR_IMAGE, "fotabench._core.ImageError",
     "Not a valid OpenCPU app image (GFH header).", NULL},
    {offsetof(core_state, model_error), FB_ERR_MODEL, "fotabench._core.ModelError",
     "The image does not fit the module model (load address, region size).", NULL},
    {offsetof(core_state, package_error), FB_ERR_PACKAGE, "fotabench._core.PackageError",
     "Not a valid FOTA package (layout or header fields).", NULL},
    {offsetof(core_state, checksum_error), FB_ERR_CHECKSUM, "fotabench._core.ChecksumError",
     "A package's header CRC or MD5 does not match its content.", NULL},
    {offsetof(core_state, url_error), FB_ERR_URL, "fotabench._core.UrlError",
     "A URL the module's FOTA parser would refuse or mis-read (a ValueError too).",
     &PyExc_ValueError},
    {offsetof(core_state, crypto_error), FB_ERR_CRYPTO, "fotabench._core.CryptoError",
     "OpenSSL refused an operation.", NULL},
    {offsetof(core_state, unsupported_error), FB_ERR_UNSUPPORTED,
     "fotabench._core.UnsupportedError",
     "Valid, but not supported by OpenCPU FOTA (e.g. a Core image), or by this port or "
     "line (e.g. DTR on a pseudo-terminal).", NULL},
    {offsetof(core_state, timeout_error), FB_ERR_TIMEOUT, "fotabench._core.BenchTimeoutError",
     "A bench wait ran out: an AT command, expect(), a GPIO answer (a TimeoutError too).",
     &PyExc_TimeoutError},
    {offsetof(core_state, closed_error), FB_ERR_CLOSED, "fotabench._core.ClosedError",
     "The port, line or connection is closed or disappeared (unplugged, module or board "
     "gone); reopen() when it is back (a ConnectionError too).",
     &PyExc_ConnectionError},
    {offsetof(core_state, lost_error), FB_ERR_LOST, "fotabench._core.DataLostError",
     "Bytes or events were lost: a receive buffer overflowed or an edge sequence number "
     "skipped. The count is in the message.", NULL},
    {offsetof(core_state, protocol_error), FB_ERR_PROTOCOL, "fotabench._core.ProtocolError",
     "The other side answered something its protocol does not allow.", NULL},
    {offsetof(core_state, busy_error), FB_ERR_BUSY, "fotabench._core.BusyError",
     "Taken by another user: a port's byte stream while a Modem (its AT engine) reads it "
     "(use Modem.expect(), or close the Modem first).", NULL},
};
#define N_EXC (sizeof exc_defs / sizeof exc_defs[0])

static PyObject **slot(core_state *st, size_t offset)
{
    return (PyObject **)((char *)st + offset);
}

/* `message` of any FotabenchError, also one raised from Python with only a message:
 * its first argument. */
static PyObject *message_get(PyObject *unused, PyObject *exc)
{
    (void)unused;
    PyObject *args = PyObject_GetAttrString(exc, "args");
    if (!args)
        return NULL;
    PyObject *msg = PyTuple_Check(args) && PyTuple_GET_SIZE(args) > 0
                        ? PyObject_Str(PyTuple_GET_ITEM(args, 0))
                        : PyUnicode_FromString("");
    Py_DECREF(args);
    return msg;
}

static PyMethodDef message_def = {"message", message_get, METH_O, NULL};

static PyObject *base_dict(void)
{
    PyObject *fget = PyCFunction_New(&message_def, NULL);
    PyObject *prop = fget ? PyObject_CallOneArg((PyObject *)&PyProperty_Type, fget) : NULL;
    PyObject *d = prop ? PyDict_New() : NULL;
    if (d && PyDict_SetItemString(d, "message", prop) < 0)
        Py_CLEAR(d);
    Py_XDECREF(fget);
    Py_XDECREF(prop);
    return d;
}

/* code and code_name as class attributes, so an error raised from Python carries
 * them as well as one raised by the core. */
static PyObject *class_dict(fb_status code)
{
    PyObject *d = PyDict_New();
    PyObject *c = PyLong_FromLong(code);
    PyObject *n = PyUnicode_FromString(fb_status_name(code));
    if (!d || !c || !n || PyDict_SetItemString(d, "code", c) < 0 ||
        PyDict_SetItemString(d, "code_name", n) < 0)
        Py_CLEAR(d);
    Py_XDECREF(c);
    Py_XDECREF(n);
    return d;
}

int core_add_exceptions(PyObject *module)
{
    core_state *st = core_get_state(module);
    PyObject *dict = base_dict();
    if (!dict)
        return -1;
    st->error = PyErr_NewExceptionWithDoc(
        "fotabench._core.FotabenchError",
        "Base of every fotabench error. Each subclass has `code` (the C core's status, a "
        "negative int) and `code_name` (e.g. 'FB_ERR_CHECKSUM'); `message` is the "
        "one-line reason.",
        PyExc_Exception, dict);
    Py_DECREF(dict);
    if (!st->error || PyModule_AddObjectRef(module, "FotabenchError", st->error) < 0)
        return -1;
    for (size_t i = 0; i < N_EXC; i++) {
        const exc_def *d = &exc_defs[i];
        PyObject *bases = d->extra_base ? PyTuple_Pack(2, st->error, *d->extra_base)
                                        : PyTuple_Pack(1, st->error);
        PyObject *cdict = bases ? class_dict(d->code) : NULL;
        PyObject *cls = cdict ? PyErr_NewExceptionWithDoc(d->name, d->doc, bases, cdict) : NULL;
        Py_XDECREF(bases);
        Py_XDECREF(cdict);
        if (!cls)
            return -1;
        *slot(st, d->offset) = cls;
        if (PyModule_AddObjectRef(module, strrchr(d->name, '.') + 1, cls) < 0)
            return -1;
    }
    return 0;
}

void core_clear_state(core_state *st)
{
    Py_CLEAR(st->timeline_type);
    Py_CLEAR(st->serial_type);
    Py_CLEAR(st->modem_type);
    Py_CLEAR(st->gpio_type);
    Py_CLEAR(st->gpio_line_type);
    Py_CLEAR(st->watchdog_type);
    Py_CLEAR(st->error);
    for (size_t i = 0; i < N_EXC; i++)
        Py_CLEAR(*slot(st, exc_defs[i].offset));
}

int core_traverse_state(core_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->timeline_type);
    Py_VISIT(st->serial_type);
    Py_VISIT(st->modem_type);
    Py_VISIT(st->gpio_type);
    Py_VISIT(st->gpio_line_type);
    Py_VISIT(st->watchdog_type);
    Py_VISIT(st->error);
    for (size_t i = 0; i < N_EXC; i++)
        Py_VISIT(*slot(st, exc_defs[i].offset));
    return 0;
}

static int stop_on_signal(void *ctx)
{
    core_unlocked *u = ctx;
    PyEval_RestoreThread(u->save);
    int stop = PyErr_CheckSignals() < 0;
    u->save = PyEval_SaveThread();
    return stop;
}

void core_unlock(core_unlocked *u)
{
    u->cancel.stop = stop_on_signal;
    u->cancel.ctx = u;
    u->save = PyEval_SaveThread();
}

void core_relock(core_unlocked *u)
{
    PyEval_RestoreThread(u->save);
}

PyObject *core_raise(PyObject *module, const fb_error *err)
{
    if (err->code == FB_ERR_NOMEM)
        return PyErr_NoMemory();
    if (err->code == FB_ERR_CANCELLED && PyErr_Occurred())
        return NULL;
    core_state *st = core_get_state(module);
    PyObject *cls = st->error;
    for (size_t i = 0; i < N_EXC; i++)
        if (exc_defs[i].code == err->code)
            cls = *slot(st, exc_defs[i].offset);
    /* Messages carry file names in any encoding, and may be cut mid-character at the
     * buffer's end: decode leniently so that raising never fails. */
    PyObject *message = PyUnicode_DecodeUTF8(err->message, (Py_ssize_t)strlen(err->message),
                                             "backslashreplace");
    PyObject *exc = message ? PyObject_CallOneArg(cls, message) : NULL;
    Py_XDECREF(message);
    if (!exc)
        return NULL;
    if (cls == st->error) {
        /* A status with no class of its own: say which on the instance. */
        PyObject *code = PyLong_FromLong(err->code);
        PyObject *name = PyUnicode_FromString(fb_status_name(err->code));
        int bad = !code || !name || PyObject_SetAttrString(exc, "code", code) < 0 ||
                  PyObject_SetAttrString(exc, "code_name", name) < 0;
        Py_XDECREF(code);
        Py_XDECREF(name);
        if (bad) {
            Py_DECREF(exc);
            return NULL;
        }
    }
    PyErr_SetObject(cls, exc);
    Py_DECREF(exc);
    return NULL;
}

int core_model_arg(PyObject *module, PyObject *arg, const fb_model **out)
{
    *out = NULL;
    if (arg == NULL || arg == Py_None)
        return 0;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "model must be a str (a name from models(), or auto)");
        return -1;
    }
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name)
        return -1;
    if (PyOS_stricmp(name, "auto") == 0)
        return 0;
    *out = fb_model_find(name);
    if (!*out) {
        fb_error err;
        fb_error_set(&err, FB_ERR_ARG,
                     "unknown module model '%.40s': use one of `fotabench models`, or auto",
                     name);
        core_raise(module, &err);
        return -1;
    }
    return 0;
}

PyObject *core_report_to_tuple(const fb_report *report)
{
    PyObject *t = PyTuple_New((Py_ssize_t)report->count);
    if (!t)
        return NULL;
    for (size_t i = 0; i < report->count; i++) {
        const fb_check *c = &report->checks[i];
        PyObject *detail = PyUnicode_DecodeUTF8(c->detail, (Py_ssize_t)strlen(c->detail),
                                                "backslashreplace");
        const char *level = !c->ok ? "failed" : c->warning ? "warning" : "ok";
        PyObject *item = detail ? Py_BuildValue("(sOsNs)", c->name, c->ok ? Py_True : Py_False,
                                                fb_status_name(c->code), detail, level)
                                : NULL;
        if (!item) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, item);
    }
    return t;
}

PyObject *core_arg_error(PyObject *module, const char *fmt, ...)
{
    fb_error err;
    err.code = FB_ERR_ARG;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    return core_raise(module, &err);
}
