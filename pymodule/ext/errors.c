/* Exception classes of fotabench._core and the mapping from fb_status. */
#include "core.h"

typedef struct exc_def {
    size_t offset; /* into core_state */
    const char *name;
    const char *doc;
    int extra_base; /* 0 none, 1 ValueError, 2 OSError */
} exc_def;

static const exc_def exc_defs[] = {
    {offsetof(core_state, arg_error), "fotabench._core.ArgumentError",
     "An argument is out of range (a ValueError too).", 1},
    {offsetof(core_state, file_error), "fotabench._core.FileError",
     "A file could not be opened, read or written (an OSError too).", 2},
    {offsetof(core_state, image_error), "fotabench._core.ImageError",
     "Not a valid OpenCPU app image (GFH header).", 0},
    {offsetof(core_state, model_error), "fotabench._core.ModelError",
     "The image does not fit the module model (load address, region size).", 0},
    {offsetof(core_state, package_error), "fotabench._core.PackageError",
     "Not a valid FOTA package (layout or header fields).", 0},
    {offsetof(core_state, checksum_error), "fotabench._core.ChecksumError",
     "A package's header CRC or MD5 does not match its content.", 0},
    {offsetof(core_state, url_error), "fotabench._core.UrlError",
     "A URL the module's FOTA parser would refuse or mis-read (a ValueError too).", 1},
    {offsetof(core_state, crypto_error), "fotabench._core.CryptoError",
     "OpenSSL refused an operation.", 0},
    {offsetof(core_state, unsupported_error), "fotabench._core.UnsupportedError",
     "Valid, but not supported by OpenCPU FOTA (e.g. a Core image).", 0},
};

static PyObject **slot(core_state *st, size_t offset)
{
    return (PyObject **)((char *)st + offset);
}

int core_add_exceptions(PyObject *module)
{
    core_state *st = core_get_state(module);
    st->error = PyErr_NewExceptionWithDoc(
        "fotabench._core.FotabenchError",
        "Base of every fotabench error. `code` is the C core's status (negative int), "
        "`code_name` its name (e.g. 'FB_ERR_CHECKSUM'), `message` the one-line reason.",
        PyExc_Exception, NULL);
    if (!st->error || PyModule_AddObjectRef(module, "FotabenchError", st->error) < 0)
        return -1;
    for (size_t i = 0; i < sizeof exc_defs / sizeof exc_defs[0]; i++) {
        const exc_def *d = &exc_defs[i];
        PyObject *bases;
        if (d->extra_base == 1)
            bases = PyTuple_Pack(2, st->error, PyExc_ValueError);
        else if (d->extra_base == 2)
            bases = PyTuple_Pack(2, st->error, PyExc_OSError);
        else
            bases = PyTuple_Pack(1, st->error);
        if (!bases)
            return -1;
        PyObject *cls = PyErr_NewExceptionWithDoc(d->name, d->doc, bases, NULL);
        Py_DECREF(bases);
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
    Py_CLEAR(st->error);
    for (size_t i = 0; i < sizeof exc_defs / sizeof exc_defs[0]; i++)
        Py_CLEAR(*slot(st, exc_defs[i].offset));
}

int core_traverse_state(core_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->error);
    for (size_t i = 0; i < sizeof exc_defs / sizeof exc_defs[0]; i++)
        Py_VISIT(*slot(st, exc_defs[i].offset));
    return 0;
}

PyObject *core_raise(PyObject *module, const fb_error *err)
{
    core_state *st = core_get_state(module);
    PyObject *cls;
    switch (err->code) {
    case FB_ERR_ARG: cls = st->arg_error; break;
    case FB_ERR_IO: cls = st->file_error; break;
    case FB_ERR_NOMEM: return PyErr_NoMemory();
    case FB_ERR_IMAGE: cls = st->image_error; break;
    case FB_ERR_MODEL: cls = st->model_error; break;
    case FB_ERR_PACKAGE: cls = st->package_error; break;
    case FB_ERR_CHECKSUM: cls = st->checksum_error; break;
    case FB_ERR_URL: cls = st->url_error; break;
    case FB_ERR_CRYPTO: cls = st->crypto_error; break;
    case FB_ERR_UNSUPPORTED: cls = st->unsupported_error; break;
    default: cls = st->error; break;
    }
    PyObject *exc = PyObject_CallFunction(cls, "s", err->message);
    if (!exc)
        return NULL;
    PyObject *message = PyUnicode_FromString(err->message);
    PyObject *code = PyLong_FromLong(err->code);
    PyObject *code_name = PyUnicode_FromString(fb_status_name(err->code));
    if (message && code && code_name && PyObject_SetAttrString(exc, "message", message) == 0 &&
        PyObject_SetAttrString(exc, "code", code) == 0 &&
        PyObject_SetAttrString(exc, "code_name", code_name) == 0)
        PyErr_SetObject(cls, exc);
    Py_XDECREF(message);
    Py_XDECREF(code);
    Py_XDECREF(code_name);
    Py_DECREF(exc);
    return NULL;
}

int core_model_arg(PyObject *module, PyObject *arg, const fb_model **out)
{
    *out = NULL;
    if (arg == NULL || arg == Py_None)
        return 0;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "model must be a str (M66, MC60, MC60E, M26 or auto)");
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
                     "unknown module model '%.40s': use M66, MC60, MC60E, M26 or auto", name);
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
        PyObject *item = Py_BuildValue("(sOss)", c->name, c->ok ? Py_True : Py_False,
                                       fb_status_name(c->code), c->detail);
        if (!item) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, item);
    }
    return t;
}
