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
    PyObject *busy_error;     /* BusyError(FotabenchError) */
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
/* Raise ArgumentError (a FotabenchError and a ValueError) with a printf message. */
PyObject *core_arg_error(PyObject *module, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

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

/* Sliced waits (wait.c): blocking calls release the GIL and wait at most this long at
 * a time, then check for signals (Ctrl-C) and close() with the GIL held. */
#define CORE_WAIT_SLICE_NS (50 * 1000000LL)

/* The one timeout rule (wait.c): None (or NULL) -> FB_DEADLINE_NEVER, 0 -> 0 (poll),
 * seconds > 0 -> nanoseconds; negative or NaN -> ArgumentError naming `what`. Returns
 * 0, or -1 with an exception set. */
int core_timeout_arg(PyObject *module, PyObject *arg, const char *what, int64_t *ns_out);
/* The same as an absolute deadline of the core (fotabench/clock.h). */
int core_deadline_arg(PyObject *module, PyObject *arg, const char *what, int64_t *deadline);

/* One slice of a wait, run with the GIL released: wait at most until slice_deadline;
 * return 1 when the wait is over (done or failed: the step's ctx says), else 0. */
typedef int (*core_step_fn)(void *ctx, int64_t slice_deadline);

/* The one sliced wait: runs step in slices until it returns 1 or `deadline` passes
 * (0 then: the caller reads ctx; the first slice always runs, so a deadline of now
 * polls once). Between slices, with the GIL held: *closing set by close() in another
 * thread ends it with ClosedError naming `what`, a signal handler that raises
 * (Ctrl-C) with its exception: -1 then. closing may be NULL. */
int core_wait(PyObject *module, int64_t deadline, const int *closing, const char *what,
              core_step_fn step, void *ctx);

/* close(): set *closing and wait, GIL released, until no call is in flight. */
void core_wait_idle(int *closing, const int *inflight);

/* Bench I/O types: each file adds its type to the module and its state. */
int core_add_timeline_type(PyObject *module);
int core_add_serial_type(PyObject *module);
int core_add_modem_type(PyObject *module);
int core_add_gpio_type(PyObject *module);
int core_add_watchdog_type(PyObject *module); /* and WatchdogResultBase */
int core_add_flash_result_class(PyObject *module); /* FlashResultBase (flash.c) */

/* The fb_timeline inside a fotabench._core.Timeline, or NULL with TypeError (None is
 * refused too: callers test for None first when it is allowed). */
struct fb_timeline *core_timeline_get(PyObject *module, PyObject *obj);

extern PyMethodDef core_timeline_methods[];
extern PyMethodDef core_serial_methods[];
extern PyMethodDef core_md5_methods[];
extern PyMethodDef core_image_methods[];
extern PyMethodDef core_package_methods[];
extern PyMethodDef core_url_methods[];
extern PyMethodDef core_wait_methods[];
extern PyMethodDef core_flash_methods[];

#endif
