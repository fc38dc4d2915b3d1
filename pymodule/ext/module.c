/* fotabench._core: module definition (multi-phase init, per-module state). */
#include "core.h"

#include <gpiod.h>
#include <libserialport.h>
#include <openssl/crypto.h>

static PyObject *library_versions(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    /* The system libraries a station runs on, for its records. */
    return Py_BuildValue("{s:s,s:s,s:s}", "openssl", OpenSSL_version(OPENSSL_VERSION),
                         "libserialport", sp_get_package_version_string(), "libgpiod",
                         gpiod_api_version());
}

static PyMethodDef base_methods[] = {
    {"library_versions", library_versions, METH_NOARGS,
     "library_versions() -> dict\n\nVersions of OpenSSL, libserialport and libgpiod in use."},
    {NULL, NULL, 0, NULL},
};

static int add_methods(PyObject *module, PyMethodDef *defs)
{
    return PyModule_AddFunctions(module, defs);
}

/* C threads of the core (reader, dispatch) call Python through PyGILState_Ensure,
 * which CPython supports only in the main interpreter: refuse the others, on every
 * version (the slot below says the same to 3.12+'s import machinery). */
static int refuse_subinterpreters(void)
{
    if (PyInterpreterState_Get() == PyInterpreterState_Main())
        return 0;
    PyErr_SetString(PyExc_ImportError,
                    "fotabench._core works only in the main interpreter: its C threads call "
                    "back into Python with PyGILState_Ensure, which subinterpreters do not "
                    "support");
    return -1;
}

static int core_exec(PyObject *module)
{
    if (refuse_subinterpreters() < 0)
        return -1;
    if (core_add_exceptions(module) < 0 || add_methods(module, base_methods) < 0 ||
        add_methods(module, core_md5_methods) < 0 ||
        add_methods(module, core_image_methods) < 0 ||
        add_methods(module, core_package_methods) < 0 ||
        add_methods(module, core_url_methods) < 0 || add_methods(module, core_wait_methods) < 0 ||
        add_methods(module, core_flash_methods) < 0 || core_add_flash_result_class(module) < 0 ||
        add_methods(module, core_timeline_methods) < 0 || core_add_timeline_type(module) < 0 ||
        add_methods(module, core_serial_methods) < 0 || core_add_serial_type(module) < 0 ||
        core_add_gpio_type(module) < 0 || core_add_watchdog_type(module) < 0)
        return -1;
    return 0;
}

static int core_traverse(PyObject *module, visitproc visit, void *arg)
{
    return core_traverse_state(core_get_state(module), visit, arg);
}

static int core_clear(PyObject *module)
{
    core_clear_state(core_get_state(module));
    return 0;
}

static void core_free(void *module)
{
    core_clear((PyObject *)module);
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
#ifdef Py_mod_multiple_interpreters
    /* Not PER_INTERPRETER_GIL_SUPPORTED: PyGILState_Ensure from C threads (above). */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fotabench._core",
    .m_doc = "fotabench's C core: app images, FOTA packages, MD5, module URL rules; bench "
             "I/O: timeline, serial ports, AT engine, GPIO, watchdog monitor.",
    .m_size = sizeof(core_state),
    .m_slots = core_slots,
    .m_traverse = core_traverse,
    .m_clear = core_clear,
    .m_free = core_free,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&core_module);
}
