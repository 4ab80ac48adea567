/*
 * prefork._native: the compiled core of the native request path (http_engine = "native").
 *
 * What it changes is who holds the GIL during a request's non-blocking system calls.
 * CPython's socket and epoll objects release the GIL around every call, even one that
 * cannot block (recv on a readable socket, send with MSG_DONTWAIT, epoll_ctl): with
 * several pool threads in a worker, each release hands the GIL to a waiting thread and
 * each take waits for it back, a handful of futex calls and often a context switch per
 * release. Measured with bench/syscalls.py (hello, keep-alive, 64 connections): 30 system
 * calls per request, 26 of them futex, against 4 that do the work.
 *
 * These calls keep the GIL: they never block (MSG_DONTWAIT, a non-blocking descriptor,
 * epoll_ctl), so holding it costs nothing but the call itself. The only call on the
 * request path that still releases the GIL is epoll_wait, where a pool thread waits.
 *
 *   Sock(fd)           recv(n) and send(data), with socket.socket's results and errors
 *                      (BlockingIOError when the call would block, OSError subclasses by
 *                      errno), shutdown(how); the descriptor is not owned: the socket
 *                      object closes it, and close() makes this object forget it first
 *                      (EBADF from then on). A Sock made by accept() owns its descriptor
 *                      instead: close(), or its last reference, closes it.
 *   EpollCtl(epfd)     register(fd, events) and modify(fd, events), as select.epoll's
 *                      (the event's data is the fd, so select.epoll.poll() reports it).
 *   accept(listen)     a connection from a non-blocking listener, accept4'ed non-blocking
 *                      and close-on-exec (no ioctl after it), as a Sock that owns it (no
 *                      socket object), with the peer's address as socket.accept() formats
 *                      it; None when none waits; close_socket(sock) detaches a socket
 *                      object and closes its descriptor (or closes a Sock). A new
 *                      connection then releases the GIL only where its pool thread waits,
 *                      as a request does.
 *
 * Memory safety: every buffer is a Python object's own (a bytes object this code sizes,
 * or a Py_buffer held for the call); lengths come from those objects, never from the peer.
 * tests/unit/test_native.py compares both types with the socket module's behaviour, and
 * tests/fuzz/fuzz_native.py drives them under AddressSanitizer.
 *
 * The module's other files: _native_http.c (HeadFields, llhttp's callbacks for a request
 * head, and the end of a head), _native_wsgi.c (the per-field loops of the WSGI adapter:
 * environ, response head), _native_exchange.c (an exchange's state as a C type, its
 * start_response and run), _native_conn.c (a connection's request loop),
 * _native_adopt.c (a connection's objects made, and closed) and _native_worker.c (a
 * worker's calls around each request), and _native_module.c (the module, made of them
 * all); _native.h declares what they share.
 *
 * Called by pool threads (and by the worker's main thread on a drain), GIL held.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <structmember.h>
#include <time.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "_native.h"

/* The largest recv() this module does in one call: a caller's bufsize beyond it is
   capped (prefork asks for 64 KiB). Bounds the bytes object allocated up front. */
#define MAX_RECV ((Py_ssize_t)1 << 24)

/* recv_bytes' read onto the stack (below): most requests fit in it whole. */
enum { SMALL_RECV = 4096 };

static int
fd_from(PyObject *obj, int *fd)
{
    long value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0 || value > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "file descriptor out of range");
        return -1;
    }
    *fd = (int)value;
    return 0;
}

/* __init__(fd) of both types: one descriptor argument, positional or by `name`. */
static int
init_fd(PyObject *args, PyObject *kwds, char *name, int *fd)
{
    char *kwlist[] = {name, NULL};
    PyObject *fd_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O", kwlist, &fd_obj)) {
        return -1;
    }
    return fd_from(fd_obj, fd);
}

int
native_intern_all(PyObject **objs, const char *const *text, int count)
{
    if (objs[count - 1] != NULL) {
        return 0;
    }
    for (int i = 0; i < count; i++) {
        if (objs[i] == NULL && (objs[i] = PyUnicode_InternFromString(text[i])) == NULL) {
            return -1;
        }
    }
    return 0;
}

int
native_call_args(PyObject *first, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames, PyObject **tuple, PyObject **kwargs)
{
    Py_ssize_t skip = first != NULL;
    *kwargs = NULL;
    if ((*tuple = PyTuple_New(nargs + skip)) == NULL) {
        return -1;
    }
    if (first != NULL) {
        PyTuple_SET_ITEM(*tuple, 0, Py_NewRef(first));
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(*tuple, i + skip, Py_NewRef(args[i]));
    }
    if (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0) {
        return 0;
    }
    if ((*kwargs = PyDict_New()) == NULL) {
        Py_CLEAR(*tuple);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
        if (PyDict_SetItem(*kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
            Py_CLEAR(*tuple);
            Py_CLEAR(*kwargs);
            return -1;
        }
    }
    return 0;
}

int
native_bind_slots(PyObject *cls, const char *const *names, Py_ssize_t *offsets, int count)
{
    if (!PyType_Check(cls) || !(((PyTypeObject *)cls)->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        PyErr_SetString(PyExc_TypeError, "expected a class defined in Python");
        return -1;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    for (int i = 0; i < count; i++) {
        PyMemberDef *m = native_own_member(type, names[i]);
        if (m == NULL || m->type != T_OBJECT_EX || (m->flags & READONLY) ||
            m->offset < (Py_ssize_t)sizeof(PyObject) ||
            m->offset + (Py_ssize_t)sizeof(PyObject *) > type->tp_basicsize) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ field of its own",
                         type->tp_name, names[i]);
            return -1;
        }
        offsets[i] = m->offset;
    }
    return 0;
}

/* errno after a failed call -> the OSError subclass socket.socket would raise. A signal
   handler that raised (EINTR on the main thread) has set its own exception already. */
static PyObject *
raise_errno(int err)
{
    if (PyErr_Occurred()) {
        return NULL;
    }
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* ---- Sock ----------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int fd;
    int family;  /* the address family accept() saw; -1 for Sock(fd) */
    int owned;   /* accept()'s: close() and the last reference close the descriptor */
    int reads_big;  /* recv_bytes: the last read brought SMALL_RECV bytes or more */
} SockObject;

static int
Sock_init(SockObject *self, PyObject *args, PyObject *kwds)
{
    if (self->owned) {
        PyErr_SetString(PyExc_TypeError, "this Sock owns its descriptor already");
        return -1;
    }
    self->family = -1;
    return init_fd(args, kwds, "fd", &self->fd);
}

/* The descriptor forgotten first, then closed if owned: a late call on this object then
   fails with EBADF instead of reaching a connection that reuses the number. */
static void
sock_release(SockObject *self)
{
    int fd = self->fd;
    self->fd = -1;
    if (self->owned && fd >= 0) {
        close(fd);  /* the descriptor is gone whatever close says (even EINTR) */
    }
}

static void
Sock_dealloc(SockObject *self)
{
    sock_release(self);  /* an accepted connection dropped without close(): no leak */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* recv(size) on the descriptor, MSG_DONTWAIT: the bytes, or NULL with the OSError set. */
static PyObject *
recv_bytes(SockObject *self, Py_ssize_t size)
{
    if (size == 0) {
        /* As socket.recv(0): nothing asked, nothing read (no system call, no EAGAIN). */
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    if (size > MAX_RECV) {
        size = MAX_RECV;
    }
    ssize_t n;
    char small[SMALL_RECV];
    if (size > SMALL_RECV && !self->reads_big) {
        /* Most reads of a keep-alive connection are one small request. Those are read
           onto the stack and copied out at their size (Python's small-object allocator),
           not into a bytes object of the full size shrunk afterwards (a large malloc, a
           realloc and a free for every request: 3% of a hello request in
           bench/hotpath.py). A read that fills the small buffer is followed at once by
           one for the rest, into a bytes object of the full size, and the connection's
           reads are made at the full size until one comes back small. */
        do {
            n = recv(self->fd, small, SMALL_RECV, MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR && PyErr_CheckSignals() == 0);
        if (n < 0) {
            return raise_errno(errno);
        }
        if (n < SMALL_RECV) {
            return PyBytes_FromStringAndSize(small, (Py_ssize_t)n);
        }
    }
    else {
        n = -1;  /* nothing read yet */
    }
    PyObject *buf = PyBytes_FromStringAndSize(NULL, size);
    if (buf == NULL) {
        if (n == SMALL_RECV) {
            /* What was read is not lost. The rest waits; its reader thinks all is read
               (a short read), so it is read with the next bytes or timed out. */
            PyErr_Clear();
            return PyBytes_FromStringAndSize(small, SMALL_RECV);
        }
        return NULL;
    }
    if (n == SMALL_RECV) {  /* the stack's buffer came back full: the rest, if any */
        memcpy(PyBytes_AS_STRING(buf), small, SMALL_RECV);
        ssize_t more;
        do {
            more = recv(self->fd, PyBytes_AS_STRING(buf) + SMALL_RECV,
                        (size_t)(size - SMALL_RECV), MSG_DONTWAIT);
        } while (more < 0 && errno == EINTR);  /* it cannot block: no signal check */
        /* EAGAIN: all that had come is read. Another error waits for the next read (a
           socket reset: its deadline closes it). */
        n += more > 0 ? more : 0;
    }
    else {
        do {
            n = recv(self->fd, PyBytes_AS_STRING(buf), (size_t)size, MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR && PyErr_CheckSignals() == 0);
        if (n < 0) {
            int err = errno;
            Py_DECREF(buf);
            return raise_errno(err);
        }
    }
    self->reads_big = n >= SMALL_RECV;
    if (n != size && native_bytes_shrink(&buf, (Py_ssize_t)n) < 0) {
        return NULL;  /* buf was freed and set to NULL */
    }
    return buf;
}

static PyObject *
Sock_recv(SockObject *self, PyObject *arg)
{
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
        return NULL;
    }
    return recv_bytes(self, size);
}

static PyObject *
Sock_send(SockObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    ssize_t n;
    do {
        n = send(self->fd, view.buf, (size_t)view.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR && PyErr_CheckSignals() == 0);
    int err = errno;
    PyBuffer_Release(&view);
    if (n < 0) {
        return raise_errno(err);
    }
    return PyLong_FromSsize_t((Py_ssize_t)n);
}

static PyObject *
Sock_fileno(SockObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->fd);
}

/* Forget the descriptor, and close it if this Sock owns it (else its socket object closes
   it). Called when the connection closes: the number may be reused by the next accept at
   once, and a late call must then fail with EBADF, as on a closed socket, rather than
   reach another client's connection. */
static PyObject *
Sock_close(SockObject *self, PyObject *Py_UNUSED(ignored))
{
    sock_release(self);
    Py_RETURN_NONE;
}

/* shutdown(how), as socket.shutdown: None, or the OSError. */
static PyObject *
Sock_shutdown(SockObject *self, PyObject *arg)
{
    long how = PyLong_AsLong(arg);
    if (how == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (how < INT_MIN || how > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "shutdown: how out of range");
        return NULL;
    }
    if (shutdown(self->fd, (int)how) < 0) {
        return raise_errno(errno);
    }
    Py_RETURN_NONE;
}

/* gettimeout() and setblocking(False), as a non-blocking socket object's: a Sock's
   calls never wait (MSG_DONTWAIT; accept()'s descriptors are O_NONBLOCK). */
static PyObject *
Sock_gettimeout(SockObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(0.0);
}

static PyObject *
Sock_setblocking(SockObject *Py_UNUSED(self), PyObject *arg)
{
    int flag = PyObject_IsTrue(arg);
    if (flag < 0) {
        return NULL;
    }
    if (flag) {
        PyErr_SetString(PyExc_ValueError, "a Sock is non-blocking");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Sock_repr(SockObject *self)
{
    return PyUnicode_FromFormat("<prefork._native.Sock fd=%d>", self->fd);
}

static PyMethodDef Sock_methods[] = {
    {"recv", (PyCFunction)Sock_recv, METH_O,
     "recv(bufsize) -> bytes: what has arrived, b'' at EOF; BlockingIOError if nothing."},
    {"send", (PyCFunction)Sock_send, METH_O,
     "send(data) -> int: bytes the socket took now; BlockingIOError if none."},
    {"fileno", (PyCFunction)Sock_fileno, METH_NOARGS,
     "The descriptor (not owned); -1 once closed."},
    {"close", (PyCFunction)Sock_close, METH_NOARGS,
     "Forget the descriptor, closing it if owned: later calls fail with EBADF."},
    {"shutdown", (PyCFunction)Sock_shutdown, METH_O, "shutdown(how), as socket.shutdown."},
    {"gettimeout", (PyCFunction)Sock_gettimeout, METH_NOARGS, "0.0: it never waits."},
    {"setblocking", (PyCFunction)Sock_setblocking, METH_O,
     "setblocking(False): nothing to do; True: ValueError."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Sock_members[] = {
    {"family", T_INT, offsetof(SockObject, family), READONLY,
     "The address family (socket.AF_*) of an accepted connection; -1 for Sock(fd)."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "prefork._native.Sock",
    .tp_doc = "Non-blocking recv/send on a descriptor, holding the GIL.",
    .tp_basicsize = sizeof(SockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Sock_init,
    .tp_dealloc = (destructor)Sock_dealloc,
    .tp_repr = (reprfunc)Sock_repr,
    .tp_methods = Sock_methods,
    .tp_members = Sock_members,
};

PyObject *
native_sock_recv(PyObject *sock, Py_ssize_t size)
{
    if (!Py_IS_TYPE(sock, &SockType) || size < 0) {
        PyErr_SetString(PyExc_TypeError, "native_sock_recv: not a Sock");
        return NULL;
    }
    return recv_bytes((SockObject *)sock, size);
}

double
native_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* time.monotonic()'s clock */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

Py_ssize_t
native_sock_send(PyObject *sock, const char *buf, Py_ssize_t len)
{
    if (!Py_IS_TYPE(sock, &SockType) || len < 0) {
        return -1;
    }
    ssize_t n = send(((SockObject *)sock)->fd, buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n < 0 ? -1 : (Py_ssize_t)n;
}

int
native_is_sock(PyObject *obj)
{
    return Py_IS_TYPE(obj, &SockType);
}

int
native_sock_fd(PyObject *sock)
{
    return Py_IS_TYPE(sock, &SockType) ? ((SockObject *)sock)->fd : -1;
}

int
native_sock_family(PyObject *sock)
{
    return Py_IS_TYPE(sock, &SockType) ? ((SockObject *)sock)->family : -1;
}

void
native_sock_close(PyObject *sock)
{
    if (Py_IS_TYPE(sock, &SockType)) {
        sock_release((SockObject *)sock);
    }
}

/* ---- EpollCtl ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int epfd;
} EpollCtlObject;

static int
EpollCtl_init(EpollCtlObject *self, PyObject *args, PyObject *kwds)
{
    return init_fd(args, kwds, "epfd", &self->epfd);
}

static PyObject *
epoll_op(EpollCtlObject *self, PyObject *const *args, Py_ssize_t nargs, int op)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expected (fd, eventmask)");
        return NULL;
    }
    int fd;
    if (fd_from(args[0], &fd) < 0) {
        return NULL;
    }
    unsigned long events = PyLong_AsUnsignedLong(args[1]);
    if (events == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (events > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_OverflowError, "eventmask out of range");
        return NULL;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = (uint32_t)events;
    ev.data.fd = fd;
    if (epoll_ctl(self->epfd, op, fd, &ev) < 0) {
        return raise_errno(errno);
    }
    Py_RETURN_NONE;
}

static PyObject *
EpollCtl_register(EpollCtlObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return epoll_op(self, args, nargs, EPOLL_CTL_ADD);
}

static PyObject *
EpollCtl_modify(EpollCtlObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return epoll_op(self, args, nargs, EPOLL_CTL_MOD);
}

static PyMethodDef EpollCtl_methods[] = {
    {"register", (PyCFunction)(void (*)(void))EpollCtl_register, METH_FASTCALL,
     "register(fd, eventmask): EPOLL_CTL_ADD, as select.epoll.register."},
    {"modify", (PyCFunction)(void (*)(void))EpollCtl_modify, METH_FASTCALL,
     "modify(fd, eventmask): EPOLL_CTL_MOD, as select.epoll.modify."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EpollCtlType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "prefork._native.EpollCtl",
    .tp_doc = "epoll_ctl on an epoll descriptor (not owned), holding the GIL.",
    .tp_basicsize = sizeof(EpollCtlObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)EpollCtl_init,
    .tp_methods = EpollCtl_methods,
};

/* ---- accept and close ----------------------------------------------------------------- */

static PyObject *native_accept(PyObject *module, PyObject *arg);

/* `value` in decimal digits into `out` (at least 6 bytes), NUL-terminated. */
static void
decimal(unsigned value, char *out)
{
    char digits[8];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0 && n < 7);
    for (int i = 0; i < n; i++) {
        out[i] = digits[n - 1 - i];
    }
    out[n] = '\0';
}

/* accept(listen) -> (Sock, (host, port)), or None when no connection waits. `listen` is
   the listening socket (or its descriptor). The Sock owns the accepted descriptor,
   non-blocking and close-on-exec (no ioctl after it), and knows its family; host and
   port are the peer's, numeric, as socket.accept() gives them (str() of its address
   tuple's first two items; getnameinfo with NI_NUMERICHOST is what the socket module uses
   too, so an IPv6 scope comes out the same), "" and "" for a peer without an address
   (AF_UNIX). No socket object is made: socket.socket(fileno=) costs a getsockname system
   call and a Python __init__ per connection. An empty backlog is no error: another thread
   or worker took the connection (None costs no exception). */
PyObject *
native_accept_one(PyObject *listen)
{
    return native_accept(NULL, listen);
}

static PyObject *
native_accept(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int lfd = PyObject_AsFileDescriptor(arg);
    if (lfd < 0) {
        return NULL;
    }
    struct sockaddr_storage addr;
    socklen_t len;
    int fd, err;
    do {
        memset(&addr, 0, sizeof(addr));
        len = sizeof(addr);
        fd = accept4(lfd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        err = errno;
    } while (fd < 0 && err == EINTR && PyErr_CheckSignals() == 0);
    if (fd < 0) {
        if (err == EAGAIN || err == EWOULDBLOCK) {
            Py_RETURN_NONE;
        }
        return raise_errno(err);
    }
    SockObject *sock = PyObject_New(SockObject, &SockType);
    if (sock == NULL) {
        close(fd);
        return NULL;
    }
    sock->fd = fd;  /* owned from here: freeing sock closes it */
    sock->owned = 1;
    sock->family = addr.ss_family;
    sock->reads_big = 0;  /* PyObject_New zeroes nothing: every field is set here */
    char host[NI_MAXHOST] = "", port[NI_MAXSERV] = "";
    int family = addr.ss_family;
    if (family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        /* What getnameinfo gives an IPv4 peer, without its formatting machinery (a
           tenth of a new connection's user-space instructions went to it; inet_ntop
           was still 2,000). */
        const struct sockaddr_in *in = (const struct sockaddr_in *)&addr;
        const unsigned char *octet = (const unsigned char *)&in->sin_addr.s_addr;
        char *at = host;
        for (int i = 0; i < 4; i++) {  /* dotted quad, as inet_ntop writes it */
            decimal(octet[i], at);
            at += strlen(at);
            *at++ = i < 3 ? '.' : '\0';
        }
        decimal(ntohs(in->sin_port), port);
    }
    else if (family == AF_INET6 && len <= (socklen_t)sizeof(addr)) {
        int rc = getnameinfo((struct sockaddr *)&addr, len, host, sizeof(host), port,
                             sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
        if (rc != 0) {
            Py_DECREF(sock);
            PyErr_Format(PyExc_OSError, "getnameinfo: %s", gai_strerror(rc));
            return NULL;
        }
    }
    else if (family != AF_UNIX) {
        Py_DECREF(sock);
        PyErr_Format(PyExc_OSError, "accept: unexpected address family %d", family);
        return NULL;
    }
    PyObject *h = PyUnicode_FromString(host), *p = PyUnicode_FromString(port);
    PyObject *peer = h != NULL && p != NULL ? PyTuple_Pack(2, h, p) : NULL;
    PyObject *result = peer != NULL ? PyTuple_Pack(2, (PyObject *)sock, peer) : NULL;
    Py_XDECREF(h);
    Py_XDECREF(p);
    Py_XDECREF(peer);
    Py_DECREF(sock);  /* the result holds it (or, on failure, it closes its descriptor) */
    return result;
}

/* close_socket(sock): a socket object detached and its descriptor closed with the GIL
   held (a socket's close does not wait: prefork never sets SO_LINGER), or a Sock closed.
   socket.close() would release the GIL around it, a hand-off to another pool thread and
   back. */
static PyObject *
native_close_socket(PyObject *Py_UNUSED(module), PyObject *sock)
{
    if (Py_IS_TYPE(sock, &SockType)) {
        sock_release((SockObject *)sock);
        Py_RETURN_NONE;
    }
    PyObject *fd_obj = PyObject_CallMethod(sock, "detach", NULL);
    if (fd_obj == NULL) {
        return NULL;
    }
    long fd = PyLong_AsLong(fd_obj);
    Py_DECREF(fd_obj);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fd >= 0 && fd <= INT_MAX) {
        close((int)fd);  /* the descriptor is gone whatever close says (even EINTR) */
    }
    Py_RETURN_NONE;
}

static PyMethodDef native_socket_methods[] = {
    {"accept", native_accept, METH_O,
     "accept(listen) -> (Sock, (host, port)) owning a non-blocking descriptor; None if none "
     "waits."},
    {"close_socket", native_close_socket, METH_O,
     "close_socket(sock): a socket object detached and its descriptor closed, or a Sock "
     "closed, GIL held."},
    {NULL, NULL, 0, NULL},
};

/* ---- what this file adds to the module (_native_module.c makes it) ------------------- */

int
native_socket_add(PyObject *module)
{
    if (PyType_Ready(&SockType) < 0 || PyType_Ready(&EpollCtlType) < 0 ||
        PyModule_AddObjectRef(module, "Sock", (PyObject *)&SockType) < 0 ||
        PyModule_AddObjectRef(module, "EpollCtl", (PyObject *)&EpollCtlType) < 0 ||
        PyModule_AddIntConstant(module, "MAX_RECV", (long)MAX_RECV) < 0 ||
        PyModule_AddFunctions(module, native_socket_methods) < 0) {
        return -1;
    }
    return 0;
}

/* ---- locks held by C callers ----------------------------------------------------------- */

/* lock.acquire() or lock.release() (a bound method): 0, or -1 with an exception set. */
int
native_lock_call(PyObject *method)
{
    PyObject *r = PyObject_CallNoArgs(method);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* lock.release() (`release`, a bound method), keeping an exception raised while it was
   held (as a `with` block's exit does): 0, or -1 with an exception set (the pending one,
   or release's). */
int
native_release_keeping(PyObject *release)
{
    PyObject *pending = native_take_exception();
    int r = native_lock_call(release);
    if (pending == NULL) {
        return r;
    }
    if (r < 0) {
        Py_DECREF(pending);  /* release's own error stands */
    }
    else {
        native_raise_again(pending);
    }
    return -1;
}
