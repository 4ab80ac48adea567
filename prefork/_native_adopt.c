/*
 * prefork._native, a connection's beginning and end: the twins of Connection.__init__
 * (with the RequestParser, its _Callbacks and the Output it makes) and Connection.close.
 *
 *   new_connection(sock, remote, base, ctx, now)
 *       Connection(sock, remote, base, ctx, now) for a connection the native accept()
 *       gave (a Sock, its own io), when no PROXY header is due (proxy_protocol off) and
 *       the engine's head_fields makes a compiled HeadFields: each object made by its
 *       class's tp_alloc and every field set at its __slots__ offset to what the
 *       reference's __init__ sets it to; llhttp's parser made by httptools, with the
 *       parser module's LENIENCIES, as the reference makes it; the trust of the peer
 *       asked of ctx.trust.peer. Anything else is the reference's, whole.
 *   close_connection(conn)
 *       Connection.close: CLOSED; its output's queue dropped (by Output.discard when
 *       anything is queued); the parser stopped and its cycles broken (RequestParser.close:
 *       llhttp's parser dropped, the HeadFields' parser cleared); its Sock closed (the
 *       io's close, then the engine's close_socket, as the reference). A connection or a
 *       part not of the bound classes is closed by the reference's methods.
 *   native_adopt_from(worker, listener)   (for _native_worker.c's follow and accept)
 *       Worker._accept with _adopt, when the worker's engine accepts and makes
 *       connections with this module's accept and new_connection and _accept is
 *       Worker's own: under the accept lock, a stop, a recycle or a full table ends it
 *       (the last by worker._pause_accepting), else the connection is accepted, made,
 *       claimed and put in the table, for the caller to serve. A failed accept, another
 *       engine or a replaced _accept: worker._accept, whole.
 *   bind_adopt(...)   the classes whose fields these read and write, and the references
 *
 * Why: under wrk with a new connection per request, perf put the Python that runs once
 * per connection (these constructors and the close chain) at about a third of a worker's
 * CPU; in C it is a few hundred nanoseconds. tests/unit/test_native_adopt.py makes
 * connections both ways and compares every field, and serves and closes them.
 *
 * Memory safety: no buffer is touched; objects are made zeroed by tp_alloc (an unset slot
 * is NULL, which their dealloc and the reference both accept) and each field is set once
 * with a reference of its own; every object read from a field is type-checked before a
 * C-level accessor is used on it.
 *
 * Called by the pool thread that accepted the connection, or the one closing it (GIL
 * held); by the main thread on a drain.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <sys/socket.h>

#include "_native.h"

static const char *const callback_slots[CB_COUNT] = {
    NATIVE_CALLBACKS_SLOTS(NATIVE_SEAM_NAME)};
static PyObject *callback_names[CB_COUNT];  /* the same, interned: the attributes read */

/* The most keyword arguments LENIENCIES may give set_dangerous_leniencies. */
#define MAX_LENIENCIES 8

/* Names of other objects' attributes (our classes' methods are the seam's). */
enum { N_ORIGIN_HEAD, N_PARSER, N_SET_LENIENCIES, N_CLOSE, N_COUNT };
static const char *const names[N_COUNT] = {
    "origin_head", "parser", "set_dangerous_leniencies", "close"};
static PyObject *name_objs[N_COUNT];

/* The classes bind_adopt is given (checked to be the seam's): the first seven. */
enum { T_COUNT = SEAM_LIMITS + 1 };

static struct {
    PyObject *deque, *llhttp, *reference_close;
    PyObject *lenient_names, *lenient_values;  /* LENIENCIES as keyword names and values */
} bound;

static PyObject *
bind_adopt(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11 || !PyDict_CheckExact(args[9])) {
        PyErr_SetString(PyExc_TypeError, "bind_adopt(Connection, RequestParser, _Callbacks, "
                        "Output, ServerContext, Engine, ParserLimits, deque, "
                        "HttpRequestParser, LENIENCIES: dict, Connection.close)");
        return NULL;
    }
    for (int i = 0; i < T_COUNT; i++) {  /* in the seam's order */
        if (native_seam_is(args[i], i, "bind_adopt") < 0) {
            return NULL;
        }
    }
    if (native_intern_all(name_objs, names, N_COUNT) < 0 ||
        native_intern_all(callback_names, callback_slots, CB_COUNT) < 0) {
        return NULL;
    }
    if (!PyType_Check(args[7]) || !PyType_Check(args[8])) {
        PyErr_SetString(PyExc_TypeError, "bind_adopt: deque and HttpRequestParser are types");
        return NULL;
    }
    Py_XSETREF(bound.deque, Py_NewRef(args[7]));
    Py_XSETREF(bound.llhttp, Py_NewRef(args[8]));
    if (PyDict_GET_SIZE(args[9]) > MAX_LENIENCIES) {
        PyErr_SetString(PyExc_ValueError, "bind_adopt: too many LENIENCIES");
        return NULL;
    }
    PyObject *lenient_names = PyTuple_New(PyDict_GET_SIZE(args[9]));
    PyObject *lenient_values = PyTuple_New(PyDict_GET_SIZE(args[9]));
    if (lenient_names == NULL || lenient_values == NULL) {
        Py_XDECREF(lenient_names);
        Py_XDECREF(lenient_values);
        return NULL;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0, i = 0;
    while (PyDict_Next(args[9], &pos, &key, &value)) {
        PyTuple_SET_ITEM(lenient_names, i, Py_NewRef(key));
        PyTuple_SET_ITEM(lenient_values, i, Py_NewRef(value));
        i++;
    }
    Py_XSETREF(bound.lenient_names, lenient_names);
    Py_XSETREF(bound.lenient_values, lenient_values);
    Py_XSETREF(bound.reference_close, Py_NewRef(args[10]));
    Py_RETURN_NONE;
}

static int
is(PyObject *obj, int type)
{
    return obj != NULL && native_is(obj, type);
}


/* Set a field of a blank object to a new reference (`value` stolen; NULL: an error
   already raised, which this passes on as -1). */
static int
put(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    native_slot_set(obj, offset, value);
    return 0;
}

/* RequestParser.close for a bound parser with compiled HeadFields: stopped, llhttp's
   parser dropped (it holds the callbacks, which hold this parser), the fields' parser
   cleared (they hold it too). 0, or -1 with an exception set. */
static int
parser_close(PyObject *parser)
{
    const Py_ssize_t *p = native_seam.parser;
    native_slot_set(parser, p[P_STOPPED], Py_NewRef(Py_True));
    native_slot_set(parser, p[P_PARSER], NULL);  /* `del self._parser`: unset is fine */
    PyObject *fields = NATIVE_SLOT(parser, p[P_FIELDS]);
    if (fields == NULL) {
        return 0;
    }
    Py_INCREF(fields);
    int r = PyObject_SetAttr(fields, name_objs[N_PARSER], Py_None);
    Py_DECREF(fields);
    return r;
}

/* A parser half made, given up: its cycles broken before it is let go (the exception
   being raised kept). */
static void
drop_parser(PyObject *parser)
{
    PyObject *exc = native_take_exception();
    if (parser_close(parser) < 0) {
        PyErr_Clear();
    }
    native_raise_again(exc);
    Py_DECREF(parser);
}

/* ---- new_connection ------------------------------------------------------------------- */

/* _Callbacks(parser, fields): what llhttp calls back, bound methods of the fields (which
   have all five of theirs: the reference's getattr defaults are not needed) and the
   parser's on_chunk_header. */
static PyObject *
new_callbacks(PyObject *parser, PyObject *fields)
{
    const Py_ssize_t *cb = native_seam.callbacks;
    PyObject *callbacks = native_blank(SEAM_CALLBACKS);
    if (callbacks == NULL) {
        return NULL;
    }
    for (int i = 0; i < CB_COUNT; i++) {
        PyObject *owner = i < CB_FROM_FIELDS ? fields : parser;
        if (put(callbacks, cb[i], PyObject_GetAttr(owner, callback_names[i])) < 0) {
            Py_DECREF(callbacks);
            return NULL;
        }
    }
    return callbacks;
}

/* A new parser's limits (given: the ParserLimits' fields, by L_*) and its state between
   requests, as RequestParser.__init__ sets them: 0, or -1 with an exception set. */
static int
put_parser_state(PyObject *parser, PyObject *const *given)
{
    const Py_ssize_t *p = native_seam.parser;
    if (put(parser, p[P_HEAD_LIMIT], Py_NewRef(given[L_HEAD_LIMIT])) < 0 ||
        put(parser, p[P_MAX_BODY], Py_NewRef(given[L_MAX_BODY])) < 0 ||
        put(parser, p[P_FRAMING_LIMIT], Py_NewRef(given[L_FRAMING_LIMIT])) < 0 ||
        put(parser, p[P_READY], PyObject_CallNoArgs(bound.deque)) < 0) {
        return -1;
    }
    native_slot_set(parser, p[P_ERROR], Py_NewRef(Py_None));
    native_slot_set(parser, p[P_STOPPED], Py_NewRef(Py_False));
    native_slot_set(parser, p[P_REQ], Py_NewRef(Py_None));
    native_slot_set(parser, p[P_HEAD_BYTES], PyLong_FromLong(0));  /* small ints: no fail */
    native_slot_set(parser, p[P_CHUNKS], PyLong_FromLong(0));
    native_slot_set(parser, p[P_SNIFFING], Py_NewRef(Py_False));
    return put(parser, p[P_LEAD], PyBytes_FromStringAndSize(NULL, 0));
}

/* RequestParser(limits, head_fields) with compiled HeadFields, or NULL with an exception
   set; *other set (and NULL returned, no exception) when head_fields made something else
   or a limit is unset: the reference then makes the whole connection. */
static PyObject *
new_parser(PyObject *limits, PyObject *head_fields, int *other)
{
    const Py_ssize_t *l = native_seam.limits, *p = native_seam.parser;
    PyObject *given[L_COUNT];
    for (int i = 0; i < L_COUNT; i++) {
        if (NATIVE_SLOT(limits, l[i]) == NULL) {
            *other = 1;
            return NULL;
        }
    }
    for (int i = 0; i < L_COUNT; i++) {  /* held: head_fields runs Python */
        given[i] = Py_NewRef(NATIVE_SLOT(limits, l[i]));
    }
    PyObject *fields = PyObject_Vectorcall(head_fields, given, 3, NULL);
    PyObject *parser = NULL;
    if (fields != NULL && !Py_IS_TYPE(fields, &HeadFieldsType)) {
        Py_CLEAR(fields);
        *other = 1;
    }
    if (fields != NULL && (parser = native_blank(SEAM_PARSER)) == NULL) {
        Py_CLEAR(fields);
    }
    if (parser == NULL) {
        for (int i = 0; i < L_COUNT; i++) {
            Py_DECREF(given[i]);
        }
        return NULL;
    }
    native_slot_set(parser, p[P_FIELDS], fields);  /* the parser holds it from here */
    PyObject *callbacks = NULL, *llhttp = NULL, *lenient = NULL;
    if (put(parser, p[P_ORIGIN_HEAD], PyObject_GetAttr(fields, name_objs[N_ORIGIN_HEAD])) < 0 ||
        PyObject_SetAttr(fields, name_objs[N_PARSER], parser) < 0 ||
        put_parser_state(parser, given) < 0 ||
        (callbacks = new_callbacks(parser, fields)) == NULL ||
        (llhttp = PyObject_CallOneArg(bound.llhttp, callbacks)) == NULL) {
        goto error;
    }
    Py_CLEAR(callbacks);  /* llhttp's parser holds what it needs of them */
    native_slot_set(parser, p[P_PARSER], Py_NewRef(llhttp));
    /* llhttp.set_dangerous_leniencies(**LENIENCIES), by keyword names (no dict) */
    PyObject *call[1 + MAX_LENIENCIES] = {llhttp};
    Py_ssize_t n = PyTuple_GET_SIZE(bound.lenient_names);
    for (Py_ssize_t i = 0; i < n; i++) {
        call[1 + i] = PyTuple_GET_ITEM(bound.lenient_values, i);
    }
    lenient = PyObject_VectorcallMethod(name_objs[N_SET_LENIENCIES], call, 1,
                                        bound.lenient_names);
    if (lenient == NULL) {
        goto error;
    }
    Py_DECREF(lenient);
    Py_DECREF(llhttp);
    for (int i = 0; i < L_COUNT; i++) {
        Py_DECREF(given[i]);
    }
    return parser;
error:
    Py_XDECREF(callbacks);
    Py_XDECREF(llhttp);
    for (int i = 0; i < L_COUNT; i++) {
        Py_DECREF(given[i]);
    }
    drop_parser(parser);
    return NULL;
}

/* Output(sock, io, send_timeout_s, progress), its fd given (the connection's). */
static PyObject *
new_output(PyObject *sock, PyObject *fd, PyObject *send_timeout_s, PyObject *progress)
{
    const Py_ssize_t *o = native_seam.output;
    PyObject *out = native_blank(SEAM_OUTPUT);
    if (out == NULL) {
        return NULL;
    }
    if (put(out, o[O_SOCK], Py_NewRef(sock)) < 0 ||
        put(out, o[O_IO], Py_NewRef(sock)) < 0 ||  /* a Sock is its own io */
        put(out, o[O_FD], Py_NewRef(fd)) < 0 ||
        put(out, o[O_SEND_TIMEOUT_S], Py_NewRef(send_timeout_s)) < 0 ||
        put(out, o[O_PROGRESS], Py_NewRef(progress)) < 0 ||
        put(out, o[O_QUEUE], PyObject_CallNoArgs(bound.deque)) < 0 ||
        put(out, o[O_QUEUED_BYTES], PyLong_FromLong(0)) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* What the connection's __init__ reads of its context, each a new reference. */
enum { G_LIMITS, G_ENGINE, G_TRUST, G_HEADER_TIMEOUT_S, G_SEND_TIMEOUT_S, G_PROGRESS,
       G_HEAD_FIELDS, G_COUNT };

/* The context's fields this needs, when they are of the shapes it handles (1; 0: the
   reference's case, nothing taken). Held: another thread's Python may run meanwhile. */
static int
read_context(PyObject *ctx, PyObject *got[G_COUNT])
{
    const Py_ssize_t *x = native_seam.ctx;
    PyObject *mode = NATIVE_SLOT(ctx, x[X_PROXY_MODE]);
    PyObject *engine = NATIVE_SLOT(ctx, x[X_ENGINE]);
    PyObject *from_ctx[G_HEAD_FIELDS] = {
        NATIVE_SLOT(ctx, x[X_PARSER_LIMITS]), engine, NATIVE_SLOT(ctx, x[X_TRUST]),
        NATIVE_SLOT(ctx, x[X_HEADER_TIMEOUT_S]), NATIVE_SLOT(ctx, x[X_SEND_TIMEOUT_S]),
        NATIVE_SLOT(ctx, x[X_PROGRESS])};
    if (mode == NULL || !PyUnicode_CheckExact(mode) ||
        PyUnicode_CompareWithASCIIString(mode, "off") != 0 || !is(engine, SEAM_ENGINE) ||
        !is(from_ctx[G_LIMITS], SEAM_LIMITS)) {
        return 0;  /* a PROXY header may be due, or other types: the reference's */
    }
    PyObject *head_fields = NATIVE_SLOT(engine, native_seam.engine[E_HEAD_FIELDS]);
    if (head_fields == NULL) {
        return 0;
    }
    for (int i = 0; i < G_HEAD_FIELDS; i++) {
        if (from_ctx[i] == NULL) {
            return 0;
        }
    }
    for (int i = 0; i < G_HEAD_FIELDS; i++) {
        got[i] = Py_NewRef(from_ctx[i]);
    }
    got[G_HEAD_FIELDS] = Py_NewRef(head_fields);
    return 1;
}

/* ctx.trust is not None and ctx.trust.peer(remote_addr, is_unix): a new reference. */
static PyObject *
trusted(PyObject *trust, PyObject *sock, PyObject *remote_addr)
{
    if (trust == Py_None) {
        return Py_NewRef(Py_False);
    }
    PyObject *args[3] = {trust, remote_addr,
                         native_sock_family(sock) == AF_UNIX ? Py_True : Py_False};
    return PyObject_VectorcallMethod(native_seam.call[M_PEER], args,
                                     3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static PyObject *
deadline(PyObject *now, PyObject *header_timeout_s)
{
    PyObject *start = now == Py_None ? PyFloat_FromDouble(native_monotonic()) : Py_NewRef(now);
    if (start == NULL) {
        return NULL;
    }
    PyObject *due = PyNumber_Add(start, header_timeout_s);
    Py_DECREF(start);
    return due;
}

/* A new connection's state, as Connection.__init__ sets it: PARKED, nothing served,
   its head due within header_timeout of `now` (None: the clock's now), unclaimed,
   unwatched: 0, or -1 with an exception set. */
static int
put_connection_state(PyObject *conn, PyObject *now, PyObject *header_timeout_s)
{
    const Py_ssize_t *c = native_seam.conn;
    if (put(conn, c[C_PRE], PyBytes_FromStringAndSize(NULL, 0)) < 0 ||
        put(conn, c[C_DEADLINE], deadline(now, header_timeout_s)) < 0 ||
        put(conn, c[C_LINGER_END], PyFloat_FromDouble(0.0)) < 0) {
        return -1;
    }
    native_slot_set(conn, c[C_STATE], Py_NewRef(native_seam.v[V_PARKED]));
    native_slot_set(conn, c[C_SERVED], PyLong_FromLong(0));  /* small ints: no fail */
    native_slot_set(conn, c[C_REQUEST], Py_NewRef(Py_None));
    native_slot_set(conn, c[C_CONTINUE_SENT], Py_NewRef(Py_False));
    native_slot_set(conn, c[C_END], Py_NewRef(native_seam.v[V_KEEP]));
    native_slot_set(conn, c[C_CLAIMED], Py_NewRef(Py_False));
    native_slot_set(conn, c[C_WOKEN], Py_NewRef(Py_False));
    native_slot_set(conn, c[C_WATCH], Py_NewRef(native_seam.v[V_WATCH_NOTHING]));
    native_slot_set(conn, c[C_DRAINED], Py_NewRef(Py_True));
    native_slot_set(conn, c[C_HANGUP], Py_NewRef(Py_False));
    native_slot_set(conn, c[C_DROPPED], PyLong_FromLong(0));
    return 0;
}

static PyObject *
new_connection(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "new_connection(sock, remote, base, ctx, now)");
        return NULL;
    }
    return native_new_connection(args);
}

PyObject *
native_new_connection(PyObject *const *args)
{
    if (bound.reference_close == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_adopt was not called");
        return NULL;
    }
    PyObject *sock = args[0], *remote = args[1], *base = args[2], *ctx = args[3];
    PyObject *got[G_COUNT];
    int fd = native_sock_fd(sock);
    if (fd < 0 || !PyTuple_CheckExact(remote) || PyTuple_GET_SIZE(remote) != 2 ||
        !is(ctx, SEAM_CONTEXT) || !read_context(ctx, got)) {
        return PyObject_Vectorcall(native_seam.cls[SEAM_CONNECTION], args, 5, NULL);
    }
    const Py_ssize_t *c = native_seam.conn;
    PyObject *conn = NULL, *fd_obj = NULL;
    int other = 0;
    PyObject *parser = new_parser(got[G_LIMITS], got[G_HEAD_FIELDS], &other);
    if (parser == NULL) {
        for (int i = 0; i < G_COUNT; i++) {
            Py_DECREF(got[i]);
        }
        return other ? PyObject_Vectorcall(native_seam.cls[SEAM_CONNECTION], args, 5, NULL) : NULL;
    }
    PyObject *remote_addr = PyTuple_GET_ITEM(remote, 0);
    if ((conn = native_blank(SEAM_CONNECTION)) == NULL || (fd_obj = PyLong_FromLong(fd)) == NULL ||
        put(conn, c[C_SOCK], Py_NewRef(sock)) < 0 ||
        put(conn, c[C_FD], Py_NewRef(fd_obj)) < 0 ||
        put(conn, c[C_IO], Py_NewRef(sock)) < 0 ||  /* engine.socket_io: a Sock itself */
        put(conn, c[C_REMOTE_ADDR], Py_NewRef(remote_addr)) < 0 ||
        put(conn, c[C_REMOTE_PORT], Py_NewRef(PyTuple_GET_ITEM(remote, 1))) < 0 ||
        put(conn, c[C_BASE], Py_NewRef(base)) < 0 ||
        put(conn, c[C_CTX], Py_NewRef(ctx)) < 0 ||
        put(conn, c[C_PARSER], Py_NewRef(parser)) < 0 ||
        put(conn, c[C_TRUSTED], trusted(got[G_TRUST], sock, remote_addr)) < 0 ||
        put(conn, c[C_PROXY_STATE], Py_NewRef(native_seam.v[V_PROXY_NONE])) < 0 ||
        put_connection_state(conn, args[4], got[G_HEADER_TIMEOUT_S]) < 0 ||
        put(conn, c[C_OUT], new_output(sock, fd_obj, got[G_SEND_TIMEOUT_S],
                                       got[G_PROGRESS])) < 0) {
        Py_CLEAR(conn);
        drop_parser(parser);  /* its cycles broken; the last reference let go */
        parser = NULL;
    }
    Py_XDECREF(parser);
    Py_XDECREF(fd_obj);
    for (int i = 0; i < G_COUNT; i++) {
        Py_DECREF(got[i]);
    }
    return conn;
}

/* ---- close_connection ----------------------------------------------------------------- */

/* A field of `obj` as a new reference: at its offset, or by name when unset (which
   raises the reference's AttributeError). */
static PyObject *
field(PyObject *obj, Py_ssize_t offset, const char *name)
{
    PyObject *value = NATIVE_SLOT(obj, offset);
    return value != NULL ? Py_NewRef(value) : PyObject_GetAttrString(obj, name);
}

/* obj.name(), its result dropped: 0, or -1 with an exception set. */
static int
call_method(PyObject *obj, PyObject *name)
{
    PyObject *r = PyObject_CallMethodNoArgs(obj, name);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* Output.discard: nothing to drop when its queue is an empty deque (its queued_bytes is
   then set to 0, as discard sets it); anything else by the reference. */
static int
discard(PyObject *out)
{
    const Py_ssize_t *o = native_seam.output;
    PyObject *queue = is(out, SEAM_OUTPUT) ? NATIVE_SLOT(out, o[O_QUEUE]) : NULL;
    if (queue == NULL || !Py_IS_TYPE(queue, (PyTypeObject *)bound.deque) ||
        PyObject_Length(queue) != 0) {
        PyErr_Clear();
        return call_method(out, native_seam.call[M_DISCARD]);
    }
    native_slot_set(out, o[O_QUEUED_BYTES], PyLong_FromLong(0));  /* a small int: no fail */
    return 0;
}

int
native_close_connection(PyObject *conn)
{
    if (!is(conn, SEAM_CONNECTION)) {
        PyObject *r = bound.reference_close == NULL ? NULL :
            PyObject_CallOneArg(bound.reference_close, conn);
        if (bound.reference_close == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "bind_adopt was not called");
        }
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    const Py_ssize_t *c = native_seam.conn;
    PyObject *state = NATIVE_SLOT(conn, c[C_STATE]);
    if (state == native_seam.v[V_CLOSED]) {
        return 0;
    }
    native_slot_set(conn, c[C_STATE], Py_NewRef(native_seam.v[V_CLOSED]));
    PyObject *out = field(conn, c[C_OUT], "out");
    int r = out == NULL ? -1 : discard(out);
    Py_XDECREF(out);
    if (r < 0) {
        return -1;
    }
    PyObject *parser = field(conn, c[C_PARSER], "parser");
    if (parser == NULL) {
        return -1;
    }
    PyObject *fields = is(parser, SEAM_PARSER) ?
        NATIVE_SLOT(parser, native_seam.parser[P_FIELDS]) : NULL;
    r = fields != NULL && Py_IS_TYPE(fields, &HeadFieldsType) ?
        parser_close(parser) : call_method(parser, native_seam.call[M_PARSER_CLOSE]);
    Py_DECREF(parser);
    if (r < 0) {
        return -1;
    }
    PyObject *io = field(conn, c[C_IO], "io");
    if (io == NULL) {
        return -1;
    }
    r = 0;
    if (native_is_sock(io)) {
        native_sock_close(io);
    }
    else {
        r = call_method(io, name_objs[N_CLOSE]);
    }
    Py_DECREF(io);
    if (r < 0) {
        return -1;
    }
    PyObject *sock = field(conn, c[C_SOCK], "sock");
    if (sock == NULL) {
        return -1;
    }
    if (native_is_sock(sock)) {  /* what either engine's close_socket does with a Sock */
        native_sock_close(sock);
        Py_DECREF(sock);
        return 0;
    }
    /* self.ctx.engine.close_socket(self.sock) */
    PyObject *ctx = field(conn, c[C_CTX], "ctx");
    PyObject *engine = ctx == NULL ? NULL : PyObject_GetAttrString(ctx, "engine");
    PyObject *close_socket = engine == NULL ? NULL : PyObject_GetAttrString(engine, "close_socket");
    PyObject *done = close_socket == NULL ? NULL : PyObject_CallOneArg(close_socket, sock);
    Py_XDECREF(ctx);
    Py_XDECREF(engine);
    Py_XDECREF(close_socket);
    Py_DECREF(sock);
    Py_XDECREF(done);
    return done == NULL ? -1 : 0;
}

static PyObject *
close_connection(PyObject *Py_UNUSED(module), PyObject *conn)
{
    if (native_close_connection(conn) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- accept: Worker._accept, with _adopt ------------------------------------------------ */

enum { A_ENGINE, A_ACCEPT_FN, A_NEW_CONNECTION, A_ACCEPT_LOCK, A_ACQUIRE, A_RELEASE,
       A_STOPPING, A_RECYCLE, A_CONNS, A_CONFIG, A_WORKER_CONNECTIONS, A_SOCK, A_BASES, A_CTX,
       A_CLAIMED, A_FD, A_COUNT };
static const char *const accept_text[A_COUNT] = {
    "engine", "accept", "new_connection", "accept_lock", "acquire", "release", "stopping",
    "recycle", "conns", "config", "worker_connections", "sock", "bases", "ctx", "claimed",
    "fd"};
static PyObject *accept_names[A_COUNT];

static struct {
    PyObject *accept, *new_connection;  /* this module's: an engine using them is ours */
    PyObject *reference;  /* Worker._accept, the function */
} accepting;

/* A worker's flag (worker.<name>) as 1 or 0, or -1 with an exception set. */
static int
flag(PyObject *worker, int name)
{
    PyObject *value = PyObject_GetAttr(worker, accept_names[name]);
    int on = value == NULL ? -1 : PyObject_IsTrue(value);
    Py_XDECREF(value);
    return on;
}

/* worker._accept(listener), its result dropped: None, or NULL with an exception set. */
static PyObject *
reference_accept(PyObject *worker, PyObject *listener)
{
    PyObject *r = PyObject_CallMethodOneArg(worker, native_seam.call[M_ACCEPT], listener);
    Py_XDECREF(r);
    return r == NULL ? NULL : Py_NewRef(Py_None);
}

/* Whether the twin below may stand for worker._accept (1): it is Worker._accept itself
   (not replaced), and the worker's engine accepts and makes connections with this
   module's calls. 0: worker._accept is called; -1 with an exception set. */
static int
accept_is_ours(PyObject *worker)
{
    PyObject *method = PyObject_GetAttr(worker, native_seam.call[M_ACCEPT]);
    if (method == NULL) {
        return -1;
    }
    int same = PyMethod_Check(method) && PyMethod_GET_FUNCTION(method) == accepting.reference;
    Py_DECREF(method);
    if (!same) {
        return 0;
    }
    PyObject *engine = PyObject_GetAttr(worker, accept_names[A_ENGINE]);
    if (engine == NULL) {
        return -1;
    }
    PyObject *accept = PyObject_GetAttr(engine, accept_names[A_ACCEPT_FN]);
    PyObject *make = accept == NULL ? NULL :
        PyObject_GetAttr(engine, accept_names[A_NEW_CONNECTION]);
    int ours = make == NULL ? -1 :
        accept == accepting.accept && make == accepting.new_connection && accept != NULL;
    Py_DECREF(engine);
    Py_XDECREF(accept);
    Py_XDECREF(make);
    return ours;
}

/* Under the accept lock: may this thread accept? 1 yes; 0 no: a stop (the drain takes what
   is left in the backlog) or the table full (worker._pause_accepting called), *done set
   for either; -1 with an exception set. */
static int
room_to_accept(PyObject *worker, PyObject *conns, int *done)
{
    int stop = flag(worker, A_STOPPING);  /* `if self.stopping or self.recycle` */
    if (stop == 0) {
        stop = flag(worker, A_RECYCLE);
    }
    if (stop != 0) {
        *done = stop > 0;
        return stop > 0 ? 0 : -1;
    }
    PyObject *config = PyObject_GetAttr(worker, accept_names[A_CONFIG]);
    PyObject *limit = config == NULL ? NULL :
        PyObject_GetAttr(config, accept_names[A_WORKER_CONNECTIONS]);
    Py_XDECREF(config);
    if (limit == NULL) {
        return -1;
    }
    Py_ssize_t n = PyObject_Length(conns), most = PyLong_AsSsize_t(limit);
    Py_DECREF(limit);
    if (n < 0 || (most == -1 && PyErr_Occurred())) {
        return -1;
    }
    if (n < most) {
        return 1;
    }
    PyObject *r = PyObject_CallMethodNoArgs(worker, native_seam.call[M_PAUSE]);
    *done = r != NULL;
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* Worker._adopt for what accept gave (sock, remote) on `listener`: the connection made
   with the listener's base environ, claimed and put in the table (a new reference), or
   NULL with an exception set. */
static PyObject *
adopt_accepted(PyObject *worker, PyObject *listener, PyObject *accepted, PyObject *conns)
{
    PyObject *bases = PyObject_GetAttr(worker, accept_names[A_BASES]);
    PyObject *key = bases == NULL ? NULL : PyLong_FromVoidPtr(listener);  /* id(listener) */
    PyObject *base = key == NULL ? NULL : PyObject_GetItem(bases, key);
    PyObject *ctx = base == NULL ? NULL : PyObject_GetAttr(worker, accept_names[A_CTX]);
    PyObject *now = ctx == NULL ? NULL : PyFloat_FromDouble(native_monotonic());
    PyObject *conn = NULL, *fd = NULL;
    if (now != NULL) {
        PyObject *args[5] = {PyTuple_GET_ITEM(accepted, 0), PyTuple_GET_ITEM(accepted, 1),
                             base, ctx, now};
        conn = native_new_connection(args);
    }
    if (conn != NULL &&
        (PyObject_SetAttr(conn, accept_names[A_CLAIMED], Py_True) < 0 ||
         (fd = PyObject_GetAttr(conn, accept_names[A_FD])) == NULL ||
         PyObject_SetItem(conns, fd, conn) < 0)) {
        Py_CLEAR(conn);
    }
    Py_XDECREF(fd);
    Py_XDECREF(bases);
    Py_XDECREF(key);
    Py_XDECREF(base);
    Py_XDECREF(ctx);
    Py_XDECREF(now);
    return conn;
}

/* Under the accept lock: the bound check, the accept, the connection made, claimed and
   put in the table (a new reference), or NULL: *done set (a stop, a full table, nothing
   waiting), *retry set (accept failed), or an exception set. */
static PyObject *
adopt_one(PyObject *worker, PyObject *listener, int *done, int *retry)
{
    PyObject *conns = PyObject_GetAttr(worker, accept_names[A_CONNS]);
    int room = conns == NULL ? -1 : room_to_accept(worker, conns, done);
    PyObject *sock = room <= 0 ? NULL : PyObject_GetAttr(listener, accept_names[A_SOCK]);
    PyObject *accepted = sock == NULL ? NULL : native_accept_one(sock);
    PyObject *conn = NULL;
    if (sock != NULL && accepted == NULL && PyErr_ExceptionMatches(PyExc_OSError)) {
        PyErr_Clear();
        *retry = 1;
    }
    else if (accepted == Py_None) {
        *done = 1;  /* another thread or worker took it */
    }
    else if (accepted != NULL && (!PyTuple_CheckExact(accepted) ||
                                  PyTuple_GET_SIZE(accepted) != 2)) {
        PyErr_SetString(PyExc_TypeError, "accept gave no (sock, remote)");
    }
    else if (accepted != NULL) {
        conn = adopt_accepted(worker, listener, accepted, conns);
    }
    Py_XDECREF(conns);
    Py_XDECREF(sock);
    Py_XDECREF(accepted);
    return conn;
}

/* Worker._accept (with _adopt) for a listener woken, when the worker's engine is this
   module's: under the worker's accept lock, a stop, a recycle or a full table ends it
   (the latter by worker._pause_accepting, as the reference), else the connection is
   accepted and made (native accept and new_connection), claimed and put in the table.
   An accept that fails goes to worker._accept, which tries again and decides (it logs
   and pauses for running out of descriptors or memory). With any other engine, or
   _accept replaced: worker._accept, whole. The connection to serve (a new reference),
   None when there is none (or the reference served it), or NULL with an exception. */
PyObject *
native_adopt_from(PyObject *worker, PyObject *listener)
{
    if (native_intern_all(accept_names, accept_text, A_COUNT) < 0) {
        return NULL;
    }
    int ours = accepting.reference == NULL ? 0 : accept_is_ours(worker);
    if (ours <= 0) {
        return ours < 0 ? NULL : reference_accept(worker, listener);
    }
    PyObject *lock = PyObject_GetAttr(worker, accept_names[A_ACCEPT_LOCK]);
    PyObject *release = lock == NULL ? NULL : PyObject_GetAttr(lock, accept_names[A_RELEASE]);
    PyObject *r = release == NULL ? NULL :
        PyObject_CallMethodNoArgs(lock, accept_names[A_ACQUIRE]);
    Py_XDECREF(lock);
    if (r == NULL) {
        Py_XDECREF(release);
        return NULL;
    }
    Py_DECREF(r);
    int done = 0, retry = 0;
    PyObject *conn = adopt_one(worker, listener, &done, &retry);
    int released = native_release_keeping(release);
    Py_DECREF(release);
    if (released < 0) {
        Py_XDECREF(conn);
        return NULL;
    }
    if (retry) {
        return reference_accept(worker, listener);
    }
    return conn != NULL ? conn : Py_NewRef(Py_None);  /* done: nothing to serve */
}

void
native_bind_accept(PyObject *accept, PyObject *new_connection, PyObject *reference)
{
    Py_XSETREF(accepting.accept, Py_NewRef(accept));
    Py_XSETREF(accepting.new_connection, Py_NewRef(new_connection));
    Py_XSETREF(accepting.reference, Py_NewRef(reference));
}

PyMethodDef native_adopt_methods[] = {
    {"new_connection", (PyCFunction)(void (*)(void))new_connection, METH_FASTCALL,
     "new_connection(sock, remote, base, ctx, now) -> Connection: Connection's twin "
     "(see _native_adopt.c)."},
    {"close_connection", (PyCFunction)close_connection, METH_O,
     "close_connection(conn): Connection.close's twin (see _native_adopt.c)."},
    {"bind_adopt", (PyCFunction)(void (*)(void))bind_adopt, METH_FASTCALL,
     "bind_adopt(Connection, RequestParser, _Callbacks, Output, ServerContext, Engine, "
     "ParserLimits, deque, HttpRequestParser, LENIENCIES, Connection.close): the classes "
     "these make and read (the seam's) and what they need besides."},
    {NULL, NULL, 0, NULL},
};
