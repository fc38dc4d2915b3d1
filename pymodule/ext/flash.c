/* fotabench._core: flashing over UART (fotabench/flash.h). One blocking call runs the
 * whole session with the GIL released; the trace, progress and cancel callbacks take it
 * back for a moment. Ctrl-C is seen by the cancel poll (every 50 ms at most) and ends
 * the session with KeyboardInterrupt; an exception in a Python callback ends it too and
 * is re-raised. Signals reach only the main thread, so a session on another thread (a
 * station's slot) is stopped through the cancel callable, asked at the same poll. */
#include "serialobj.h"
#include "results.h"

#include "fotabench/flash.h"

typedef struct flash_ctx {
    PyObject *progress; /* callable or NULL */
    PyObject *trace;    /* callable or NULL */
    PyObject *cancel;   /* callable or NULL: truthy (or raising) stops the session */
    PyObject *exc_type, *exc_value, *exc_tb; /* the first exception, kept for the caller */
} flash_ctx;

/* With the GIL held: keep the pending exception, if it is the first. */
static void keep_exception(flash_ctx *c)
{
    if (c->exc_type) {
        PyErr_Clear();
        return;
    }
    PyErr_Fetch(&c->exc_type, &c->exc_value, &c->exc_tb);
}

static int on_cancel(void *ctx)
{
    flash_ctx *c = ctx;
    if (!core_interpreter_alive())
        return 1;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = c->exc_type != NULL;
    if (!stop && PyErr_CheckSignals() < 0) {
        keep_exception(c);
        stop = 1;
    }
    if (!stop && c->cancel) {
        PyObject *r = PyObject_CallNoArgs(c->cancel);
        int yes = r ? PyObject_IsTrue(r) : -1;
        Py_XDECREF(r);
        if (yes > 0)
            PyErr_SetString(PyExc_KeyboardInterrupt, "flash cancelled");
        if (yes != 0) {
            keep_exception(c);
            stop = 1;
        }
    }
    PyGILState_Release(g);
    return stop;
}

static int on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    flash_ctx *c = ctx;
    if (!c->progress)
        return 0;
    if (!core_interpreter_alive())
        return 1;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = c->exc_type != NULL;
    if (!stop) {
        PyObject *r = PyObject_CallFunction(c->progress, "sKK", phase, (unsigned long long)done,
                                            (unsigned long long)total);
        if (!r) {
            keep_exception(c);
            stop = 1;
        }
        Py_XDECREF(r);
    }
    PyGILState_Release(g);
    return stop;
}

static void on_trace(void *ctx, int direction, const uint8_t *data, size_t n, int64_t t_ns)
{
    flash_ctx *c = ctx;
    if (!c->trace || !core_interpreter_alive())
        return;
    PyGILState_STATE g = PyGILState_Ensure();
    if (!c->exc_type) {
        PyObject *r = PyObject_CallFunction(c->trace, "sy#L",
                                            direction == FB_FLASH_TRACE_TX ? "tx" : "rx",
                                            (const char *)data, (Py_ssize_t)n, (long long)t_ns);
        if (!r)
            keep_exception(c); /* the next cancel poll ends the session */
        Py_XDECREF(r);
    }
    PyGILState_Release(g);
}

/* FlashResult's fields, declared once (results.h): name, kind, value from `r` (and the
 * two strings made first). fotabench.FlashResult and the .pyi follow this table. */
#define FLASH_RESULT(X)                                                                    \
    X(chip, STR, r->chip ? r->chip->name : "")                                             \
    X(model, STR, r->model ? r->model->name : "")                                          \
    X(hw_id, INT, r->hw_id)                                                                \
    X(brom_version, INT, r->brom_version)                                                  \
    X(target_config, UINT, r->target_config)                                               \
    X(me_id, STR, me)                                                                      \
    X(da_version, STR, dav)                                                                \
    X(baud, INT, r->baud)                                                                  \
    X(address, UINT, r->address)                                                           \
    X(length, UINT, r->length)                                                             \
    X(checksum, UINT, r->checksum)                                                         \
    X(nor_id, UINT, r->info.nor_id)                                                        \
    X(packets, UINT, r->packets)                                                           \
    X(resends, UINT, r->resends)                                                           \
    X(erase_units, UINT, r->erase_units)                                                   \
    X(tx_bytes, UINT, r->tx_bytes)                                                         \
    X(rx_bytes, UINT, r->rx_bytes)                                                         \
    X(data_bytes, UINT, r->data_tx_bytes)                                                  \
    X(handshake_ns, INT, r->handshake_ns)                                                  \
    X(agent_ns, INT, r->agent_ns)                                                          \
    X(erase_ns, INT, r->erase_ns)                                                          \
    X(write_ns, INT, r->write_ns)                                                          \
    X(verify_ns, INT, r->verify_ns)                                                        \
    X(total_ns, INT, r->total_ns)                                                          \
    X(verified, BOOL, r->verified)

static const core_field flash_fields[] = {FLASH_RESULT(CORE_RESULT_FIELD)};
#define FLASH_FIELD_COUNT (sizeof flash_fields / sizeof flash_fields[0])

/* The values in flash_fields' order (fotabench.FlashResult(*values)). */
static PyObject *result_values(const fb_flash_result *r)
{
    char me[33];
    for (int i = 0; i < 16; i++)
        snprintf(me + 2 * i, 3, "%02x", r->me_id[i]);
    char dav[16];
    snprintf(dav, sizeof dav, "%u.%u", r->da.major, r->da.minor);
    PyObject *values[] = {FLASH_RESULT(CORE_RESULT_VALUE)};
    return core_result_tuple(values, FLASH_FIELD_COUNT);
}

int core_add_flash_result_class(PyObject *module)
{
    return core_add_result_class(module, "FlashResultBase",
                                 "A flash's figures (times in ns), the fields of "
                                 "fotabench.FlashResult, in the order flash() returns them.",
                                 flash_fields, FLASH_FIELD_COUNT);
}

static PyObject *da_entries(const fb_da_file *da)
{
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && i < fb_da_file_count(da); i++) {
        const fb_da_entry *e = fb_da_file_entry(da, i);
        PyObject *regions = PyList_New(0);
        for (uint16_t r = 0; regions && r < e->region_count; r++) {
            const fb_da_region *g = &e->regions[r];
            PyObject *t = Py_BuildValue("(kkkk)", (unsigned long)g->file_offset,
                                        (unsigned long)g->length,
                                        (unsigned long)g->start_address,
                                        (unsigned long)g->sig_len);
            if (!t || PyList_Append(regions, t) < 0)
                Py_CLEAR(regions);
            Py_XDECREF(t);
        }
        PyObject *d = regions ? Py_BuildValue("{s:i,s:i,s:i,s:N}", "hw_code", e->hw_code,
                                              "hw_sub_code", e->hw_sub_code,
                                              "entry_region_index", e->entry_region_index,
                                              "regions", regions)
                              : NULL;
        if (!d || PyList_Append(list, d) < 0)
            Py_CLEAR(list);
        Py_XDECREF(d);
    }
    return list;
}

static PyObject *py_da_inspect(PyObject *module, PyObject *arg)
{
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    fb_error err;
    fb_da_file *da;
    Py_BEGIN_ALLOW_THREADS
    da = fb_da_file_load(PyBytes_AS_STRING(path), &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (!da)
        return core_raise(module, &err);
    PyObject *entries = da_entries(da);
    PyObject *out = entries ? Py_BuildValue("{s:s,s:k,s:N}", "id", fb_da_file_id(da), "version",
                                            (unsigned long)fb_da_file_version(da), "entries",
                                            entries)
                            : NULL;
    fb_da_file_free(da);
    return out;
}

static PyObject *py_chips(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && i < fb_chip_count(); i++) {
        const fb_chip *c = fb_chip_at(i);
        PyObject *models = PyTuple_New(0);
        for (int m = 0; models && m < 4 && c->models[m]; m++) {
            PyObject *s = PyUnicode_FromString(c->models[m]);
            if (!s || _PyTuple_Resize(&models, m + 1) < 0) {
                Py_XDECREF(s);
                Py_CLEAR(models);
                break;
            }
            PyTuple_SET_ITEM(models, m, s);
        }
        PyObject *t = models ? Py_BuildValue("(siiN)", c->name, c->hw_id, c->da_hw_code, models)
                             : NULL;
        if (!t || PyList_Append(list, t) < 0)
            Py_CLEAR(list);
        Py_XDECREF(t);
    }
    return list;
}

static PyObject *py_flash(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"port",       "da",        "image",  "baud",     "verify",
                             "reset",      "handshake_timeout",   "answer_timeout",
                             "max_resends", "timeline", "source", "progress", "trace", "cancel",
                             NULL};
    PyObject *port_obj, *da_path = NULL, *timeline = Py_None, *progress = Py_None,
                        *trace = Py_None, *hs = Py_None, *cancel = Py_None;
    Py_buffer image;
    int baud = 921600, verify = 0, reset = 1, max_resends = 3;
    double answer_timeout = 3.0;
    const char *source = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO&y*|ippOdiOzOOO:flash", kwlist, &port_obj,
                                     PyUnicode_FSConverter, &da_path, &image, &baud, &verify,
                                     &reset, &hs, &answer_timeout, &max_resends, &timeline,
                                     &source, &progress, &trace, &cancel)) {
        Py_XDECREF(da_path);
        return NULL;
    }
    core_state *st = core_get_state(module);
    PyObject *result = NULL;
    fb_da_file *da = NULL;
    fb_flash_config cfg;
    fb_flash_config_init(&cfg);
    int64_t hs_ns;
    flash_ctx ctx = {NULL, NULL, NULL, NULL, NULL, NULL};
    SerialObject *port = NULL;
    if (!PyObject_TypeCheck(port_obj, (PyTypeObject *)st->serial_type)) {
        PyErr_SetString(PyExc_TypeError, "port must be a fotabench._core.SerialPort");
        goto out;
    }
    port = (SerialObject *)port_obj;
    if (core_timeout_arg(module, hs, "handshake_timeout", &hs_ns) < 0)
        goto out;
    if (!(answer_timeout > 0) || answer_timeout > 3600) {
        PyErr_SetString(PyExc_ValueError, "answer_timeout must be in (0, 3600] s");
        goto out;
    }
    if (max_resends < 0 || max_resends > 100) {
        PyErr_SetString(PyExc_ValueError, "max_resends must be 0..100");
        goto out;
    }
    cfg.baud = baud;
    cfg.verify = verify;
    cfg.reset = reset;
    cfg.handshake_timeout_ns = hs_ns; /* None: FB_DEADLINE_NEVER, the one rule */
    cfg.answer_timeout_ns = (int64_t)(answer_timeout * 1e9);
    cfg.max_resends = max_resends;
    cfg.source = source;
    if (timeline != Py_None && !(cfg.timeline = core_timeline_get(module, timeline)))
        goto out;
    if (progress != Py_None)
        ctx.progress = progress;
    if (trace != Py_None)
        ctx.trace = trace;
    if (cancel != Py_None) {
        if (!PyCallable_Check(cancel)) {
            PyErr_SetString(PyExc_TypeError, "cancel must be callable or None");
            goto out;
        }
        ctx.cancel = cancel;
    }
    cfg.progress = on_progress;
    cfg.trace = on_trace;
    cfg.cancel.stop = on_cancel;
    cfg.cancel.ctx = &ctx;
    cfg.ctx = &ctx;
    fb_error err;
    Py_BEGIN_ALLOW_THREADS
    da = fb_da_file_load(PyBytes_AS_STRING(da_path), &err);
    Py_END_ALLOW_THREADS
    if (!da) {
        core_raise(module, &err);
        goto out;
    }
    if (core_serial_enter(port) < 0)
        goto out;
    fb_flash_result res;
    fb_status rc;
    fb_flasher *fl = fb_flasher_new(port->port, da, &cfg, &err);
    rc = fl ? FB_OK : err.code;
    if (fl) {
        Py_BEGIN_ALLOW_THREADS
        rc = fb_flasher_flash(fl, image.buf, (size_t)image.len, &res, &err);
        Py_END_ALLOW_THREADS
        fb_flasher_free(fl);
    }
    core_serial_leave(port);
    if (ctx.exc_type) {
        PyErr_Restore(ctx.exc_type, ctx.exc_value, ctx.exc_tb);
        ctx.exc_type = NULL;
    } else if (rc != FB_OK) {
        core_raise(module, &err);
    } else {
        result = result_values(&res);
    }
out:
    fb_da_file_free(da);
    PyBuffer_Release(&image);
    Py_XDECREF(da_path);
    return result;
}

PyMethodDef core_flash_methods[] = {
    {"flash", (PyCFunction)(void (*)(void))py_flash, METH_VARARGS | METH_KEYWORDS,
     "flash(port, da, image, baud=921600, verify=False, reset=True, handshake_timeout=None, "
     "answer_timeout=3.0, max_resends=3, timeline=None, source=None, progress=None, "
     "trace=None, cancel=None) -> tuple\n\nFlash an app image through the BootROM (GIL released); "
     "the figures in the order of FlashResultBase's fields."},
    {"da_inspect", py_da_inspect, METH_O, "da_inspect(path) -> dict\n\nRead a DA file."},
    {"flash_chips", py_chips, METH_NOARGS,
     "flash_chips() -> list\n\n(name, hw_id, da_hw_code, models) of the chips known."},
    {NULL, NULL, 0, NULL},
};
