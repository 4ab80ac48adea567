/*
 * prefork._native, the seam: the Python classes whose __slots__ fields the C files read
 * and write, bound once (bind_seam), and their fields' offsets, from the one declaration
 * in _native_seam.h. Every other C file reads native_seam; each of their own binds checks
 * that the classes it is given are these (native_seam_is).
 *
 *   bind_seam(Connection, RequestParser, _Callbacks, Output, ServerContext, Engine,
 *             ParserLimits, Request, Body)
 *       every declared field checked to be a __slots__ field of the class itself (a
 *       renamed or missing one raises TypeError naming both), then the offsets kept.
 *   seam() -> {class name: (field, ...)}
 *       the declaration, for tests/unit/test_native_seam.py to hold against the classes.
 *
 * Called at import, by prefork/native.py (GIL held); the offsets are read by every pool
 * thread afterwards and never change.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_native.h"

struct native_seam native_seam;

#define NATIVE_SEAM_NAME(index, name) #name,
static const char *const connection_slots[] = {NATIVE_CONNECTION_SLOTS(NATIVE_SEAM_NAME)};
static const char *const parser_slots[] = {NATIVE_PARSER_SLOTS(NATIVE_SEAM_NAME)};
static const char *const callbacks_slots[] = {NATIVE_CALLBACKS_SLOTS(NATIVE_SEAM_NAME)};
static const char *const output_slots[] = {NATIVE_OUTPUT_SLOTS(NATIVE_SEAM_NAME)};
static const char *const context_slots[] = {NATIVE_CONTEXT_SLOTS(NATIVE_SEAM_NAME)};
static const char *const engine_slots[] = {NATIVE_ENGINE_SLOTS(NATIVE_SEAM_NAME)};
static const char *const limits_slots[] = {NATIVE_LIMITS_SLOTS(NATIVE_SEAM_NAME)};
static const char *const request_slots[] = {NATIVE_REQUEST_SLOTS(NATIVE_SEAM_NAME)};
static const char *const body_slots[] = {NATIVE_BODY_SLOTS(NATIVE_SEAM_NAME)};

/* Each class: its name (the Python one), its fields, how many, where their offsets go. */
static const struct {
    const char *name;
    const char *const *slots;
    int count;
    Py_ssize_t *offsets;
} classes[SEAM_COUNT] = {
    {"Connection", connection_slots, C_COUNT, native_seam.conn},
    {"RequestParser", parser_slots, P_COUNT, native_seam.parser},
    {"_Callbacks", callbacks_slots, CB_COUNT, native_seam.callbacks},
    {"Output", output_slots, O_COUNT, native_seam.output},
    {"ServerContext", context_slots, X_COUNT, native_seam.ctx},
    {"Engine", engine_slots, E_COUNT, native_seam.engine},
    {"ParserLimits", limits_slots, L_COUNT, native_seam.limits},
    {"Request", request_slots, R_COUNT, native_seam.request},
    {"Body", body_slots, B_COUNT, native_seam.body},
};

static PyObject *
bind_seam(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != SEAM_COUNT) {
        PyErr_SetString(PyExc_TypeError, "bind_seam(Connection, RequestParser, _Callbacks, "
                        "Output, ServerContext, Engine, ParserLimits, Request, Body)");
        return NULL;
    }
    Py_ssize_t offsets[SEAM_COUNT][32];
    for (int i = 0; i < SEAM_COUNT; i++) {
        if (classes[i].count > 32 || !PyType_Check(args[i]) ||
            strcmp(((PyTypeObject *)args[i])->tp_name, classes[i].name) != 0) {
            PyErr_Format(PyExc_TypeError, "bind_seam: argument %d must be the class %s",
                         i + 1, classes[i].name);
            return NULL;
        }
        if (native_bind_slots(args[i], classes[i].slots, offsets[i], classes[i].count) < 0) {
            return NULL;
        }
    }
    for (int i = 0; i < SEAM_COUNT; i++) {
        memcpy(classes[i].offsets, offsets[i], sizeof(Py_ssize_t) * (size_t)classes[i].count);
        Py_XSETREF(native_seam.cls[i], Py_NewRef(args[i]));
    }
    Py_RETURN_NONE;
}

int
native_seam_is(PyObject *cls, int which, const char *what)
{
    if (native_seam.cls[which] == NULL || cls != native_seam.cls[which]) {
        PyErr_Format(PyExc_TypeError, "%s: not the %s bound by bind_seam (call it first)",
                     what, classes[which].name);
        return -1;
    }
    return 0;
}

static PyObject *
seam(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *result = PyDict_New();
    for (int i = 0; result != NULL && i < SEAM_COUNT; i++) {
        PyObject *names = PyTuple_New(classes[i].count);
        for (int j = 0; names != NULL && j < classes[i].count; j++) {
            PyObject *name = PyUnicode_FromString(classes[i].slots[j]);
            if (name == NULL) {
                Py_CLEAR(names);
                break;
            }
            PyTuple_SET_ITEM(names, j, name);
        }
        if (names == NULL || PyDict_SetItemString(result, classes[i].name, names) < 0) {
            Py_CLEAR(result);
        }
        Py_XDECREF(names);
    }
    return result;
}

PyMethodDef native_seam_methods[] = {
    {"bind_seam", (PyCFunction)(void (*)(void))bind_seam, METH_FASTCALL,
     "bind_seam(Connection, RequestParser, _Callbacks, Output, ServerContext, Engine, "
     "ParserLimits, Request, Body): the classes whose fields the C files use (see "
     "_native_seam.h), their fields' offsets bound once."},
    {"seam", (PyCFunction)seam, METH_NOARGS,
     "seam() -> {class name: (field, ...)}: the fields the C files use, as declared."},
    {NULL, NULL, 0, NULL},
};
