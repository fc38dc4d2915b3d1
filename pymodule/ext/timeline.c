/* fotabench._core.Timeline: the C core's fb_timeline as a heap type, and now_ns(). */
#include "core.h"

#include "fotabench/clock.h"
#include "fotabench/timeline.h"

typedef struct {
    PyObject_HEAD
    fb_timeline *tl;
} TimelineObject;

static PyObject *timeline_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, ":Timeline", kwlist))
        return NULL;
    TimelineObject *self = (TimelineObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    fb_error err;
    self->tl = fb_timeline_new(&err);
    if (!self->tl) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static int timeline_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static void timeline_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    /* Ports, lines and monitors hold a reference to the Timeline object while they
     * write to it, so nothing writes here any more. */
    fb_timeline_free(((TimelineObject *)self)->tl);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *module_of(PyObject *self)
{
    return PyType_GetModule(Py_TYPE(self));
}

static PyObject *timeline_add(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"source", "kind", "data", "t_ns", NULL};
    const char *source, *kind, *data = NULL;
    long long t_ns = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|zL:add", kwlist, &source, &kind, &data,
                                     &t_ns))
        return NULL;
    if (t_ns < 0)
        return core_arg_error(module_of(self), "t_ns must be >= 0 (0 = now), got %lld", t_ns);
    if (t_ns == 0)
        t_ns = fb_now_ns();
    uint64_t seq;
    fb_error err;
    if (fb_timeline_add(((TimelineObject *)self)->tl, t_ns, source, kind, data, &seq, &err) !=
        FB_OK)
        return core_raise(module_of(self), &err);
    return Py_BuildValue("(KL)", (unsigned long long)seq, t_ns);
}

typedef struct {
    PyObject *list;
    const char *source; /* filter or NULL */
    const char *kind;   /* filter or NULL; a trailing '*' matches a prefix */
    int failed;
} collect_ctx;

static int name_match(const char *pattern, const char *name)
{
    if (!pattern)
        return 1;
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '*')
        return strncmp(pattern, name, n - 1) == 0;
    return strcmp(pattern, name) == 0;
}

/* Runs with the timeline's lock held and the GIL held: core threads that append take
 * the lock but never the GIL while holding it, so this cannot deadlock. */
static int collect(void *ctx, const fb_event *ev)
{
    collect_ctx *c = ctx;
    if (!name_match(c->source, ev->source) || !name_match(c->kind, ev->kind))
        return 0;
    PyObject *t = Py_BuildValue("(KLsss)", (unsigned long long)ev->seq, (long long)ev->t_ns,
                                ev->source, ev->kind, ev->data);
    if (!t || PyList_Append(c->list, t) < 0) {
        Py_XDECREF(t);
        c->failed = 1;
        return 1;
    }
    Py_DECREF(t);
    return 0;
}

static PyObject *timeline_events(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"since", "source", "kind", NULL};
    unsigned long long since = 0;
    collect_ctx c = {NULL, NULL, NULL, 0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|Kzz:events", kwlist, &since, &c.source,
                                     &c.kind))
        return NULL;
    c.list = PyList_New(0);
    if (!c.list)
        return NULL;
    fb_timeline_visit(((TimelineObject *)self)->tl, since, collect, &c);
    if (c.failed)
        Py_CLEAR(c.list);
    return c.list;
}

typedef struct count_step {
    fb_timeline *tl;
    uint64_t count, n;
} count_step;

static int count_slice(void *ctx, int64_t slice)
{
    count_step *c = ctx;
    c->n = fb_timeline_wait(c->tl, c->count, slice);
    return c->n > c->count;
}

static PyObject *timeline_wait(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"count", "timeout", NULL};
    unsigned long long count;
    PyObject *timeout_arg = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "K|O:wait", kwlist, &count, &timeout_arg))
        return NULL;
    int64_t deadline;
    if (core_deadline_arg(module_of(self), timeout_arg, "timeout", &deadline) < 0)
        return NULL;
    count_step c = {((TimelineObject *)self)->tl, count, 0};
    if (core_wait(module_of(self), deadline, NULL, "the timeline", count_slice, &c) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(c.n);
}

static PyObject *timeline_write_jsonl(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path", "since", NULL};
    PyObject *path = NULL;
    unsigned long long since = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|K:write_jsonl", kwlist,
                                     PyUnicode_FSConverter, &path, &since))
        return NULL;
    fb_error err;
    fb_status st;
    Py_BEGIN_ALLOW_THREADS
    st = fb_timeline_write_jsonl(((TimelineObject *)self)->tl, PyBytes_AS_STRING(path), since,
                                 &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (st != FB_OK)
        return core_raise(module_of(self), &err);
    Py_RETURN_NONE;
}

static Py_ssize_t timeline_len(PyObject *self)
{
    return (Py_ssize_t)fb_timeline_count(((TimelineObject *)self)->tl);
}

static PyMethodDef timeline_methods[] = {
    {"add", (PyCFunction)(void (*)(void))timeline_add, METH_VARARGS | METH_KEYWORDS,
     "add(source, kind, data=None, t_ns=0) -> (seq, t_ns)\n\nAppend an event; data is a JSON "
     "object as text, t_ns 0 stamps it now."},
    {"events", (PyCFunction)(void (*)(void))timeline_events, METH_VARARGS | METH_KEYWORDS,
     "events(since=0, source=None, kind=None) -> list of (seq, t_ns, source, kind, data)\n\n"
     "Events from seq `since` on; source/kind filter exactly, or by prefix with a trailing "
     "'*'."},
    {"wait", (PyCFunction)(void (*)(void))timeline_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(count, timeout=None) -> int\n\nBlock (GIL released, Ctrl-C works) until there are "
     "more than `count` events or the timeout passes; returns the count."},
    {"write_jsonl", (PyCFunction)(void (*)(void))timeline_write_jsonl,
     METH_VARARGS | METH_KEYWORDS,
     "write_jsonl(path, since=0) -> None\n\nExport as JSON lines in seq order (file replaced "
     "atomically)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot timeline_slots[] = {
    {Py_tp_doc, "Timeline()\n--\n\nThread-safe append-only list of bench events, one "
                "CLOCK_MONOTONIC nanosecond clock. The Python API is fotabench.Timeline."},
    {Py_tp_new, timeline_new},
    {Py_tp_dealloc, timeline_dealloc},
    {Py_tp_traverse, timeline_traverse},
    {Py_tp_methods, timeline_methods},
    {Py_sq_length, timeline_len},
    {0, NULL},
};

static PyType_Spec timeline_spec = {
    .name = "fotabench._core.Timeline",
    .basicsize = sizeof(TimelineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = timeline_slots,
};

int core_add_timeline_type(PyObject *module)
{
    core_state *st = core_get_state(module);
    st->timeline_type = PyType_FromModuleAndSpec(module, &timeline_spec, NULL);
    if (!st->timeline_type)
        return -1;
    return PyModule_AddType(module, (PyTypeObject *)st->timeline_type);
}

fb_timeline *core_timeline_get(PyObject *module, PyObject *obj)
{
    core_state *st = core_get_state(module);
    if (!PyObject_TypeCheck(obj, (PyTypeObject *)st->timeline_type)) {
        PyErr_Format(PyExc_TypeError, "expected a fotabench Timeline, got %.80s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return ((TimelineObject *)obj)->tl;
}

static PyObject *now_ns(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromLongLong(fb_now_ns());
}

PyMethodDef core_timeline_methods[] = {
    {"now_ns", now_ns, METH_NOARGS,
     "now_ns() -> int\n\nThe bench clock: CLOCK_MONOTONIC in nanoseconds (equal to "
     "time.monotonic_ns())."},
    {NULL, NULL, 0, NULL},
};
