/* fotabench._core: FOTA packages (build, inspect). */
#include "core.h"

#include "fotabench/package.h"
#include "image_fields.h"

static PyObject *package_fields(const fb_package_info *p)
{
    char stored[FB_MD5_HEX_LEN], computed[FB_MD5_HEX_LEN];
    const fb_package_header *h = &p->header;
    fb_hex(p->md5_stored, FB_MD5_LEN, stored);
    fb_hex(p->md5_computed, FB_MD5_LEN, computed);
    PyObject *app = p->app_valid ? core_app_fields(&p->app) : Py_NewRef(Py_None);
    if (!app)
        return NULL;
    return Py_BuildValue(
        "{s:K,s:O,s:y#,s:i,s:i,s:k,s:k,s:k,s:k,s:i,s:z,s:z,s:N}", "file_size",
        (unsigned long long)p->file_size, "header_valid", p->header_valid ? Py_True : Py_False,
        "magic", (const char *)h->magic, (Py_ssize_t)(p->header_valid ? FB_PKG_MAGIC_LEN : 0),
        "image_type", h->image_type, "checksum_type", h->checksum_type, "special",
        (unsigned long)h->special, "payload_length", (unsigned long)h->payload_length,
        "digest_length", (unsigned long)h->digest_length, "header_crc",
        (unsigned long)h->crc_field, "header_crc_computed", h->crc_computed, "md5",
        p->md5_valid ? stored : NULL, "md5_computed", p->md5_valid ? computed : NULL, "app",
        app);
}

static PyObject *inspect_result(PyObject *module, fb_status st, int strict,
                                const fb_package_info *info, const fb_report *report,
                                const fb_error *err);

static PyObject *package_build(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"app", "out", "model", "special", "image_type", NULL};
    PyObject *app = NULL, *out = NULL, *model_arg = Py_None;
    unsigned int special = 0;
    int image_type = FB_IMAGE_APP;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&|OIi:package_build", kwlist,
                                     PyUnicode_FSConverter, &app, PyUnicode_FSConverter, &out,
                                     &model_arg, &special, &image_type)) {
        Py_XDECREF(app);
        return NULL;
    }
    const fb_model *model;
    PyObject *result = NULL;
    if (core_model_arg(module, model_arg, &model) == 0) {
        fb_package_info info;
        fb_report report;
        fb_error err;
        fb_status st;
        core_unlocked u;
        fb_report_init(&report);
        core_unlock(&u);
        st = fb_package_build(PyBytes_AS_STRING(app), PyBytes_AS_STRING(out), model,
                              (fb_image_type)image_type, special, &u.cancel, &info, &report,
                              &err);
        core_relock(&u);
        /* What this call wrote, as verified before the rename: never re-read from out. */
        result = st == FB_OK ? inspect_result(module, st, 0, &info, &report, &err)
                             : core_raise(module, &err);
    }
    Py_DECREF(app);
    Py_DECREF(out);
    return result;
}

static PyObject *inspect_result(PyObject *module, fb_status st, int strict,
                                const fb_package_info *info, const fb_report *report,
                                const fb_error *err)
{
    if (st == FB_ERR_IO || st == FB_ERR_NOMEM || st == FB_ERR_CRYPTO || (strict && st != FB_OK))
        return core_raise(module, err);
    PyObject *fields = package_fields(info);
    PyObject *checks = fields ? core_report_to_tuple(report) : NULL;
    if (!checks) {
        Py_XDECREF(fields);
        return NULL;
    }
    return Py_BuildValue("(NN)", fields, checks);
}

static PyObject *package_inspect(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path", "model", "strict", NULL};
    PyObject *path = NULL, *model_arg = Py_None;
    int strict = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|Op:package_inspect", kwlist,
                                     PyUnicode_FSConverter, &path, &model_arg, &strict))
        return NULL;
    const fb_model *model;
    if (core_model_arg(module, model_arg, &model) < 0) {
        Py_DECREF(path);
        return NULL;
    }
    fb_package_info info;
    fb_report report;
    fb_error err;
    fb_status st;
    fb_report_init(&report);
    Py_BEGIN_ALLOW_THREADS
    st = fb_package_check_file(PyBytes_AS_STRING(path), model, &info, &report, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    return inspect_result(module, st, strict, &info, &report, &err);
}

static PyObject *package_inspect_bytes(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"data", "model", "strict", NULL};
    Py_buffer data;
    PyObject *model_arg = Py_None;
    int strict = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|Op:package_inspect_bytes", kwlist,
                                     &data, &model_arg, &strict))
        return NULL;
    const fb_model *model;
    if (core_model_arg(module, model_arg, &model) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    fb_package_info info;
    fb_report report;
    fb_error err;
    fb_status st;
    fb_report_init(&report);
    Py_BEGIN_ALLOW_THREADS
    st = fb_package_check_buffer(data.buf, (size_t)data.len, model, &info, &report, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return inspect_result(module, st, strict, &info, &report, &err);
}

PyMethodDef core_package_methods[] = {
    {"package_build", (PyCFunction)(void (*)(void))package_build, METH_VARARGS | METH_KEYWORDS,
     "package_build(app, out, model=None, special=0, image_type=0) -> (fields, checks)\n\n"
     "Package an app image; out appears only when complete and verified, and the result is "
     "that verification of what this call wrote. Ctrl-C stops it, leaving no file."},
    {"package_inspect", (PyCFunction)(void (*)(void))package_inspect,
     METH_VARARGS | METH_KEYWORDS,
     "package_inspect(path, model=None, strict=False) -> (fields, checks)\n\nEvery check of "
     "a package file. strict raises the first failure."},
    {"package_inspect_bytes", (PyCFunction)(void (*)(void))package_inspect_bytes,
     METH_VARARGS | METH_KEYWORDS,
     "package_inspect_bytes(data, model=None, strict=False) -> (fields, checks)\n\nThe same "
     "on a bytes-like object."},
    {NULL, NULL, 0, NULL},
};
