/*
 * prefork._native, the seam: the Python classes whose __slots__ fields the C files read
 * and write, bound once (bind_seam), and their fields' offsets, from the one declaration
 * in _native_seam.h. Every other C file reads native_seam; each of their own binds checks
 * that the classes it is given are these (native_seam_is).
 *
 *   bind_seam(Connection, RequestParser, _Callbacks, Output, ServerContext, Engine,
 *             ParserLimits, Request, Body, State, Next, Ending, ProxyHeader, Watch)
 *       every declared field checked to be a __slots__ field of the class itself, and
 *       every declared member to be one of its enum (a renamed or missing one raises
 *       TypeError naming both), then the offsets and members kept, and the names of the
 *       methods called interned.
 *   seam() -> {"slots" | "calls" | "references" | "members": {class: (name, ...)}}
 *       the declaration, which prefork/native.py holds against the Python classes at
 *       import (each method called exists and is marked @native_calls).
 *
 * Called at import, by prefork/native.py (GIL held); the offsets are read by every pool
 * thread afterwards and never change.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_native.h"

struct native_seam native_seam;

static PyMethodDef native_seam_methods[];

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

#define NATIVE_SEAM_OWNER(index, owner, name) #owner,
#define NATIVE_SEAM_NAME_OF(index, owner, name) #name,
static const char *const call_owners[M_COUNT] = {NATIVE_CALLS(NATIVE_SEAM_OWNER)};
static const char *const call_names[M_COUNT] = {NATIVE_CALLS(NATIVE_SEAM_NAME_OF)};
#define NATIVE_SEAM_PAIR(owner, name) {#owner, #name},
static const char *const references[][2] = {NATIVE_REFERENCES(NATIVE_SEAM_PAIR)};
static const char *const member_enums[V_COUNT] = {NATIVE_MEMBERS(NATIVE_SEAM_OWNER)};
static const char *const member_names[V_COUNT] = {NATIVE_MEMBERS(NATIVE_SEAM_NAME_OF)};
static const char *const enum_names[SEAM_ENUMS] = {"State", "Next", "Ending", "ProxyHeader",
                                                  "Watch"};

static int
named(PyObject *cls, const char *name, int position)
{
    if (PyType_Check(cls) && strcmp(((PyTypeObject *)cls)->tp_name, name) == 0) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "bind_seam: argument %d must be the class %s", position,
                 name);
    return -1;
}

/* The declared members, each looked up on its enum (given in SEAM_ENUMS order) and
   checked to be one of it, into v (new references). 0, or -1 with an exception set
   (naming the member) and nothing kept. */
static int
bind_members(PyObject *const *enums, PyObject **v)
{
    for (int i = 0; i < V_COUNT; i++) {
        PyObject *cls = NULL;
        for (int e = 0; e < SEAM_ENUMS; e++) {
            if (strcmp(member_enums[i], enum_names[e]) == 0) {
                cls = enums[e];
            }
        }
        PyObject *member = cls == NULL ? NULL : PyObject_GetAttrString(cls, member_names[i]);
        if (member == NULL || !PyObject_TypeCheck(member, (PyTypeObject *)cls)) {
            PyErr_Clear();
            Py_XDECREF(member);
            PyErr_Format(PyExc_TypeError, "%s.%s is not a member of its enum",
                         member_enums[i], member_names[i]);
            while (--i >= 0) {
                Py_CLEAR(v[i]);
            }
            return -1;
        }
        v[i] = member;
    }
    return 0;
}

static PyObject *
bind_seam(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != SEAM_COUNT + SEAM_ENUMS) {
        PyErr_SetString(PyExc_TypeError, "bind_seam(Connection, RequestParser, _Callbacks, "
                        "Output, ServerContext, Engine, ParserLimits, Request, Body, State, "
                        "Next, Ending, ProxyHeader, Watch)");
        return NULL;
    }
    for (int e = 0; e < SEAM_ENUMS; e++) {
        if (named(args[SEAM_COUNT + e], enum_names[e], SEAM_COUNT + e + 1) < 0) {
            return NULL;
        }
    }
    Py_ssize_t offsets[SEAM_COUNT][32];
    for (int i = 0; i < SEAM_COUNT; i++) {
        if (classes[i].count > 32 || named(args[i], classes[i].name, i + 1) < 0 ||
            native_bind_slots(args[i], classes[i].slots, offsets[i], classes[i].count) < 0) {
            return NULL;
        }
    }
    PyObject *v[V_COUNT];
    if (bind_members(args + SEAM_COUNT, v) < 0) {
        return NULL;
    }
    for (int i = 0; i < V_COUNT; i++) {
        Py_XSETREF(native_seam.v[i], v[i]);
    }
    for (int i = 0; i < SEAM_COUNT; i++) {
        memcpy(classes[i].offsets, offsets[i], sizeof(Py_ssize_t) * (size_t)classes[i].count);
        Py_XSETREF(native_seam.cls[i], Py_NewRef(args[i]));
    }
    Py_RETURN_NONE;
}

int
native_seam_add(PyObject *module)
{
    return native_intern_all(native_seam.call, call_names, M_COUNT) < 0 ? -1 :
        PyModule_AddFunctions(module, native_seam_methods);
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

/* {owner: (name, ...)} from parallel lists of owners and names, added to `into` as `key`.
   0, or -1 with an exception set. */
static int
add_lists(PyObject *into, const char *key, const char *const *owners,
          const char *const *names, Py_ssize_t stride, int count)
{
    PyObject *by_owner = PyDict_New();
    for (int i = 0; by_owner != NULL && i < count; i++) {
        const char *owner = owners[i * stride], *name = names[i * stride];
        PyObject *list = PyDict_GetItemString(by_owner, owner);  /* borrowed */
        PyObject *text = PyUnicode_FromString(name);
        if (list == NULL && text != NULL) {
            list = PyList_New(0);
            if (list != NULL && PyDict_SetItemString(by_owner, owner, list) < 0) {
                Py_CLEAR(list);
            }
            Py_XDECREF(list);  /* the dict holds it */
        }
        if (text == NULL || list == NULL || PyList_Append(list, text) < 0) {
            Py_CLEAR(by_owner);
        }
        Py_XDECREF(text);
    }
    int r = by_owner == NULL ? -1 : PyDict_SetItemString(into, key, by_owner);
    Py_XDECREF(by_owner);
    return r;
}

static PyObject *
seam(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    const char *owners[SEAM_COUNT * 32], *names[SEAM_COUNT * 32];
    int n = 0;
    for (int i = 0; i < SEAM_COUNT; i++) {
        for (int j = 0; j < classes[i].count; j++, n++) {
            owners[n] = classes[i].name;
            names[n] = classes[i].slots[j];
        }
    }
    PyObject *result = PyDict_New();
    if (result == NULL || add_lists(result, "slots", owners, names, 1, n) < 0 ||
        add_lists(result, "calls", call_owners, call_names, 1, M_COUNT) < 0 ||
        add_lists(result, "references", &references[0][0], &references[0][1], 2,
                  (int)(sizeof references / sizeof references[0])) < 0 ||
        add_lists(result, "members", member_enums, member_names, 1, V_COUNT) < 0) {
        Py_XDECREF(result);
        return NULL;
    }
    return result;
}

static PyMethodDef native_seam_methods[] = {
    {"bind_seam", (PyCFunction)(void (*)(void))bind_seam, METH_FASTCALL,
     "bind_seam(Connection, RequestParser, _Callbacks, Output, ServerContext, Engine, "
     "ParserLimits, Request, Body, State, Next, Ending, ProxyHeader, Watch): the classes "
     "whose fields the C files use and the enums whose members they use (see "
     "_native_seam.h), bound once."},
    {"seam", (PyCFunction)seam, METH_NOARGS,
     "seam() -> {'slots' | 'calls' | 'references' | 'members': {class: [name, ...]}}: "
     "what the C files use of the Python classes, as declared."},
    {NULL, NULL, 0, NULL},
};
