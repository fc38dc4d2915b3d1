/* The extension's one wait rule and its one sliced wait.
 *
 * Timeouts (docs/bench-io.md, "Timeouts"): None waits for ever, 0 polls, a positive
 * number of seconds waits that long (so long that it cannot be told from for ever,
 * or inf, is for ever); negative and NaN raise ArgumentError naming the parameter.
 * The C core's deadlines follow the same rule (fotabench/clock.h).
 *
 * Blocking calls wait in slices of CORE_WAIT_SLICE_NS with the GIL released; between
 * slices, with the GIL held, they see Ctrl-C and a close() from another thread. */
#include "core.h"

#include <math.h>

#include "fotabench/clock.h"

static int arg_error(PyObject *module, const char *what, PyObject *arg)
{
    PyObject *shown = PyObject_Repr(arg);
    fb_error err;
    fb_error_set(&err, FB_ERR_ARG,
                 "%s must be None (wait for ever), 0 (do not wait) or seconds > 0, got %s",
                 what, shown ? PyUnicode_AsUTF8(shown) : "?");
    Py_XDECREF(shown);
    PyErr_Clear();
    core_raise(module, &err);
    return -1;
}

int core_timeout_arg(PyObject *module, PyObject *arg, const char *what, int64_t *ns_out)
{
    if (arg == NULL || arg == Py_None) {
        *ns_out = FB_DEADLINE_NEVER;
        return 0;
    }
    double s = PyFloat_AsDouble(arg);
    if (s == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s must be None or a number of seconds, not %.80s",
                         what, Py_TYPE(arg)->tp_name);
        }
        return -1;
    }
    if (isnan(s) || s < 0.0)
        return arg_error(module, what, arg);
    /* 2**63 ns is 292 years: anything as long is for ever. */
    *ns_out = s * 1e9 >= 9.2e18 ? FB_DEADLINE_NEVER : (int64_t)(s * 1e9);
    return 0;
}

int core_deadline_arg(PyObject *module, PyObject *arg, const char *what, int64_t *deadline)
{
    int64_t ns;
    if (core_timeout_arg(module, arg, what, &ns) < 0)
        return -1;
    *deadline = fb_deadline_in(ns);
    return 0;
}

int core_wait(PyObject *module, int64_t deadline, const int *closing, const char *what,
              core_step_fn step, void *ctx)
{
    for (;;) {
        int64_t now = fb_now_ns();
        int64_t slice = fb_deadline_add(now, CORE_WAIT_SLICE_NS);
        if (slice > deadline)
            slice = deadline;
        int done;
        Py_BEGIN_ALLOW_THREADS
        done = step(ctx, slice);
        Py_END_ALLOW_THREADS
        if (done || fb_now_ns() >= deadline)
            return 0;
        if (closing && *closing) {
            fb_error err;
            fb_error_set(&err, FB_ERR_CLOSED, "%s was closed by another thread while waiting",
                         what);
            core_raise(module, &err);
            return -1;
        }
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
}

void core_wait_idle(int *closing, const int *inflight)
{
    *closing = 1;
    while (*inflight > 0) { /* each wait ends within one slice once `closing` is set */
        Py_BEGIN_ALLOW_THREADS
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
    }
}

/* timeout_ns(value, name="timeout") -> int | None: the rule above, for the Python
 * layer's own loops (expect): None for ever, else nanoseconds. */
static PyObject *timeout_ns(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"value", "name", NULL};
    PyObject *value;
    const char *name = "timeout";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|s:timeout_ns", kwlist, &value, &name))
        return NULL;
    int64_t ns;
    if (core_timeout_arg(module, value, name, &ns) < 0)
        return NULL;
    if (ns == FB_DEADLINE_NEVER)
        Py_RETURN_NONE;
    return PyLong_FromLongLong((long long)ns);
}

PyMethodDef core_wait_methods[] = {
    {"timeout_ns", (PyCFunction)(void (*)(void))timeout_ns, METH_VARARGS | METH_KEYWORDS,
     "timeout_ns(value, name='timeout') -> int | None\n\nThe one timeout rule: None waits "
     "for ever (None), 0 polls, seconds > 0 wait that long (nanoseconds); negative or NaN "
     "raise ArgumentError naming the parameter."},
    {NULL, NULL, 0, NULL},
};
