/* fotabench._core: result classes made from the C field tables (results.h). */
#include "results.h"

static PyObject *field_type(core_field_kind kind)
{
    switch (kind) {
    case CORE_FIELD_INT:
    case CORE_FIELD_UINT:
        return (PyObject *)&PyLong_Type;
    case CORE_FIELD_BOOL:
        return (PyObject *)&PyBool_Type;
    case CORE_FIELD_STR:
        return (PyObject *)&PyUnicode_Type;
    }
    return NULL;
}

int core_add_result_class(PyObject *module, const char *name, const char *doc,
                          const core_field *fields, size_t n)
{
    /* dataclasses.make_dataclass rather than a hand-made type: the Python side
     * subclasses it for its properties and keeps dataclasses.asdict/fields/replace. */
    PyObject *dataclasses = NULL, *specs = NULL, *kwargs = NULL, *cls = NULL;
    int rc = -1;
    if (!(dataclasses = PyImport_ImportModule("dataclasses")) ||
        !(specs = PyList_New((Py_ssize_t)n)))
        goto out;
    for (size_t i = 0; i < n; i++) {
        PyObject *type = field_type(fields[i].kind);
        PyObject *spec = type ? Py_BuildValue("(sO)", fields[i].name, type) : NULL;
        if (!spec) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_SystemError, "%s.%s: unknown field kind", name,
                             fields[i].name);
            goto out;
        }
        PyList_SET_ITEM(specs, (Py_ssize_t)i, spec);
    }
    if (!(kwargs = Py_BuildValue("{s:O,s:{s:s}}", "frozen", Py_True, "namespace", "__doc__",
                                 doc)))
        goto out;
    PyObject *args = Py_BuildValue("(sO)", name, specs);
    PyObject *make = args ? PyObject_GetAttrString(dataclasses, "make_dataclass") : NULL;
    cls = make ? PyObject_Call(make, args, kwargs) : NULL;
    Py_XDECREF(make);
    Py_XDECREF(args);
    /* Set after: make_dataclass's own `module` argument exists only from 3.12. */
    PyObject *modname = cls ? PyModule_GetNameObject(module) : NULL;
    int set = modname ? PyObject_SetAttrString(cls, "__module__", modname) : -1;
    Py_XDECREF(modname);
    if (set < 0)
        goto out;
    rc = PyModule_AddObjectRef(module, name, cls);
out:
    Py_XDECREF(cls);
    Py_XDECREF(kwargs);
    Py_XDECREF(specs);
    Py_XDECREF(dataclasses);
    return rc;
}

PyObject *core_result_tuple(PyObject **values, size_t n)
{
    PyObject *t = NULL;
    size_t i;
    for (i = 0; i < n && values[i]; i++)
        ;
    if (i == n)
        t = PyTuple_New((Py_ssize_t)n);
    for (i = 0; i < n; i++) {
        if (t)
            PyTuple_SET_ITEM(t, (Py_ssize_t)i, values[i]);
        else
            Py_XDECREF(values[i]);
    }
    return t;
}
