/* fotabench._core.GpioChip / GpioLine / WatchdogMonitor objects, shared by
 * gpio_chip.c, gpio_line.c and watchdog.c. A chip keeps its lines, a line its
 * watchdog monitors, so closing the outer one detaches the inner ones first: the C
 * core's pointers are never used after they are freed. */
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
    PyObject *lines;    /* list of GpioLine objects requested here */
    int closing;        /* set by close(): request() refuses */
    int inflight;       /* request() calls with the GIL released (close waits) */
} GpioChipObject;

typedef struct {
    PyObject_HEAD
    fb_gpio_line *line; /* NULL after release() */
    GpioChipObject *chip;
    PyObject *edge_cb;  /* callable or NULL */
    fb_dispatch *edge_dispatch; /* runs edge_cb off the backend's thread */
    PyObject *monitors; /* list of WatchdogMonitor objects watching this line */
    int listening;      /* the edge trampoline is registered */
    int closing;
    int inflight;       /* blocking calls in progress with the GIL released */
} GpioLineObject;

/* gpio_line.c */
PyObject *core_gpio_line_new(PyObject *module, GpioChipObject *chip, fb_gpio_line *line);
void core_gpio_line_detach(GpioLineObject *line); /* stop monitors, listener; release */
int core_gpio_line_check(PyObject *module, PyObject *obj, GpioLineObject **out);
int core_add_gpio_line_type(PyObject *module);

/* watchdog.c */
void core_watchdog_detach(PyObject *monitor); /* stop listening to its line */

#endif
