/* What the C files of prefork._native share: each file's functions, added to the module
   by PyInit__native in _native.c. */
#ifndef PREFORK_NATIVE_H
#define PREFORK_NATIVE_H

#include <Python.h>

/* _native_wsgi.c: environ_fields, response_fields, encode_head. */
extern PyMethodDef native_wsgi_methods[];

/* _native_http.c: HeadFields, llhttp's callbacks for a request head. */
extern PyTypeObject HeadFieldsType;

#endif
