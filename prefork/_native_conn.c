/*
 * prefork._native, the connection half: the twins of Connection's request loop.
 *
 *   on_ready(conn)
 *       Connection.on_ready for a PARKED connection with no PROXY header due (its _read):
 *       recv (the native Sock's, GIL held), the parser fed (its own feed or _feed, in
 *       Python), and when a request is complete, serve: each complete request served
 *       (serve_one, below), the parser's error refused (the connection's _refuse), a
 *       stopped parser ended, unsent output left to EPOLLOUT (WRITING, send_timeout);
 *       then settle: closed, or parked with the keep-alive or header deadline. A
 *       connection to linger goes to Connection.settle; any other state, or objects not
 *       of the bound classes, to Connection.on_ready, whole. Returns what comes next
 *       (connection.Next).
 *   serve_one(conn, req)
 *       One request of a connection, as prefork/connection.py's Connection.serve_one
 *       serves it (with _begin and _finish): the count and the keep-alive decision, the
 *       exchange (made in C: native_exchange_new), the worker's begin_request, the
 *       environ (the engine's build_environ), the forwarded headers (proxy.apply_forwarded,
 *       when forwarded_allow_ips is set and the environ has one of them), the app (the
 *       exchange's run, in C), an exception of the app's or the client's handed to the
 *       connection's _failed, then
 *       end_request; True if the connection may carry another request (the body read to
 *       its end, else the connection's _ready_for_next decides); when requests are timed
 *       (an access log, metrics), the connection's account(). Served here when the
 *       worker has no pre_request or post_request hook and no static mount: any other
 *       request, or objects not exactly of the bound classes, goes to
 *       Connection.serve_one (the reference), whole.
 *   bind_connection(...)  the classes whose fields this reads and writes (by their
 *                         __slots__ offsets, native_bind_slots) and the references
 *
 * The Python engine's worker wakes a connection with Connection.on_ready, which calls
 * Connection.serve_one; the native engine's, with these (engine.Engine.on_ready and
 * serve_one). tests/unit/test_native_conn.py serves the same requests
 * and apps through both and compares the bytes, the state and the calls.
 *
 * Memory safety: no buffer is touched here; every field read is checked for presence
 * (a field never set is NULL) and every object read from one is checked for its type
 * before a C-level accessor is used on it; an object read from a field and used after a
 * call that can run Python (the parser, the app, the hooks and callbacks) is held by a
 * reference of this code's own for that time, so that nothing run meanwhile frees it.
 *
 * Called by the pool thread that owns the connection (GIL held).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>


#include "_native.h"



static struct {
    PyObject *reference, *apply_forwarded, *forwarded_keys;
    /* bind_loop's */
    PyObject *on_ready_reference, *settle_reference, *feed_errors;
    Py_ssize_t recv_bytes;
} bound;

/* The methods of other objects called (ours are the seam's: native_seam.call). */
enum { N_POPLEFT, N_FEED_DATA, N_COUNT };
static const char *const names[N_COUNT] = {"popleft", "feed_data"};
static PyObject *name_objs[N_COUNT];

static PyObject *
bind_connection(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8 || !PyTuple_CheckExact(args[7])) {
        PyErr_SetString(PyExc_TypeError, "bind_connection(Connection, ServerContext, Engine, "
                        "Request, Body, Connection.serve_one, apply_forwarded, "
                        "FORWARDED_KEYS)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args[7]); i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(args[7], i))) {
            PyErr_SetString(PyExc_TypeError, "FORWARDED_KEYS must be a tuple of str");
            return NULL;
        }
    }
    if (native_seam_is(args[0], SEAM_CONNECTION, "bind_connection") < 0 ||
        native_seam_is(args[1], SEAM_CONTEXT, "bind_connection") < 0 ||
        native_seam_is(args[2], SEAM_ENGINE, "bind_connection") < 0 ||
        native_seam_is(args[3], SEAM_REQUEST, "bind_connection") < 0 ||
        native_seam_is(args[4], SEAM_BODY, "bind_connection") < 0 ||
        native_intern_all(name_objs, names, N_COUNT) < 0) {
        return NULL;
    }
    Py_XSETREF(bound.reference, Py_NewRef(args[5]));
    Py_XSETREF(bound.apply_forwarded, Py_NewRef(args[6]));
    Py_XSETREF(bound.forwarded_keys, Py_NewRef(args[7]));
    Py_RETURN_NONE;
}

/* Whether an environ has one of the fields apply_forwarded reads or removes (1), as its
   first test (`environ.keys().isdisjoint(FORWARDED_KEYS)`) tells; when none is, it
   would return at once and is not called. -1 with an exception set. */
static int
forwarded_fields(PyObject *environ)
{
    if (!PyDict_CheckExact(environ)) {
        return 1;  /* apply_forwarded decides */
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(bound.forwarded_keys); i++) {
        int has = PyDict_Contains(environ, PyTuple_GET_ITEM(bound.forwarded_keys, i));
        if (has != 0) {
            return has;
        }
    }
    return 0;
}


/* Connection._finish for a context with no post_request hook: the body's source
   detached, the request forgotten, the watchdog told, and when requests are timed (an
   access log, metrics: `timing` holds the status the server chose, 0 if the app's
   stands, and the start), the connection's account(). An exception pending on entry is
   raised again after, unless this raises its own (which then has it as its context, as
   a `finally` block gives it). 0, or -1 with an exception set. */
static int
finish(PyObject *conn, PyObject *ctx, PyObject *req, PyObject *body, PyObject *exchange,
       PyObject *const *timing)
{
    PyObject *pending = native_take_exception();
    native_slot_set(body, native_seam.body[B_FILL], Py_NewRef(Py_None));
    native_slot_set(conn, native_seam.conn[C_REQUEST], Py_NewRef(Py_None));
    PyObject *end = NATIVE_SLOT(ctx, native_seam.ctx[X_END_REQUEST]);
    PyObject *r = end == NULL ? NULL : PyObject_CallNoArgs(end);
    if (r != NULL && timing != NULL) {
        Py_DECREF(r);
        PyObject *args[5] = {conn, req, exchange, timing[0], timing[1]};
        r = PyObject_VectorcallMethod(native_seam.call[M_ACCOUNT], args, 5, NULL);
    }
    if (r == NULL) {
        if (end == NULL) {
            PyErr_SetString(PyExc_AttributeError, "ServerContext.end_request is not set");
        }
        if (pending != NULL) {
            PyObject *exc = native_take_exception();
            PyException_SetContext(exc, pending);  /* steals `pending` */
            native_raise_again(exc);
        }
        return -1;
    }
    Py_DECREF(r);
    native_raise_again(pending);
    return pending == NULL ? 0 : -1;
}

/* A field of a bound object, required set: borrowed, or NULL with AttributeError. */
static PyObject *
field(PyObject *obj, Py_ssize_t offset, const char *name)
{
    PyObject *value = NATIVE_SLOT(obj, offset);
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "'%s' is not set", name);
    }
    return value;
}

/* The request, served with the app's exception caught as `except Exception` catches it:
   0 served, 1 the app's or the client's exception handed to _failed (the connection
   then closes; *status: what _failed returned), -1 an exception to raise (set). */
static int
run_app(PyObject *conn, PyObject *ctx, PyObject *engine, PyObject *req, PyObject *exchange,
        PyObject **status)
{
    const Py_ssize_t *c = native_seam.conn;
    PyObject *build = field(engine, native_seam.engine[E_BUILD_ENVIRON], "build_environ");
    PyObject *base = build == NULL ? NULL : field(conn, c[C_BASE], "base");
    PyObject *addr = base == NULL ? NULL : field(conn, c[C_REMOTE_ADDR], "remote_addr");
    PyObject *port = addr == NULL ? NULL : field(conn, c[C_REMOTE_PORT], "remote_port");
    PyObject *app = port == NULL ? NULL : field(ctx, native_seam.ctx[X_APP], "app");
    PyObject *trust = app == NULL ? NULL : field(ctx, native_seam.ctx[X_TRUST], "trust");
    PyObject *trusted = trust == NULL ? NULL : field(conn, c[C_TRUSTED], "trusted");
    PyObject *environ = NULL, *r = NULL;
    PyObject *held[7] = {build, base, addr, port, app, trust, trusted};
    if (trusted != NULL) {
        for (int i = 0; i < 7; i++) {  /* held while the environ and the app are made */
            Py_INCREF(held[i]);
        }
        PyObject *args[4] = {req, base, addr, port};
        environ = PyObject_Vectorcall(build, args, 4, NULL);
    }
    int forwarded = environ != NULL && trust != Py_None ? forwarded_fields(environ) : 0;
    if (forwarded != 0) {
        PyObject *args[3] = {environ, trust, trusted};
        r = forwarded < 0 ? NULL : PyObject_Vectorcall(bound.apply_forwarded, args, 3, NULL);
        Py_XSETREF(r, r == NULL ? NULL : native_exchange_run(exchange, app, environ));
    }
    else if (environ != NULL) {
        r = native_exchange_run(exchange, app, environ);
    }
    Py_XDECREF(environ);
    if (trusted != NULL) {
        for (int i = 0; i < 7; i++) {
            Py_DECREF(held[i]);
        }
    }
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    PyObject *exc = native_take_exception();
    if (exc == NULL || !PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_Exception)) {
        native_raise_again(exc);  /* not an Exception (SystemExit, KeyboardInterrupt...) */
        return -1;
    }
    /* except Exception as exc: status = self._failed(req, exchange, exc) */
    PyObject *handled = PyErr_GetHandledException();
    PyErr_SetHandledException(exc);
    PyObject *args[4] = {conn, req, exchange, exc};
    PyObject *chosen = PyObject_VectorcallMethod(native_seam.call[M_FAILED], args, 4, NULL);
    PyErr_SetHandledException(handled);
    Py_XDECREF(handled);
    Py_DECREF(exc);
    if (chosen == NULL) {
        return -1;
    }
    Py_SETREF(*status, chosen);
    return 1;
}

/* What serve_one holds for a request, checked and referenced, by index. */
enum { H_CTX, H_ENGINE, H_BODY, H_SERVED, H_KEEPALIVE_S, H_STOPPING, H_MOST, H_TIMEOUT_S,
       H_WANTS, H_OUT, H_BEGIN, H_COMPLETE, H_COUNT };

static PyObject *serve_held(PyObject *conn, PyObject *req, PyObject *cls, int timed,
                            PyObject *const *held);

static PyObject *
serve_one(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "serve_one(conn, req)");
        return NULL;
    }
    if (bound.reference == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_connection() was not called");
        return NULL;
    }
    PyObject *conn = args[0], *req = args[1];
    const Py_ssize_t *c = native_seam.conn, *x = native_seam.ctx;
    PyObject *ctx = NULL, *engine = NULL, *body = NULL, *cls = NULL;
    if (native_is(conn, SEAM_CONNECTION) && native_is(req, SEAM_REQUEST)) {
        ctx = NATIVE_SLOT(conn, c[C_CTX]);
        body = NATIVE_SLOT(req, native_seam.request[R_BODY]);
    }
    if (ctx != NULL && native_is(ctx, SEAM_CONTEXT)) {
        engine = NATIVE_SLOT(ctx, x[X_ENGINE]);
    }
    if (engine != NULL && native_is(engine, SEAM_ENGINE)) {
        cls = NATIVE_SLOT(engine, native_seam.engine[E_EXCHANGE]);
    }
    /* The common case only: no hooks, no static mount; the bound classes. */
    PyObject *timed = ctx == NULL ? NULL : NATIVE_SLOT(ctx, x[X_TIMED]);
    if (cls == NULL || !PyType_Check(cls) ||
        !PyType_IsSubtype((PyTypeObject *)cls, &ExchangeType) ||
        body == NULL || !native_is(body, SEAM_BODY) ||
        NATIVE_SLOT(ctx, x[X_PRE_REQUEST]) != Py_None ||
        NATIVE_SLOT(ctx, x[X_POST_REQUEST]) != Py_None ||
        NATIVE_SLOT(ctx, x[X_STATIC]) != Py_None ||
        (timed != Py_False && timed != Py_True)) {
        return PyObject_Vectorcall(bound.reference, args, 2, NULL);
    }
    /* _begin: count it; may the connection carry another after it? */
    PyObject *held[H_COUNT] = {
        ctx, engine, body, field(conn, c[C_SERVED], "served"),
        field(ctx, x[X_KEEPALIVE_S], "keepalive_s"), field(ctx, x[X_STOPPING], "stopping"),
        field(ctx, x[X_MAX_KEEPALIVE], "max_keepalive_requests"),
        field(ctx, x[X_REQUEST_TIMEOUT_S], "request_timeout_s"),
        field(req, native_seam.request[R_KEEP_ALIVE], "keep_alive"), field(conn, c[C_OUT], "out"),
        field(ctx, x[X_BEGIN_REQUEST], "begin_request"),
        field(body, native_seam.body[B_COMPLETE], "complete")};
    for (int i = 0; i < H_COUNT; i++) {
        if (held[i] == NULL) {
            PyErr_Clear();
            return PyObject_Vectorcall(bound.reference, args, 2, NULL);  /* its own error */
        }
    }
    /* Held for the request: the app and the hooks it reaches run any code, which must not
       free what this function still reads. */
    for (int i = 0; i < H_COUNT; i++) {
        Py_INCREF(held[i]);
    }
    PyObject *result = serve_held(conn, req, cls, timed == Py_True, held);
    for (int i = 0; i < H_COUNT; i++) {
        Py_DECREF(held[i]);
    }
    return result;
}

/* Connection._begin's verdict on keep-alive after the request numbered `count`:
   req.keep_alive and ctx.keepalive_s > 0 and not ctx.stopping and
   (max_keepalive_requests == 0 or count < it); 1, 0, or -1 with an exception set. */
static int
may_keep_alive(PyObject *const *held, PyObject *count)
{
    PyObject *zero = PyLong_FromLong(0);  /* a cached small int: cannot fail */
    int keep_alive = PyObject_IsTrue(held[H_WANTS]);
    if (keep_alive > 0) {
        keep_alive = PyObject_RichCompareBool(held[H_KEEPALIVE_S], zero, Py_GT);
    }
    if (keep_alive > 0) {
        int stop = PyObject_IsTrue(held[H_STOPPING]);
        keep_alive = stop < 0 ? -1 : !stop;
    }
    if (keep_alive > 0) {
        int unlimited = PyObject_RichCompareBool(held[H_MOST], zero, Py_EQ);
        keep_alive = unlimited != 0 ? unlimited :
            PyObject_RichCompareBool(count, held[H_MOST], Py_LT);
    }
    Py_DECREF(zero);
    return keep_alive;
}

/* serve_one once its objects are checked and held (by the caller): `held`, by H_*. */
static PyObject *
serve_held(PyObject *conn, PyObject *req, PyObject *cls, int timed, PyObject *const *held)
{
    const Py_ssize_t *c = native_seam.conn;
    PyObject *ctx = held[H_CTX], *body = held[H_BODY], *out = held[H_OUT];
    PyObject *one = PyLong_FromLong(1);
    PyObject *count = PyNumber_Add(held[H_SERVED], one);
    Py_DECREF(one);
    if (count == NULL) {
        return NULL;
    }
    native_slot_set(conn, c[C_SERVED], count);  /* `served` is gone now; `count` is held */
    int keep_alive = may_keep_alive(held, count);
    PyObject *zero = PyLong_FromLong(0);
    int guarded = keep_alive < 0 ? -1 :
        PyObject_RichCompareBool(held[H_TIMEOUT_S], zero, Py_GT);
    Py_DECREF(zero);
    int incomplete = guarded < 0 ? -1 : PyObject_Not(held[H_COMPLETE]);
    if (keep_alive < 0 || guarded < 0 || incomplete < 0) {
        return NULL;
    }
    native_slot_set(conn, c[C_REQUEST], Py_NewRef(req));
    native_slot_set(conn, c[C_CONTINUE_SENT], Py_NewRef(Py_False));
    if (incomplete) {  /* the app may read what has not arrived yet */
        PyObject *fill = PyObject_GetAttr(conn, native_seam.call[M_FILL]);
        if (fill == NULL) {
            return NULL;
        }
        native_slot_set(body, native_seam.body[B_FILL], fill);
    }
    PyObject *exchange = native_exchange_new(cls, out, req, keep_alive, guarded);
    if (exchange == NULL) {
        return NULL;
    }
    PyObject *call[2] = {req, exchange};
    PyObject *r = PyObject_Vectorcall(held[H_BEGIN], call, 2, NULL);
    if (r == NULL) {
        Py_DECREF(exchange);
        return NULL;
    }
    Py_DECREF(r);
    /* started = time.monotonic() if timed else 0.0 */
    PyObject *timing[2] = {PyLong_FromLong(0), NULL};  /* status, started */
    if (timed && (timing[1] = PyFloat_FromDouble(native_monotonic())) == NULL) {
        Py_DECREF(timing[0]);
        Py_DECREF(exchange);
        return NULL;
    }
    /* try: ... except Exception: ...; return False  finally: self._finish(...) */
    int outcome = run_app(conn, ctx, held[H_ENGINE], req, exchange, &timing[0]);
    int finished = finish(conn, ctx, req, body, exchange, timing[1] != NULL ? timing : NULL);
    Py_DECREF(timing[0]);
    Py_XDECREF(timing[1]);
    if (finished < 0 || outcome < 0) {
        Py_DECREF(exchange);
        return NULL;
    }
    keep_alive = native_exchange_keep_alive(exchange);
    Py_DECREF(exchange);
    if (outcome == 1 || keep_alive == 0) {
        Py_RETURN_FALSE;
    }
    /* return exchange.keep_alive and self._ready_for_next(req) */
    if (field(body, native_seam.body[B_COMPLETE], "complete") == Py_True) {
        Py_RETURN_TRUE;
    }
    PyObject *next[2] = {conn, req};
    return PyObject_VectorcallMethod(native_seam.call[M_READY_FOR_NEXT], next,
                                     2, NULL);
}

/* ---- the connection's loop: on_ready (PARKED), serve, settle -------------------------- */

static int native_output_send(PyObject *out, PyObject *data);

static PyObject *
bind_loop(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyLong_Check(args[4]) || !PyTuple_CheckExact(args[5])) {
        PyErr_SetString(PyExc_TypeError, "bind_loop(Connection.on_ready, Connection.settle, "
                        "RequestParser, Output, RECV_BYTES, FEED_ERRORS)");
        return NULL;
    }
    Py_ssize_t recv_bytes = PyLong_AsSsize_t(args[4]);
    if ((recv_bytes <= 0 && !PyErr_Occurred() &&
         (PyErr_SetString(PyExc_ValueError, "RECV_BYTES must be positive"), 1)) ||
        PyErr_Occurred() ||
        native_seam_is(args[2], SEAM_PARSER, "bind_loop") < 0 ||
        native_seam_is(args[3], SEAM_OUTPUT, "bind_loop") < 0) {
        return NULL;
    }
    bound.recv_bytes = recv_bytes;
    Py_XSETREF(bound.on_ready_reference, Py_NewRef(args[0]));
    Py_XSETREF(bound.settle_reference, Py_NewRef(args[1]));
    Py_XSETREF(bound.feed_errors, Py_NewRef(args[5]));
    native_exchange_use_send(native_output_send);  /* the exchange's run sends with it */
    Py_RETURN_NONE;
}


/* A float field set to now + a context's timeout (a number). 0, or -1 with an error. */
static int
set_deadline(PyObject *conn, double now, PyObject *ctx, Py_ssize_t timeout_field)
{
    PyObject *timeout = NATIVE_SLOT(ctx, native_seam.ctx[timeout_field]);
    double t = timeout == NULL ? -1.0 : PyFloat_AsDouble(timeout);
    if (timeout == NULL || (t == -1.0 && PyErr_Occurred())) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_AttributeError, "a timeout of the context is not set");
        }
        return -1;
    }
    PyObject *deadline = PyFloat_FromDouble(now + t);
    if (deadline == NULL) {
        return -1;
    }
    native_slot_set(conn, native_seam.conn[C_DEADLINE], deadline);
    return 0;
}

/* RequestParser.idle: no partial request received (1, 0; -1 with an error). */
static int
parser_idle(PyObject *parser)
{
    PyObject *req = NATIVE_SLOT(parser, native_seam.parser[P_REQ]);
    PyObject *fields = NATIVE_SLOT(parser, native_seam.parser[P_FIELDS]);
    int in_head = fields == NULL ? -1 : native_fields_in_head(fields);
    if (req == NULL || in_head < 0) {
        PyErr_SetString(PyExc_TypeError, "the parser's fields are not the compiled ones");
        return -1;
    }
    return req == Py_None && !in_head;
}

/* Connection.settle: all output is written; park for the next request, or close. A
   connection to linger, or any while the worker drains, goes to the reference. */
static PyObject *
settle(PyObject *conn, PyObject *ctx, PyObject *parser)
{
    PyObject *end = NATIVE_SLOT(conn, native_seam.conn[C_END]);
    if (end == native_seam.v[V_END_CLEAN]) {
        return Py_NewRef(native_seam.v[V_CLOSE]);
    }
    if (end != native_seam.v[V_KEEP] || NATIVE_SLOT(ctx, native_seam.ctx[X_STOPPING]) != Py_False) {
        return PyObject_CallOneArg(bound.settle_reference, conn);  /* lingers, or drains */
    }
    double now = native_monotonic();
    int idle = parser_idle(parser);
    if (idle < 0) {
        return NULL;
    }
    if (idle) {
        if (set_deadline(conn, now, ctx, X_KEEPALIVE_S) < 0) {
            return NULL;
        }
    }
    else {  /* part of the next head is here already */
        PyObject *deadline = NATIVE_SLOT(conn, native_seam.conn[C_DEADLINE]);
        double d = deadline == NULL ? -1.0 : PyFloat_AsDouble(deadline);
        if (deadline == NULL || (d == -1.0 && PyErr_Occurred())) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_AttributeError, "'deadline' is not set");
            }
            return NULL;
        }
        if (d <= now && set_deadline(conn, now, ctx, X_HEADER_TIMEOUT_S) < 0) {
            return NULL;
        }
    }
    native_slot_set(conn, native_seam.conn[C_STATE], Py_NewRef(native_seam.v[V_PARKED]));
    return Py_NewRef(native_seam.v[V_READ]);
}

static PyObject *serve_loop(PyObject *conn, PyObject *ctx, PyObject *parser, PyObject *out,
                            PyObject *ready);

/* Connection.serve: answer every complete request; leave unsent output to EPOLLOUT;
   then settle. */
static PyObject *
serve(PyObject *conn, PyObject *ctx, PyObject *parser)
{
    const Py_ssize_t *c = native_seam.conn, *p = native_seam.parser;
    PyObject *out = NATIVE_SLOT(conn, c[C_OUT]);
    PyObject *ready = NATIVE_SLOT(parser, p[P_READY]);
    if (out == NULL || !native_is(out, SEAM_OUTPUT) || ready == NULL) {
        PyErr_SetString(PyExc_TypeError, "serve: the connection's output or queue");
        return NULL;
    }
    Py_INCREF(out);  /* held while apps run: they must not free what this still reads */
    Py_INCREF(ready);
    PyObject *next = serve_loop(conn, ctx, parser, out, ready);
    Py_DECREF(out);
    Py_DECREF(ready);
    return next;
}

static PyObject *
serve_loop(PyObject *conn, PyObject *ctx, PyObject *parser, PyObject *out, PyObject *ready)
{
    const Py_ssize_t *c = native_seam.conn, *p = native_seam.parser;
    while (NATIVE_SLOT(conn, c[C_END]) == native_seam.v[V_KEEP]) {
        Py_ssize_t waiting = PyObject_Length(ready);
        PyObject *error = NATIVE_SLOT(parser, p[P_ERROR]);
        PyObject *stopped = NATIVE_SLOT(parser, p[P_STOPPED]);
        if (waiting < 0 || error == NULL || stopped == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_AttributeError, "the parser's state is not set");
            }
            return NULL;
        }
        if (waiting > 0) {
            PyObject *req = PyObject_CallMethodNoArgs(ready, name_objs[N_POPLEFT]);
            if (req == NULL) {
                return NULL;
            }
            PyObject *call[2] = {conn, req};
            PyObject *ok = serve_one(NULL, call, 2);
            int keep = ok == NULL ? -1 : PyObject_IsTrue(ok);
            Py_XDECREF(ok);
            if (keep < 0) {
                Py_DECREF(req);
                return NULL;
            }
            if (!keep) {  /* how it ends: the reference decides (conn.ending(req)) */
                PyObject *args[2] = {conn, req};
                PyObject *r = PyObject_VectorcallMethod(native_seam.call[M_ENDING], args, 2, NULL);
                if (r == NULL) {
                    Py_DECREF(req);
                    return NULL;
                }
                Py_DECREF(r);
            }
            Py_DECREF(req);
        }
        else if (error != Py_None) {
            Py_INCREF(error);  /* an argument: held by the caller for the call */
            PyObject *args[2] = {conn, error};
            PyObject *r = PyObject_VectorcallMethod(native_seam.call[M_REFUSE], args, 2, NULL);
            Py_DECREF(error);
            if (r == NULL) {
                return NULL;
            }
            Py_DECREF(r);
        }
        else if (stopped == Py_True) {
            int idle = parser_idle(parser);
            if (idle < 0) {
                return NULL;
            }
            native_slot_set(conn, c[C_END],
                            Py_NewRef(native_seam.v[idle ? V_END_CLEAN : V_END_LINGER]));
        }
        else {
            /* Wait for the next request, even when the worker is draining (see
               Connection.serve). */
            break;
        }
        PyObject *queue = NATIVE_SLOT(out, native_seam.output[O_QUEUE]);
        Py_ssize_t queued = queue == NULL ? -1 : PyObject_Length(queue);
        if (queued < 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_AttributeError, "'queue' is not set");
            }
            return NULL;
        }
        if (queued > 0) {  /* the client is slow to read: EPOLLOUT writes the rest */
            native_slot_set(conn, c[C_STATE], Py_NewRef(native_seam.v[V_WRITING]));
            if (set_deadline(conn, native_monotonic(), ctx, X_SEND_TIMEOUT_S) < 0) {
                return NULL;
            }
            return Py_NewRef(native_seam.v[V_WRITE]);
        }
    }
    return settle(conn, ctx, parser);
}

static PyObject *fed(PyObject *conn, PyObject *ctx, PyObject *parser, PyObject *data,
                     Py_ssize_t limit, int was_idle);

/* The fields told where a head's bytes are (a piece of recv's bytes, or a view of a
   slice), so that they can take its fields without copying. */
static void
hint_piece(PyObject *fields, PyObject *data)
{
    if (PyBytes_CheckExact(data)) {
        native_fields_hint(fields, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    }
    else if (PyMemoryView_Check(data)) {
        const Py_buffer *view = PyMemoryView_GET_BUFFER(data);
        if (view->itemsize == 1 && PyBuffer_IsContiguous(view, 'C')) {
            native_fields_hint(fields, view->buf, view->len);
        }
    }
}

/* llhttp refused the piece: except FEED_ERRORS as exc:
   self._refused(exc, data, req, in_head, before); any other error stays set. */
static int
refused_piece(PyObject *parser, PyObject *data, PyObject *req, int in_head, PyObject *before)
{
    if (!PyErr_ExceptionMatches(bound.feed_errors)) {
        return -1;
    }
    PyObject *exc = native_take_exception();
    PyObject *refused[6] = {parser, exc, data, req, in_head ? Py_True : Py_False, before};
    PyObject *r = exc == NULL ? NULL :
        PyObject_VectorcallMethod(native_seam.call[M_REFUSED], refused, 6, NULL);
    Py_XDECREF(exc);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* llhttp took the piece: if fields.in_head or (req is not None and req.chunked and not
   in_head and req is self._req): self._fed(data, req, before). */
static int
after_piece(PyObject *parser, PyObject *fields, PyObject *data, PyObject *req, int in_head,
            PyObject *before)
{
    int now_in_head = native_fields_in_head(fields);
    int chunked = 0;
    if (!now_in_head && req != Py_None && !in_head &&
        NATIVE_SLOT(parser, native_seam.parser[P_REQ]) == req) {
        PyObject *flag = NATIVE_SLOT(req, native_seam.request[R_CHUNKED]);
        chunked = flag == NULL ? -1 : PyObject_IsTrue(flag);
        if (flag == NULL) {
            PyErr_SetString(PyExc_AttributeError, "chunked");
        }
    }
    if (now_in_head < 0 || chunked < 0) {
        return -1;
    }
    if (!now_in_head && !chunked) {
        return 0;
    }
    PyObject *counted[4] = {parser, data, req, before};
    PyObject *r = PyObject_VectorcallMethod(native_seam.call[M_FED], counted, 4, NULL);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* parser._feed(data) (RequestParser._feed, one piece within the framing limit) for a
   parser of the bound class whose fields are the native HeadFields (the caller checked
   them): llhttp fed here; what it refuses goes to parser._refused, a piece that ends
   inside a head or a chunked body to parser._fed, as _feed hands them over. A stopped
   parser takes nothing; any other state (sniffing a refused method, fields not of the
   bound classes) goes to _feed itself. (A piece that begins inside a chunked body does
   not come here in practice: a parked connection has no request under way, its body
   having been read by the app or by the connection's own drain. That branch is kept,
   as _feed's, for equivalence.) 0, or -1 with an exception set. */
static int
feed_piece(PyObject *parser, PyObject *data)
{
    const Py_ssize_t *p = native_seam.parser;
    PyObject *stopped = NATIVE_SLOT(parser, p[P_STOPPED]);
    if (stopped == Py_True) {
        return 0;
    }
    PyObject *fields = NATIVE_SLOT(parser, p[P_FIELDS]);
    PyObject *llhttp = NATIVE_SLOT(parser, p[P_PARSER]);
    PyObject *req = NATIVE_SLOT(parser, p[P_REQ]);
    PyObject *received = NULL;
    if (req != NULL && native_is(req, SEAM_REQUEST)) {
        PyObject *body = NATIVE_SLOT(req, native_seam.request[R_BODY]);
        if (body != NULL && native_is(body, SEAM_BODY)) {
            received = NATIVE_SLOT(body, native_seam.body[B_RECEIVED]);
        }
    }
    int in_head = fields == NULL ? -1 : native_fields_in_head(fields);
    if (stopped != Py_False || NATIVE_SLOT(parser, p[P_SNIFFING]) != Py_False ||
        llhttp == NULL || in_head < 0 || req == NULL ||
        (req != Py_None && (received == NULL || !PyLong_CheckExact(received)))) {
        PyObject *args[2] = {parser, data};
        PyObject *r = PyObject_VectorcallMethod(native_seam.call[M_UNDER_FEED], args, 2, NULL);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    /* before = req.body.received if req is not None else 0 (an int: its value now) */
    PyObject *before = req == Py_None ? PyLong_FromLong(0) : Py_NewRef(received);
    if (before == NULL) {
        return -1;
    }
    Py_INCREF(fields);  /* held: llhttp's callbacks run Python code */
    Py_INCREF(req);
    if (req == Py_None && !in_head) {
        hint_piece(fields, data);
    }
    PyObject *args[2] = {llhttp, data};
    PyObject *r = PyObject_VectorcallMethod(name_objs[N_FEED_DATA], args, 2, NULL);
    native_fields_hint(fields, NULL, 0);
    int rc = r == NULL ? refused_piece(parser, data, req, in_head, before) :
        after_piece(parser, fields, data, req, in_head, before);
    Py_XDECREF(r);
    Py_DECREF(before);
    Py_DECREF(fields);
    Py_DECREF(req);
    return rc;
}

/* out.send(data), as Output.send: when nothing is queued and the socket is the native
   engine's, one send() here; if it takes every byte, that is all Output.send would do.
   Anything else (a queue, a short send, EAGAIN, an error) goes to Output.send with the
   bytes not sent: it sends again, queues what the socket does not take, or raises
   ClientGone, as it would have. */
static int
native_output_send(PyObject *out, PyObject *data)
{
    PyObject *rest = Py_NewRef(data);
    if (native_is(out, SEAM_OUTPUT) && PyBytes_CheckExact(data)) {
        PyObject *queue = NATIVE_SLOT(out, native_seam.output[O_QUEUE]);
        PyObject *io = NATIVE_SLOT(out, native_seam.output[O_IO]);
        Py_ssize_t queued = queue == NULL ? -1 : PyObject_Length(queue);
        if (queued < 0) {
            PyErr_Clear();  /* Output.send meets the same and raises */
        }
        else if (queued == 0 && io != NULL && native_is_sock(io)) {
            Py_ssize_t size = PyBytes_GET_SIZE(data);
            Py_ssize_t sent = native_sock_send(io, PyBytes_AS_STRING(data), size);
            if (sent == size) {
                Py_DECREF(rest);
                return 0;
            }
            if (sent > 0) {
                Py_SETREF(rest, PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + sent,
                                                          size - sent));
                if (rest == NULL) {
                    return -1;
                }
            }
        }
    }
    PyObject *args[2] = {out, rest};
    PyObject *r = PyObject_VectorcallMethod(native_seam.call[M_SEND], args, 2, NULL);
    Py_DECREF(rest);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* Connection.on_ready for a PARKED connection of the native engine (no PROXY header
   due): read what has arrived, feed the parser, serve what is complete. Any other
   state, or objects not of the bound classes, go to the reference. */
static PyObject *
on_ready(PyObject *Py_UNUSED(module), PyObject *conn)
{
    if (bound.on_ready_reference == NULL || bound.reference == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_connection() and bind_loop() were not called");
        return NULL;
    }
    const Py_ssize_t *c = native_seam.conn, *p = native_seam.parser;
    PyObject *ctx = NULL, *io = NULL, *parser = NULL, *fields = NULL;
    if (native_is(conn, SEAM_CONNECTION) &&
        NATIVE_SLOT(conn, c[C_STATE]) == native_seam.v[V_PARKED] &&
        NATIVE_SLOT(conn, c[C_PROXY_STATE]) == native_seam.v[V_PROXY_NONE]) {
        ctx = NATIVE_SLOT(conn, c[C_CTX]);
        io = NATIVE_SLOT(conn, c[C_IO]);
        parser = NATIVE_SLOT(conn, c[C_PARSER]);
    }
    if (parser != NULL && native_is(parser, SEAM_PARSER)) {
        fields = NATIVE_SLOT(parser, p[P_FIELDS]);
    }
    if (fields == NULL || native_fields_in_head(fields) < 0 || io == NULL ||
        !native_is_sock(io) || ctx == NULL || !native_is(ctx, SEAM_CONTEXT) ||
        NATIVE_SLOT(parser, p[P_FRAMING_LIMIT]) == NULL ||
        !PyLong_CheckExact(NATIVE_SLOT(parser, p[P_FRAMING_LIMIT]))) {
        return PyObject_CallOneArg(bound.on_ready_reference, conn);
    }
    PyObject *data = native_sock_recv(io, bound.recv_bytes);
    if (data == NULL) {
        if (PyErr_ExceptionMatches(PyExc_BlockingIOError)) {
            PyErr_Clear();
            native_slot_set(conn, c[C_DRAINED], Py_NewRef(Py_True));
            native_slot_set(conn, c[C_HANGUP], Py_NewRef(Py_False));  /* stale: see _read */
            return Py_NewRef(native_seam.v[V_READ]);
        }
        if (PyErr_ExceptionMatches(PyExc_OSError)) {
            PyErr_Clear();
            return Py_NewRef(native_seam.v[V_CLOSE]);
        }
        return NULL;
    }
    if (PyBytes_GET_SIZE(data) == 0) {
        Py_DECREF(data);
        return Py_NewRef(native_seam.v[V_CLOSE]);
    }
    /* a short read: any byte that comes later brings an edge, unless the peer's end is
       still to be read (see connection.py) */
    int drained = PyBytes_GET_SIZE(data) < bound.recv_bytes &&
                  NATIVE_SLOT(conn, c[C_HANGUP]) != Py_True;
    native_slot_set(conn, c[C_DRAINED], Py_NewRef(drained ? Py_True : Py_False));
    int was_idle = parser_idle(parser);
    if (was_idle < 0) {
        Py_DECREF(data);
        return NULL;
    }
    /* parser.feed(data): in pieces of the framing limit, each fed as _feed feeds it */
    Py_ssize_t limit = PyLong_AsSsize_t(NATIVE_SLOT(parser, p[P_FRAMING_LIMIT]));
    if (limit == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        limit = 0;  /* out of range: feed() decides */
    }
    Py_INCREF(ctx);  /* held from here on: the parser and the app run Python code */
    Py_INCREF(parser);
    PyObject *next = fed(conn, ctx, parser, data, limit, was_idle);
    Py_DECREF(ctx);
    Py_DECREF(parser);
    return next;
}

/* on_ready, from the parser fed with `data` (stolen) on: serve, or wait for more. */
static PyObject *
fed(PyObject *conn, PyObject *ctx, PyObject *parser, PyObject *data, Py_ssize_t limit,
    int was_idle)
{
    const Py_ssize_t *c = native_seam.conn, *p = native_seam.parser;
    int failed;
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (limit <= 0) {  /* feed() decides (and refuses) */
        PyObject *args[2] = {parser, data};
        PyObject *r = PyObject_VectorcallMethod(native_seam.call[M_FEED], args, 2, NULL);
        Py_XDECREF(r);
        failed = r == NULL;
    }
    else if (size <= limit) {
        failed = feed_piece(parser, data) < 0;
    }
    else {
        /* feed(): in slices of the framing limit, each a memoryview of `data` */
        PyObject *view = PyMemoryView_FromObject(data);
        failed = view == NULL;
        for (Py_ssize_t start = 0; !failed && start < size; start += limit) {
            PyObject *piece = PySequence_GetSlice(view, start,
                                                  size - start > limit ? start + limit : size);
            failed = piece == NULL || feed_piece(parser, piece) < 0;
            Py_XDECREF(piece);
        }
        Py_XDECREF(view);
    }
    Py_DECREF(data);
    if (failed) {
        return NULL;
    }
    PyObject *ready = NATIVE_SLOT(parser, p[P_READY]);
    PyObject *error = NATIVE_SLOT(parser, p[P_ERROR]);
    PyObject *stopped = NATIVE_SLOT(parser, p[P_STOPPED]);
    Py_ssize_t waiting = ready == NULL ? -1 : PyObject_Length(ready);
    if (waiting < 0 || error == NULL || stopped == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_AttributeError, "the parser's state is not set");
        }
        return NULL;
    }
    if (waiting > 0 || error != Py_None || stopped == Py_True) {
        native_slot_set(conn, c[C_STATE], Py_NewRef(native_seam.v[V_ACTIVE]));
        return serve(conn, ctx, parser);
    }
    if (was_idle && set_deadline(conn, native_monotonic(), ctx, X_HEADER_TIMEOUT_S) < 0) {
        return NULL;  /* a new head has begun: it must complete within header_timeout */
    }
    return Py_NewRef(native_seam.v[V_READ]);
}

PyMethodDef native_conn_methods[] = {
    {"on_ready", (PyCFunction)on_ready, METH_O,
     "on_ready(conn) -> Next: Connection.on_ready's twin (see _native_conn.c)."},
    {"bind_loop", (PyCFunction)(void (*)(void))bind_loop, METH_FASTCALL,
     "bind_loop(Connection.on_ready, Connection.settle, RequestParser, Output, "
     "RECV_BYTES, FEED_ERRORS): what on_ready reads, and its references."},
    {"serve_one", (PyCFunction)(void (*)(void))serve_one, METH_FASTCALL,
     "serve_one(conn, req) -> bool: Connection.serve_one's twin (see _native_conn.c)."},
    {"bind_connection", (PyCFunction)(void (*)(void))bind_connection, METH_FASTCALL,
     "bind_connection(Connection, ServerContext, Engine, Request, Body, "
     "Connection.serve_one, apply_forwarded, FORWARDED_KEYS): the classes serve_one reads, "
     "the references."},
    {NULL, NULL, 0, NULL},
};
