/*
 * prefork._native, the module: its definition, and PyInit__native, which gathers each C
 * file's types and functions into it. Every other C file is below this one: it calls
 * their `native_*_add` functions and reads their method tables and types, and none of
 * them refers to it (tests/unit/test_architecture.py checks that the C files call each
 * other in one direction only). What the module does is said in _native.c, file by file.
 *
 * Run once, by the import of prefork._native (GIL held).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_native.h"

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "prefork._native",
    .m_doc = "The compiled core of prefork's native request path (see _native.c).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    if (PyType_Ready(&HeadFieldsType) < 0 || PyType_Ready(&ExchangeType) < 0 ||
        PyType_Ready(&WorkerCallsType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL) {
        return NULL;
    }
    if (native_socket_add(module) < 0 ||
        PyModule_AddObjectRef(module, "HeadFields", (PyObject *)&HeadFieldsType) < 0 ||
        PyModule_AddObjectRef(module, "Exchange", (PyObject *)&ExchangeType) < 0 ||
        PyModule_AddObjectRef(module, "WorkerCalls", (PyObject *)&WorkerCallsType) < 0 ||
        PyModule_AddFunctions(module, native_wsgi_methods) < 0 ||
        PyModule_AddFunctions(module, native_http_methods) < 0 ||
        PyModule_AddFunctions(module, native_conn_methods) < 0 ||
        PyModule_AddFunctions(module, native_exchange_methods) < 0 ||
        PyModule_AddFunctions(module, native_worker_methods) < 0 ||
        PyModule_AddFunctions(module, native_adopt_methods) < 0 ||
        native_seam_add(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
