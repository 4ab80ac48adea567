/*
 * The seam between the compiled core and the Python reference, declared once: every
 * __slots__ field the C files read or write, class by class; every Python method they
 * call by name, or are handed as the reference for what they leave to Python; every enum
 * member they compare with. Each list is an X-macro: the enum of indices every C file
 * uses comes from it, and so do the names _native_seam.c binds (bind_seam, called once
 * by prefork/native.py before any other bind) and reports (_native.seam(), which
 * native.py checks against the Python classes at import: each method exists and is
 * marked @native_calls, prefork/seam.py). A renamed field, method or member fails at
 * import, named.
 *
 * Order matters in two lists only, and says so: ParserLimits (the first three are
 * HeadFields' arguments) and _Callbacks (the first six are the fields' own callbacks).
 */
#ifndef PREFORK_NATIVE_SEAM_H
#define PREFORK_NATIVE_SEAM_H

#include <Python.h>

/* connection.Connection */
#define NATIVE_CONNECTION_SLOTS(X) \
    X(C_BASE, base) X(C_CLAIMED, claimed) X(C_CONTINUE_SENT, continue_sent) X(C_CTX, ctx) \
    X(C_DEADLINE, deadline) X(C_DRAINED, drained) X(C_DROPPED, dropped) X(C_END, end) \
    X(C_FD, fd) X(C_HANGUP, hangup) X(C_IO, io) X(C_LINGER_END, linger_end) X(C_OUT, out) \
    X(C_PARSER, parser) X(C_PRE, pre) X(C_PROXY_STATE, proxy_state) \
    X(C_REMOTE_ADDR, remote_addr) X(C_REMOTE_PORT, remote_port) X(C_REQUEST, request) \
    X(C_SERVED, served) X(C_SOCK, sock) X(C_STATE, state) X(C_TRUSTED, trusted) \
    X(C_WATCH, watch) X(C_WOKEN, woken)

/* http.parser.RequestParser */
#define NATIVE_PARSER_SLOTS(X) \
    X(P_CHUNKS, _chunks) X(P_FIELDS, _fields) X(P_FRAMING_LIMIT, _framing_limit) \
    X(P_HEAD_BYTES, _head_bytes) X(P_HEAD_LIMIT, _head_limit) X(P_LEAD, _lead) \
    X(P_MAX_BODY, _max_body) X(P_ORIGIN_HEAD, _origin_head) X(P_PARSER, _parser) \
    X(P_REQ, _req) X(P_SNIFFING, _sniffing) X(P_ERROR, error) X(P_READY, ready) \
    X(P_STOPPED, stopped)

/* http.parser._Callbacks: the first six are the fields' (CB_FROM_FIELDS), the last the
   parser's */
#define NATIVE_CALLBACKS_SLOTS(X) \
    X(CB_ON_MESSAGE_BEGIN, on_message_begin) X(CB_ON_URL, on_url) \
    X(CB_ON_HEADER, on_header) X(CB_ON_HEADERS_COMPLETE, on_headers_complete) \
    X(CB_ON_BODY, on_body) X(CB_ON_MESSAGE_COMPLETE, on_message_complete) \
    X(CB_ON_CHUNK_HEADER, on_chunk_header)

/* output.Output */
#define NATIVE_OUTPUT_SLOTS(X) \
    X(O_FD, fd) X(O_IO, io) X(O_PROGRESS, progress) X(O_QUEUE, queue) \
    X(O_QUEUED_BYTES, queued_bytes) X(O_SEND_TIMEOUT_S, send_timeout_s) X(O_SOCK, sock)

/* connstate.ServerContext */
#define NATIVE_CONTEXT_SLOTS(X) \
    X(X_APP, app) X(X_BEGIN_REQUEST, begin_request) X(X_END_REQUEST, end_request) \
    X(X_ENGINE, engine) X(X_HEADER_TIMEOUT_S, header_timeout_s) \
    X(X_KEEPALIVE_S, keepalive_s) X(X_MAX_KEEPALIVE, max_keepalive_requests) \
    X(X_PARSER_LIMITS, parser_limits) X(X_POST_REQUEST, post_request) \
    X(X_PRE_REQUEST, pre_request) X(X_PROGRESS, progress) X(X_PROXY_MODE, proxy_mode) \
    X(X_REQUEST_TIMEOUT_S, request_timeout_s) X(X_SEND_TIMEOUT_S, send_timeout_s) \
    X(X_STATIC, static) X(X_STOPPING, stopping) X(X_TIMED, timed) X(X_TRUST, trust)

/* engine.Engine */
#define NATIVE_ENGINE_SLOTS(X) \
    X(E_BUILD_ENVIRON, build_environ) X(E_EXCHANGE, exchange) X(E_HEAD_FIELDS, head_fields)

/* http.parser.ParserLimits: the first three are HeadFields' limits, in its order */
#define NATIVE_LIMITS_SLOTS(X) \
    X(L_LINE, limit_request_line) X(L_FIELDS, limit_request_fields) \
    X(L_FIELD_SIZE, limit_request_field_size) X(L_HEAD_LIMIT, head_limit) \
    X(L_MAX_BODY, max_body) X(L_FRAMING_LIMIT, framing_limit)

/* http.request.Request */
#define NATIVE_REQUEST_SLOTS(X) \
    X(R_AUTHORITY, authority) X(R_BODY, body) X(R_CHUNKED, chunked) \
    X(R_CONTENT_LENGTH, content_length) X(R_EXPECT_CONTINUE, expect_continue) \
    X(R_HEADERS, headers) X(R_KEEP_ALIVE, keep_alive) X(R_METHOD, method) \
    X(R_PATH_QUERY, path_query) X(R_TARGET, target) X(R_UPGRADE, upgrade) \
    X(R_VERSION, version)

/* http.request.Body */
#define NATIVE_BODY_SLOTS(X) \
    X(B_BUF, _buf) X(B_POS, _pos) X(B_COMPLETE, complete) X(B_FILL, fill) \
    X(B_LIMIT, limit) X(B_RECEIVED, received)

/* The Python methods the C files call by name (native_seam.call[M_*], interned), with
   the class that defines each. */
#define NATIVE_CALLS(X) \
    X(M_ACCOUNT, Connection, account) X(M_ENDING, Connection, ending) \
    X(M_FAILED, Connection, _failed) X(M_FILL, Connection, fill) \
    X(M_READY_FOR_NEXT, Connection, _ready_for_next) X(M_REFUSE, Connection, _refuse) \
    X(M_FEED, RequestParser, feed) X(M_UNDER_FEED, RequestParser, _feed) \
    X(M_REFUSED, RequestParser, _refused) X(M_FED, RequestParser, _fed) \
    X(M_PARSER_CLOSE, RequestParser, close) X(M_SEND, Output, send) \
    X(M_DISCARD, Output, discard) X(M_PEER, Trust, peer) \
    X(M_START_RESPONSE, Exchange, start_response) X(M_RESPOND, Exchange, respond) \
    X(M_WRITE, Exchange, write) X(M_ACCEPT, Worker, _accept) \
    X(M_PAUSE, Worker, _pause_accepting) X(M_REST_THEN_WATCH, Worker, _rest_then_watch) \
    X(M_POOL_ERROR, Worker, _pool_error)

/* The Python methods handed to the C files whole (by prefork/native.py's binds, or a
   worker's), which they call for every case they do not decide themselves. */
#define NATIVE_REFERENCES(X) \
    X(Connection, serve_one) X(Connection, on_ready) X(Connection, settle) \
    X(Connection, close) X(RequestParser, on_headers_complete) \
    X(RequestParser, on_message_complete) X(RequestParser, on_body)

/* The enum members the C files compare with and set (native_seam.v[V_*]), by name. */
#define NATIVE_MEMBERS(X) \
    X(V_PARKED, State, PARKED) X(V_ACTIVE, State, ACTIVE) X(V_WRITING, State, WRITING) \
    X(V_CLOSED, State, CLOSED) X(V_READ, Next, READ) X(V_WRITE, Next, WRITE) \
    X(V_CLOSE, Next, CLOSE) X(V_KEEP, Ending, KEEP) X(V_END_CLEAN, Ending, CLEAN) \
    X(V_END_LINGER, Ending, LINGER) X(V_PROXY_NONE, ProxyHeader, NONE) \
    X(V_WATCH_NOTHING, Watch, NOTHING) X(V_WATCH_READ, Watch, READ) \
    X(V_WATCH_READ_WRITE, Watch, READ_WRITE)

#define NATIVE_SEAM_INDEX(index, name) index,
#define NATIVE_SEAM_NAME(index, name) #name,
#define NATIVE_SEAM_INDEX_OF(index, owner, name) index,
enum { NATIVE_CALLS(NATIVE_SEAM_INDEX_OF) M_COUNT };
enum { NATIVE_MEMBERS(NATIVE_SEAM_INDEX_OF) V_COUNT };
enum { NATIVE_CONNECTION_SLOTS(NATIVE_SEAM_INDEX) C_COUNT };
enum { NATIVE_PARSER_SLOTS(NATIVE_SEAM_INDEX) P_COUNT };
enum { NATIVE_CALLBACKS_SLOTS(NATIVE_SEAM_INDEX) CB_COUNT,
       CB_FROM_FIELDS = CB_ON_CHUNK_HEADER };
enum { NATIVE_OUTPUT_SLOTS(NATIVE_SEAM_INDEX) O_COUNT };
enum { NATIVE_CONTEXT_SLOTS(NATIVE_SEAM_INDEX) X_COUNT };
enum { NATIVE_ENGINE_SLOTS(NATIVE_SEAM_INDEX) E_COUNT };
enum { NATIVE_LIMITS_SLOTS(NATIVE_SEAM_INDEX) L_COUNT };
enum { NATIVE_REQUEST_SLOTS(NATIVE_SEAM_INDEX) R_COUNT };
enum { NATIVE_BODY_SLOTS(NATIVE_SEAM_INDEX) B_COUNT };

/* The classes, in bind_seam's order; then the enums. */
enum { SEAM_CONNECTION, SEAM_PARSER, SEAM_CALLBACKS, SEAM_OUTPUT, SEAM_CONTEXT, SEAM_ENGINE,
       SEAM_LIMITS, SEAM_REQUEST, SEAM_BODY, SEAM_COUNT };
enum { SEAM_STATE, SEAM_NEXT, SEAM_ENDING, SEAM_PROXY_HEADER, SEAM_WATCH, SEAM_ENUMS };

/* _native_seam.c: the classes (NULL until bind_seam), their fields' offsets, the names
   of the methods called (interned) and the enum members. */
struct native_seam {
    PyObject *cls[SEAM_COUNT];
    PyObject *call[M_COUNT];
    PyObject *v[V_COUNT];
    Py_ssize_t conn[C_COUNT], parser[P_COUNT], callbacks[CB_COUNT], output[O_COUNT],
        ctx[X_COUNT], engine[E_COUNT], limits[L_COUNT], request[R_COUNT], body[B_COUNT];
};
extern struct native_seam native_seam;
/* The method names interned and bind_seam, seam() added to `module` (at its init). */
int native_seam_add(PyObject *module);

/* `obj` is exactly of the class bound as `which` (SEAM_*): its fields are at the seam's
   offsets (an unbound class, a subclass or another type: 0). */
static inline int
native_is(PyObject *obj, int which)
{
    PyObject *cls = native_seam.cls[which];
    return cls != NULL && Py_IS_TYPE(obj, (PyTypeObject *)cls);
}

/* A new, zeroed instance of the class bound as `which` (bind_seam called): every field
   unset (NULL) until the caller sets it; NULL with an exception set. */
static inline PyObject *
native_blank(int which)
{
    PyTypeObject *cls = (PyTypeObject *)native_seam.cls[which];
    return cls->tp_alloc(cls, 0);
}

/* `cls` is the class bind_seam bound as `which` (SEAM_*): 0; else -1 with TypeError
   naming `what` (a per-file bind's argument checked against the seam). */
int native_seam_is(PyObject *cls, int which, const char *what);

#endif
