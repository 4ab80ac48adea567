/*
 * prefork._native, the parser half: HeadFields, llhttp's callbacks for a request head.
 *
 * The compiled twin of prefork/http/fields.py's HeadFields (the reference): httptools
 * calls on_message_begin, on_url and on_header on it as llhttp reads a head (one call per
 * field line; in Python that call is a frame, here a C function), and the parser reads
 * its notes when the head is complete. Every check and every note is the reference's:
 *
 *   on_message_begin()    a new head: the notes are cleared
 *   on_url(piece)         the target, in pieces; longer than line_limit: URITooLong
 *   on_header(name, value)
 *       in the head: at most max_fields fields (431), name + value at most field_size
 *       bytes (431); trailing spaces and tabs dropped from the value; the field appended
 *       to `headers`; Host counted and kept, Content-Length read (llhttp has refused any
 *       that is not digits), a second Transfer-Encoding refused (400), Connection fields
 *       joined with ",", Expect: 100-continue noted.
 *       after the head (a trailer): a name in `forbidden` (the framing, routing and
 *       authentication fields) is refused (400); any other is dropped.
 *   origin_head(version, method)
 *       the parser's judgement of a complete head, for the common case only: HTTP/1.1
 *       or 1.0, an origin-form target without a fragment, no Transfer-Encoding, the Host
 *       fields the version requires with a value in `good_hosts` (the parser's cache of
 *       values it validated), keep-alive from the version and the Connection tokens.
 *       Returns (version, method, target, keep_alive), or None: the parser then judges
 *       the head in Python, as it does every head of the Python engine.
 *   on_headers_complete()
 *       the twin of the parser's own (RequestParser.on_headers_complete), which httptools
 *       calls instead of it: a head origin_head's rules find common, with no Upgrade and
 *       no Content-Length over the body limit, ends here: its Request and Body are made
 *       and their fields set, and the parser's state (the request under way, the counts)
 *       is set, all through the classes' __slots__ offsets (bind_parser binds the classes
 *       and checks their fields; the parser is checked to be exactly that class and the
 *       owner of these fields before any is touched). Any other head goes to the
 *       reference before anything is changed, so that the reference alone ends, judges
 *       and refuses it.
 *   on_message_complete()
 *       the twin of the parser's own: the request's body complete, no request under
 *       way, the framing count reset.
 *
 * Its errors are the prefork.errors classes given to the constructor (prefork/native.py
 * binds them and the parser's Host cache), with the reference's words.
 *
 * Memory safety: every byte read is inside a bytes object httptools made or one made
 * here, by that object's own length; the only buffers written (a trimmed value, joined
 * Connection fields) are sized first from the same objects.
 *
 * Called by the pool thread that owns the connection (GIL held).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <string.h>

#include "_native.h"

typedef struct {
    PyObject_HEAD
    Py_ssize_t line_limit, max_fields, field_size;
    char in_head;
    char expect_continue;
    /* The version read off the request line of a piece whose first bytes begin a request
       (native_fields_hint): VERSION_NONE, or VERSION_10 / VERSION_11. `pending` is set
       before llhttp reads the piece; the first head to begin takes it as `version`, which
       its on_headers_complete uses instead of asking httptools (get_http_version formats
       a str anew: about 2,300 instructions, 7% of a hello request's). */
    char version_pending, version;
    int hosts;
    Py_ssize_t url_len;
    PyObject *url;             /* list of bytes */
    PyObject *headers;         /* list of (bytes, bytes) */
    PyObject *host;            /* bytes or None, as each below */
    PyObject *te;
    PyObject *connection;
    PyObject *content_length;  /* int or None */
    PyObject *forbidden;       /* the names refused in a trailer (a frozenset of bytes) */
    PyObject *good_hosts;      /* Host values the parser has found valid (its cache, a set) */
    PyObject *bad_request, *too_large, *uri_too_long;  /* prefork.errors classes */
    PyObject *parser;          /* the RequestParser whose head ends here, or NULL */
} HeadFieldsObject;

/* Raise `cls(text)`, text formatted by PyUnicode_FromFormat (an ASCII format). */
static PyObject *
refuse(PyObject *cls, const char *format, ...)
{
    va_list vargs;
    va_start(vargs, format);
    PyObject *text = PyUnicode_FromFormatV(format, vargs);
    va_end(vargs);
    if (text == NULL) {
        return NULL;
    }
    PyObject *exc = PyObject_CallOneArg(cls, text);
    Py_DECREF(text);
    if (exc == NULL) {
        return NULL;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

/* bytes.lower() == literal, for a lower-case ASCII literal. */
static int
is_name(const char *s, Py_ssize_t n, const char *literal)
{
    if ((size_t)n != strlen(literal)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c + ('a' - 'A'));
        }
        if (c != literal[i]) {
            return 0;
        }
    }
    return 1;
}

static int
ascii_space(char c)  /* what bytes.strip() strips */
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

static void
clear_notes(HeadFieldsObject *self)
{
    self->hosts = 0;
    self->url_len = 0;
    self->expect_continue = 0;
    Py_XSETREF(self->host, Py_NewRef(Py_None));  /* X: NULL until the first init */
    Py_XSETREF(self->te, Py_NewRef(Py_None));
    Py_XSETREF(self->connection, Py_NewRef(Py_None));
    Py_XSETREF(self->content_length, Py_NewRef(Py_None));
}

/* HeadFields' eight arguments: the objects (forbidden, good_hosts, bad_request, too_large,
   uri_too_long) and the limits (line_limit, max_fields, field_size), in that order. */
static int fields_setup(HeadFieldsObject *self, PyObject *const *objs,
                        const Py_ssize_t *limit);

static int
HeadFields_init(HeadFieldsObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *forbidden, *good_hosts, *bad_request, *too_large, *uri_too_long;
    Py_ssize_t line_limit, max_fields, field_size;
    static char *kwlist[] = {"forbidden", "good_hosts", "bad_request", "too_large",
                             "uri_too_long", "line_limit", "max_fields", "field_size", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!OOOnnn", kwlist, &PyFrozenSet_Type,
                                     &forbidden, &PySet_Type, &good_hosts, &bad_request,
                                     &too_large, &uri_too_long, &line_limit, &max_fields,
                                     &field_size)) {
        return -1;
    }
    PyObject *objs[5] = {forbidden, good_hosts, bad_request, too_large, uri_too_long};
    Py_ssize_t limit[3] = {line_limit, max_fields, field_size};
    return fields_setup(self, objs, limit);
}

/* HeadFields(...) called with its eight arguments by position, of the types __init__
   takes (as native.head_fields calls it, once per connection): made and set up without
   the generic call's argument tuples and parsing. Any other call is the generic one
   (tp_new, then __init__), with its errors. */
static PyObject *
HeadFields_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && nargs == 8 && PyFrozenSet_Check(args[0]) && PySet_Check(args[1]) &&
        PyLong_CheckExact(args[5]) && PyLong_CheckExact(args[6]) &&
        PyLong_CheckExact(args[7])) {
        Py_ssize_t limit[3];
        int fits = 1;
        for (int i = 0; i < 3; i++) {
            limit[i] = PyLong_AsSsize_t(args[5 + i]);
            if (limit[i] == -1 && PyErr_Occurred()) {
                PyErr_Clear();  /* too large: the generic call raises its OverflowError */
                fits = 0;
            }
        }
        if (fits) {
            PyTypeObject *cls = (PyTypeObject *)type;
            PyObject *self = cls->tp_alloc(cls, 0);
            if (self != NULL &&
                fields_setup((HeadFieldsObject *)self, args, limit) < 0) {
                Py_CLEAR(self);
            }
            return self;
        }
    }
    PyObject *tuple, *kwargs;
    if (native_call_args(NULL, args, nargs, kwnames, &tuple, &kwargs) < 0) {
        return NULL;
    }
    PyObject *result = PyType_Type.tp_call(type, tuple, kwargs);
    Py_DECREF(tuple);
    Py_XDECREF(kwargs);
    return result;
}

static int
fields_setup(HeadFieldsObject *self, PyObject *const *objs, const Py_ssize_t *limit)
{
    PyObject *url = PyList_New(0), *headers = PyList_New(0);
    if (url == NULL || headers == NULL) {
        Py_XDECREF(url);
        Py_XDECREF(headers);
        return -1;
    }
    self->line_limit = limit[0];
    self->max_fields = limit[1];
    self->field_size = limit[2];
    self->in_head = 0;
    Py_XSETREF(self->url, url);
    Py_XSETREF(self->headers, headers);
    Py_XSETREF(self->forbidden, Py_NewRef(objs[0]));
    Py_XSETREF(self->good_hosts, Py_NewRef(objs[1]));
    Py_XSETREF(self->bad_request, Py_NewRef(objs[2]));
    Py_XSETREF(self->too_large, Py_NewRef(objs[3]));
    Py_XSETREF(self->uri_too_long, Py_NewRef(objs[4]));
    clear_notes(self);
    return 0;
}

/* Made by __new__ alone, never initialised: refuse to be used. */
static int
unready(HeadFieldsObject *self)
{
    if (self->headers == NULL || self->url == NULL || self->host == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "HeadFields.__init__ was not called");
        return 1;
    }
    return 0;
}

enum { VERSION_NONE, VERSION_10, VERSION_11 };

void
native_fields_hint(PyObject *fields, const char *data, Py_ssize_t size)
{
    if (!Py_IS_TYPE(fields, &HeadFieldsType)) {
        return;
    }
    HeadFieldsObject *self = (HeadFieldsObject *)fields;
    self->version_pending = VERSION_NONE;
    /* A request line "METHOD SP target SP HTTP/1.x CRLF" from data[0]: llhttp checks all
       of it (strictly: no bare LF, no LF inside the target) before the head can end, so
       when that head ends, its version is the digit before this first CRLF. */
    if (data == NULL || size < 16 || data[0] == '\r' || data[0] == '\n') {
        return;
    }
    Py_ssize_t scan = size < self->line_limit + 2 ? size : self->line_limit + 2;
    const char *lf = memchr(data, '\n', (size_t)scan);
    if (lf == NULL || lf - data < 14 || lf[-1] != '\r' || memcmp(lf - 10, " HTTP/1.", 8) != 0) {
        return;
    }
    if (lf[-2] == '1' || lf[-2] == '0') {
        self->version_pending = lf[-2] == '1' ? VERSION_11 : VERSION_10;
    }
}

static PyObject *
HeadFields_on_message_begin(HeadFieldsObject *self, PyObject *Py_UNUSED(ignored))
{
    /* Only the first head to begin after the hint was read owns it. */
    self->version = self->version_pending;
    self->version_pending = VERSION_NONE;
    PyObject *url = PyList_New(0), *headers = PyList_New(0);
    if (url == NULL || headers == NULL) {
        Py_XDECREF(url);
        Py_XDECREF(headers);
        return NULL;
    }
    Py_XSETREF(self->url, url);
    Py_XSETREF(self->headers, headers);
    clear_notes(self);
    self->in_head = 1;
    Py_RETURN_NONE;
}

static PyObject *
HeadFields_on_url(HeadFieldsObject *self, PyObject *piece)
{
    if (unready(self)) {
        return NULL;
    }
    if (!PyBytes_Check(piece)) {
        PyErr_SetString(PyExc_TypeError, "on_url(bytes)");
        return NULL;
    }
    self->url_len += PyBytes_GET_SIZE(piece);
    if (self->url_len > self->line_limit) {
        return refuse(self->uri_too_long, "request target longer than %zd bytes",
                      self->line_limit);
    }
    if (PyList_Append(self->url, piece) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* A trailer field: refused if its name is one only a head may carry, else dropped. */
static PyObject *
trailer(HeadFieldsObject *self, PyObject *name)
{
    Py_ssize_t n = PyBytes_GET_SIZE(name);
    PyObject *lower = PyBytes_FromStringAndSize(NULL, n);
    if (lower == NULL) {
        return NULL;
    }
    const char *s = PyBytes_AS_STRING(name);
    char *d = PyBytes_AS_STRING(lower);
    for (Py_ssize_t i = 0; i < n; i++) {
        d[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + ('a' - 'A')) : s[i];
    }
    int found = PySet_Contains(self->forbidden, lower);
    Py_DECREF(lower);
    if (found < 0) {
        return NULL;
    }
    if (found) {
        PyObject *text = PyUnicode_DecodeLatin1(s, n, NULL);
        if (text == NULL) {
            return NULL;
        }
        /* The format must be ASCII: the section sign goes in as a UTF-8 argument. */
        refuse(self->bad_request, "%U is not allowed in a trailer section (RFC 9110 %s6.5.1)",
               text, "\xc2\xa7");
        Py_DECREF(text);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Note a framing field (the name's length is 6, 10, 14 or 17). */
static int
note(HeadFieldsObject *self, const char *s, Py_ssize_t n, PyObject *value)
{
    if (is_name(s, n, "content-length")) {
        PyObject *number = PyNumber_Long(value);  /* int(bytes), as the reference */
        if (number == NULL) {
            return -1;
        }
        Py_SETREF(self->content_length, number);
    }
    else if (is_name(s, n, "transfer-encoding")) {
        if (self->te != Py_None) {
            refuse(self->bad_request, "more than one Transfer-Encoding field");
            return -1;
        }
        Py_SETREF(self->te, Py_NewRef(value));
    }
    else if (is_name(s, n, "connection")) {
        if (self->connection == Py_None) {
            Py_SETREF(self->connection, Py_NewRef(value));
        }
        else {
            Py_ssize_t a = PyBytes_GET_SIZE(self->connection), b = PyBytes_GET_SIZE(value);
            PyObject *joined = PyBytes_FromStringAndSize(NULL, a + 1 + b);
            if (joined == NULL) {
                return -1;
            }
            char *d = PyBytes_AS_STRING(joined);
            memcpy(d, PyBytes_AS_STRING(self->connection), (size_t)a);
            d[a] = ',';
            memcpy(d + a + 1, PyBytes_AS_STRING(value), (size_t)b);
            Py_SETREF(self->connection, joined);
        }
    }
    else if (is_name(s, n, "expect")) {
        const char *v = PyBytes_AS_STRING(value);
        Py_ssize_t start = 0, end = PyBytes_GET_SIZE(value);
        while (start < end && ascii_space(v[start])) {
            start++;
        }
        while (end > start && ascii_space(v[end - 1])) {
            end--;
        }
        if (is_name(v + start, end - start, "100-continue")) {
            self->expect_continue = 1;
        }
    }
    return 0;
}

static PyObject *
HeadFields_on_header(HeadFieldsObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "on_header(name: bytes, value: bytes)");
        return NULL;
    }
    if (unready(self)) {
        return NULL;
    }
    PyObject *name = args[0], *value = args[1];
    if (!self->in_head) {
        return trailer(self, name);
    }
    if (PyList_GET_SIZE(self->headers) >= self->max_fields) {
        return refuse(self->too_large, "more than %zd header fields", self->max_fields);
    }
    Py_ssize_t n = PyBytes_GET_SIZE(name), size = PyBytes_GET_SIZE(value);
    if (n + size > self->field_size) {
        return refuse(self->too_large, "a header field is longer than %zd bytes",
                      self->field_size);
    }
    const char *v = PyBytes_AS_STRING(value);
    Py_ssize_t kept = size;
    while (kept > 0 && (v[kept - 1] == ' ' || v[kept - 1] == '\t')) {
        kept--;  /* RFC 9112 §5.1: trailing OWS is not the value */
    }
    if (kept != size) {
        value = PyBytes_FromStringAndSize(v, kept);
        if (value == NULL) {
            return NULL;
        }
    }
    else {
        Py_INCREF(value);
    }
    PyObject *field = PyTuple_Pack(2, name, value);
    if (field == NULL || PyList_Append(self->headers, field) < 0) {
        Py_XDECREF(field);
        Py_DECREF(value);
        return NULL;
    }
    Py_DECREF(field);
    const char *s = PyBytes_AS_STRING(name);
    int failed = 0;
    if (n == 4) {
        if (is_name(s, n, "host")) {
            self->hosts++;
            Py_SETREF(self->host, Py_NewRef(value));
        }
    }
    else if (n == 6 || n == 10 || n == 14 || n == 17) {
        failed = note(self, s, n, value);
    }
    Py_DECREF(value);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The Connection field's tokens (RFC 9110 §7.6.1), as the parser reads them: 0 if one is
   "close", 1 if one is "keep-alive", else `otherwise` (case and whitespace ignored). */
static int
connection_says(PyObject *connection, int otherwise)
{
    const char *s = PyBytes_AS_STRING(connection);
    Py_ssize_t n = PyBytes_GET_SIZE(connection), start = 0;
    int keep_alive = 0;
    while (start <= n) {
        const char *comma = memchr(s + start, ',', (size_t)(n - start));
        Py_ssize_t end = comma ? comma - s : n, a = start, b = end;
        while (a < b && ascii_space(s[a])) {
            a++;
        }
        while (b > a && ascii_space(s[b - 1])) {
            b--;
        }
        if (is_name(s + a, b - a, "close")) {
            return 0;
        }
        keep_alive |= is_name(s + a, b - a, "keep-alive");
        start = end + 1;
    }
    return keep_alive ? 1 : otherwise;
}

/* The common head, judged here: HTTP/1.1 or 1.0, an origin-form target ("/...", no
   fragment), not CONNECT, no Transfer-Encoding, the Host fields the version wants and a
   Host value the parser has validated before. 1 with *http11, *keep_alive and *target
   (borrowed) set; 0 for any other head, which the parser judges in Python; -1 with an
   exception set. */
static int
judge_origin(HeadFieldsObject *self, PyObject *version, PyObject *method, int *http11,
             int *keep_alive, PyObject **target)
{
    *http11 = PyUnicode_CompareWithASCIIString(version, "1.1") == 0;
    if ((!*http11 && PyUnicode_CompareWithASCIIString(version, "1.0") != 0) ||
        self->te != Py_None || (*http11 ? self->hosts != 1 : self->hosts > 1) ||
        PyList_GET_SIZE(self->url) != 1) {
        return 0;
    }
    *target = PyList_GET_ITEM(self->url, 0);  /* on_url appended bytes only */
    const char *t = PyBytes_AS_STRING(*target);
    Py_ssize_t n = PyBytes_GET_SIZE(*target);
    const char *m = PyBytes_AS_STRING(method);
    Py_ssize_t method_len = PyBytes_GET_SIZE(method);
    if (n == 0 || t[0] != '/' || memchr(t, '#', (size_t)n) != NULL ||
        (method_len == 7 && memcmp(m, "CONNECT", 7) == 0)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < method_len; i++) {
        if ((unsigned char)m[i] >= 0x80) {
            return 0;  /* the reference's decode("ascii") says what that is */
        }
    }
    if (self->host != Py_None) {
        int good = PySet_Contains(self->good_hosts, self->host);
        if (good <= 0) {
            return good;  /* not validated yet: the parser validates (and remembers) */
        }
    }
    *keep_alive = *http11;
    if (self->connection != Py_None) {
        *keep_alive = connection_says(self->connection, *keep_alive);
    }
    return 1;
}

static PyObject *
HeadFields_origin_head(HeadFieldsObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (unready(self)) {
        return NULL;
    }
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "origin_head(version: str, method: bytes)");
        return NULL;
    }
    PyObject *version = args[0], *method = args[1], *target;
    int http11, keep_alive;
    int common = judge_origin(self, version, method, &http11, &keep_alive, &target);
    if (common <= 0) {
        return common < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *method_text = PyUnicode_DecodeASCII(PyBytes_AS_STRING(method),
                                                  PyBytes_GET_SIZE(method), NULL);
    if (method_text == NULL) {
        return NULL;
    }
    return Py_BuildValue("(ONOO)", version, method_text, target,
                         keep_alive ? Py_True : Py_False);
}

/* ---- the end of a head: RequestParser.on_headers_complete's twin ----------------------- */

/* What bind_parser binds: the parser's classes (prefork/http/parser.py, request.py; their
   fields' offsets are the seam's) and the reference for every head this code does not
   end itself. */
static struct {
    PyObject *reference, *message_reference, *body_reference;
} bound;

/* Interned texts: llhttp's method names (a request's method, shared, not decoded anew for
   each request) and the names of the httptools methods called. */
enum { S_GET, S_HEAD, S_POST, S_PUT, S_DELETE, S_OPTIONS, S_PATCH, S_METHODS,
       S_HTTP_VERSION = S_METHODS, S_GET_METHOD, S_SHOULD_UPGRADE, S_APPEND, S_V11, S_V10,
       S_COUNT };
static const char *const texts[S_COUNT] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
    "get_http_version", "get_method", "should_upgrade", "append", "1.1", "1.0"};
static PyObject *text_objs[S_COUNT];

static PyObject *
bind_parser(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "bind_parser(RequestParser, Request, Body, "
                        "on_headers_complete, on_message_complete, on_body)");
        return NULL;
    }
    if (native_seam_is(args[0], SEAM_PARSER, "bind_parser") < 0 ||
        native_seam_is(args[1], SEAM_REQUEST, "bind_parser") < 0 ||
        native_seam_is(args[2], SEAM_BODY, "bind_parser") < 0 ||
        native_intern_all(text_objs, texts, S_COUNT) < 0) {
        return NULL;
    }
    Py_XSETREF(bound.reference, Py_NewRef(args[3]));
    Py_XSETREF(bound.message_reference, Py_NewRef(args[4]));
    Py_XSETREF(bound.body_reference, Py_NewRef(args[5]));
    Py_RETURN_NONE;
}

static PyObject *
method_text(PyObject *method)
{
    const char *m = PyBytes_AS_STRING(method);
    Py_ssize_t n = PyBytes_GET_SIZE(method);
    for (int i = 0; i < S_METHODS; i++) {
        if ((size_t)n == strlen(texts[i]) && memcmp(m, texts[i], (size_t)n) == 0) {
            return Py_NewRef(text_objs[i]);
        }
    }
    return PyUnicode_DecodeASCII(m, n, NULL);
}

/* The new Request and its Body, as Request(max_body, headers, content_length,
   expect_continue) makes them, with the judged head's version, method, target and
   keep_alive (a new reference, or NULL with an exception set). */
static PyObject *
new_request(HeadFieldsObject *self, PyObject *max_body, int http11, PyObject *method,
            PyObject *target, int keep_alive)
{
    const Py_ssize_t *r = native_seam.request, *b = native_seam.body;
    PyObject *body = native_blank(SEAM_BODY), *req = NULL;
    PyObject *buf = PyBytes_FromStringAndSize(NULL, 0);  /* Body's b"": nothing yet */
    PyObject *text = method_text(method);
    if (body == NULL || buf == NULL || text == NULL ||
        (req = native_blank(SEAM_REQUEST)) == NULL) {
        Py_XDECREF(body);
        Py_XDECREF(buf);
        Py_XDECREF(text);
        return NULL;
    }
    PyObject *length = self->content_length;
    int empty = length == Py_None || !PyObject_IsTrue(length);  /* an int: cannot fail */
    native_slot_set(body, b[B_BUF], buf);
    native_slot_set(body, b[B_POS], PyLong_FromLong(0));
    native_slot_set(body, b[B_COMPLETE], Py_NewRef(empty ? Py_True : Py_False));
    native_slot_set(body, b[B_RECEIVED], PyLong_FromLong(0));
    native_slot_set(body, b[B_LIMIT], Py_NewRef(max_body));
    native_slot_set(body, b[B_FILL], Py_NewRef(Py_None));
    native_slot_set(req, r[R_METHOD], text);
    native_slot_set(req, r[R_TARGET], Py_NewRef(target));
    native_slot_set(req, r[R_VERSION], Py_NewRef(text_objs[http11 ? S_V11 : S_V10]));
    native_slot_set(req, r[R_HEADERS], Py_NewRef(self->headers));
    native_slot_set(req, r[R_KEEP_ALIVE], Py_NewRef(keep_alive ? Py_True : Py_False));
    native_slot_set(req, r[R_CONTENT_LENGTH], Py_NewRef(length));
    native_slot_set(req, r[R_CHUNKED], Py_NewRef(Py_False));
    /* RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 is ignored. */
    native_slot_set(req, r[R_EXPECT_CONTINUE],
                    Py_NewRef(http11 && self->expect_continue ? Py_True : Py_False));
    native_slot_set(req, r[R_UPGRADE], Py_NewRef(Py_False));
    native_slot_set(req, r[R_AUTHORITY], Py_NewRef(Py_None));
    native_slot_set(req, r[R_PATH_QUERY], PyBytes_FromStringAndSize(NULL, 0));
    native_slot_set(req, r[R_BODY], body);
    return req;
}

/* The RequestParser these fields belong to (borrowed: it holds them, and llhttp calls
   them while that parser feeds it), checked to be of the bound class and to own them;
   NULL with RuntimeError if not. */
static PyObject *
owner(HeadFieldsObject *self, const char *callback)
{
    PyObject *parser = self->parser;
    if (parser == NULL || !native_is(parser, SEAM_PARSER) ||
        NATIVE_SLOT(parser, native_seam.parser[P_FIELDS]) != (PyObject *)self) {
        PyErr_Format(PyExc_RuntimeError, "%s: not bound to this head's RequestParser",
                     callback);
        return NULL;
    }
    return parser;
}

/* A declared Content-Length within the body limit (max_body, 0: none): 1; over it (the
   reference's 413): 0; -1 with an exception set. */
static int
length_within(PyObject *length, PyObject *max_body)
{
    if (length == Py_None) {
        return 1;
    }
    int zero = PyObject_Not(max_body);
    int over = zero ? 0 : PyObject_RichCompareBool(length, max_body, Py_GT);
    return zero < 0 || over < 0 ? -1 : !over;
}

/* The request (its reference stolen) under way in the parser and ready: the head's counts
   reset, as RequestParser.on_headers_complete ends. 0, or -1 with an exception set. */
static int
ready_request(PyObject *parser, PyObject *ready, PyObject *req)
{
    const Py_ssize_t *p = native_seam.parser;
    Py_INCREF(req);
    native_slot_set(parser, p[P_REQ], req);
    native_slot_set(parser, p[P_LEAD], PyBytes_FromStringAndSize(NULL, 0));
    native_slot_set(parser, p[P_HEAD_BYTES], PyLong_FromLong(0));
    native_slot_set(parser, p[P_CHUNKS], PyLong_FromLong(0));
    PyObject *appended = PyObject_CallMethodOneArg(ready, text_objs[S_APPEND], req);
    Py_DECREF(req);
    Py_XDECREF(appended);
    return appended == NULL ? -1 : 0;
}

/* llhttp has read a whole head (httptools calls this, GIL held): the parser's
   on_headers_complete for a head judge_origin finds common, with no Upgrade and no
   Content-Length over the body limit; any other head goes to the reference before
   anything is changed, so that it alone decides (and refuses) those. */
static PyObject *
HeadFields_on_headers_complete(HeadFieldsObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *parser = owner(self, "on_headers_complete");
    if (parser == NULL || unready(self)) {
        return NULL;
    }
    const Py_ssize_t *p = native_seam.parser;
    PyObject *llhttp = NATIVE_SLOT(parser, p[P_PARSER]);
    PyObject *ready = NATIVE_SLOT(parser, p[P_READY]);
    PyObject *max_body = NATIVE_SLOT(parser, p[P_MAX_BODY]);
    if (llhttp == NULL || ready == NULL || max_body == NULL || !PyLong_Check(max_body)) {
        return PyObject_CallOneArg(bound.reference, parser);
    }
    PyObject *version = NULL, *method = NULL, *upgrade = NULL, *req = NULL, *target;
    int http11, keep_alive, common = -1;
    char known = self->version;
    self->version = VERSION_NONE;
    version = known != VERSION_NONE ? Py_NewRef(text_objs[known == VERSION_11 ? S_V11 : S_V10])
                                    : PyObject_CallMethodNoArgs(llhttp, text_objs[S_HTTP_VERSION]);
    if (version == NULL || !PyUnicode_Check(version) ||
        (method = PyObject_CallMethodNoArgs(llhttp, text_objs[S_GET_METHOD])) == NULL ||
        !PyBytes_Check(method) ||
        (common = judge_origin(self, version, method, &http11, &keep_alive, &target)) <= 0 ||
        (upgrade = PyObject_CallMethodNoArgs(llhttp, text_objs[S_SHOULD_UPGRADE])) == NULL ||
        upgrade != Py_False) {
        goto reference;
    }
    if ((common = length_within(self->content_length, max_body)) <= 0) {
        goto reference;  /* 413 before the body is read: the reference says it */
    }
    req = new_request(self, max_body, http11, method, target, keep_alive);
    if (req == NULL) {
        goto failed;
    }
    self->in_head = 0;
    int appended = ready_request(parser, ready, req);
    Py_DECREF(version);
    Py_DECREF(method);
    Py_DECREF(upgrade);
    return appended < 0 ? NULL : Py_NewRef(Py_None);
reference:
    if (common >= 0 && !PyErr_Occurred()) {
        Py_XDECREF(version);
        Py_XDECREF(method);
        Py_XDECREF(upgrade);
        return PyObject_CallOneArg(bound.reference, parser);
    }
failed:
    if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_TypeError, "httptools returned an unexpected type");
    }
    Py_XDECREF(version);
    Py_XDECREF(method);
    Py_XDECREF(upgrade);
    return NULL;
}
/* The Body of the request under way in a parser (borrowed), when the request and its
   body are of the bound classes; NULL when not (no exception: the reference's case). */
static PyObject *
body_under_way(PyObject *parser)
{
    PyObject *req = NATIVE_SLOT(parser, native_seam.parser[P_REQ]), *body = NULL;
    if (req != NULL && native_is(req, SEAM_REQUEST)) {
        body = NATIVE_SLOT(req, native_seam.request[R_BODY]);
    }
    return body != NULL && native_is(body, SEAM_BODY) ? body : NULL;
}

/* llhttp has read a whole request (head and body): RequestParser.on_message_complete's
   twin (the body complete, no request under way, the framing count reset); a parser or
   request not of the bound classes goes to the reference. */
static PyObject *
HeadFields_on_message_complete(HeadFieldsObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *parser = owner(self, "on_message_complete");
    if (parser == NULL) {
        return NULL;
    }
    PyObject *body = body_under_way(parser);
    if (body == NULL) {
        return PyObject_CallOneArg(bound.message_reference, parser);
    }
    native_slot_set(body, native_seam.body[B_COMPLETE], Py_NewRef(Py_True));
    native_slot_set(parser, native_seam.parser[P_REQ], Py_NewRef(Py_None));  /* `req` is gone */
    native_slot_set(parser, native_seam.parser[P_HEAD_BYTES], PyLong_FromLong(0));
    Py_RETURN_NONE;
}

/* Body.feed's common case for a piece of `more` bytes: nothing read from the buffer yet
   (_pos 0), its fields of the expected types, and `received` + more within the limit
   (0: none): that count; -1 for any other case (the reference's); -2 with an exception
   set. */
static long long
counted_piece(PyObject *body, Py_ssize_t more)
{
    const Py_ssize_t *b = native_seam.body;
    PyObject *buf = NATIVE_SLOT(body, b[B_BUF]), *pos = NATIVE_SLOT(body, b[B_POS]);
    PyObject *received = NATIVE_SLOT(body, b[B_RECEIVED]);
    PyObject *limit = NATIVE_SLOT(body, b[B_LIMIT]);
    if (buf == NULL || !(PyByteArray_CheckExact(buf) || PyBytes_CheckExact(buf)) ||
        pos == NULL || !PyLong_CheckExact(pos) || received == NULL ||
        !PyLong_CheckExact(received) || limit == NULL || !PyLong_CheckExact(limit)) {
        return -1;
    }
    int overflow;
    long long now = -1;
    long long offset = PyLong_AsLongLongAndOverflow(pos, &overflow);
    long long before = overflow ? -1 : PyLong_AsLongLongAndOverflow(received, &overflow);
    long long most = overflow ? -1 : PyLong_AsLongLongAndOverflow(limit, &overflow);
    if (offset == 0 && !overflow && before >= 0 && before <= LLONG_MAX - more) {
        now = before + more;
    }
    if (PyErr_Occurred()) {
        return -2;
    }
    return most != 0 && now > most ? -1 : now;
}

/* The piece kept (Body.feed): as it came when nothing else is unread, else what is unread
   and the piece in a bytearray. 0, or -1 with an exception set. */
static int
keep_piece(PyObject *body, PyObject *data)
{
    PyObject *buf = NATIVE_SLOT(body, native_seam.body[B_BUF]);
    Py_ssize_t more = PyBytes_GET_SIZE(data);
    if (PyBytes_CheckExact(buf)) {
        Py_ssize_t size = PyBytes_GET_SIZE(buf);
        PyObject *grown = size == 0 ? Py_NewRef(data)
                                    : PyByteArray_FromStringAndSize(NULL, size + more);
        if (grown == NULL) {
            return -1;
        }
        if (size != 0) {
            memcpy(PyByteArray_AS_STRING(grown), PyBytes_AS_STRING(buf), (size_t)size);
            memcpy(PyByteArray_AS_STRING(grown) + size, PyBytes_AS_STRING(data), (size_t)more);
        }
        native_slot_set(body, native_seam.body[B_BUF], grown);
        return 0;
    }
    Py_ssize_t size = PyByteArray_GET_SIZE(buf);
    if (PyByteArray_Resize(buf, size + more) < 0) {
        return -1;
    }
    memcpy(PyByteArray_AS_STRING(buf) + size, PyBytes_AS_STRING(data), (size_t)more);
    return 0;
}

/* A piece of a body (llhttp's on_body: bytes): RequestParser.on_body, req.body.feed(data),
   with Body.feed's common case here: within the body limit, nothing read from the buffer
   yet (_pos 0), so `received` is counted and the bytes appended. Any other case, or
   objects not of the bound classes, go to the parser's on_body, whole. */
static PyObject *
HeadFields_on_body(HeadFieldsObject *self, PyObject *data)
{
    PyObject *parser = owner(self, "on_body");
    if (parser == NULL) {
        return NULL;
    }
    PyObject *body = body_under_way(parser);
    long long now = body == NULL || !PyBytes_CheckExact(data) ? -1 :
        counted_piece(body, PyBytes_GET_SIZE(data));
    if (now == -2) {
        return NULL;
    }
    if (now < 0) {  /* not the common case, or the limit passed: the reference raises */
        PyObject *args[2] = {parser, data};
        return PyObject_Vectorcall(bound.body_reference, args, 2, NULL);
    }
    /* self.received += len(data); then the piece kept */
    PyObject *count = PyLong_FromLongLong(now);
    if (count == NULL) {
        return NULL;
    }
    native_slot_set(body, native_seam.body[B_RECEIVED], count);
    return keep_piece(body, data) < 0 ? NULL : Py_NewRef(Py_None);
}

static int
HeadFields_traverse(HeadFieldsObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->url);
    Py_VISIT(self->headers);
    Py_VISIT(self->host);
    Py_VISIT(self->te);
    Py_VISIT(self->connection);
    Py_VISIT(self->content_length);
    Py_VISIT(self->forbidden);
    Py_VISIT(self->good_hosts);
    Py_VISIT(self->bad_request);
    Py_VISIT(self->too_large);
    Py_VISIT(self->uri_too_long);
    Py_VISIT(self->parser);
    return 0;
}

static int
HeadFields_clear(HeadFieldsObject *self)
{
    Py_CLEAR(self->url);
    Py_CLEAR(self->headers);
    Py_CLEAR(self->host);
    Py_CLEAR(self->te);
    Py_CLEAR(self->connection);
    Py_CLEAR(self->content_length);
    Py_CLEAR(self->forbidden);
    Py_CLEAR(self->good_hosts);
    Py_CLEAR(self->bad_request);
    Py_CLEAR(self->too_large);
    Py_CLEAR(self->uri_too_long);
    Py_CLEAR(self->parser);
    return 0;
}

static void
HeadFields_dealloc(HeadFieldsObject *self)
{
    PyObject_GC_UnTrack(self);
    HeadFields_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef HeadFields_methods[] = {
    {"on_message_begin", (PyCFunction)HeadFields_on_message_begin, METH_NOARGS,
     "A new head: the notes are cleared."},
    {"on_url", (PyCFunction)HeadFields_on_url, METH_O, "A piece of the request target."},
    {"on_header", (PyCFunction)(void (*)(void))HeadFields_on_header, METH_FASTCALL,
     "A field line: checked, noted and kept (or a trailer's, checked and dropped)."},
    {"origin_head", (PyCFunction)(void (*)(void))HeadFields_origin_head, METH_FASTCALL,
     "origin_head(version, method) -> (version, method, target, keep_alive) | None"},
    {"on_headers_complete", (PyCFunction)HeadFields_on_headers_complete, METH_NOARGS,
     "The head is complete: a common head ends here, any other in the reference "
     "(RequestParser.on_headers_complete) of `parser`."},
    {"on_body", (PyCFunction)HeadFields_on_body, METH_O,
     "llhttp's piece of a body: RequestParser.on_body's twin."},
    {"on_message_complete", (PyCFunction)HeadFields_on_message_complete, METH_NOARGS,
     "The request is complete (RequestParser.on_message_complete's twin)."},
    {NULL, NULL, 0, NULL},
};

int
native_fields_in_head(PyObject *fields)
{
    return Py_IS_TYPE(fields, &HeadFieldsType) ? ((HeadFieldsObject *)fields)->in_head : -1;
}

PyMethodDef native_http_methods[] = {
    {"bind_parser", (PyCFunction)(void (*)(void))bind_parser, METH_FASTCALL,
     "bind_parser(RequestParser, Request, Body, on_headers_complete): the classes whose "
     "fields HeadFields.on_headers_complete sets, and the reference it defers to."},
    {NULL, NULL, 0, NULL},
};

#define MEMBER(name, type, flags) \
    {#name, type, offsetof(HeadFieldsObject, name), flags, NULL}
static PyMemberDef HeadFields_members[] = {
    MEMBER(line_limit, T_PYSSIZET, READONLY),
    MEMBER(max_fields, T_PYSSIZET, READONLY),
    MEMBER(field_size, T_PYSSIZET, READONLY),
    MEMBER(in_head, T_BOOL, 0),  /* the parser ends the head (on_headers_complete) */
    MEMBER(expect_continue, T_BOOL, READONLY),
    MEMBER(hosts, T_INT, READONLY),
    MEMBER(url_len, T_PYSSIZET, READONLY),
    MEMBER(url, T_OBJECT, READONLY),
    MEMBER(headers, T_OBJECT, READONLY),
    MEMBER(host, T_OBJECT, READONLY),
    MEMBER(te, T_OBJECT, READONLY),
    MEMBER(connection, T_OBJECT, READONLY),
    MEMBER(content_length, T_OBJECT, READONLY),
    MEMBER(parser, T_OBJECT, 0),  /* set by the RequestParser, cleared by its close() */
    {NULL, 0, 0, 0, NULL},
};
#undef MEMBER

PyTypeObject HeadFieldsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "prefork._native.HeadFields",
    .tp_basicsize = sizeof(HeadFieldsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "HeadFields(forbidden, good_hosts, bad_request, too_large, uri_too_long, "
              "line_limit, "
              "max_fields, field_size): llhttp's callbacks for a request head "
              "(prefork/http/fields.py is the reference).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)HeadFields_init,
    .tp_vectorcall = HeadFields_vectorcall,
    .tp_dealloc = (destructor)HeadFields_dealloc,
    .tp_traverse = (traverseproc)HeadFields_traverse,
    .tp_clear = (inquiry)HeadFields_clear,
    .tp_methods = HeadFields_methods,
    .tp_members = HeadFields_members,
};
