/* fotabench._core.WatchdogMonitor: the C core's fb_watchdog on a GpioLine (live) or
 * fed by hand (recorded waveforms). */
#include "gpioobj.h"
#include "results.h"

#include <time.h>

#include "fotabench/clock.h"

typedef struct {
    PyObject_HEAD
    fb_watchdog *w;
    PyObject *line;     /* the GpioLine watched, or NULL */
    PyObject *timeline; /* or NULL */
    int live_attached;  /* listening to the line */
    int closing;
    int inflight;       /* calls in progress with the GIL released (close waits) */
    PyObject *weakrefs; /* the line's reference to this monitor */
} WatchdogObject;

static PyObject *module_of(PyObject *self)
{
    return PyType_GetModule(Py_TYPE(self));
}

/* WatchdogResult's fields, declared once (results.h); fotabench.WatchdogResult and the
 * .pyi follow this table. */
#define WATCHDOG_RESULT(X)                                                                 \
    X(start_ns, INT, r->start_ns)                                                          \
    X(stop_ns, INT, r->stop_ns)                                                            \
    X(edges, UINT, r->edges)                                                               \
    X(longest_gap_ns, INT, r->longest_gap_ns)                                              \
    X(longest_gap_at_ns, INT, r->longest_gap_at_ns)                                        \
    X(shortest_interval_ns, INT, r->shortest_interval_ns)                                  \
    X(mean_interval_ns, INT, r->mean_interval_ns)                                          \
    X(first_edge_ns, INT, r->first_edge_ns)                                                \
    X(last_edge_ns, INT, r->last_edge_ns)                                                  \
    X(timeout_ns, INT, r->timeout_ns)                                                      \
    X(over_two_thirds, BOOL, r->over_two_thirds)                                           \
    X(over_timeout, BOOL, r->over_timeout)                                                 \
    X(lost, UINT, r->lost)                                                                 \
    X(running, BOOL, r->running)

static const core_field watchdog_fields[] = {WATCHDOG_RESULT(CORE_RESULT_FIELD)};
#define WATCHDOG_FIELD_COUNT (sizeof watchdog_fields / sizeof watchdog_fields[0])

/* The values in watchdog_fields' order (fotabench.WatchdogResult(*values)). */
static PyObject *result_values(const fb_watchdog_result *r)
{
    PyObject *values[] = {WATCHDOG_RESULT(CORE_RESULT_VALUE)};
    return core_result_tuple(values, WATCHDOG_FIELD_COUNT);
}

static PyObject *wd_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"line", "timeout", "timeline", "source", "start_ns", NULL};
    PyObject *line = Py_None, *timeline = Py_None;
    double timeout = 1.6;
    const char *source = NULL;
    long long start_ns = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OdOzL:WatchdogMonitor", kwlist, &line,
                                     &timeout, &timeline, &source, &start_ns))
        return NULL;
    PyObject *module = PyType_GetModule(type);
    if (!(timeout > 0) || timeout > 3600)
        return core_arg_error(module, "timeout must be in (0, 3600] s, got %g", timeout);
    if (start_ns < 0)
        return core_arg_error(module, "start_ns must be >= 0, got %lld", start_ns);
    fb_timeline *tl = NULL;
    if (timeline != Py_None && !(tl = core_timeline_get(module, timeline)))
        return NULL;
    GpioLineObject *lo = NULL;
    if (line != Py_None) {
        if (core_gpio_line_check(module, line, &lo) < 0)
            return NULL;
        if (start_ns)
            return core_arg_error(module, "start_ns is for recorded waveforms, not a live line");
    }
    WatchdogObject *self = (WatchdogObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    if (timeline != Py_None)
        self->timeline = Py_NewRef(timeline);
    fb_error err;
    fb_watchdog *w;
    int64_t t = (int64_t)(timeout * 1e9);
    Py_BEGIN_ALLOW_THREADS
    w = lo ? fb_watchdog_watch(lo->line, t, tl, source, &err)
           : fb_watchdog_new(t, start_ns, tl, source, &err);
    Py_END_ALLOW_THREADS
    if (!w) {
        Py_DECREF(self);
        return core_raise(module, &err);
    }
    self->w = w;
    if (lo) {
        if (core_weak_list_add(lo->monitors, (PyObject *)self) < 0) {
            Py_DECREF(self);
            return NULL;
        }
        self->line = Py_NewRef(line);
        self->live_attached = 1;
    }
    return (PyObject *)self;
}

void core_watchdog_detach(PyObject *op)
{
    WatchdogObject *self = (WatchdogObject *)op;
    if (!self->w || !self->live_attached)
        return;
    self->live_attached = 0;
    fb_watchdog *w = self->w;
    Py_BEGIN_ALLOW_THREADS
    fb_watchdog_stop(w, 0, NULL);
    Py_END_ALLOW_THREADS
}

static void drop_from_line(WatchdogObject *self)
{
    if (!self->line)
        return;
    core_weak_list_remove(((GpioLineObject *)self->line)->monitors, (PyObject *)self);
}

static void wd_close(WatchdogObject *self)
{
    core_wait_idle(&self->closing, &self->inflight);
    core_watchdog_detach((PyObject *)self);
    if (self->w) {
        fb_watchdog *w = self->w;
        self->w = NULL;
        Py_BEGIN_ALLOW_THREADS
        fb_watchdog_free(w);
        Py_END_ALLOW_THREADS
    }
}

static int wd_traverse(PyObject *op, visitproc visit, void *arg)
{
    WatchdogObject *self = (WatchdogObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->line);
    Py_VISIT(self->timeline);
    return 0;
}

static int wd_clear(PyObject *op)
{
    WatchdogObject *self = (WatchdogObject *)op;
    wd_close(self);
    drop_from_line(self);
    Py_CLEAR(self->line);
    Py_CLEAR(self->timeline);
    return 0;
}

static void wd_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (((WatchdogObject *)op)->weakrefs)
        PyObject_ClearWeakRefs(op);
    wd_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static int need(WatchdogObject *self)
{
    if (!self->w || self->closing) {
        fb_error err;
        fb_error_set(&err, FB_ERR_CLOSED, "the watchdog monitor is closed");
        core_raise(module_of((PyObject *)self), &err);
        return -1;
    }
    return 0;
}

static PyObject *wd_feed(PyObject *op, PyObject *arg)
{
    WatchdogObject *self = (WatchdogObject *)op;
    long long t = PyLong_AsLongLong(arg);
    if ((t == -1 && PyErr_Occurred()) || need(self) < 0)
        return NULL;
    fb_watchdog_feed(self->w, t);
    Py_RETURN_NONE;
}

static PyObject *wd_stop(PyObject *op, PyObject *args)
{
    WatchdogObject *self = (WatchdogObject *)op;
    long long stop_ns = 0;
    if (!PyArg_ParseTuple(args, "|L:stop", &stop_ns) || need(self) < 0)
        return NULL;
    fb_watchdog_result r;
    fb_watchdog *w = self->w;
    self->live_attached = 0;
    self->inflight++;
    Py_BEGIN_ALLOW_THREADS
    fb_watchdog_stop(w, stop_ns, &r);
    Py_END_ALLOW_THREADS
    self->inflight--;
    drop_from_line(self);
    return result_values(&r);
}

static PyObject *wd_result(PyObject *op, PyObject *unused)
{
    (void)unused;
    WatchdogObject *self = (WatchdogObject *)op;
    if (need(self) < 0)
        return NULL;
    fb_watchdog_result r;
    fb_watchdog_get(self->w, &r);
    return result_values(&r);
}

static PyObject *wd_intervals(PyObject *op, PyObject *unused)
{
    (void)unused;
    WatchdogObject *self = (WatchdogObject *)op;
    if (need(self) < 0)
        return NULL;
    for (;;) {
        size_t n = fb_watchdog_intervals(self->w, NULL, 0);
        int64_t *buf = PyMem_Malloc((n ? n : 1) * sizeof *buf);
        if (!buf)
            return PyErr_NoMemory();
        size_t m = fb_watchdog_intervals(self->w, buf, n);
        if (m > n) { /* grew meanwhile */
            PyMem_Free(buf);
            continue;
        }
        PyObject *list = PyList_New((Py_ssize_t)m);
        for (size_t i = 0; list && i < m; i++) {
            PyObject *v = PyLong_FromLongLong(buf[i]);
            if (!v) {
                Py_CLEAR(list);
                break;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, v);
        }
        PyMem_Free(buf);
        return list;
    }
}

typedef struct stall_step {
    fb_watchdog *w;
    int64_t threshold, gap;
    int stalled;
} stall_step;

static int stall_slice(void *ctx, int64_t slice)
{
    stall_step *x = ctx;
    fb_watchdog_wait_stall(x->w, x->threshold, slice, &x->stalled, &x->gap);
    if (x->stalled)
        return 1;
    fb_watchdog_result r;
    fb_watchdog_get(x->w, &r);
    return !r.running; /* stopped: no stall will come */
}

static PyObject *wd_wait_stall(PyObject *op, PyObject *args)
{
    WatchdogObject *self = (WatchdogObject *)op;
    double threshold;
    PyObject *timeout_arg = Py_None;
    if (!PyArg_ParseTuple(args, "d|O:wait_stall", &threshold, &timeout_arg))
        return NULL;
    int64_t deadline;
    if (core_deadline_arg(module_of(op), timeout_arg, "timeout", &deadline) < 0 ||
        need(self) < 0)
        return NULL;
    stall_step x = {self->w, (int64_t)(threshold * 1e9), 0, 0};
    self->inflight++;
    int r = core_wait(module_of(op), deadline, &self->closing, "the watchdog monitor",
                      stall_slice, &x);
    self->inflight--;
    if (r < 0)
        return NULL;
    if (!x.stalled)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(x.gap);
}

static PyObject *wd_close_m(PyObject *op, PyObject *unused)
{
    (void)unused;
    WatchdogObject *self = (WatchdogObject *)op;
    wd_close(self);
    drop_from_line(self);
    Py_RETURN_NONE;
}

static PyMethodDef wd_methods[] = {
    {"feed", wd_feed, METH_O, "feed(t_ns) -> None\n\nOne edge (recorded waveforms)."},
    {"stop", wd_stop, METH_VARARGS,
     "stop(stop_ns=0) -> tuple\n\nEnd the watch; the verdict (WatchdogResultBase's fields)."},
    {"result", wd_result, METH_NOARGS,
     "result() -> tuple\n\nThe figures so far (WatchdogResultBase's fields)."},
    {"intervals", wd_intervals, METH_NOARGS, "intervals() -> list of ns between edges"},
    {"wait_stall", wd_wait_stall, METH_VARARGS,
     "wait_stall(threshold_s, timeout=None) -> gap_ns or None\n\nReturn when the current gap "
     "exceeds threshold_s (None at the timeout or after stop)."},
    {"close", wd_close_m, METH_NOARGS, "close() -> None"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef wd_members[] = {
    CORE_WEAKLIST_MEMBER(WatchdogObject),
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot wd_slots[] = {
    {Py_tp_members, wd_members},
    {Py_tp_doc, "WatchdogMonitor(line=None, timeout=1.6, timeline=None, source=None, "
                "start_ns=0)\n--\n\nThe C core's watchdog monitor. The Python API is "
                "fotabench.WatchdogMonitor."},
    {Py_tp_new, wd_new},
    {Py_tp_dealloc, wd_dealloc},
    {Py_tp_traverse, wd_traverse},
    {Py_tp_clear, wd_clear},
    {Py_tp_methods, wd_methods},
    {0, NULL},
};

static PyType_Spec wd_spec = {
    .name = "fotabench._core.WatchdogMonitor",
    .basicsize = sizeof(WatchdogObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = wd_slots,
};

int core_add_watchdog_type(PyObject *module)
{
    core_state *st = core_get_state(module);
    st->watchdog_type = PyType_FromModuleAndSpec(module, &wd_spec, NULL);
    if (!st->watchdog_type)
        return -1;
    if (PyModule_AddType(module, (PyTypeObject *)st->watchdog_type) < 0)
        return -1;
    return core_add_result_class(module, "WatchdogResultBase",
                                 "A watchdog monitor's figures (ns on the bench clock), the "
                                 "fields of fotabench.WatchdogResult, in the order stop() and "
                                 "result() return them.",
                                 watchdog_fields, WATCHDOG_FIELD_COUNT);
}
