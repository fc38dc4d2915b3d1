/* fotabench._core: result classes declared once, in C.
 *
 * A result (a flash's figures, a watchdog verdict) is one X-macro table in its file:
 * name, kind and the C expression of every field. The same table makes the frozen
 * dataclass the module exports (its fields, in order, with their Python types) and
 * the tuple of values a call returns, so the Python class built on it
 * (fotabench.FlashResult subclasses _core.FlashResultBase) cannot drift from the
 * values; tests/test_typing.py holds the .pyi to the same fields. */
#ifndef FOTABENCH_EXT_RESULTS_H
#define FOTABENCH_EXT_RESULTS_H

#include "core.h"

typedef enum { CORE_FIELD_INT, CORE_FIELD_UINT, CORE_FIELD_BOOL, CORE_FIELD_STR } core_field_kind;

typedef struct core_field {
    const char *name;
    core_field_kind kind;
} core_field;

/* One value per kind (new reference, or NULL with an exception set). */
static inline PyObject *core_value_INT(long long v) { return PyLong_FromLongLong(v); }
static inline PyObject *core_value_UINT(unsigned long long v)
{
    return PyLong_FromUnsignedLongLong(v);
}
static inline PyObject *core_value_BOOL(int v) { return PyBool_FromLong(v); }
static inline PyObject *core_value_STR(const char *v) { return PyUnicode_FromString(v); }

/* X-macro helpers: TABLE(CORE_RESULT_FIELD) is the field table, TABLE(CORE_RESULT_VALUE)
 * the values' initialisers, in the same order. */
#define CORE_RESULT_FIELD(name, kind, expr) {#name, CORE_FIELD_##kind},
#define CORE_RESULT_VALUE(name, kind, expr) core_value_##kind(expr),

/* Add to module the frozen dataclass `name` (module fotabench._core) with these
 * fields in order: int for INT/UINT, bool for BOOL, str for STR. 0, or -1. */
int core_add_result_class(PyObject *module, const char *name, const char *doc,
                          const core_field *fields, size_t n);

/* The tuple of n values (references stolen); NULL (all released) if any is NULL. */
PyObject *core_result_tuple(PyObject **values, size_t n);

#endif
