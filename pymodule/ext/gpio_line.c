/* fotabench._core.GpioLine: one requested line: set/get/pulse, edges (queue and
 * callback from the backend's thread), release. */
#include "gpioobj.h"

#include <time.h>

#include <string.h>

#include "fotabench/clock.h"

static PyObject *module_of(PyObject *self)
{
    return PyType_GetModule(Py_TYPE(self));
}

PyObject *core_gpio_line_new(PyObject *module, GpioChipObject *chip, fb_gpio_line *line)
{
    core_state *st = core_get_state(module);
    PyTypeObject *tp = (PyTypeObject *)st->gpio_line_type;
    GpioLineObject *self = (GpioLineObject *)tp->tp_alloc(tp, 0);
    if (!self)
        return NULL;
    self->monitors = PyList_New(0);
    if (!self->monitors) {
        Py_DECREF(self);
        return NULL;
    }
    self->line = line;
    self->chip = (GpioChipObject *)Py_NewRef((PyObject *)chip);
    return (PyObject *)self;
}

int core_gpio_line_check(PyObject *module, PyObject *obj, GpioLineObject **out)
{
    core_state *st = core_get_state(module);
    if (!PyObject_TypeCheck(obj, (PyTypeObject *)st->gpio_line_type)) {
        PyErr_Format(PyExc_TypeError, "expected a GpioLine, got %.80s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    GpioLineObject *l = (GpioLineObject *)obj;
    if (!l->line) {
        fb_error err;
        fb_error_set(&err, FB_ERR_CLOSED, "the GPIO line was released");
        core_raise(module, &err);
        return -1;
    }
    *out = l;
    return 0;
}

/* Runs on the backend's thread for every edge: hand it to the callback thread, so a
 * slow Python callback never holds up the line's reader. */
static void edge_listener(void *ctx, const fb_gpio_edge *e)
{
    GpioLineObject *self = ctx;
    if (!self->closing)
        fb_dispatch_post(self->edge_dispatch, e, sizeof *e);
}

/* Runs on the callback thread, in edge order. */
static void edge_trampoline(void *ctx, const void *item, size_t n)
{
    GpioLineObject *self = ctx;
    const fb_gpio_edge *e = item;
    (void)n;
    if (self->closing || !self->edge_cb)
        return;
    if (!core_interpreter_alive())
        return;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *cb = self->closing ? NULL : Py_XNewRef(self->edge_cb);
    if (cb) {
        PyObject *r = PyObject_CallFunction(cb, "iLK", e->value, (long long)e->t_ns,
                                            (unsigned long long)e->seq);
        if (!r)
            PyErr_WriteUnraisable(cb);
        Py_XDECREF(r);
        Py_DECREF(cb);
    }
    PyGILState_Release(g);
}

void core_gpio_line_detach(GpioLineObject *self)
{
    if (!self->line)
        return;
    core_wait_idle(&self->closing, &self->inflight);
    PyObject *m;
    while ((m = core_weak_list_pop(self->monitors)) != NULL) {
        core_watchdog_detach(m);
        Py_DECREF(m);
    }
    fb_gpio_line *l = self->line;
    self->line = NULL;
    int listening = self->listening;
    self->listening = 0;
    fb_dispatch *d = self->edge_dispatch;
    self->edge_dispatch = NULL;
    Py_BEGIN_ALLOW_THREADS
    if (listening)
        fb_gpio_remove_listener(l, edge_listener, self);
    fb_dispatch_free(d); /* a callback in progress may need the GIL */
    fb_gpio_release(l);
    Py_END_ALLOW_THREADS
}

static int need(GpioLineObject *self)
{
    if (!self->line || self->closing || !self->chip->gpio) {
        fb_error err;
        fb_error_set(&err, FB_ERR_CLOSED, "the GPIO line was released or its chip closed");
        core_raise(module_of((PyObject *)self), &err);
        return -1;
    }
    return 0;
}

static int line_traverse(PyObject *op, visitproc visit, void *arg)
{
    GpioLineObject *self = (GpioLineObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT((PyObject *)self->chip);
    Py_VISIT(self->edge_cb);
    Py_VISIT(self->monitors);
    return 0;
}

static int line_clear(PyObject *op)
{
    GpioLineObject *self = (GpioLineObject *)op;
    if (self->line && self->chip && self->chip->gpio)
        core_gpio_line_detach(self);
    if (self->chip)
        core_weak_list_remove(self->chip->lines, op);
    Py_CLEAR(self->edge_cb);
    Py_CLEAR(self->monitors);
    Py_CLEAR(self->chip);
    return 0;
}

static void line_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (((GpioLineObject *)op)->weakrefs)
        PyObject_ClearWeakRefs(op);
    line_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *line_release(PyObject *op, PyObject *unused)
{
    (void)unused;
    GpioLineObject *self = (GpioLineObject *)op;
    if (self->line && self->chip->gpio) {
        core_gpio_line_detach(self);
        core_weak_list_remove(self->chip->lines, op);
    }
    Py_RETURN_NONE;
}

static PyObject *line_enter(PyObject *op, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(op);
}

static PyObject *line_exit(PyObject *op, PyObject *args)
{
    (void)args;
    PyObject *r = line_release(op, NULL);
    Py_XDECREF(r);
    if (!r)
        return NULL;
    Py_RETURN_FALSE;
}

static PyObject *line_set(PyObject *op, PyObject *arg)
{
    GpioLineObject *self = (GpioLineObject *)op;
    int v = PyObject_IsTrue(arg);
    if (v < 0 || need(self) < 0)
        return NULL;
    fb_error err;
    fb_status st;
    int64_t t = 0;
    self->inflight++;
    Py_BEGIN_ALLOW_THREADS
    st = fb_gpio_set(self->line, v, &t, &err);
    Py_END_ALLOW_THREADS
    self->inflight--;
    if (st != FB_OK)
        return core_raise(module_of(op), &err);
    return PyLong_FromLongLong(t);
}

static PyObject *line_get(PyObject *op, PyObject *unused)
{
    (void)unused;
    GpioLineObject *self = (GpioLineObject *)op;
    if (need(self) < 0)
        return NULL;
    fb_error err;
    fb_status st;
    int v = 0;
    self->inflight++;
    Py_BEGIN_ALLOW_THREADS
    st = fb_gpio_get(self->line, &v, &err);
    Py_END_ALLOW_THREADS
    self->inflight--;
    if (st != FB_OK)
        return core_raise(module_of(op), &err);
    return PyLong_FromLong(v);
}

typedef struct sleep_step {
    int64_t until;
} sleep_step;

static int sleep_slice(void *ctx, int64_t slice)
{
    (void)ctx;
    struct timespec ts = fb_ns_to_timespec(slice);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
    return 0; /* only the deadline ends a sleep */
}

/* The pulse is timed in C on the one clock, in slices so Ctrl-C works; an interrupted
 * pulse still ends (the opposite level is set) before KeyboardInterrupt, and so does
 * one whose line is released by another thread. */
static PyObject *line_pulse(PyObject *op, PyObject *args)
{
    GpioLineObject *self = (GpioLineObject *)op;
    int value;
    double seconds;
    if (!PyArg_ParseTuple(args, "pd:pulse", &value, &seconds))
        return NULL;
    if (!(seconds > 0) || seconds > 3600) {
        fb_error e;
        fb_error_set(&e, FB_ERR_ARG, "pulse duration must be in (0, 3600] s, got %g", seconds);
        return core_raise(module_of(op), &e);
    }
    if (need(self) < 0)
        return NULL;
    fb_error err;
    fb_status st;
    int64_t t0 = 0, t1 = 0;
    self->inflight++;
    Py_BEGIN_ALLOW_THREADS
    st = fb_gpio_set(self->line, value, &t0, &err);
    Py_END_ALLOW_THREADS
    if (st != FB_OK) {
        self->inflight--;
        return core_raise(module_of(op), &err);
    }
    sleep_step s = {t0 + (int64_t)(seconds * 1e9)};
    int r = core_wait(module_of(op), s.until, &self->closing, "the GPIO line", sleep_slice, &s);
    /* The exception (Ctrl-C, ClosedError) is kept while the line is set back. */
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = r < 0 ? PyErr_GetRaisedException() : NULL;
#else
    PyObject *et = NULL, *ev = NULL, *tb = NULL;
    if (r < 0)
        PyErr_Fetch(&et, &ev, &tb);
#endif
    Py_BEGIN_ALLOW_THREADS
    st = fb_gpio_set(self->line, !value, &t1, &err);
    Py_END_ALLOW_THREADS
    self->inflight--;
    if (r < 0) {
#if PY_VERSION_HEX >= 0x030C0000
        PyErr_SetRaisedException(exc);
#else
        PyErr_Restore(et, ev, tb);
#endif
        return NULL;
    }
    if (st != FB_OK)
        return core_raise(module_of(op), &err);
    return Py_BuildValue("(LL)", (long long)t0, (long long)t1);
}

typedef struct edge_step {
    fb_gpio_line *line;
    fb_gpio_edge e;
    int got;
    fb_status st;
    fb_error err;
} edge_step;

static int edge_slice(void *ctx, int64_t slice)
{
    edge_step *x = ctx;
    x->st = fb_gpio_next_edge(x->line, slice, &x->e, &x->got, &x->err);
    return x->st != FB_OK || x->got;
}

static PyObject *line_next_edge(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"timeout", NULL};
    GpioLineObject *self = (GpioLineObject *)op;
    PyObject *timeout_arg = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:next_edge", kwlist, &timeout_arg))
        return NULL;
    int64_t deadline = 0; /* no timeout given: poll */
    if (timeout_arg && core_deadline_arg(module_of(op), timeout_arg, "timeout", &deadline) < 0)
        return NULL;
    if (need(self) < 0)
        return NULL;
    edge_step x;
    memset(&x, 0, sizeof x);
    x.line = self->line;
    self->inflight++;
    int r = core_wait(module_of(op), deadline, &self->closing, "the GPIO line", edge_slice, &x);
    self->inflight--;
    if (r < 0)
        return NULL;
    if (x.st != FB_OK)
        return core_raise(module_of(op), &x.err);
    if (!x.got)
        Py_RETURN_NONE;
    return Py_BuildValue("(iLK)", x.e.value, (long long)x.e.t_ns, (unsigned long long)x.e.seq);
}

static PyObject *line_set_edge_callback(PyObject *op, PyObject *arg)
{
    GpioLineObject *self = (GpioLineObject *)op;
    if (arg != Py_None && !PyCallable_Check(arg))
        return PyErr_Format(PyExc_TypeError, "the edge callback must be callable or None");
    if (need(self) < 0)
        return NULL;
    Py_XSETREF(self->edge_cb, arg == Py_None ? NULL : Py_NewRef(arg));
    if (self->edge_cb && !self->listening) {
        fb_error err;
        fb_status st = FB_OK;
        if (!self->edge_dispatch) {
            self->edge_dispatch = fb_dispatch_new(edge_trampoline, self, 0, &err);
            if (!self->edge_dispatch)
                return core_raise(module_of(op), &err);
        }
        Py_BEGIN_ALLOW_THREADS
        st = fb_gpio_add_listener(self->line, edge_listener, self, &err);
        Py_END_ALLOW_THREADS
        if (st != FB_OK)
            return core_raise(module_of(op), &err);
        self->listening = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *line_stats(PyObject *op, PyObject *unused)
{
    (void)unused;
    GpioLineObject *self = (GpioLineObject *)op;
    if (need(self) < 0)
        return NULL;
    fb_gpio_line_stats s;
    fb_gpio_line_get_stats(self->line, &s);
    unsigned long long cb_dropped =
        self->edge_dispatch ? (unsigned long long)fb_dispatch_dropped(self->edge_dispatch) : 0;
    return Py_BuildValue("{s:K,s:K,s:K,s:K}", "edges", (unsigned long long)s.edges, "lost",
                         (unsigned long long)s.lost, "dropped", (unsigned long long)s.dropped,
                         "callback_dropped", cb_dropped);
}

static PyObject *line_get_name(PyObject *op, void *c)
{
    (void)c;
    GpioLineObject *self = (GpioLineObject *)op;
    if (!self->line)
        Py_RETURN_NONE;
    return PyUnicode_FromString(fb_gpio_line_name(self->line));
}

static PyObject *line_get_released(PyObject *op, void *c)
{
    (void)c;
    return PyBool_FromLong(((GpioLineObject *)op)->line == NULL);
}

static PyGetSetDef line_getset[] = {
    {"name", line_get_name, NULL, "The line's name (or its offset as text).", NULL},
    {"released", line_get_released, NULL, "True after release().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef line_methods[] = {
    {"release", line_release, METH_NOARGS, "release() -> None"},
    {"__enter__", line_enter, METH_NOARGS, NULL},
    {"__exit__", line_exit, METH_VARARGS, NULL},
    {"set", line_set, METH_O, "set(value) -> t_ns\n\nDrive a logical value."},
    {"get", line_get, METH_NOARGS, "get() -> int\n\nThe logical value."},
    {"pulse", line_pulse, METH_VARARGS,
     "pulse(value, seconds) -> (t_start, t_end)\n\nHold value for seconds, then the "
     "opposite."},
    {"next_edge", (PyCFunction)(void (*)(void))line_next_edge, METH_VARARGS | METH_KEYWORDS,
     "next_edge(timeout=0) -> (value, t_ns, seq) or None"},
    {"set_edge_callback", line_set_edge_callback, METH_O,
     "set_edge_callback(fn or None) -> None\n\nfn(value, t_ns, seq) on the backend's "
     "thread, with the GIL."},
    {"stats", line_stats, METH_NOARGS, "stats() -> dict of edges, lost, dropped"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef line_members[] = {
    CORE_WEAKLIST_MEMBER(GpioLineObject),
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot line_slots[] = {
    {Py_tp_members, line_members},
    {Py_tp_doc, "A requested GPIO line (made by GpioChip.request). The Python API is "
                "fotabench.GpioLine."},
    {Py_tp_dealloc, line_dealloc},
    {Py_tp_traverse, line_traverse},
    {Py_tp_clear, line_clear},
    {Py_tp_methods, line_methods},
    {Py_tp_getset, line_getset},
    {0, NULL},
};

static PyType_Spec line_spec = {
    .name = "fotabench._core.GpioLine",
    .basicsize = sizeof(GpioLineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = line_slots,
};

int core_add_gpio_line_type(PyObject *module)
{
    core_state *st = core_get_state(module);
    st->gpio_line_type = PyType_FromModuleAndSpec(module, &line_spec, NULL);
    if (!st->gpio_line_type)
        return -1;
    return PyModule_AddType(module, (PyTypeObject *)st->gpio_line_type);
}
