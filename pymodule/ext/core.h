/* fotabench._core: shared declarations of the extension's files.
 *
 * The extension is a thin layer (one file per concern of the C core): it converts
 * arguments, releases the GIL around every call that touches files, and turns
 * fb_error into the matching Python exception. The pleasant API is the Python
 * package above it. */
#ifndef FOTABENCH_EXT_CORE_H
#define FOTABENCH_EXT_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "fotabench/error.h"
#include "fotabench/model.h"
#include "fotabench/report.h"

/* Per-module state: the exception classes (no C globals, per PEP 489/630). */
typedef struct core_state {
    PyObject *error;       /* FotabenchError */
    PyObject *arg_error;   /* ArgumentError(FotabenchError, ValueError) */
    PyObject *file_error;  /* FileError(FotabenchError, OSError) */
    PyObject *image_error;
    PyObject *model_error;
    PyObject *package_error;
    PyObject *checksum_error;
    PyObject *url_error;
    PyObject *crypto_error;
    PyObject *unsupported_error;
} core_state;

static inline core_state *core_get_state(PyObject *module)
{
    return (core_state *)PyModule_GetState(module);
}

/* Raise the exception for err; returns NULL for `return core_raise(...)`. */
PyObject *core_raise(PyObject *module, const fb_error *err);

/* Model argument: None or "auto" -> NULL (detect), else a known name. Returns 0 on
 * success, -1 with ArgumentError set. */
int core_model_arg(PyObject *module, PyObject *arg, const fb_model **out);

/* The report as a tuple of (name, ok, code_name, detail) tuples. */
PyObject *core_report_to_tuple(const fb_report *report);

int core_add_exceptions(PyObject *module);
void core_clear_state(core_state *st);
int core_traverse_state(core_state *st, visitproc visit, void *arg);

extern PyMethodDef core_md5_methods[];
extern PyMethodDef core_image_methods[];
extern PyMethodDef core_package_methods[];
extern PyMethodDef core_url_methods[];

#endif
