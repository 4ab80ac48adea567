/* What the C files of prefork._native share: each file's functions, added to the module
   by PyInit__native in _native_module.c. */
#ifndef PREFORK_NATIVE_H
#define PREFORK_NATIVE_H

#include <Python.h>

#include "_native_compat.h"
#include "_native_seam.h"

/* _native.c: Sock, EpollCtl, MAX_RECV, accept and close_socket added to `module`.
   0, or -1 with an exception set. */
int native_socket_add(PyObject *module);

/* _native.c: each of `count` strs interned into objs[i] (once: a filled table is left as
   it is; the objects live as long as the process). 0, or -1 with an exception set. */
int native_intern_all(PyObject **objs, const char *const *text, int count);

/* _native.c: the offsets of a Python class's own __slots__ fields (`names`), checked to
   be plain object fields inside its instances, so that C reads and writes them where
   CPython's own specialised attribute access does. Valid only for an object whose type
   is exactly `cls` (check Py_IS_TYPE first). 0, or -1 with an exception set. */
int native_bind_slots(PyObject *cls, const char *const *names, Py_ssize_t *offsets,
                      int count);

/* _native.c: a vectorcall's arguments (`first`, if not NULL, before them) as the tuple
   and keyword dict (NULL when there are none) of a generic call. 0, or -1 with an
   exception set (nothing made). */
int native_call_args(PyObject *first, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames, PyObject **tuple, PyObject **kwargs);

/* A field at such an offset: borrowed (NULL when unset), and replaced (`value` stolen). */
#define NATIVE_SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))
static inline void
native_slot_set(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    PyObject **field = (PyObject **)((char *)obj + offset);
    PyObject *old = *field;
    *field = value;
    Py_XDECREF(old);
}


/* _native.c: Sock.recv(size) for C callers (NULL with the OSError set: BlockingIOError
   when nothing is there), and whether an object is a Sock. */
PyObject *native_sock_recv(PyObject *sock, Py_ssize_t size);
int native_is_sock(PyObject *obj);

/* _native.c: accept(listen) for C callers: (Sock, (host, port)), None, or NULL with the
   OSError set. */
PyObject *native_accept_one(PyObject *listen);

/* _native.c: a Sock's descriptor and family (-1: not a Sock, or closed; not accepted),
   and Sock.close() (nothing for any other object). */
int native_sock_fd(PyObject *sock);
int native_sock_family(PyObject *sock);
void native_sock_close(PyObject *sock);

/* _native.c: time.monotonic()'s clock, in seconds. */
double native_monotonic(void);

/* A lock's acquire or release (a bound method) called: 0, or -1 with an exception set;
   release that keeps an exception raised while the lock was held (as `with` does). */
int native_lock_call(PyObject *method);
int native_release_keeping(PyObject *release);

/* _native.c: one send(MSG_DONTWAIT) of a Sock's: the bytes sent, or -1 (errno set, no
   exception: the caller leaves that case to Python code, which makes the call again). */
Py_ssize_t native_sock_send(PyObject *sock, const char *buf, Py_ssize_t len);

/* _native_http.c: a HeadFields' in_head (-1: not a HeadFields). */
int native_fields_in_head(PyObject *fields);

/* Before llhttp reads `data` (a parser between requests): note the version on the request
   line at its start, for the head that begins there (see HeadFields). NULL clears it. */
void native_fields_hint(PyObject *fields, const char *data, Py_ssize_t size);

/* _native_wsgi.c: build_environ, response_fields, encode_head. */
extern PyMethodDef native_wsgi_methods[];

/* _native_wsgi.c: response_fields' work on an app's header list (`names`: the name cache,
   `check`: response.header_name for a miss). 0 with *length (a new reference: None or
   the Content-Length), *has_connection and *close set; -1 with an exception set. */
int native_response_fields(PyObject *names, PyObject *check, PyObject *headers,
                           PyObject **length, int *has_connection, int *close);

/* _native_wsgi.c: a response head's bytes ("HTTP/1.1 " status, the fields, `extra`, the
   blank line) followed by `body`, in one new bytes object. NULL with no exception set
   when a part is not of the plain shape (a list of (str, str) tuples of characters up to
   U+00FF): the Python reference's to encode or refuse. */
PyObject *native_head(PyObject *status, PyObject *headers, const char *extra,
                      Py_ssize_t extra_size, const char *body, Py_ssize_t body_size);

/* _native_exchange.c: the Exchange type (twin of wsgi.Exchange's state, start_response
   and run), bind_exchange, http_date. */
extern PyMethodDef native_exchange_methods[];
extern PyTypeObject ExchangeType;

/* _native_exchange.c, for C callers: a new exchange of type `cls` (Exchange or a
   subclass), as cls(out, req, keep_alive, guarded) makes it; its run(app, environ); its
   keep_alive (-1: not an Exchange). */
PyObject *native_exchange_new(PyObject *cls, PyObject *out, PyObject *req, int keep_alive,
                              int guarded);
PyObject *native_exchange_run(PyObject *self, PyObject *app, PyObject *environ);
int native_exchange_keep_alive(PyObject *self);

/* _native_exchange.c: how its run sends a response (out.send(data): 0, or -1 with an
   exception set). _native_conn.c gives its twin of Output.send when it is bound
   (bind_loop), so that the exchange's file calls no function of the connection's, which
   calls it (no cycle between the C files); until then run leaves a response to the
   reference. */
typedef int (*native_send_fn)(PyObject *out, PyObject *data);
void native_exchange_use_send(native_send_fn send);

/* _native_conn.c: serve_one (Connection.serve_one's twin) and bind_connection. */
extern PyMethodDef native_conn_methods[];

/* _native_http.c: HeadFields, llhttp's callbacks for a request head; bind_parser. */
extern PyTypeObject HeadFieldsType;
extern PyMethodDef native_http_methods[];

/* _native_adopt.c: new_connection and close_connection (Connection.__init__'s and
   .close's twins), bind_adopt; and close_connection for C callers (0, or -1 with an
   exception set). */
extern PyMethodDef native_adopt_methods[];
int native_close_connection(PyObject *conn);
/* Worker._accept's twin for a listener woken: the connection to serve, None, or NULL;
   bound by the worker's bind_worker (this module's accept and new_connection, the
   reference Worker._accept). */
PyObject *native_adopt_from(PyObject *worker, PyObject *listener);
void native_bind_accept(PyObject *accept, PyObject *new_connection, PyObject *reference);
PyObject *native_new_connection(PyObject *const *args);  /* its five arguments */

/* _native_worker.c: WorkerCalls (a worker's per-request calls), bind_worker. */
extern PyTypeObject WorkerCallsType;
extern PyMethodDef native_worker_methods[];

#endif
