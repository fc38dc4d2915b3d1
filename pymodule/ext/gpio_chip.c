/* fotabench._core.GpioChip: a libgpiod chip or a virtual module's board (gpio.sock). */
#include "gpioobj.h"

#include <limits.h>
#include <time.h>

static PyObject *module_of(PyObject *self)
{
    return PyType_GetModule(Py_TYPE(self));
}

static PyObject *chip_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path", "virtual", "timeline", NULL};
    PyObject *path = NULL, *timeline = Py_None;
    int virt = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|pO:GpioChip", kwlist,
                                     PyUnicode_FSConverter, &path, &virt, &timeline))
        return NULL;
    PyObject *module = PyType_GetModule(type);
    fb_timeline *tl = NULL;
    if (timeline != Py_None && !(tl = core_timeline_get(module, timeline))) {
        Py_DECREF(path);
        return NULL;
    }
    GpioChipObject *self = (GpioChipObject *)type->tp_alloc(type, 0);
    if (!self || !(self->lines = PyList_New(0))) {
        Py_XDECREF(self);
        Py_DECREF(path);
        return NULL;
    }
    if (timeline != Py_None)
        self->timeline = Py_NewRef(timeline);
    fb_error err;
    fb_gpio *g;
    Py_BEGIN_ALLOW_THREADS
    g = virt ? fb_gpio_open_virtual(PyBytes_AS_STRING(path), tl, &err)
             : fb_gpio_open_chip(PyBytes_AS_STRING(path), tl, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (!g) {
        Py_DECREF(self);
        return core_raise(module, &err);
    }
    self->gpio = g;
    return (PyObject *)self;
}

static void close_chip(GpioChipObject *self)
{
    if (!self->gpio)
        return;
    core_wait_idle(&self->closing, &self->inflight); /* a request() in another thread ends */
    if (!self->gpio)
        return;
    /* Lines first: their monitors and callbacks stop before the C lines go. */
    PyObject *l;
    while ((l = core_weak_list_pop(self->lines)) != NULL) {
        core_gpio_line_detach((GpioLineObject *)l);
        Py_DECREF(l);
    }
    fb_gpio *g = self->gpio;
    self->gpio = NULL;
    Py_BEGIN_ALLOW_THREADS
    fb_gpio_close(g);
    Py_END_ALLOW_THREADS
}

static int chip_traverse(PyObject *op, visitproc visit, void *arg)
{
    GpioChipObject *self = (GpioChipObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->timeline);
    Py_VISIT(self->lines);
    return 0;
}

static int chip_clear(PyObject *op)
{
    GpioChipObject *self = (GpioChipObject *)op;
    close_chip(self);
    Py_CLEAR(self->lines);
    Py_CLEAR(self->timeline);
    return 0;
}

static void chip_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    chip_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *chip_close(PyObject *op, PyObject *unused)
{
    (void)unused;
    close_chip((GpioChipObject *)op);
    Py_RETURN_NONE;
}

static PyObject *chip_enter(PyObject *op, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(op);
}

static PyObject *chip_exit(PyObject *op, PyObject *args)
{
    (void)args;
    close_chip((GpioChipObject *)op);
    Py_RETURN_FALSE;
}

static PyObject *chip_request(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"line",  "output", "active_low", "bias",
                             "initial", "edges", "queue_max", NULL};
    GpioChipObject *self = (GpioChipObject *)op;
    PyObject *line_arg;
    int output = 0, active_low = 0, bias = 0, initial = 0, edges = 0;
    Py_ssize_t queue_max = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|ppippn:request", kwlist, &line_arg,
                                     &output, &active_low, &bias, &initial, &edges, &queue_max))
        return NULL;
    if (!self->gpio || self->closing) {
        fb_error err;
        fb_error_set(&err, FB_ERR_CLOSED, "the GPIO chip is closed");
        return core_raise(module_of(op), &err);
    }
    const char *name = NULL;
    int offset = -1;
    if (PyUnicode_Check(line_arg)) {
        if (!(name = PyUnicode_AsUTF8(line_arg)))
            return NULL;
    } else {
        long v = PyLong_AsLong(line_arg);
        if (v == -1 && PyErr_Occurred())
            return NULL;
        if (v < 0 || v > INT_MAX)  /* checked as a long: no silent truncation to int */
            return core_arg_error(PyType_GetModule(Py_TYPE(op)),
                                  "line offset must be >= 0 and <= %d, got %ld", INT_MAX, v);
        offset = (int)v;
    }
    if (queue_max < 0)
        return core_arg_error(PyType_GetModule(Py_TYPE(op)), "queue_max must be >= 0");
    fb_gpio_line_config cfg;
    fb_gpio_line_config_init(&cfg);
    cfg.direction = output ? FB_GPIO_OUTPUT : FB_GPIO_INPUT;
    cfg.active_low = active_low;
    cfg.bias = (fb_gpio_bias)bias;
    cfg.initial = initial;
    cfg.edges = !output && edges;
    cfg.queue_max = (size_t)queue_max;
    fb_error err;
    fb_gpio_line *l;
    fb_gpio *g = self->gpio;
    self->inflight++;
    Py_BEGIN_ALLOW_THREADS
    l = fb_gpio_request(g, name, offset, &cfg, &err);
    Py_END_ALLOW_THREADS
    self->inflight--;
    if (!l)
        return core_raise(module_of(op), &err);
    PyObject *obj = core_gpio_line_new(module_of(op), self, l);
    if (!obj || core_weak_list_add(self->lines, obj) < 0) {
        if (obj)
            core_gpio_line_detach((GpioLineObject *)obj);
        else {
            Py_BEGIN_ALLOW_THREADS
            fb_gpio_release(l);
            Py_END_ALLOW_THREADS
        }
        Py_XDECREF(obj);
        return NULL;
    }
    return obj;
}

static PyObject *chip_get_backend(PyObject *op, void *c)
{
    (void)c;
    GpioChipObject *self = (GpioChipObject *)op;
    if (!self->gpio)
        Py_RETURN_NONE;
    return PyUnicode_FromString(fb_gpio_backend_name(self->gpio));
}

static PyObject *chip_get_closed(PyObject *op, void *c)
{
    (void)c;
    return PyBool_FromLong(((GpioChipObject *)op)->gpio == NULL);
}

static PyGetSetDef chip_getset[] = {
    {"backend", chip_get_backend, NULL, "'gpiod' or 'virtual' (None when closed).", NULL},
    {"closed", chip_get_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef chip_methods[] = {
    {"close", chip_close, METH_NOARGS, "close() -> None\n\nRelease every line and close."},
    {"__enter__", chip_enter, METH_NOARGS, NULL},
    {"__exit__", chip_exit, METH_VARARGS, NULL},
    {"request", (PyCFunction)(void (*)(void))chip_request, METH_VARARGS | METH_KEYWORDS,
     "request(line, output=False, active_low=False, bias=0, initial=False, edges=False, "
     "queue_max=0) -> GpioLine\n\nline: a name or an offset; bias 0 as-is, 1 disabled, 2 "
     "pull-up, 3 pull-down."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot chip_slots[] = {
    {Py_tp_doc, "GpioChip(path, virtual=False, timeline=None)\n--\n\nA GPIO chip "
                "(libgpiod v2) or, with virtual=True, a virtual module's gpio.sock. The "
                "Python API is fotabench.GpioChip."},
    {Py_tp_new, chip_new},
    {Py_tp_dealloc, chip_dealloc},
    {Py_tp_traverse, chip_traverse},
    {Py_tp_clear, chip_clear},
    {Py_tp_methods, chip_methods},
    {Py_tp_getset, chip_getset},
    {0, NULL},
};

static PyType_Spec chip_spec = {
    .name = "fotabench._core.GpioChip",
    .basicsize = sizeof(GpioChipObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = chip_slots,
};

int core_add_gpio_type(PyObject *module)
{
    core_state *st = core_get_state(module);
    st->gpio_type = PyType_FromModuleAndSpec(module, &chip_spec, NULL);
    if (!st->gpio_type || PyModule_AddType(module, (PyTypeObject *)st->gpio_type) < 0)
        return -1;
    return core_add_gpio_line_type(module);
}
