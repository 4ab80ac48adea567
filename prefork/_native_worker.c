/*
 * prefork._native, the worker half: the calls a pool thread makes for every request
 * around the connection's own, as one C object per worker (WorkerCalls).
 *
 *   serve(conn)
 *       Worker._serve with Worker._arm: the connection woken (on_ready), then parked:
 *       the epoll watches it edge-triggered (added on its first parking, widened to
 *       writing when a send would block; never re-armed), and its claim is released,
 *       unless its last read came back full or an event came for it meanwhile (woken):
 *       then it is served again. A connection to close, or one the epoll refuses, goes
 *       to the worker's _close. Objects not of the bound class go to the worker's _arm,
 *       whole (serve again while it says so).
 *   follow(worker, listeners), accept(worker, listener)
 *       Worker._follow, a pool thread's loop: wait on the epoll (the only place the GIL
 *       is released), then under the worker's lock leave the watch (calling a resting
 *       thread in when none is left watching), count the thread busy and claim the
 *       connection woken (one claimed by another thread is marked woken for its owner);
 *       serve it (serve above) or accept from the listener woken (Worker._accept's twin
 *       with _adopt: _native_adopt.c's native_adopt_from), then serve the connection it
 *       made; what either raises goes
 *       to worker._pool_error; then under the
 *       lock come back (worker._rest_then_watch when enough threads already watch).
 *       The worker's counters are its own attributes (read and written in its instance
 *       dict, its class having none of them), under its lock as the reference does; a
 *       connection not of the bound class is read by attribute.
 *       Returns when epoll_wait fails (the epoll closed at exit), as the reference.
 *       Around the epoll wait, the thread yields its CPU at times (wake_up, below): no
 *       change to what is served or by whom.
 *   begin(req, exchange), end(), progress()
 *       Worker._begin_request with RequestWatch.begin, RequestWatch.end and .progress:
 *       the pool thread's entry in the watchdog's table (keyed by thread ident:
 *       (began, last progress, request, exchange)), the worker's count of requests
 *       (its counter, and WorkerInfo.served), and the worker's `counted(served)` called
 *       at the first request and from max_requests on, where the reference calls it.
 *
 * The Python engine's worker makes these calls itself (prefork/worker.py,
 * prefork/watchdog.py, the reference); the native engine's worker makes them through
 * this object. tests/unit/test_native_worker.py runs both and compares the table, the
 * counts, the calls and the epoll's registrations.
 *
 * Memory safety: no buffer is touched; the connection's fields are read at their
 * __slots__ offsets only once its type is checked to be exactly the bound class, and each
 * field's type is checked before use; the objects the table holds are the caller's.
 *
 * Called by pool threads (GIL held); the worker's main thread only reads the table.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <sched.h>
#include <sys/epoll.h>

#include "_native.h"

/* connection.HANGUP: an event's news of the peer's end */
#define HANGUP (EPOLLRDHUP | EPOLLHUP | EPOLLERR)

/* connection.Watch's members, in the seam's order (V_WATCH_NOTHING on) */
enum { WATCH_NOTHING, WATCH_READ, WATCH_READ_WRITE, WATCH_COUNT };

static struct {
    uint32_t watch_mask[WATCH_COUNT];  /* their values: epoll masks */
} bound;

static PyObject *
bind_worker(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "bind_worker(_native.accept, _native.new_connection, Worker)");
        return NULL;
    }
    if (native_seam.v[V_WATCH_NOTHING] == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_worker: bind_seam was not called");
        return NULL;
    }
    uint32_t masks[WATCH_COUNT];
    for (int i = 0; i < WATCH_COUNT; i++) {
        long long mask = PyLong_AsLongLong(native_seam.v[V_WATCH_NOTHING + i]);
        if (mask == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (mask < 0 || mask > UINT32_MAX || (i == WATCH_NOTHING) != (mask == 0)) {
            PyErr_SetString(PyExc_ValueError, "bind_worker: a Watch is not an epoll mask");
            return NULL;
        }
        masks[i] = (uint32_t)mask;
    }
    /* Worker._accept, the function (what a worker's own _accept is when not replaced) */
    PyObject *reference = PyObject_GetAttr(args[2], native_seam.call[M_ACCEPT]);
    if (reference == NULL) {
        return NULL;
    }
    memcpy(bound.watch_mask, masks, sizeof masks);
    native_bind_accept(args[0], args[1], reference);
    Py_DECREF(reference);
    Py_RETURN_NONE;
}

enum { YIELD_EVERY = 32 };  /* see wake_up */

typedef struct {
    PyObject_HEAD
    int epfd;
    int busy;  /* worker.busy as follow last set it: read without the GIL (atomic) */
    PyObject *on_ready, *arm, *close;         /* the connection's wake-up; the worker's */
    PyObject *inflight, *served, *info, *counted;
    Py_ssize_t max_requests;
} WorkerCallsObject;

static PyObject *served_name;

static int
WorkerCalls_init(WorkerCallsObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"epfd", "on_ready", "arm", "close", "inflight", "served",
                             "info", "max_requests", "counted", NULL};
    int epfd;
    PyObject *on_ready, *arm, *close, *inflight, *served, *info, *counted;
    Py_ssize_t max_requests;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOOOO!OOnO:WorkerCalls", kwlist, &epfd,
                                     &on_ready, &arm, &close, &PyDict_Type, &inflight,
                                     &served, &info, &max_requests, &counted)) {
        return -1;
    }
    if (!PyIter_Check(served)) {
        PyErr_SetString(PyExc_TypeError, "served must be an iterator (itertools.count)");
        return -1;
    }
    if (served_name == NULL && (served_name = PyUnicode_InternFromString("served")) == NULL) {
        return -1;
    }
    self->epfd = epfd;
    self->max_requests = max_requests;
    PyObject **fields[7] = {&self->on_ready, &self->arm, &self->close, &self->inflight,
                            &self->served, &self->info, &self->counted};
    PyObject *values[7] = {on_ready, arm, close, inflight, served, info, counted};
    for (int i = 0; i < 7; i++) {
        Py_XSETREF(*fields[i], Py_NewRef(values[i]));
    }
    return 0;
}

static int
WorkerCalls_traverse(WorkerCallsObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->on_ready);
    Py_VISIT(self->arm);
    Py_VISIT(self->close);
    Py_VISIT(self->inflight);
    Py_VISIT(self->served);
    Py_VISIT(self->info);
    Py_VISIT(self->counted);
    return 0;
}

static int
WorkerCalls_clear(WorkerCallsObject *self)
{
    Py_CLEAR(self->on_ready);
    Py_CLEAR(self->arm);
    Py_CLEAR(self->close);
    Py_CLEAR(self->inflight);
    Py_CLEAR(self->served);
    Py_CLEAR(self->info);
    Py_CLEAR(self->counted);
    return 0;
}

static void
WorkerCalls_dealloc(WorkerCallsObject *self)
{
    PyObject_GC_UnTrack(self);
    WorkerCalls_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
ready(WorkerCallsObject *self)
{
    if (self->inflight == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "WorkerCalls.__init__ was not called");
        return -1;
    }
    return 0;
}

/* ---- serve: Worker._serve and _arm ---------------------------------------------------- */

/* What Worker._arm does for a connection of the bound class. */
typedef enum { ARM_PARKED, ARM_CLOSE, ARM_AGAIN } Armed;

/* The watch a connection's slot holds: its index from V_WATCH_NOTHING, or -1. */
static int
watch_index(PyObject *watch)
{
    for (int i = 0; i < WATCH_COUNT; i++) {
        if (watch == native_seam.v[V_WATCH_NOTHING + i]) {
            return i;
        }
    }
    return -1;
}

/* Worker._arm for a connection of the bound class (`then` not CLOSE): parked (the epoll
   watches it for what it waits for, registered or widened while it is ours, then the
   claim released), to close (the epoll refused it), or to serve again (its last read came
   back full, or an event came for it while it was ours); -1 with an exception set.
   The check of `woken` and the release are one step under the GIL, as leave_watch's
   check of `claimed` and its mark (the reference holds the worker's lock for both). */
static int
arm(WorkerCallsObject *self, PyObject *conn, PyObject *then)
{
    const Py_ssize_t *w = native_seam.conn;
    PyObject *fd_obj = NATIVE_SLOT(conn, w[C_FD]);
    int now = watch_index(NATIVE_SLOT(conn, w[C_WATCH]));
    PyObject *drained = NATIVE_SLOT(conn, w[C_DRAINED]);
    if (fd_obj == NULL || !PyLong_CheckExact(fd_obj) || now < 0 || drained == NULL) {
        PyErr_SetString(PyExc_TypeError, "the connection's fd, watch or drained is not set");
        return -1;
    }
    int want;
    if (then == native_seam.v[V_WRITE]) {
        want = WATCH_READ_WRITE;
    }
    else if (drained != Py_True) {
        return ARM_AGAIN;
    }
    else {
        want = now == WATCH_NOTHING ? WATCH_READ : now;
    }
    if (want != now) {
        int overflow;
        long fd = PyLong_AsLongAndOverflow(fd_obj, &overflow);
        if (overflow || fd < 0 || fd > INT_MAX) {
            return ARM_CLOSE;  /* epoll would refuse it: EBADF */
        }
        struct epoll_event ev = {.events = bound.watch_mask[want], .data.fd = (int)fd};
        if (epoll_ctl(self->epfd, now == WATCH_NOTHING ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, (int)fd,
                      &ev) < 0) {
            return ARM_CLOSE;
        }
        native_slot_set(conn, w[C_WATCH], Py_NewRef(native_seam.v[V_WATCH_NOTHING + want]));
    }
    if (NATIVE_SLOT(conn, w[C_WOKEN]) == Py_True) {
        native_slot_set(conn, w[C_WOKEN], Py_NewRef(Py_False));
        return ARM_AGAIN;
    }
    native_slot_set(conn, w[C_CLAIMED], Py_NewRef(Py_False));
    return ARM_PARKED;
}

static PyObject *
WorkerCalls_serve(WorkerCallsObject *self, PyObject *conn)
{
    if (ready(self) < 0) {
        return NULL;
    }
    for (;;) {
        PyObject *then = PyObject_CallOneArg(self->on_ready, conn);
        if (then == NULL) {
            return NULL;
        }
        int armed;
        if (!native_is(conn, SEAM_CONNECTION)) {
            PyObject *args[2] = {conn, then};
            PyObject *again = PyObject_Vectorcall(self->arm, args, 2, NULL);
            Py_DECREF(then);
            armed = again == NULL ? -1 : PyObject_IsTrue(again);
            Py_XDECREF(again);
            if (armed <= 0) {
                return armed < 0 ? NULL : Py_NewRef(Py_None);
            }
            continue;
        }
        armed = then == native_seam.v[V_CLOSE] ? ARM_CLOSE : arm(self, conn, then);
        Py_DECREF(then);
        if (armed < 0) {
            return NULL;
        }
        if (armed == ARM_CLOSE) {
            return PyObject_CallOneArg(self->close, conn);
        }
        if (armed == ARM_PARKED) {
            Py_RETURN_NONE;
        }
    }
}

/* ---- follow: Worker._follow ----------------------------------------------------------- */

enum { N_WATCHING, N_RESTING, N_BUSY, N_WATCHERS, N_CONNS, N_LOCK, N_REST, N_ACQUIRE,
       N_RELEASE, N_NOTIFY, N_CLAIMED, N_STATE, N_WOKEN, N_HANGUP, N_COUNT };
static const char *const follow_text[N_COUNT] = {
    "watching", "resting", "busy", "watchers", "conns", "lock", "rest", "acquire",
    "release", "notify", "claimed", "state", "woken", "hangup"};
static PyObject *follow_names[N_COUNT];

/* What one pool thread's loop holds: the worker, its instance dict (where its counters
   live: follow checks that its class defines none of them, so that reading and writing
   the dict is what getattr and setattr do), and its lock's bound methods. */
typedef struct {
    PyObject *worker, *counts, *acquire, *release;
    int *busy;  /* the worker's WorkerCalls' busy */
} Follow;

/* An int counter of the worker, or -1 with an exception set. */
static long
get_count(Follow *f, int name)
{
    PyObject *value = PyDict_GetItemWithError(f->counts, follow_names[name]);  /* borrowed */
    if (value == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetObject(PyExc_AttributeError, follow_names[name]);
        }
        return -1;
    }
    long n = PyLong_AsLong(value);
    if (n < 0 && !PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError, "worker.%U is negative", follow_names[name]);
    }
    return PyErr_Occurred() ? -1 : n;
}

/* worker.<name> = n: 0, or -1 with an exception set. */
static int
set_count(Follow *f, int name, long n)
{
    PyObject *value = PyLong_FromLong(n);
    if (value == NULL) {
        return -1;
    }
    int r = PyDict_SetItem(f->counts, follow_names[name], value);
    Py_DECREF(value);
    return r;
}

static int
lock_release(Follow *f)
{
    return native_release_keeping(f->release);
}

/* Under the lock, the thread leaves the watch: one fewer watching (a resting thread
   called in when none is left), one more busy. 0, or -1 with an exception set. */
static int
leave_counts(Follow *f)
{
    long watching = get_count(f, N_WATCHING);
    if (watching < 0 || set_count(f, N_WATCHING, watching - 1) < 0) {
        return -1;
    }
    if (watching == 1) {  /* none left waiting: call a resting thread in */
        long resting = get_count(f, N_RESTING);
        if (resting < 0) {
            return -1;
        }
        if (resting > 0) {
            PyObject *rest = PyObject_GetAttr(f->worker, follow_names[N_REST]);
            PyObject *r = rest == NULL ? NULL :
                PyObject_CallMethodNoArgs(rest, follow_names[N_NOTIFY]);
            Py_XDECREF(rest);
            if (r == NULL) {
                return -1;
            }
            Py_DECREF(r);
        }
    }
    long busy = get_count(f, N_BUSY);
    if (busy < 0 || set_count(f, N_BUSY, busy + 1) < 0) {
        return -1;
    }
    __atomic_store_n(f->busy, (int)busy + 1, __ATOMIC_RELAXED);
    return 0;
}

/* conn.<flag> = True: at its offset (W_*) for the bound class (`exact`), else by its name
   (N_*). 0, or -1 with an exception set. */
static int
set_true(PyObject *conn, int exact, int slot, int name)
{
    if (exact) {
        native_slot_set(conn, native_seam.conn[slot], Py_NewRef(Py_True));
        return 0;
    }
    return PyObject_SetAttr(conn, follow_names[name], Py_True);
}

/* Under the lock, the claim of a connection an event came for: 0 claimed by this thread;
   1 claimed by another, which is told (woken); 2 closed, nothing to serve; -1 with an
   exception set. The peer's end (HANGUP) is told to whoever reads next. */
static int
claim(PyObject *conn, uint32_t events)
{
    PyObject *claimed, *state;
    int exact = native_is(conn, SEAM_CONNECTION);
    if (exact) {
        claimed = Py_XNewRef(NATIVE_SLOT(conn, native_seam.conn[C_CLAIMED]));
        state = Py_XNewRef(NATIVE_SLOT(conn, native_seam.conn[C_STATE]));
        if (claimed == NULL || state == NULL) {
            PyErr_SetString(PyExc_AttributeError, "the connection's claimed or state is unset");
        }
    }
    else {
        claimed = PyObject_GetAttr(conn, follow_names[N_CLAIMED]);
        state = claimed == NULL ? NULL : PyObject_GetAttr(conn, follow_names[N_STATE]);
    }
    int taken = claimed == NULL || state == NULL ? -1 : PyObject_IsTrue(claimed);
    if (taken >= 0 && state == native_seam.v[V_CLOSED]) {
        taken = 2;
    }
    Py_XDECREF(claimed);
    Py_XDECREF(state);
    if (taken >= 0 && taken < 2 && (events & HANGUP) &&
        set_true(conn, exact, C_HANGUP, N_HANGUP) < 0) {
        return -1;
    }
    if (taken == 1) {  /* its owner serves it again before letting go (see arm) */
        return set_true(conn, exact, C_WOKEN, N_WOKEN) < 0 ? -1 : 1;
    }
    if (taken == 0) {  /* ours now */
        return set_true(conn, exact, C_CLAIMED, N_CLAIMED) < 0 ? -1 : 0;
    }
    return taken;
}

/* Under the lock, a thread woken for `fd`: the watch left, the thread busy, and the
   connection the fd belongs to claimed (a new reference; NULL if there is none to serve:
   claimed by another thread, which is told (woken), closed, or no connection). *failed
   on an error. */
static PyObject *
leave_watch(Follow *f, PyObject *conns, PyObject *fd_obj, uint32_t events, int *failed)
{
    if (leave_counts(f) < 0) {
        *failed = 1;
        return NULL;
    }
    PyObject *conn = PyDict_GetItemWithError(conns, fd_obj);  /* borrowed */
    if (conn == NULL) {
        *failed = PyErr_Occurred() != NULL;
        return NULL;
    }
    Py_INCREF(conn);
    int taken = claim(conn, events);
    if (taken == 0) {
        return conn;
    }
    Py_DECREF(conn);
    *failed = taken < 0;
    return NULL;
}

/* Under the lock, a thread done serving: no longer busy, and back to watching the epoll
   (or resting first, in worker._rest_then_watch, when enough threads watch).
   0, or -1 with an exception set. */
static int
come_back(Follow *f)
{
    long busy = get_count(f, N_BUSY);
    if (busy < 0 || set_count(f, N_BUSY, busy - 1) < 0) {
        return -1;
    }
    __atomic_store_n(f->busy, (int)busy - 1, __ATOMIC_RELAXED);
    long watching = get_count(f, N_WATCHING);
    long watchers = watching < 0 ? -1 : get_count(f, N_WATCHERS);
    if (watchers < 0) {
        return -1;
    }
    if (watching < watchers) {  /* _rest_then_watch's common case, without the call */
        return set_count(f, N_WATCHING, watching + 1);
    }
    PyObject *r = PyObject_CallMethodNoArgs(f->worker, native_seam.call[M_REST_THEN_WATCH]);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* What serving or accepting raised: worker._pool_error(conn or None, exc). */
static int
pool_error(PyObject *worker, PyObject *conn)
{
    PyObject *exc = native_take_exception();
    if (exc == NULL) {
        return 0;
    }
    PyObject *args[3] = {worker, conn != NULL ? conn : Py_None, exc};
    PyObject *r = PyObject_VectorcallMethod(native_seam.call[M_POOL_ERROR], args,
                                            3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(exc);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* ---- the wait on the epoll -----------------------------------------------------------
   With the GIL: what this thread serves next, in *fd (-1 for a wake-up with no event) and
   what the epoll reported for it in *events,
   from the epoll waited on without the GIL.
   A thread of the worker busy with a request may be one the switch interval took the GIL
   from in the middle of it (a thread waiting for the GIL 5 ms asks for it); that request
   waits until the GIL comes back. So a thread woken by the epoll while another is busy
   does not race it for the GIL: it yields its CPU first, so that a thread the GIL was
   signalled to runs. And a thread finding ready connection after ready connection does
   not sleep: the kernel runs it a whole time slice while the clients and the other
   workers wait. So every YIELD_EVERY-th wake-up it finds alone (its *streak), it yields
   its CPU (hello keep-alive p99 1.45 against 3.3 ms never yielding; every 8th: 1.8 ms but
   18% fewer requests; measured with the table below, not since).
   (Until d673b09 a thread woken while another held the GIL left its wake-up in a table
   for the holder to serve, saving the GIL's hand-over: 124k against 111k req/s on hello
   keep-alive. It lost a wake-up now and then: in 5 of 150 runs of the corpus tests over
   sockets, a connection's end was never served. It was taken out; see bench/RESULTS.md.)
   1 when *fd is set; -1 when the epoll fails (closed), or a signal handler raised
   (exception set). */
static int
wake_up(WorkerCallsObject *self, int *fd, uint32_t *events, unsigned *streak)
{
    struct epoll_event ev;
    int n, err;
    if (__atomic_load_n(&self->busy, __ATOMIC_RELAXED) == 0 && ++*streak % YIELD_EVERY == 0) {
        sched_yield();
    }
    do {
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(self->epfd, &ev, 1, -1);
        err = errno;
        if (n > 0 && __atomic_load_n(&self->busy, __ATOMIC_RELAXED) > 0) {
            sched_yield();  /* see above */
        }
        Py_END_ALLOW_THREADS
    } while (n < 0 && err == EINTR && PyErr_CheckSignals() == 0);
    if (n < 0) {
        return -1;
    }
    *fd = n > 0 ? ev.data.fd : -1;
    *events = n > 0 ? ev.events : 0;
    return 1;
}

static PyObject *WorkerCalls_serve(WorkerCallsObject *self, PyObject *conn);
static PyObject *accept_from(WorkerCallsObject *self, PyObject *worker, PyObject *listener);

/* The worker's objects follow works with, into f, *conns and *lock (new references, the
   caller's to let go whatever happens): its conns, its lock's acquire and release, its
   counters' dict (checked: not defined by its class). 0, or -1 with an exception set. */
static int
follow_objects(PyObject *worker, Follow *f, PyObject **conns, PyObject **lock)
{
    if ((*conns = PyObject_GetAttr(worker, follow_names[N_CONNS])) == NULL ||
        (*lock = PyObject_GetAttr(worker, follow_names[N_LOCK])) == NULL ||
        (f->acquire = PyObject_GetAttr(*lock, follow_names[N_ACQUIRE])) == NULL ||
        (f->release = PyObject_GetAttr(*lock, follow_names[N_RELEASE])) == NULL ||
        (f->counts = PyObject_GenericGetDict(worker, NULL)) == NULL) {
        return -1;
    }
    if (!PyDict_Check(*conns) || !PyDict_Check(f->counts)) {
        PyErr_SetString(PyExc_TypeError, "worker.conns or worker.__dict__ is not a dict");
        return -1;
    }
    for (int name = N_WATCHING; name <= N_WATCHERS; name++) {
        /* a class attribute could be a descriptor, which the dict would bypass */
        PyObject *defined = PyObject_GetAttr((PyObject *)Py_TYPE(worker), follow_names[name]);
        if (defined != NULL) {
            Py_DECREF(defined);
            PyErr_Format(PyExc_TypeError, "follow: %s.%U is defined by the class",
                         Py_TYPE(worker)->tp_name, follow_names[name]);
            return -1;
        }
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear();
    }
    return 0;
}

/* One wake-up for `fd`: under the lock the watch left and its connection claimed; the
   connection served, or the listener accepted from (what either raises goes to
   worker._pool_error); then under the lock back to watching. 0, or -1 with an exception
   set. */
static int
follow_event(WorkerCallsObject *self, Follow *f, PyObject *conns, PyObject *listeners,
             int fd, uint32_t events)
{
    PyObject *fd_obj = PyLong_FromLong(fd);
    if (fd_obj == NULL || native_lock_call(f->acquire) < 0) {
        Py_XDECREF(fd_obj);
        return -1;
    }
    int failed = 0;
    PyObject *conn = leave_watch(f, conns, fd_obj, events, &failed);
    if (lock_release(f) < 0 || failed) {
        Py_XDECREF(conn);
        Py_DECREF(fd_obj);
        return -1;
    }
    PyObject *done_with = NULL;
    if (conn != NULL) {
        done_with = WorkerCalls_serve(self, conn);
    }
    else {
        PyObject *listener = PyDict_GetItemWithError(listeners, fd_obj);  /* borrowed */
        if (listener != NULL) {
            done_with = accept_from(self, f->worker, listener);
        }
        else if (!PyErr_Occurred()) {
            done_with = Py_NewRef(Py_None);
        }
    }
    Py_DECREF(fd_obj);
    int reported = done_with != NULL ? 0 : pool_error(f->worker, conn);
    Py_XDECREF(done_with);
    Py_XDECREF(conn);  /* do not keep the last connection alive while waiting */
    if (reported < 0 || native_lock_call(f->acquire) < 0) {
        return -1;
    }
    int back = come_back(f);
    return lock_release(f) < 0 || back < 0 ? -1 : 0;
}

static PyObject *
WorkerCalls_follow(WorkerCallsObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "follow(worker, listeners: dict)");
        return NULL;
    }
    if (ready(self) < 0 || native_intern_all(follow_names, follow_text, N_COUNT) < 0) {
        return NULL;
    }
    PyObject *worker = args[0], *listeners = args[1];
    Follow f = {worker, NULL, NULL, NULL, &self->busy};
    PyObject *conns = NULL, *lock = NULL, *result = NULL;
    if (follow_objects(worker, &f, &conns, &lock) < 0) {
        goto done;
    }
    /* with lock: worker._rest_then_watch() */
    if (native_lock_call(f.acquire) < 0) {
        goto done;
    }
    PyObject *r = PyObject_CallMethodNoArgs(worker, native_seam.call[M_REST_THEN_WATCH]);
    Py_XDECREF(r);
    if (lock_release(&f) < 0 || r == NULL) {
        goto done;
    }
    unsigned streak = 0;  /* this thread's wake-ups while alone (wake_up's yield) */
    for (;;) {
        int fd;
        uint32_t events;
        if (wake_up(self, &fd, &events, &streak) < 0) {
            /* the epoll is closed (the process ends): as the reference */
            if (!PyErr_Occurred()) {
                result = Py_NewRef(Py_None);
            }
            goto done;
        }
        if (follow_event(self, &f, conns, listeners, fd, events) < 0) {
            goto done;
        }
    }
done:
    Py_XDECREF(conns);
    Py_XDECREF(lock);
    Py_XDECREF(f.acquire);
    Py_XDECREF(f.release);
    Py_XDECREF(f.counts);
    return result;
}

/* ---- accept: Worker._accept ----------------------------------------------------------- */

/* Worker._accept for a listener woken (native_adopt_from, _native_adopt.c), and the
   connection it made served at once: its first request often arrives with it. */
static PyObject *
accept_from(WorkerCallsObject *self, PyObject *worker, PyObject *listener)
{
    PyObject *conn = native_adopt_from(worker, listener);
    if (conn == NULL || conn == Py_None) {
        return conn;
    }
    PyObject *r = WorkerCalls_serve(self, conn);
    Py_DECREF(conn);
    return r;
}

static PyObject *
WorkerCalls_accept(WorkerCallsObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "accept(worker, listener)");
        return NULL;
    }
    if (ready(self) < 0 || native_intern_all(follow_names, follow_text, N_COUNT) < 0) {
        return NULL;
    }
    return accept_from(self, args[0], args[1]);
}

/* ---- the request's bookkeeping: Worker._begin_request, RequestWatch's ------------------ */

/* (began, active, req, exchange), a new reference or NULL. */
static PyObject *
running(PyObject *began, double active, PyObject *req, PyObject *exchange)
{
    PyObject *now = PyFloat_FromDouble(active);
    if (now == NULL) {
        return NULL;
    }
    PyObject *run = PyTuple_Pack(4, began != NULL ? began : now, now, req, exchange);
    Py_DECREF(now);
    return run;
}

static PyObject *
WorkerCalls_begin(WorkerCallsObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "begin(req, exchange)");
        return NULL;
    }
    if (ready(self) < 0) {
        return NULL;
    }
    /* RequestWatch.begin: inflight[get_ident()] = (now, now, req, exchange) */
    PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (ident == NULL) {
        return NULL;
    }
    PyObject *run = running(NULL, native_monotonic(), args[0], args[1]);
    int failed = run == NULL || PyDict_SetItem(self->inflight, ident, run) < 0;
    Py_DECREF(ident);
    Py_XDECREF(run);
    if (failed) {
        return NULL;
    }
    /* served = next(counter); info.served = served */
    PyObject *served = PyIter_Next(self->served);
    if (served == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetNone(PyExc_StopIteration);
        }
        return NULL;
    }
    if (PyObject_SetAttr(self->info, served_name, served) < 0) {
        Py_DECREF(served);
        return NULL;
    }
    int overflow;
    long long count = PyLong_AsLongLongAndOverflow(served, &overflow);
    if (count == -1 && PyErr_Occurred()) {
        Py_DECREF(served);
        return NULL;
    }
    PyObject *r = Py_NewRef(Py_None);
    /* served == 1 or (max_requests and served >= max_requests) */
    if ((count == 1 && !overflow) ||
        (self->max_requests > 0 && (overflow > 0 || count >= (long long)self->max_requests))) {
        Py_DECREF(r);
        r = PyObject_CallOneArg(self->counted, served);
    }
    Py_DECREF(served);
    return r;
}

static PyObject *
WorkerCalls_end(WorkerCallsObject *self, PyObject *Py_UNUSED(ignored))
{
    if (ready(self) < 0) {
        return NULL;
    }
    /* inflight.pop(get_ident(), None) */
    PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (ident == NULL) {
        return NULL;
    }
    int r = PyDict_DelItem(self->inflight, ident);
    Py_DECREF(ident);
    if (r < 0) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
            return NULL;
        }
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

static PyObject *
WorkerCalls_progress(WorkerCallsObject *self, PyObject *Py_UNUSED(ignored))
{
    if (ready(self) < 0) {
        return NULL;
    }
    PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (ident == NULL) {
        return NULL;
    }
    PyObject *run = PyDict_GetItemWithError(self->inflight, ident);  /* borrowed */
    int failed = 0;
    if (run != NULL) {
        if (!PyTuple_CheckExact(run) || PyTuple_GET_SIZE(run) != 4) {
            PyErr_SetString(PyExc_TypeError, "a watchdog entry is not a 4-tuple");
            failed = 1;
        }
        else {
            Py_INCREF(run);
            PyObject *moved = running(PyTuple_GET_ITEM(run, 0), native_monotonic(),
                                      PyTuple_GET_ITEM(run, 2), PyTuple_GET_ITEM(run, 3));
            failed = moved == NULL || PyDict_SetItem(self->inflight, ident, moved) < 0;
            Py_XDECREF(moved);
            Py_DECREF(run);
        }
    }
    else {
        failed = PyErr_Occurred() != NULL;
    }
    Py_DECREF(ident);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef WorkerCalls_methods[] = {
    {"follow", (PyCFunction)(void (*)(void))WorkerCalls_follow, METH_FASTCALL,
     "follow(worker, listeners): Worker._follow, a pool thread's loop (returns when the "
     "epoll is closed)."},
    {"serve", (PyCFunction)WorkerCalls_serve, METH_O,
     "serve(conn): Worker._serve and _arm (see _native_worker.c)."},
    {"accept", (PyCFunction)(void (*)(void))WorkerCalls_accept, METH_FASTCALL,
     "accept(worker, listener): what follow does for a listener woken (Worker._accept's "
     "twin, see _native_worker.c)."},
    {"begin", (PyCFunction)(void (*)(void))WorkerCalls_begin, METH_FASTCALL,
     "begin(req, exchange): Worker._begin_request (RequestWatch.begin and the count)."},
    {"end", (PyCFunction)WorkerCalls_end, METH_NOARGS, "end(): RequestWatch.end."},
    {"progress", (PyCFunction)WorkerCalls_progress, METH_NOARGS,
     "progress(): RequestWatch.progress."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject WorkerCallsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "prefork._native.WorkerCalls",
    .tp_doc = "WorkerCalls(epfd, on_ready, arm, close, inflight, served, info, max_requests, "
              "counted): a worker's per-request calls in C (see _native_worker.c).",
    .tp_basicsize = sizeof(WorkerCallsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)WorkerCalls_init,
    .tp_dealloc = (destructor)WorkerCalls_dealloc,
    .tp_traverse = (traverseproc)WorkerCalls_traverse,
    .tp_clear = (inquiry)WorkerCalls_clear,
    .tp_methods = WorkerCalls_methods,
};

PyMethodDef native_worker_methods[] = {
    {"bind_worker", (PyCFunction)(void (*)(void))bind_worker, METH_FASTCALL,
     "bind_worker(accept, new_connection, Worker): the native accept and "
     "new_connection, and the Worker class whose _accept the accept twin stands for."},
    {NULL, NULL, 0, NULL},
};
