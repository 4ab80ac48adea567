/*
 * prefork._native, the WSGI half: the per-header loops of a request, in C.
 *
 * Three functions that the native engine calls where the Python engine runs the loops
 * of prefork/wsgi.py and prefork/http/response.py. Each does exactly what its Python
 * reference does, result for result and error type for error type; where a case is rare
 * and the reference's semantics are Python's own (str.strip, str.isdigit, int, a cache
 * miss), this code calls the Python reference rather than imitate it:
 *
 *   build_environ(reference, keys, singletons, key_of, req, base, remote_addr, remote_port)
 *       A request's environ (wsgi.build_environ): for an origin-form target with no
 *       percent-escape and an empty SCRIPT_NAME, made here; anything else (absolute- or
 *       asterisk-form, a path to unquote, a root_path, a repeated singleton field to
 *       refuse) by reference(req, base, remote_addr, remote_port). The header fields:
 *       each name's key from the `keys` cache (key_of(name) on a miss, which fills it),
 *       the value decoded as latin-1, a repeated field joined with ", " ("; " for
 *       Cookie); a repeated field that may occur once (`singletons`) is the reference's
 *       to refuse (400).
 *   response_fields(names, check, headers)
 *       An app's start_response header list checked (Exchange.start_response's loop): each
 *       item a (name, value) tuple; the name a token and the value free of control
 *       characters: taken from the `names` cache for a str name and a plain latin-1 value,
 *       else decided by check(name, value) (response.header_name, which raises). Returns
 *       (content_length or None, has_connection, connection_says_close).
 *   encode_head(reference, status, headers, extra)
 *       The head's bytes (response.encode_head): "HTTP/1.1 " status CRLF, each field, the
 *       server's own `extra` bytes, CRLF, each str as latin-1. Anything but (str, str)
 *       tuples of characters up to U+00FF (which start_response lets through, to fail
 *       here) goes to the reference, which raises what it raises.
 *
 * The caches and the Python fallbacks come first, so that functools.partial binds them
 * (prefork/native.py does).
 *
 * Memory safety: every length is measured from a Python object before anything is
 * copied; the one buffer written (encode_head's bytes object) is sized by a first pass
 * over the same objects, and the second pass checks each copy against the room left.
 * tests/unit/test_native_wsgi.py compares each function with its reference on generated
 * inputs (hypothesis); tests/fuzz/fuzz_native.py drives them under AddressSanitizer.
 *
 * Called by pool threads with the GIL held; no state of its own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "_native.h"

/* ---- build_environ -------------------------------------------------------------------- */

/* A field name's environ key (a new reference): the cache's, else key_of(name)'s; NULL
   with an exception set. */
static PyObject *
environ_key(PyObject *keys, PyObject *key_of, PyObject *name)
{
    PyObject *key = PyDict_GetItemWithError(keys, name);  /* borrowed */
    if (key != NULL) {
        return Py_NewRef(key);
    }
    return PyErr_Occurred() ? NULL : PyObject_CallOneArg(key_of, name);
}

/* A repeated field's values joined (RFC 9110 5.3; "; " for cookies, RFC 6265 5.4):
   before, the separator, `text` (its reference stolen); NULL with an exception set. */
static PyObject *
joined_value(PyObject *key, PyObject *before, PyObject *text)
{
    int cookie = PyUnicode_CompareWithASCIIString(key, "HTTP_COOKIE") == 0;
    PyObject *sep = PyUnicode_FromString(cookie ? "; " : ", ");
    PyObject *joined = sep == NULL ? NULL : PyUnicode_Concat(before, sep);
    Py_XDECREF(sep);
    if (joined != NULL) {
        PyUnicode_Append(&joined, text);
    }
    Py_DECREF(text);
    return joined;
}

/* One field (name and value: bytes, held by the caller) into the environ under `key`:
   0 stored (or left out: an empty key), 1 a singleton field repeated, -1 an error. */
static int
fill_one(PyObject *singletons, PyObject *environ, PyObject *key, PyObject *value)
{
    if (!PyUnicode_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "an environ key must be a str");
        return -1;
    }
    if (PyUnicode_GET_LENGTH(key) == 0) {  /* a name the environ leaves out */
        return 0;
    }
    PyObject *text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
                                            NULL);
    PyObject *before = text == NULL ? NULL : PyDict_GetItemWithError(environ, key);
    if (text == NULL || (before == NULL && PyErr_Occurred())) {
        Py_XDECREF(text);
        return -1;
    }
    if (before != NULL) {
        int single = PySet_Contains(singletons, key);
        if (single != 0) {
            Py_DECREF(text);
            return single < 0 ? -1 : 1;
        }
        if ((text = joined_value(key, before, text)) == NULL) {
            return -1;
        }
    }
    int stored = PyDict_SetItem(environ, key, text);
    Py_DECREF(text);
    return stored;
}

/* The header fields into the environ: args are (keys, singletons, key_of, environ,
   headers). None, or the name of a singleton field found repeated. */
static PyObject *
fill_fields(PyObject *const *args)
{
    PyObject *keys = args[0], *singletons = args[1], *key_of = args[2];
    PyObject *environ = args[3], *headers = args[4];
    if (!PyDict_Check(environ) || !PyList_Check(headers) || !PyDict_Check(keys) ||
        !PyAnySet_Check(singletons)) {
        PyErr_SetString(PyExc_TypeError,
                        "environ_fields: environ dict, headers list, keys dict, singletons set");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *item = PyList_GET_ITEM(headers, i);  /* borrowed: the list is ours alone */
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(item, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(item, 1))) {
            PyErr_SetString(PyExc_TypeError, "a header field must be a (bytes, bytes) tuple");
            return NULL;
        }
        PyObject *name = PyTuple_GET_ITEM(item, 0), *value = PyTuple_GET_ITEM(item, 1);
        Py_INCREF(item);  /* keeps name and value alive whatever key_of does */
        PyObject *key = environ_key(keys, key_of, name);
        int filled = key == NULL ? -1 : fill_one(singletons, environ, key, value);
        Py_XDECREF(key);
        if (filled != 0) {
            PyObject *repeated = filled > 0 ? Py_NewRef(name) : NULL;
            Py_DECREF(item);
            return repeated;  /* a singleton repeated: the caller refuses it */
        }
        Py_DECREF(item);
    }
    Py_RETURN_NONE;
}

enum {
    K_AUTHORITY, K_TARGET, K_METHOD, K_VERSION, K_BODY, K_HEADERS, K_SCRIPT_NAME,
    K_REQUEST_METHOD, K_PATH_INFO, K_QUERY_STRING, K_RAW_URI, K_REQUEST_URI,
    K_SERVER_PROTOCOL, K_REMOTE_ADDR, K_REMOTE_PORT, K_WSGI_INPUT, K_HTTP11, K_HTTP10, K_COUNT
};
static const char *const key_text[K_COUNT] = {
    "authority", "target", "method", "version", "body", "headers", "SCRIPT_NAME",
    "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "RAW_URI", "REQUEST_URI",
    "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "wsgi.input", "HTTP/1.1", "HTTP/1.0",
};
static PyObject *key_obj[K_COUNT];  /* interned once, kept for the process's life */

static int
keys_ready(void)
{
    return native_intern_all(key_obj, key_text, K_COUNT);
}

/* The Request's fields build_environ reads, at the seam's offsets when `req` is exactly
   the bound Request and all are set (1, each a new reference in out); else 0. */
static int
request_environ_fields(PyObject *req, PyObject *out[6])
{
    static const int order[6] = {R_AUTHORITY, R_TARGET, R_METHOD, R_VERSION, R_BODY,
                                 R_HEADERS};
    if (!native_is(req, SEAM_REQUEST)) {
        return 0;
    }
    for (int i = 0; i < 6; i++) {
        if (NATIVE_SLOT(req, native_seam.request[order[i]]) == NULL) {
            return 0;
        }
    }
    for (int i = 0; i < 6; i++) {
        out[i] = Py_NewRef(NATIVE_SLOT(req, native_seam.request[order[i]]));
    }
    return 1;
}

/* The request attributes build_environ reads, each a new reference (or NULL: error). */
static int
request_attrs(PyObject *req, PyObject *attrs[6])
{
    /* The parser's own Request keeps them in __slots__: read where CPython's attribute
       access reads them (the seam holds the offsets), not by name: six lookups by
       name were ~1,000 instructions, 3% of a hello request's. Any other class (a
       subclass, a property), an unset field, or a Request before the parser is bound
       is read by name (an unset field raises AttributeError there). */
    if (request_environ_fields(req, attrs)) {
        return 0;
    }
    for (int i = 0; i < 6; i++) {
        attrs[i] = PyObject_GetAttr(req, key_obj[K_AUTHORITY + i]);
        if (attrs[i] == NULL) {
            while (--i >= 0) {
                Py_CLEAR(attrs[i]);
            }
            return -1;
        }
    }
    return 0;
}

/* environ[key] = value, taking the reference to `value` (NULL: it failed to be made). */
static int
put(PyObject *environ, int key, PyObject *value)
{
    int result = value == NULL ? -1 : PyDict_SetItem(environ, key_obj[key], value);
    Py_XDECREF(value);
    return result;
}

/* The request line's keys and the peer's, for an origin-form target (bytes; `mark`: its
   '?' or NULL): 0, or -1 (an exception set, or none when a dict refused). */
static int
put_request_keys(PyObject *environ, PyObject *const *args, PyObject *const *attrs,
                 const char *mark)
{
    PyObject *target = attrs[1], *method = attrs[2], *version = attrs[3], *body = attrs[4];
    const char *t = PyBytes_AS_STRING(target);
    Py_ssize_t n = PyBytes_GET_SIZE(target), path_len = mark ? mark - t : n;
    PyObject *uri = PyUnicode_DecodeLatin1(t, n, NULL);
    int http11 = PyUnicode_CompareWithASCIIString(version, "1.1") == 0;
    int failed = uri == NULL ||
        put(environ, K_REQUEST_METHOD, Py_NewRef(method)) < 0 ||
        put(environ, K_PATH_INFO, PyUnicode_DecodeLatin1(t, path_len, NULL)) < 0 ||
        put(environ, K_QUERY_STRING,
            mark ? PyUnicode_DecodeLatin1(mark + 1, n - path_len - 1, NULL)
                 : PyUnicode_FromStringAndSize("", 0)) < 0 ||
        PyDict_SetItem(environ, key_obj[K_RAW_URI], uri) < 0 ||
        PyDict_SetItem(environ, key_obj[K_REQUEST_URI], uri) < 0 ||
        PyDict_SetItem(environ, key_obj[K_SERVER_PROTOCOL],
                       key_obj[http11 ? K_HTTP11 : K_HTTP10]) < 0 ||
        PyDict_SetItem(environ, key_obj[K_REMOTE_ADDR], args[6]) < 0 ||
        PyDict_SetItem(environ, key_obj[K_REMOTE_PORT], args[7]) < 0 ||
        PyDict_SetItem(environ, key_obj[K_WSGI_INPUT], body) < 0;
    Py_XDECREF(uri);
    return failed ? -1 : 0;
}

/* The environ of an origin-form request (wsgi.build_environ, its common case); NULL with
   no exception set when the request is for the reference (fallback). */
static PyObject *
origin_environ(PyObject *const *args, PyObject *attrs[6])
{
    PyObject *base = args[5];
    PyObject *authority = attrs[0], *target = attrs[1], *version = attrs[3];
    PyObject *headers = attrs[5];
    if (authority != Py_None || !PyBytes_Check(target) || !PyDict_Check(base) ||
        !PyUnicode_Check(version)) {
        return NULL;
    }
    PyObject *root = PyDict_GetItemWithError(base, key_obj[K_SCRIPT_NAME]);  /* borrowed */
    if (root == NULL || !PyUnicode_Check(root) || PyUnicode_GET_LENGTH(root) != 0) {
        return NULL;  /* a root_path to strip (or none at all): the reference's case */
    }
    const char *t = PyBytes_AS_STRING(target);
    Py_ssize_t n = PyBytes_GET_SIZE(target);
    const char *mark = memchr(t, '?', (size_t)n);
    Py_ssize_t path_len = mark ? mark - t : n;
    if ((n == 1 && t[0] == '*') || memchr(t, '%', (size_t)path_len) != NULL) {
        return NULL;  /* asterisk-form, or a path to unquote */
    }
    PyObject *environ = PyDict_Copy(base);
    if (environ == NULL) {
        return NULL;
    }
    if (put_request_keys(environ, args, attrs, mark) < 0) {
        Py_DECREF(environ);
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "build_environ: could not fill the environ");
        }
        return NULL;
    }
    PyObject *fill_args[5] = {args[1], args[2], args[3], environ, headers};
    PyObject *repeated = fill_fields(fill_args);
    if (repeated != Py_None) {  /* an error, or a field repeated: the reference refuses it */
        Py_XDECREF(repeated);
        Py_DECREF(environ);
        return NULL;
    }
    Py_DECREF(repeated);
    return environ;
}

static PyObject *
build_environ(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "build_environ(reference, keys, singletons, key_of, "
                                         "req, base, remote_addr, remote_port)");
        return NULL;
    }
    PyObject *attrs[6];
    if (keys_ready() < 0 || request_attrs(args[4], attrs) < 0) {
        return NULL;
    }
    PyObject *environ = origin_environ(args, attrs);
    for (int i = 0; i < 6; i++) {
        Py_DECREF(attrs[i]);
    }
    if (environ != NULL || PyErr_Occurred()) {
        return environ;
    }
    return PyObject_Vectorcall(args[0], args + 4, 4, NULL);
}

/* A copy of `base` whose table has room for `room` more keys: the environs copied from it
   (PyDict_Copy clones a dense table as it is) then take a request's keys without growing
   (one resize per request was ~900 instructions, 3% of a hello request's; see
   native_dict_presized). */
static PyObject *
roomy_dict(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyDict_CheckExact(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "roomy_dict(dict, room: int)");
        return NULL;
    }
    Py_ssize_t room = PyLong_AsSsize_t(args[1]);
    if (room < 0 || room > 4096) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "room must be from 0 to 4096");
        }
        return NULL;
    }
    PyObject *copy = native_dict_presized(PyDict_GET_SIZE(args[0]) + room);
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (copy != NULL && PyDict_Next(args[0], &pos, &key, &value)) {
        if (PyDict_SetItem(copy, key, value) < 0) {
            Py_CLEAR(copy);
        }
    }
    return copy;
}

/* ---- response_fields ------------------------------------------------------------------ */

/* A latin-1 (one byte per character) str with no control character but tab: what
   response._BAD_VALUE lets through. Anything else is for the reference to judge. */
static int
plain_value(PyObject *value)
{
    if (!PyUnicode_CheckExact(value) || PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND) {
        return 0;
    }
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS1 c = s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* The value of a Content-Length the app set, as the reference reads it:
   value.strip().isdigit() or ValueError, then int(value). */
static PyObject *
content_length(PyObject *value)
{
    if (PyUnicode_CheckExact(value) && PyUnicode_KIND(value) == PyUnicode_1BYTE_KIND) {
        /* The common case, decided here: 1 to 18 ASCII digits, nothing else. */
        const Py_UCS1 *s = PyUnicode_1BYTE_DATA(value);
        Py_ssize_t n = PyUnicode_GET_LENGTH(value);
        long long number = 0;
        Py_ssize_t i = 0;
        for (; i < n && i < 18 && s[i] >= '0' && s[i] <= '9'; i++) {
            number = number * 10 + (s[i] - '0');
        }
        if (n > 0 && i == n) {
            return PyLong_FromLongLong(number);
        }
    }
    PyObject *stripped = PyObject_CallMethod(value, "strip", NULL);
    if (stripped == NULL) {
        return NULL;
    }
    PyObject *digits = PyObject_CallMethod(stripped, "isdigit", NULL);
    Py_DECREF(stripped);
    if (digits == NULL) {
        return NULL;
    }
    int ok = PyObject_IsTrue(digits);
    Py_DECREF(digits);
    if (ok < 0) {
        return NULL;
    }
    if (!ok) {
        return PyErr_Format(PyExc_ValueError, "invalid Content-Length %R", value);
    }
    return PyNumber_Long(value);
}

/* "close" in value.lower() */
static int
says_close(PyObject *value)
{
    PyObject *lower = PyObject_CallMethod(value, "lower", NULL);
    if (lower == NULL) {
        return -1;
    }
    PyObject *close = PyUnicode_FromString("close");
    if (close == NULL) {
        Py_DECREF(lower);
        return -1;
    }
    int found = PySequence_Contains(lower, close);
    Py_DECREF(close);
    Py_DECREF(lower);
    return found;
}

int
native_response_fields(PyObject *names, PyObject *check, PyObject *headers,
                       PyObject **length_out, int *has_connection_out, int *close_out)
{
    PyObject *length = Py_NewRef(Py_None);
    int has_connection = 0, close = 0;
    /* The list is the app's: `check` (Python) could change it, so each item is taken with
       a reference and the size is read again on each turn. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *item = Py_NewRef(PyList_GET_ITEM(headers, i));
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_Format(PyExc_TypeError, "each header must be a (name, value) tuple, got %R",
                         item);
            goto fail;
        }
        PyObject *name = PyTuple_GET_ITEM(item, 0), *value = PyTuple_GET_ITEM(item, 1);
        PyObject *lname = NULL;
        if (PyUnicode_CheckExact(name) && plain_value(value)) {
            lname = PyDict_GetItemWithError(names, name);  /* borrowed */
            if (lname == NULL && PyErr_Occurred()) {
                goto fail;
            }
            Py_XINCREF(lname);
        }
        if (lname == NULL) {
            lname = PyObject_CallFunctionObjArgs(check, name, value, NULL);
            if (lname == NULL) {
                goto fail;
            }
        }
        if (!PyUnicode_Check(lname)) {
            Py_DECREF(lname);
            PyErr_SetString(PyExc_TypeError, "a checked header name must be a str");
            goto fail;
        }
        Py_ssize_t n = PyUnicode_GET_LENGTH(lname);
        if (n == 14 && PyUnicode_CompareWithASCIIString(lname, "content-length") == 0) {
            Py_DECREF(lname);
            PyObject *number = content_length(value);
            if (number == NULL) {
                goto fail;
            }
            Py_SETREF(length, number);
        }
        else if (n == 10 && PyUnicode_CompareWithASCIIString(lname, "connection") == 0) {
            Py_DECREF(lname);
            has_connection = 1;
            int found = says_close(value);
            if (found < 0) {
                goto fail;
            }
            close |= found;
        }
        else {
            Py_DECREF(lname);
        }
        Py_DECREF(item);
        continue;
    fail:
        Py_DECREF(item);
        Py_DECREF(length);
        return -1;
    }
    *length_out = length;
    *has_connection_out = has_connection;
    *close_out = close;
    return 0;
}

static PyObject *
response_fields(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyDict_Check(args[0]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "response_fields(names: dict, check, headers: list)");
        return NULL;
    }
    PyObject *length;
    int has_connection, close;
    if (native_response_fields(args[0], args[1], args[2], &length, &has_connection,
                               &close) < 0) {
        return NULL;
    }
    PyObject *result = Py_BuildValue("(OOO)", length, has_connection ? Py_True : Py_False,
                                     close ? Py_True : Py_False);
    Py_DECREF(length);
    return result;
}

/* ---- encode_head ---------------------------------------------------------------------- */

/* A str of one byte per character (so its latin-1 bytes are its own buffer): 1 and its
   data, else 0 (a character past U+00FF, or no str at all: for the reference to judge). */
static int
latin1(PyObject *text, const char **data, Py_ssize_t *size)
{
    if (!PyUnicode_Check(text) || PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND) {
        return 0;
    }
    *data = (const char *)PyUnicode_1BYTE_DATA(text);
    *size = PyUnicode_GET_LENGTH(text);
    return 1;
}

/* The size of the head, or -1 if a part is not of the plain shape: a (str, str) tuple,
   each str latin-1; -2 if it would not fit in a bytes object. */
static Py_ssize_t
head_size(PyObject *status, PyObject *headers, Py_ssize_t tail)
{
    const char *data;
    Py_ssize_t size;
    if (!latin1(status, &data, &size)) {
        return -1;
    }
    Py_ssize_t total = 9 + size + 2 + 2;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *item = PyList_GET_ITEM(headers, i);
        Py_ssize_t name_size, value_size;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            !latin1(PyTuple_GET_ITEM(item, 0), &data, &name_size) ||
            !latin1(PyTuple_GET_ITEM(item, 1), &data, &value_size)) {
            return -1;
        }
        /* Each size is that of an object in memory: the sum cannot overflow before it
           exceeds what a bytes object may hold, which is refused below. */
        if (total > PY_SSIZE_T_MAX / 2 - name_size - value_size - 4) {
            return -2;
        }
        total += name_size + 2 + value_size + 2;
    }
    if (total > PY_SSIZE_T_MAX / 2 - tail) {
        return -2;
    }
    return total + tail;
}

PyObject *
native_head(PyObject *status, PyObject *headers, const char *extra, Py_ssize_t extra_size,
            const char *body, Py_ssize_t body_size)
{
    if (!PyList_Check(headers) || extra_size < 0 || body_size < 0 ||
        extra_size > PY_SSIZE_T_MAX / 4 || body_size > PY_SSIZE_T_MAX / 4) {
        return NULL;
    }
    Py_ssize_t total = head_size(status, headers, extra_size + body_size);
    if (total == -2) {
        return PyErr_NoMemory();
    }
    if (total < 0) {  /* not the plain shape: the reference says what it makes of it */
        return NULL;
    }
    /* Nothing from here runs Python code: the list and its strs cannot change while the
       GIL is held, and every copy is checked against the room left all the same. */
    PyObject *head = PyBytes_FromStringAndSize(NULL, total);
    if (head == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(head), *end = out + total;
    const char *data;
    Py_ssize_t size;
#define PUT(src, len)                                                                     \
    do {                                                                                  \
        if ((len) > end - out) {                                                          \
            goto overflow;                                                                \
        }                                                                                 \
        memcpy(out, (src), (size_t)(len));                                                \
        out += (len);                                                                     \
    } while (0)
    PUT("HTTP/1.1 ", 9);
    if (!latin1(status, &data, &size)) {
        goto overflow;
    }
    PUT(data, size);
    PUT("\r\n", 2);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *item = PyList_GET_ITEM(headers, i);
        for (int k = 0; k < 2; k++) {
            if (!latin1(PyTuple_GET_ITEM(item, k), &data, &size)) {
                goto overflow;
            }
            PUT(data, size);
            PUT(k == 0 ? ": " : "\r\n", 2);
        }
    }
    PUT(extra, extra_size);
    PUT("\r\n", 2);
    PUT(body, body_size);
#undef PUT
    if (out != end) {
        goto overflow;
    }
    return head;
overflow:
    Py_DECREF(head);
    PyErr_SetString(PyExc_RuntimeError, "encode_head: the head changed while it was written");
    return NULL;
}

static PyObject *
encode_head(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "encode_head(reference, status, headers, extra)");
        return NULL;
    }
    PyObject *reference = args[0], *status = args[1], *headers = args[2], *extra = args[3];
    PyObject *head = NULL;
    if (PyBytes_Check(extra)) {
        head = native_head(status, headers, PyBytes_AS_STRING(extra), PyBytes_GET_SIZE(extra),
                           "", 0);
    }
    if (head != NULL || PyErr_Occurred()) {
        return head;
    }
    /* not the plain shape: the reference says what it makes of it */
    return PyObject_CallFunctionObjArgs(reference, status, headers, extra, NULL);
}

PyMethodDef native_wsgi_methods[] = {
    {"build_environ", (PyCFunction)(void (*)(void))build_environ, METH_FASTCALL,
     "build_environ(reference, keys, singletons, key_of, req, base, remote_addr, remote_port)"
     " -> dict"},
    {"roomy_dict", (PyCFunction)(void (*)(void))roomy_dict, METH_FASTCALL,
     "roomy_dict(dict, room) -> a copy with room for `room` more keys"},
    {"response_fields", (PyCFunction)(void (*)(void))response_fields, METH_FASTCALL,
     "response_fields(names, check, headers) -> (length | None, has_connection, close)"},
    {"encode_head", (PyCFunction)(void (*)(void))encode_head, METH_FASTCALL,
     "encode_head(reference, status, headers, extra) -> bytes"},
    {NULL, NULL, 0, NULL},
};
