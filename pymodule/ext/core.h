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
    PyObject *timeout_error;  /* BenchTimeoutError(FotabenchError, TimeoutError) */
    PyObject *closed_error;   /* ClosedError(FotabenchError, ConnectionError) */
    PyObject *lost_error;     /* DataLostError(FotabenchError) */
    PyObject *protocol_error; /* ProtocolError(FotabenchError) */
    /* Bench I/O types (heap types, one file each). */
    PyObject *timeline_type;
    PyObject *serial_type;
    PyObject *modem_type;
    PyObject *gpio_type;
    PyObject *gpio_line_type;
    PyObject *watchdog_type;
} core_state;

static inline core_state *core_get_state(PyObject *module)
{
    return (core_state *)PyModule_GetState(module);
}

/* Whether a core thread may still take the GIL and call into Python (not while the
 * interpreter is finalizing: PyGILState_Ensure would hang or crash then). */
static inline int core_interpreter_alive(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return !Py_IsFinalizing();
#else
    return !_Py_IsFinalizing();
#endif
}

/* Raise the exception for err; returns NULL for `return core_raise(...)`. A
 * FB_ERR_CANCELLED with a Python exception pending (a signal handler's, e.g.
 * KeyboardInterrupt) keeps that exception. */
PyObject *core_raise(PyObject *module, const fb_error *err);

/* A long C operation run without the GIL, stoppable by signals: between chunks the C
 * side calls cancel.stop, which takes the GIL back for PyErr_CheckSignals (Ctrl-C, or
 * a Python handler that raises) and releases it again.
 *
 *     core_unlocked u;
 *     core_unlock(&u);            // Py_BEGIN_ALLOW_THREADS
 *     st = fb_something(..., &u.cancel, ...);
 *     core_relock(&u);            // Py_END_ALLOW_THREADS
 */
typedef struct core_unlocked {
    PyThreadState *save;
    fb_cancel cancel;
} core_unlocked;
void core_unlock(core_unlocked *u);
void core_relock(core_unlocked *u);

/* Model argument: None or "auto" -> NULL (detect), else a known name. Returns 0 on
 * success, -1 with ArgumentError set. */
int core_model_arg(PyObject *module, PyObject *arg, const fb_model **out);

/* The report as a tuple of (name, ok, code_name, detail, level) tuples. */
PyObject *core_report_to_tuple(const fb_report *report);

int core_add_exceptions(PyObject *module);
void core_clear_state(core_state *st);
int core_traverse_state(core_state *st, visitproc visit, void *arg);

/* Sliced waits: blocking calls release the GIL and wait at most this long at a time,
 * then check for signals (Ctrl-C) with the GIL held. */
#define CORE_WAIT_SLICE_NS (50 * 1000000LL)

/* Timeout argument: None -> -1 (forever), else seconds >= 0 -> nanoseconds. Returns 0,
 * or -1 with an exception set. */
int core_timeout_arg(PyObject *arg, const char *what, long long *ns_out);

/* Bench I/O types: each file adds its type to the module and its state. */
int core_add_timeline_type(PyObject *module);
int core_add_serial_type(PyObject *module);
int core_add_modem_type(PyObject *module);
int core_add_gpio_type(PyObject *module);
int core_add_watchdog_type(PyObject *module);

/* The fb_timeline inside a fotabench._core.Timeline, or NULL with TypeError (None is
 * refused too: callers test for None first when it is allowed). */
struct fb_timeline *core_timeline_get(PyObject *module, PyObject *obj);

extern PyMethodDef core_timeline_methods[];
extern PyMethodDef core_serial_methods[];
extern PyMethodDef core_md5_methods[];
extern PyMethodDef core_image_methods[];
extern PyMethodDef core_package_methods[];
extern PyMethodDef core_url_methods[];

#endif
