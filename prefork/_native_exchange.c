/*
 * prefork._native, the response half: one exchange's app call and its response, in C.
 *
 * The twin of wsgi.Exchange.run for the response nearly every app gives: a list of one
 * bytes object, after a start_response call, with no request_timeout guard. Everything
 * else goes to the Python reference (Exchange.respond), which this code never
 * second-guesses:
 *
 *   exchange_run(server_fields, ex, app, environ)
 *       app(environ, ex.start_response); for a single-item list, the head (status line,
 *       the app's fields, `server_fields`, Date, Content-Length when the app gave none,
 *       Connection) and the body in one bytes object, sent by ex.out.send(); ex's
 *       head_sent, sent and keep_alive set as Exchange.finish() sets them. Any other
 *       result, or an exchange in another state (head already sent, guarded, no
 *       status, a field not of the plain shape), goes to ex.respond(result).
 *   http_date(seconds)
 *       The Date line of a second (b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"), as
 *       response.date_header formats it; exchange_run keeps the current second's.
 *
 * Memory safety: the one buffer written is native_head's (_native_wsgi.c), sized by a
 * first pass; the small fields written here go through snprintf into fixed buffers whose
 * sizes bound every value (a day, a year of at most 4 digits is checked; a length is a
 * Py_ssize_t). tests/unit/test_native_wsgi.py compares exchange_run with the reference
 * on generated responses; tests/fuzz/fuzz_native_wsgi.py drives it under AddressSanitizer.
 *
 * Called by pool threads with the GIL held; the Date cache is this module's only state
 * and the GIL guards it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "_native.h"

enum { A_START_RESPONSE, A_RESPOND, A_HEAD_SENT, A_GUARD, A_STATUS, A_CODE, A_HEADERS,
       A_LENGTH, A_HEAD_ONLY, A_VERSION10, A_KEEP_ALIVE, A_SENT, A_OUT, A_SEND, A_COUNT };
static const char *const attr_text[A_COUNT] = {
    "start_response", "respond", "head_sent", "guard", "status", "code", "headers",
    "length", "head_only", "version10", "keep_alive", "sent", "out", "send"};
static PyObject *attr[A_COUNT];  /* interned once, kept for the process's life */

static int
attrs_ready(void)
{
    if (attr[A_COUNT - 1] != NULL) {
        return 0;
    }
    for (int i = 0; i < A_COUNT; i++) {
        if (attr[i] == NULL && (attr[i] = PyUnicode_InternFromString(attr_text[i])) == NULL) {
            return -1;
        }
    }
    return 0;
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

/* ---- exchange_run -------------------------------------------------------------------- */

/* What the reference's finish() reads from the exchange: borrowed from `got`. */
typedef struct {
    PyObject *got[A_COUNT];
    long code;
    Py_ssize_t length;  /* -1: None (the app declared no Content-Length) */
    int head_only, version10, keep_alive;
} State;

static void
state_clear(State *st)
{
    for (int i = 0; i < A_COUNT; i++) {
        Py_CLEAR(st->got[i]);
    }
}

/* 1 if the exchange is in the state this code answers for (start_response called once,
   no head sent, no guard, plain attribute types), 0 if not (the reference's), -1 error. */
static int
state_read(PyObject *ex, State *st)
{
    static const int wanted[] = {A_HEAD_SENT, A_GUARD, A_STATUS, A_CODE, A_HEADERS,
                                 A_LENGTH, A_HEAD_ONLY, A_VERSION10, A_KEEP_ALIVE, A_OUT};
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        int k = wanted[i];
        if ((st->got[k] = PyObject_GetAttr(ex, attr[k])) == NULL) {
            return -1;
        }
    }
    PyObject **got = st->got;
    if (got[A_HEAD_SENT] != Py_False || got[A_GUARD] != Py_None ||
        !PyUnicode_Check(got[A_STATUS]) || !PyLong_CheckExact(got[A_CODE]) ||
        !PyList_Check(got[A_HEADERS]) || !PyBool_Check(got[A_HEAD_ONLY]) ||
        !PyBool_Check(got[A_VERSION10]) || !PyBool_Check(got[A_KEEP_ALIVE])) {
        return 0;
    }
    int overflow;
    st->code = PyLong_AsLongAndOverflow(got[A_CODE], &overflow);
    if (overflow || (st->code == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    st->length = -1;
    if (got[A_LENGTH] != Py_None) {
        if (!PyLong_CheckExact(got[A_LENGTH])) {
            return 0;
        }
        st->length = PyLong_AsSsize_t(got[A_LENGTH]);
        if (st->length < 0) {  /* too large for a Py_ssize_t: the reference's */
            PyErr_Clear();
            return 0;
        }
    }
    st->head_only = got[A_HEAD_ONLY] == Py_True;
    st->version10 = got[A_VERSION10] == Py_True;
    st->keep_alive = got[A_KEEP_ALIVE] == Py_True;
    return 1;
}

/* The head and the whole body of a single-item response, sent; as Exchange.finish(body)
   with no head sent yet. 1 done, 0 not of the plain shape (nothing was changed), -1 error
   (raised, as the reference would have raised it). */
static int
finish_single(PyObject *server, PyObject *ex, PyObject *body)
{
    State st = {{NULL}, 0, -1, 0, 0, 0};
    int ready = state_read(ex, &st);
    if (ready <= 0) {
        state_clear(&st);
        return ready;
    }
    const char *date = current_date();
    if (date == NULL) {
        state_clear(&st);
        return 0;
    }
    long code = st.code;
    int allows_body = !(code < 200 || code == 204 || code == 304);
    Py_ssize_t body_size = PyBytes_GET_SIZE(body);
    /* The server's fields: Server, Date, Content-Length (only when the app declared none;
       the body's own length is known), Connection. */
    char extra[256];
    Py_ssize_t server_size = PyBytes_GET_SIZE(server);
    if (server_size > 128) {
        state_clear(&st);
        return 0;
    }
    memcpy(extra, PyBytes_AS_STRING(server), (size_t)server_size);
    Py_ssize_t n = server_size;
    memcpy(extra + n, date, DATE_LEN);
    n += DATE_LEN;
    if (st.length < 0 && allows_body) {
        n += snprintf(extra + n, sizeof extra - (size_t)n, "Content-Length: %zd\r\n",
                      body_size);
    }
    if (!st.keep_alive) {
        n += snprintf(extra + n, sizeof extra - (size_t)n, "Connection: close\r\n");
    } else if (st.version10) {
        n += snprintf(extra + n, sizeof extra - (size_t)n, "Connection: keep-alive\r\n");
    }
    if (n >= (Py_ssize_t)sizeof extra) {  /* cannot be, by the sizes above */
        state_clear(&st);
        return 0;
    }
    /* The body as _frame() frames it: none for HEAD or a status without content; never
       more than a declared Content-Length (the connection then closes). */
    Py_ssize_t out_size = body_size, sent = 0;
    int keep_alive = st.keep_alive;
    if (st.head_only || !allows_body) {
        out_size = 0;
    } else {
        if (st.length >= 0 && out_size > st.length) {
            out_size = st.length;
            keep_alive = 0;
        }
        sent = out_size;
    }
    PyObject *data = native_head(st.got[A_STATUS], st.got[A_HEADERS], extra, n,
                                 PyBytes_AS_STRING(body), out_size);
    if (data == NULL) {
        state_clear(&st);
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *sent_obj = PyLong_FromSsize_t(sent);
    int failed = sent_obj == NULL ||
                 PyObject_SetAttr(ex, attr[A_HEAD_SENT], Py_True) < 0 ||
                 PyObject_SetAttr(ex, attr[A_SENT], sent_obj) < 0 ||
                 (keep_alive != st.keep_alive &&
                  PyObject_SetAttr(ex, attr[A_KEEP_ALIVE], Py_False) < 0);
    Py_XDECREF(sent_obj);
    if (!failed) {
        PyObject *r = PyObject_CallMethodOneArg(st.got[A_OUT], attr[A_SEND], data);
        failed = r == NULL;
        Py_XDECREF(r);
    }
    Py_DECREF(data);
    /* A short body: only closing the connection tells the client. */
    if (!failed && keep_alive && st.length >= 0 && sent < st.length && !st.head_only &&
        allows_body) {
        failed = PyObject_SetAttr(ex, attr[A_KEEP_ALIVE], Py_False) < 0;
    }
    state_clear(&st);
    return failed ? -1 : 1;
}

static PyObject *
exchange_run(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "exchange_run(server_fields: bytes, ex, app, environ)");
        return NULL;
    }
    if (attrs_ready() < 0) {
        return NULL;
    }
    PyObject *server = args[0], *ex = args[1], *app = args[2], *environ = args[3];
    PyObject *start_response = PyObject_GetAttr(ex, attr[A_START_RESPONSE]);
    if (start_response == NULL) {
        return NULL;
    }
    PyObject *call[2] = {environ, start_response};
    PyObject *result = PyObject_Vectorcall(app, call, 2, NULL);
    Py_DECREF(start_response);
    if (result == NULL) {
        return NULL;
    }
    int done = 0;
    /* An exact list has no close() to call; its one item is held while the head is made. */
    if (PyList_CheckExact(result) && PyList_GET_SIZE(result) == 1 &&
        PyBytes_CheckExact(PyList_GET_ITEM(result, 0))) {
        PyObject *body = PyList_GET_ITEM(result, 0);
        Py_INCREF(body);
        done = finish_single(server, ex, body);
        Py_DECREF(body);
    }
    if (done == 0) {
        PyObject *r = PyObject_CallMethodOneArg(ex, attr[A_RESPOND], result);
        Py_DECREF(result);
        return r;
    }
    Py_DECREF(result);
    if (done < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyMethodDef native_exchange_methods[] = {
    {"exchange_run", (PyCFunction)(void (*)(void))exchange_run, METH_FASTCALL,
     "exchange_run(server_fields, ex, app, environ): the app called, its response sent"},
    {"http_date", (PyCFunction)http_date, METH_O,
     "http_date(seconds) -> b'Date: ...\\r\\n'"},
    {NULL, NULL, 0, NULL},
};
