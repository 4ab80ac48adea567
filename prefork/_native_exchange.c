/*
 * prefork._native, the response half: one exchange's state, start_response and run, in C.
 *
 * Exchange is wsgi.Exchange's state as C fields (the same attribute names, so the
 * reference's Python methods work on it unchanged: prefork/native.py's NativeExchange
 * subclasses it and takes write, finish, _head, _frame, send_file, time_out and respond
 * from wsgi.Exchange). Two methods are C twins of the reference's:
 *
 *   start_response(status, headers, exc_info=None)
 *       A first call with a status line the reference has already checked (its cache,
 *       response._STATUS_CODES) and fields that need no filtering (no Connection field; no
 *       Content-Length where the status allows no content): the fields checked
 *       (native_response_fields, _native_wsgi.c), the list copied, the state set, `write`
 *       returned. Anything else (exc_info, a second call, a status line not yet seen, a
 *       field to take out, a keyword argument) is wsgi.Exchange.start_response's.
 *   run(app, environ)
 *       app(environ, self.start_response); for a list of one bytes object, the head
 *       (status line, the app's fields, Server, Date, Content-Length when the app gave
 *       none, Connection) and the body in one bytes object, sent by out.send() (in C
 *       when it can: the connection's send, given by native_exchange_use_send), the
 *       state set as Exchange.finish() sets it. Any other result, or an exchange in
 *       another state (head already sent, request_timeout's guard), goes to
 *       self.respond(result).
 *
 *   bind_exchange(...)   the references, once, at import (prefork/native.py)
 *   http_date(seconds)   the Date line of a second, as response.date_header formats it;
 *                        run keeps the current second's
 *
 * Memory safety: the one buffer written is native_head's (_native_wsgi.c), sized by a
 * first pass; the small fields written here go through snprintf into fixed buffers whose
 * sizes bound every value (a year of at most 4 digits is checked; a length is a
 * Py_ssize_t). tests/unit/test_native_exchange.py compares NativeExchange with the
 * reference on generated apps; tests/fuzz/fuzz_native_wsgi.py drives it under
 * AddressSanitizer.
 *
 * An Exchange belongs to the pool thread serving its request (the worker's main thread
 * calls time_out on it, under the guard); the references and the Date cache are this
 * module's only state, written with the GIL held.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "_native.h"

enum { A_METHOD, A_VERSION, A_HEAD, A_V10, A_COUNT };
static const char *const attr_text[A_COUNT] = {"method", "version", "HEAD", "1.0"};
static PyObject *attr[A_COUNT];  /* interned once, kept for the process's life */

static int
attrs_ready(void)
{
    return native_intern_all(attr, attr_text, A_COUNT);
}

/* ---- the Date line ------------------------------------------------------------------- */

#define DATE_LEN 37  /* "Date: ", an IMF-fixdate (29 characters), "\r\n" */
#define DATE_SIZE 48  /* and room for snprintf's NUL */

static int
format_date(time_t seconds, char out[DATE_SIZE])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (gmtime_r(&seconds, &tm) == NULL || tm.tm_year + 1900 < 0 ||
        tm.tm_year + 1900 > 9999 || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
        tm.tm_mon > 11) {
        return -1;
    }
    int n = snprintf(out, DATE_SIZE, "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                     days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
    return n == DATE_LEN ? n : -1;
}

static time_t date_second = -1;
static char date_line[DATE_SIZE];

/* The current second's Date line (DATE_LEN bytes), or NULL if the clock is out of
   the range a Date can say (the reference then decides). */
static const char *
current_date(void)
{
    time_t now = time(NULL);
    if (now != date_second) {
        if (format_date(now, date_line) < 0) {
            return NULL;
        }
        date_second = now;
    }
    return date_line;
}

static PyObject *
http_date(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long long seconds = PyLong_AsLongLong(arg);
    if (seconds == -1 && PyErr_Occurred()) {
        return NULL;
    }
    char line[DATE_SIZE];
    if ((long long)(time_t)seconds != seconds || format_date((time_t)seconds, line) < 0) {
        PyErr_SetString(PyExc_ValueError, "http_date: a year from 0 to 9999");
        return NULL;
    }
    return PyBytes_FromStringAndSize(line, DATE_LEN);
}

/* ---- the Exchange type ------------------------------------------------------------- */

/* What bind_exchange() gave, once, at import (prefork/native.py): the references. */
static PyObject *status_codes;      /* response._STATUS_CODES: status line -> code */
static PyObject *reference_start;   /* wsgi.Exchange.start_response */
static PyObject *names_cache;       /* response._NAMES */
static PyObject *check_name;        /* response.header_name */
static PyObject *server_fields;     /* wsgi._SERVER_FIELDS */
static PyObject *allocate_lock;     /* threading.Lock */

typedef struct {
    PyObject_HEAD
    PyObject *out, *status, *headers, *length, *guard;  /* status, length, guard: or None */
    Py_ssize_t code, sent;
    char head_only, version10, keep_alive, head_sent, chunked;
} Exchange;

/* What __init__(out, req, keep_alive, guarded) sets. */
static int
exchange_setup(Exchange *self, PyObject *out, PyObject *req, int keep_alive, int guarded)
{
    if (attrs_ready() < 0) {
        return -1;
    }
    PyObject *method = PyObject_GetAttr(req, attr[A_METHOD]);
    PyObject *version = method == NULL ? NULL : PyObject_GetAttr(req, attr[A_VERSION]);
    int head_only = method == NULL ? -1 : PyObject_RichCompareBool(method, attr[A_HEAD], Py_EQ);
    int version10 = version == NULL ? -1 : PyObject_RichCompareBool(version, attr[A_V10],
                                                                    Py_EQ);
    Py_XDECREF(method);
    Py_XDECREF(version);
    if (head_only < 0 || version10 < 0) {
        return -1;
    }
    PyObject *guard = Py_None, *headers = PyList_New(0);
    if (headers == NULL) {
        return -1;
    }
    if (guarded) {  /* request_timeout: the response head's owner, this thread or a 504 */
        if (allocate_lock == NULL) {
            Py_DECREF(headers);
            PyErr_SetString(PyExc_RuntimeError, "bind_exchange() was not called");
            return -1;
        }
        if ((guard = PyObject_CallNoArgs(allocate_lock)) == NULL) {
            Py_DECREF(headers);
            return -1;
        }
    } else {
        Py_INCREF(guard);
    }
    Py_XSETREF(self->out, Py_NewRef(out));
    Py_XSETREF(self->status, Py_NewRef(Py_None));
    Py_XSETREF(self->headers, headers);
    Py_XSETREF(self->length, Py_NewRef(Py_None));
    Py_XSETREF(self->guard, guard);
    self->code = self->sent = 0;
    self->head_only = (char)head_only;
    self->version10 = (char)version10;
    self->keep_alive = (char)keep_alive;
    self->head_sent = self->chunked = 0;
    return 0;
}

static int
exchange_init(Exchange *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"out", "req", "keep_alive", "guarded", NULL};
    PyObject *out, *req;
    int keep_alive, guarded = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOp|p", kwlist, &out, &req, &keep_alive,
                                     &guarded)) {
        return -1;
    }
    return exchange_setup(self, out, req, keep_alive, guarded);
}

PyObject *
native_exchange_new(PyObject *cls, PyObject *out, PyObject *req, int keep_alive, int guarded)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &ExchangeType)) {
        PyErr_SetString(PyExc_TypeError, "not an Exchange type");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    PyObject *self = type->tp_alloc(type, 0);
    if (self != NULL && exchange_setup((Exchange *)self, out, req, keep_alive, guarded) < 0) {
        Py_CLEAR(self);
    }
    return self;
}

static int
exchange_traverse(Exchange *self, visitproc visit, void *arg)
{
    Py_VISIT(self->out);
    Py_VISIT(self->status);
    Py_VISIT(self->headers);
    Py_VISIT(self->length);
    Py_VISIT(self->guard);
    return 0;
}

static int
exchange_clear(Exchange *self)
{
    Py_CLEAR(self->out);
    Py_CLEAR(self->status);
    Py_CLEAR(self->headers);
    Py_CLEAR(self->length);
    Py_CLEAR(self->guard);
    return 0;
}

/* A static type: an instance of a heap subclass (NativeExchange) has its type's
   reference dropped by CPython's subtype_dealloc, which calls this. */
static void
exchange_dealloc(Exchange *self)
{
    PyObject_GC_UnTrack(self);
    exchange_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The reference's start_response, on this object (its attributes are these fields):
   for what this code does not decide itself. */
static PyObject *
start_reference(Exchange *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *positional, *kwargs, *result;
    if (native_call_args((PyObject *)self, args, nargs, kwnames, &positional, &kwargs) < 0) {
        return NULL;
    }
    result = PyObject_Call(reference_start, positional, kwargs);
    Py_DECREF(positional);
    Py_XDECREF(kwargs);
    return result;
}

/* PEP 3333 start_response(status, headers, exc_info=None), as Exchange.start_response:
   decided here for a first call with a status line already known (the reference's
   cache) and a header list without a Connection field (and without a Content-Length
   where the status allows none); anything else is the reference's. */
static PyObject *
exchange_start_response(Exchange *self, PyObject *const *args, size_t nargsf,
                        PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (status_codes == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_exchange() was not called");
        return NULL;
    }
    if (kwnames != NULL || nargs < 2 || nargs > 3 || (nargs == 3 && args[2] != Py_None) ||
        self->status != Py_None || !PyUnicode_CheckExact(args[0]) ||
        !PyList_Check(args[1])) {
        return start_reference(self, args, nargs, kwnames);
    }
    PyObject *status = args[0], *headers = args[1];
    PyObject *known = PyDict_GetItemWithError(status_codes, status);  /* borrowed */
    if (known == NULL) {
        return PyErr_Occurred() ? NULL : start_reference(self, args, nargs, kwnames);
    }
    Py_ssize_t code = PyLong_AsSsize_t(known);
    if (code == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *length;
    int has_connection, close;
    if (native_response_fields(names_cache, check_name, headers, &length, &has_connection,
                               &close) < 0) {
        return NULL;
    }
    if (has_connection || (length != Py_None && (code < 200 || code == 204))) {
        Py_DECREF(length);  /* fields to take out: the reference's (the same checks again) */
        return start_reference(self, args, nargs, kwnames);
    }
    PyObject *copy = PyList_GetSlice(headers, 0, PyList_GET_SIZE(headers));
    if (copy == NULL) {
        Py_DECREF(length);
        return NULL;
    }
    /* `close` is never set here: a Connection field went to the reference above. */
    (void)close;
    Py_SETREF(self->status, Py_NewRef(status));
    self->code = code;
    Py_SETREF(self->headers, copy);
    Py_SETREF(self->length, length);
    return PyObject_GetAttr((PyObject *)self, native_seam.call[M_WRITE]);
}

/* out.send(data): _native_conn.c's twin of Output.send, given when it is bound. */
static native_send_fn output_send = NULL;

void
native_exchange_use_send(native_send_fn send)
{
    output_send = send;
}

/* The declared Content-Length of an exchange of the plain shape (no head sent, no guard,
   a str status, a list of headers): its value, -1 for none declared; -2 for any other
   shape (the reference's to answer). */
static Py_ssize_t
plain_length(Exchange *self)
{
    if (output_send == NULL || self->head_sent ||
        (self->guard != NULL && self->guard != Py_None) ||
        self->status == NULL || !PyUnicode_Check(self->status) || self->headers == NULL ||
        !PyList_Check(self->headers) || self->out == NULL || server_fields == NULL) {
        return -2;
    }
    if (self->length == NULL || self->length == Py_None) {
        return -1;
    }
    if (!PyLong_CheckExact(self->length)) {
        return -2;
    }
    Py_ssize_t length = PyLong_AsSsize_t(self->length);
    if (length < 0) {  /* too large for a Py_ssize_t: the reference's */
        PyErr_Clear();
        return -2;
    }
    return length;
}

/* The server's fields in `extra` (256 bytes): Server, Date, Content-Length (only when
   the app declared none: `length` < 0; the body's own length is known), Connection.
   Their size, or -1 when they would not fit (the reference's to answer). */
static Py_ssize_t
server_extra(Exchange *self, char *extra, Py_ssize_t length, int allows_body,
             Py_ssize_t body_size)
{
    const size_t room = 256;
    const char *date = current_date();
    Py_ssize_t server_size = PyBytes_GET_SIZE(server_fields);
    if (date == NULL || server_size > 128) {
        return -1;
    }
    memcpy(extra, PyBytes_AS_STRING(server_fields), (size_t)server_size);
    Py_ssize_t n = server_size;
    memcpy(extra + n, date, DATE_LEN);
    n += DATE_LEN;
    if (length < 0 && allows_body) {
        n += snprintf(extra + n, room - (size_t)n, "Content-Length: %zd\r\n", body_size);
    }
    if (!self->keep_alive) {
        n += snprintf(extra + n, room - (size_t)n, "Connection: close\r\n");
    } else if (self->version10) {
        n += snprintf(extra + n, room - (size_t)n, "Connection: keep-alive\r\n");
    }
    return n >= (Py_ssize_t)room ? -1 : n;  /* cannot be, by the sizes above */
}

/* The head and the whole body of a single-item response, sent; as Exchange.finish(body)
   with no head sent yet. 1 done, 0 not of the plain shape (nothing was changed), -1 error
   (raised, as the reference would have raised it). */
static int
finish_single(Exchange *self, PyObject *body)
{
    Py_ssize_t length = plain_length(self);  /* -1: None, the app declared none */
    if (length < -1) {
        return 0;
    }
    Py_ssize_t code = self->code;
    int allows_body = !(code < 200 || code == 204 || code == 304);
    Py_ssize_t body_size = PyBytes_GET_SIZE(body);
    char extra[256];
    Py_ssize_t n = server_extra(self, extra, length, allows_body, body_size);
    if (n < 0) {
        return 0;
    }
    /* The body as _frame() frames it: none for HEAD or a status without content; never
       more than a declared Content-Length (the connection then closes). */
    Py_ssize_t out_size = body_size;
    int cut = 0;
    if (self->head_only || !allows_body) {
        out_size = 0;
    } else if (length >= 0 && out_size > length) {
        out_size = length;
        cut = 1;
    }
    PyObject *data = native_head(self->status, self->headers, extra, n,
                                 PyBytes_AS_STRING(body), out_size);
    if (data == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    self->head_sent = 1;
    if (!self->head_only && allows_body) {
        self->sent += out_size;
    }
    if (cut) {
        self->keep_alive = 0;
    }
    PyObject *out = Py_NewRef(self->out);
    int failed = output_send(out, data);
    Py_DECREF(out);
    Py_DECREF(data);
    if (failed) {
        return -1;
    }
    /* A short body: only closing the connection tells the client. */
    if (length >= 0 && self->sent < length && !self->head_only && allows_body) {
        self->keep_alive = 0;
    }
    return 1;
}

/* Exchange.run(app, environ): the app called; a single-item list answered here, anything
   else by self.respond(result) (the reference's). */
static PyObject *
exchange_run(Exchange *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "run(app, environ)");
        return NULL;
    }
    PyObject *start_response = PyObject_GetAttr((PyObject *)self,
                                                native_seam.call[M_START_RESPONSE]);
    if (start_response == NULL) {
        return NULL;
    }
    PyObject *call[2] = {args[1], start_response};
    PyObject *result = PyObject_Vectorcall(args[0], call, 2, NULL);
    Py_DECREF(start_response);
    if (result == NULL) {
        return NULL;
    }
    int done = 0;
    /* An exact list has no close() to call; its one item is held while the head is made. */
    if (PyList_CheckExact(result) && PyList_GET_SIZE(result) == 1 &&
        PyBytes_CheckExact(PyList_GET_ITEM(result, 0))) {
        PyObject *body = Py_NewRef(PyList_GET_ITEM(result, 0));
        done = finish_single(self, body);
        Py_DECREF(body);
    }
    if (done == 0) {
        PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, native_seam.call[M_RESPOND],
                                                result);
        Py_XDECREF(r);
        done = r == NULL ? -1 : 1;
    }
    Py_DECREF(result);
    if (done < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *
native_exchange_run(PyObject *self, PyObject *app, PyObject *environ)
{
    if (!PyObject_TypeCheck(self, &ExchangeType)) {
        PyErr_SetString(PyExc_TypeError, "not an Exchange");
        return NULL;
    }
    PyObject *args[2] = {app, environ};
    return exchange_run((Exchange *)self, args, 2);
}

int
native_exchange_keep_alive(PyObject *self)
{
    return PyObject_TypeCheck(self, &ExchangeType) ? ((Exchange *)self)->keep_alive : -1;
}

static PyMethodDef exchange_methods[] = {
    {"start_response", (PyCFunction)(void (*)(void))exchange_start_response,
     METH_FASTCALL | METH_KEYWORDS, "PEP 3333 start_response(status, headers, exc_info=None)"},
    {"run", (PyCFunction)(void (*)(void))exchange_run, METH_FASTCALL,
     "run(app, environ): call the app and send its response"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef exchange_members[] = {
    {"out", T_OBJECT, offsetof(Exchange, out), 0, NULL},
    {"status", T_OBJECT, offsetof(Exchange, status), 0, NULL},
    {"headers", T_OBJECT, offsetof(Exchange, headers), 0, NULL},
    {"length", T_OBJECT, offsetof(Exchange, length), 0, NULL},
    {"guard", T_OBJECT, offsetof(Exchange, guard), 0, NULL},
    {"code", T_PYSSIZET, offsetof(Exchange, code), 0, NULL},
    {"sent", T_PYSSIZET, offsetof(Exchange, sent), 0, NULL},
    {"head_only", T_BOOL, offsetof(Exchange, head_only), 0, NULL},
    {"version10", T_BOOL, offsetof(Exchange, version10), 0, NULL},
    {"keep_alive", T_BOOL, offsetof(Exchange, keep_alive), 0, NULL},
    {"head_sent", T_BOOL, offsetof(Exchange, head_sent), 0, NULL},
    {"chunked", T_BOOL, offsetof(Exchange, chunked), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject ExchangeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "prefork._native.Exchange",
    .tp_doc = "wsgi.Exchange's state in C, with start_response and run (NativeExchange "
              "adds the reference's other methods)",
    .tp_basicsize = sizeof(Exchange),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)exchange_init,
    .tp_traverse = (traverseproc)exchange_traverse,
    .tp_clear = (inquiry)exchange_clear,
    .tp_dealloc = (destructor)exchange_dealloc,
    .tp_methods = exchange_methods,
    .tp_members = exchange_members,
};

/* bind_exchange(status_codes, reference_start_response, names, check, server_fields,
   allocate_lock): the references, once (prefork/native.py). */
static PyObject *
bind_exchange(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyDict_Check(args[0]) || !PyDict_Check(args[2]) ||
        !PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "bind_exchange(status_codes: dict, start_response, "
                        "names: dict, check, server_fields: bytes, allocate_lock)");
        return NULL;
    }
    PyObject **slots[6] = {&status_codes, &reference_start, &names_cache, &check_name,
                           &server_fields, &allocate_lock};
    for (int i = 0; i < 6; i++) {
        Py_XSETREF(*slots[i], Py_NewRef(args[i]));
    }
    Py_RETURN_NONE;
}

PyMethodDef native_exchange_methods[] = {
    {"bind_exchange", (PyCFunction)(void (*)(void))bind_exchange, METH_FASTCALL,
     "bind_exchange(status_codes, start_response, names, check, server_fields, "
     "allocate_lock)"},
    {"http_date", (PyCFunction)http_date, METH_O,
     "http_date(seconds) -> b'Date: ...\\r\\n'"},
    {NULL, NULL, 0, NULL},
};
