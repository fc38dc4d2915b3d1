/* fotabench._core.GpioChip / GpioLine / WatchdogMonitor objects, shared by
 * gpio_chip.c, gpio_line.c and watchdog.c. A chip knows its lines, a line its
 * watchdog monitors, so closing the outer one detaches the inner ones first: the C
 * core's pointers are never used after they are freed. The inner object owns the
 * outer one (line -> chip, monitor -> line); the outer one keeps only weak references,
 * so a dropped line or monitor is freed (its socket and threads with it) at once, not
 * when the cyclic GC happens to run. */
#ifndef FOTABENCH_EXT_GPIOOBJ_H
#define FOTABENCH_EXT_GPIOOBJ_H

#include "core.h"

#include "fotabench/dispatch.h"
#include "fotabench/gpio.h"
#include "fotabench/watchdog.h"

typedef struct {
    PyObject_HEAD
    fb_gpio *gpio;      /* NULL after close() */
    PyObject *timeline; /* Timeline object or NULL */
    PyObject *lines;    /* list of weak references to the GpioLines requested here */
    int closing;        /* set by close(): request() refuses */
    int inflight;       /* request() calls with the GIL released (close waits) */
} GpioChipObject;

typedef struct {
    PyObject_HEAD
    fb_gpio_line *line; /* NULL after release() */
    GpioChipObject *chip;
    PyObject *edge_cb;  /* callable or NULL */
    fb_dispatch *edge_dispatch; /* runs edge_cb off the backend's thread */
    PyObject *monitors; /* list of weak references to the WatchdogMonitors on this line */
    int listening;      /* the edge trampoline is registered */
    int closing;
    int inflight;       /* blocking calls in progress with the GIL released */
    PyObject *weakrefs; /* the chip's reference to this line */
} GpioLineObject;

/* Heap types take weak references through this member (Py_TPFLAGS_MANAGED_WEAKREF is
 * Python >= 3.12 only). */
#include <stddef.h>
#include <structmember.h>
#define CORE_WEAKLIST_MEMBER(type) \
    {"__weaklistoffset__", T_PYSSIZET, offsetof(type, weakrefs), READONLY, NULL}

/* A weak reference's object as a new reference, or NULL when it is gone. */
static inline PyObject *core_weak_get(PyObject *ref)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *o = NULL;
    if (PyWeakref_GetRef(ref, &o) < 0)
        PyErr_Clear();
    return o;
#else
    PyObject *o = PyWeakref_GetObject(ref);
    if (!o) {
        PyErr_Clear();
        return NULL;
    }
    return o == Py_None ? NULL : Py_NewRef(o);
#endif
}

/* Remove obj's entry, and any whose object is gone, from a list of weak references. */
static inline void core_weak_list_remove(PyObject *list, PyObject *obj)
{
    for (Py_ssize_t i = list ? PyList_GET_SIZE(list) : 0; i-- > 0;) {
        if (i >= PyList_GET_SIZE(list))
            continue;
        PyObject *o = core_weak_get(PyList_GET_ITEM(list, i));
        if ((!o || o == obj) && PyList_SetSlice(list, i, i + 1, NULL) < 0)
            PyErr_Clear();
        Py_XDECREF(o);
    }
}

/* Take the first live object out of a list of weak references (a new reference), or
 * NULL when none is left. */
static inline PyObject *core_weak_list_pop(PyObject *list)
{
    while (list && PyList_GET_SIZE(list) > 0) {
        PyObject *o = core_weak_get(PyList_GET_ITEM(list, 0));
        if (PyList_SetSlice(list, 0, 1, NULL) < 0)
            PyErr_Clear();
        if (o)
            return o;
    }
    return NULL;
}

/* Append a weak reference to obj; -1 with an exception set on failure. */
static inline int core_weak_list_add(PyObject *list, PyObject *obj)
{
    PyObject *ref = PyWeakref_NewRef(obj, NULL);
    int r = ref ? PyList_Append(list, ref) : -1;
    Py_XDECREF(ref);
    return r;
}

/* gpio_line.c */
PyObject *core_gpio_line_new(PyObject *module, GpioChipObject *chip, fb_gpio_line *line);
void core_gpio_line_detach(GpioLineObject *line); /* stop monitors, listener; release */
int core_gpio_line_check(PyObject *module, PyObject *obj, GpioLineObject **out);
int core_add_gpio_line_type(PyObject *module);

/* watchdog.c */
void core_watchdog_detach(PyObject *monitor); /* stop listening to its line */

#endif
