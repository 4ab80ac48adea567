/*
 * What the compiled core needs of CPython beyond its stable, public API, in one place:
 * each use with its version guard and why. Nothing else in the C files names a private
 * function or reads a type's internals (tests/unit/test_architecture.py holds that).
 *
 * Built and tested on CPython 3.11, 3.12 and 3.13 (CI). For 3.14 and free-threaded
 * builds, see ARCHITECTURE.md, "What another interpreter needs".
 */
#ifndef PREFORK_NATIVE_COMPAT_H
#define PREFORK_NATIVE_COMPAT_H

#include <Python.h>
#include <structmember.h>

/* A new dict with room for `size` items, so that filling it does not resize it (one
   resize per request was ~900 instructions, 3% of a hello request's): the private
   _PyDict_NewPresized, in the headers of every CPython from 3.10 to 3.13. On a newer
   one, not yet checked, the public PyDict_New: the same dict, grown as it fills. */
static inline PyObject *
native_dict_presized(Py_ssize_t size)
{
#if PY_VERSION_HEX < 0x030E0000
    return _PyDict_NewPresized(size);
#else
    (void)size;
    return PyDict_New();
#endif
}

/* A bytes object just made (refcount 1, not shared) shrunk in place to `size`: the
   documented but underscored _PyBytes_Resize (in every CPython 3; on failure *bytes is
   freed and set to NULL). Saves a copy of every short recv. */
static inline int
native_bytes_shrink(PyObject **bytes, Py_ssize_t size)
{
    return _PyBytes_Resize(bytes, size);
}

/* The member descriptor of `name` in the type's own dict (not a base's), or NULL: read
   from the dict itself (tp_dict, borrowed; PyType_GetDict from 3.12 gives a new
   reference to the same), so that no descriptor's __get__ runs. The descriptor's fields
   (d_type, d_member) are CPython's descrobject.h, unchanged from 3.8 to 3.13. */
static inline PyMemberDef *
native_own_member(PyTypeObject *type, const char *name)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *dict = PyType_GetDict(type);
#else
    PyObject *dict = Py_XNewRef(type->tp_dict);
#endif
    PyObject *d = dict == NULL ? NULL : PyDict_GetItemString(dict, name);  /* borrowed */
    PyMemberDef *member = NULL;
    if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) &&
        ((PyDescrObject *)d)->d_type == type) {
        member = ((PyMemberDescrObject *)d)->d_member;
    }
    Py_XDECREF(dict);  /* the type keeps the descriptor alive */
    return member;
}

/* The exception being raised (any file), taken (with its traceback), or NULL if none is. */
static inline PyObject *
native_take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Raise `exc` again (stolen; NULL: nothing). */
static inline void
native_raise_again(PyObject *exc)
{
    if (exc == NULL) {
        return;
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

#endif
