/* fotabench._core: app images (GFH header) and module profiles. */
#include "core.h"

#include "fotabench/appimage.h"
#include "image_fields.h"

/* The named candidates as a tuple of str (an unnamed row, seen once, has no name to give). */
static PyObject *candidate_names(const fb_app_info *a)
{
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && i < a->n_candidates; i++) {
        const char *name = a->candidates[i]->name;
        PyObject *s = name ? PyUnicode_FromString(name) : NULL;
        if (name && (!s || PyList_Append(list, s) < 0))
            Py_CLEAR(list);
        Py_XDECREF(s);
    }
    PyObject *t = list ? PyList_AsTuple(list) : NULL;
    Py_XDECREF(list);
    return t;
}

PyObject *core_app_fields(const fb_app_info *a)
{
    char magic[8];
    snprintf(magic, sizeof magic, "%02x%02x%02x", a->magic[0], a->magic[1], a->magic[2]);
    PyObject *candidates = candidate_names(a);
    if (!candidates)
        return NULL;
    return Py_BuildValue(
        "{s:s,s:i,s:i,s:i,s:y,s:k,s:i,s:i,s:i,s:k,s:k,s:k,s:k,s:k,s:k,s:k,s:K,s:s,s:N,s:s}",
        "magic", magic, "gfh_version", a->gfh_version, "gfh_size", a->gfh_size, "gfh_type",
        a->gfh_type, "id", a->id, "file_ver", (unsigned long)a->file_ver, "file_type",
        a->file_type, "flash_dev", a->flash_dev, "sig_type", a->sig_type, "load_address",
        (unsigned long)a->load_address, "file_length", (unsigned long)a->file_length,
        "max_size", (unsigned long)a->max_size, "content_offset",
        (unsigned long)a->content_offset, "sig_len", (unsigned long)a->sig_len, "jump_offset",
        (unsigned long)a->jump_offset, "attr", (unsigned long)a->attr, "image_size",
        (unsigned long long)a->image_size, "model", a->model ? a->model->name : NULL,
        "candidates", candidates, "platform", fb_platform_name(a->platform));
}

static PyObject *app_inspect(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path", "model", "strict", NULL};
    PyObject *path = NULL, *model_arg = Py_None;
    int strict = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|Op:app_inspect", kwlist,
                                     PyUnicode_FSConverter, &path, &model_arg, &strict))
        return NULL;
    const fb_model *model;
    if (core_model_arg(module, model_arg, &model) < 0) {
        Py_DECREF(path);
        return NULL;
    }
    fb_app_info info;
    fb_report report;
    fb_error err;
    fb_status st;
    fb_report_init(&report);
    Py_BEGIN_ALLOW_THREADS
    st = fb_app_image_inspect(PyBytes_AS_STRING(path), model, &info, &report, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (st == FB_ERR_IO || st == FB_ERR_NOMEM || (strict && st != FB_OK))
        return core_raise(module, &err);
    PyObject *fields = core_app_fields(&info);
    PyObject *checks = fields ? core_report_to_tuple(&report) : NULL;
    if (!checks) {
        Py_XDECREF(fields);
        return NULL;
    }
    return Py_BuildValue("(NN)", fields, checks);
}

/* The model's row at load_address (its usual one when None): a model may have several. */
static int model_row(PyObject *module, const fb_model **model, PyObject *load_arg)
{
    if (load_arg == Py_None || !*model)
        return 0;
    unsigned long load = PyLong_AsUnsignedLong(load_arg);
    if (load == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    const fb_model *row = load <= 0xFFFFFFFFul ? fb_model_find_at((*model)->name, (uint32_t)load)
                                               : NULL;
    if (!row) {
        char where[96];
        size_t o = 0;
        where[0] = '\0';
        for (size_t i = 0; i < fb_model_count() && o < sizeof where; i++) {
            const fb_model *m = fb_model_at(i);
            if (m->name && strcmp(m->name, (*model)->name) == 0)
                o += (size_t)snprintf(where + o, sizeof where - o, "%s0x%08X", o ? ", " : "",
                                      m->load_address);
        }
        fb_error err;
        fb_error_set(&err, FB_ERR_ARG, "load address 0x%08lX: the %s app loads at %s", load,
                     (*model)->name, where);
        core_raise(module, &err);
        return -1;
    }
    *model = row;
    return 0;
}

static PyObject *app_wrap(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"raw", "out", "model", "load_address", NULL};
    PyObject *raw = NULL, *out = NULL, *model_arg, *load_arg = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&O|O:app_wrap", kwlist,
                                     PyUnicode_FSConverter, &raw, PyUnicode_FSConverter, &out,
                                     &model_arg, &load_arg)) {
        Py_XDECREF(raw);
        return NULL;
    }
    const fb_model *model;
    PyObject *result = NULL;
    if (core_model_arg(module, model_arg, &model) == 0 &&
        model_row(module, &model, load_arg) == 0) {
        fb_app_info info;
        fb_report report;
        fb_error err;
        fb_status st;
        core_unlocked u;
        fb_report_init(&report);
        core_unlock(&u);
        st = fb_app_image_wrap(PyBytes_AS_STRING(raw), model, PyBytes_AS_STRING(out),
                               &u.cancel, &info, &report, &err);
        core_relock(&u);
        if (st != FB_OK)
            result = core_raise(module, &err);
        else {
            /* The check of the header this call wrote: never re-read from out. */
            PyObject *fields = core_app_fields(&info);
            PyObject *checks = fields ? core_report_to_tuple(&report) : NULL;
            result = checks ? Py_BuildValue("(NN)", fields, checks) : NULL;
            if (!checks)
                Py_XDECREF(fields);
        }
    }
    Py_DECREF(raw);
    Py_DECREF(out);
    return result;
}

static PyObject *app_header(PyObject *module, PyObject *args)
{
    (void)module;
    unsigned long load, length;
    if (!PyArg_ParseTuple(args, "kk:app_header", &load, &length))
        return NULL;
    if (load > 0xFFFFFFFFul || length > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_OverflowError, "load address and length are 32-bit fields");
        return NULL;
    }
    uint8_t h[FB_GFH_SIZE];
    fb_app_image_header(h, (uint32_t)load, (uint32_t)length);
    return PyBytes_FromStringAndSize((const char *)h, FB_GFH_SIZE);
}

static PyObject *models(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    PyObject *t = PyTuple_New((Py_ssize_t)fb_model_count());
    for (size_t i = 0; t && i < fb_model_count(); i++) {
        const fb_model *m = fb_model_at(i);
        PyObject *item = Py_BuildValue(
            "(zkkss)", m->name, (unsigned long)m->load_address, (unsigned long)m->region_size,
            m->evidence == FB_EVIDENCE_LINKER ? "linker-scripts" : "seen-once", m->source);
        if (!item) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, item);
    }
    return t;
}

PyMethodDef core_image_methods[] = {
    {"app_inspect", (PyCFunction)(void (*)(void))app_inspect, METH_VARARGS | METH_KEYWORDS,
     "app_inspect(path, model=None, strict=False) -> (fields, checks)\n\nDecode and check an "
     "app image. model None/'auto' detects it from the load address. strict raises the "
     "first failed check; otherwise only unreadable files raise."},
    {"app_wrap", (PyCFunction)(void (*)(void))app_wrap, METH_VARARGS | METH_KEYWORDS,
     "app_wrap(raw, out, model, load_address=None) -> (fields, checks)\n\nPrepend a GFH header for "
     "model (at load_address, one of the model's; its usual one when None) to a raw binary; "
     "out appears only when complete."},
    {"app_header", app_header, METH_VARARGS,
     "app_header(load_address, file_length) -> bytes\n\nThe 64-byte GFH header."},
    {"models", models, METH_NOARGS,
     "models() -> tuple of (name, load_address, region_size, evidence, source)\n\nOne row "
     "per (model, app address) seen; name None where the source does not record the model, "
     "region_size 0 where it is not known."},
    {NULL, NULL, 0, NULL},
};
