"""A worker's per-request calls in C (prefork/_native_worker.c: WorkerCalls) against the
reference (Worker._serve and _arm, Worker._begin_request, RequestWatch.end/.progress).

Two workers, one per engine, built as a worker process builds itself, each with one
connection over a real socketpair, are given the same request bytes and woken the same
way (`worker.serve`): the same bytes back, the same claims and registrations, the same
watch in the worker's real epoll (what it reports once the client sends or reads), the
same closing, the same watchdog entries seen by the app, the same counts, messages to
the master and recycling at max_requests.
"""

from __future__ import annotations

import contextlib
import gc
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from prefork import messages
from prefork.config import Config
from prefork.connection import Connection, Next, Watch
from prefork.worker import Worker
from prefork.wsgi import base_environ

native = pytest.importorskip("prefork.native")

pytestmark = pytest.mark.timeout(60)

# More than a socketpair takes at once (the rest waits for EPOLLOUT), less than the
# output queue's bound (past it the app's thread would wait for the client instead).
BIG = 600 << 10


RELEASE = threading.Event()


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Says what the watchdog's table holds for this thread while it runs."""
    worker: Worker = environ["test.worker"]
    if environ["PATH_INFO"] == "/wait":  # a request that holds its thread a while
        assert RELEASE.wait(10)
    ident = threading.get_ident()
    began, active, req, exchange = worker.requests.inflight[ident]
    seen = (len(worker.requests.inflight), began == active, req.target, exchange.keep_alive,
            worker.info.served)
    worker.progress()  # a sign of progress: the entry's second time moves, not the first
    began2, active2, req2, exchange2 = worker.requests.inflight[ident]
    moved = (began2 == began, active2 >= active, req2 is req, exchange2 is exchange)
    body = b"y" * BIG if environ["PATH_INFO"] == "/big" else repr((seen, moved)).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


class World:
    """One engine's worker, its connection and the two far ends (client, master)."""

    def __init__(self, engine: str, max_requests: int = 0,
                 conn_type: type[Connection] = Connection) -> None:
        self.master, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.master.setblocking(False)
        config = Config(http_engine=engine, max_requests=max_requests,
                        max_requests_jitter=0)
        self.worker = Worker(1, config, [], child, app)
        self.worker.ctx = self.worker.context()
        self.client, server = socket.socketpair()
        self.client.settimeout(5)
        base = base_environ("127.0.0.1", "8080", "", True)
        base["test.worker"] = self.worker
        self.conn = conn_type(server, ("127.0.0.1", "40000"), base, self.worker.ctx)
        self.conn.claimed = True
        self.worker.conns[self.conn.fd] = self.conn

    def wake(self) -> tuple[str, Any]:
        """What a pool thread does when the epoll reports the connection."""
        with self.worker.lock:
            self.conn.claimed = True
        try:
            return "done", self.worker.serve(self.conn)
        except Exception as exc:  # compared, not handled
            return "raised", type(exc).__name__

    def armed(self) -> list[tuple[int, int]]:
        """What the worker's epoll reports now (each armed connection reports once)."""
        return [(fd == self.conn.fd, mask) for fd, mask in self.worker.ep.poll(0)]

    def received(self) -> bytes:
        self.client.setblocking(False)
        data = b""
        try:
            while chunk := self.client.recv(1 << 20):
                data += chunk
        except BlockingIOError:
            pass
        finally:
            self.client.setblocking(True)
        return re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", data)

    def told_master(self) -> list[Any]:
        said = []
        while (msg := messages.receive(self.master)) is not None:
            said.append(type(msg).__name__)
        return said

    def state(self) -> tuple[Any, ...]:
        w = self.worker
        return (self.conn.claimed, self.conn.watch, self.conn.fd in w.conns,
                self.conn.sock.fileno() == -1, w.info.served, w.recycle,
                dict(w.requests.inflight), self.told_master())

    def close(self) -> None:
        self.conn.close()
        self.client.close()
        self.master.close()
        self.worker.ep.close()


def steps(world: World, script: list[bytes | str]) -> list[Any]:
    """Each step: bytes the client sends (then the worker is woken), "read" (the client
    reads what was sent), "poll" (what the epoll reports), "forget" (the connection
    says it is not in the epoll while it is: the epoll refuses the next registration)."""
    seen: list[Any] = []
    for step in script:
        if step == "read":
            seen.append(("read", len(world.received())))
        elif step == "poll":
            seen.append(("poll", world.armed()))
        elif step == "forget":
            world.conn.watch = Watch.NOTHING
        elif step == "wake":
            seen.append((world.wake(), world.state()))
        else:
            assert isinstance(step, bytes)
            world.client.sendall(step)
            seen.append((world.wake(), world.received(), world.state()))
    return seen


def both(script: list[bytes | str], **kwargs: Any) -> list[Any]:
    results = []
    for engine in ("python", "native"):
        world = World(engine, **kwargs)
        try:
            results.append(steps(world, script))
        finally:
            world.close()
    assert results[0] == results[1]
    return results[0]


GET = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
CLOSE = b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


def test_native_worker_calls_are_wired() -> None:
    world = World("native")
    try:
        assert isinstance(world.worker.serve.__self__, native._native.WorkerCalls)
        assert world.worker.ctx.begin_request == world.worker.begin_request
        assert world.worker.ctx.progress == world.worker.progress
    finally:
        world.close()


def test_keep_alive_requests_are_served_and_rearmed() -> None:
    seen = both(["poll", GET, "poll", GET, "poll", GET[:7], "poll", GET[7:], "poll"])
    # parked after each request: watched for reading, reported only once bytes come
    served = [s for s in seen if s[0] != "poll"]
    assert all(s[2][:4] == (False, Watch.READ, True, False) for s in served)
    assert [s[2][4] for s in served] == [1, 2, 2, 3]
    assert seen[0] == ("poll", []) and seen[2] == ("poll", [])
    assert b"(1, True, b'/a', True, 1)" in seen[1][1]
    assert b"(True, True, True, True)" in seen[1][1]
    assert all(not s[2][6] for s in served)  # the table is empty between requests


def test_a_connection_to_close_is_closed() -> None:
    seen = both([GET, CLOSE, "poll"])
    assert seen[1][2][2:4] == (False, True)  # out of the table, its socket closed
    assert seen[2] == ("poll", [])


def test_a_response_the_client_does_not_take_is_armed_for_writing() -> None:
    big = b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n"
    seen = both([big, "poll", "poll", "wake"] + ["read", "poll", "wake"] * 3 + [GET])
    # armed for EPOLLOUT (the client read some when it sent): reported once
    assert seen[1] == ("poll", [(True, select.EPOLLOUT)]) and seen[2] == ("poll", [])
    assert sum(s[1] for s in seen if s[0] == "read") + len(seen[0][1]) > BIG
    assert seen[-1][2][4] == 2 and b"200 OK" in seen[-1][1]


def test_an_arming_the_epoll_refuses_closes_the_connection() -> None:
    seen = both([GET, "forget", GET])
    assert seen[1][2][2:4] == (False, True) and b"200 OK" in seen[1][1]


def test_a_subclass_is_armed_by_the_reference() -> None:
    class Other(Connection):
        __slots__ = ()

    seen = both([GET, "poll", GET, "poll"], conn_type=Other)
    assert seen[1] == ("poll", []) and seen[2][2][4] == 2


def test_the_master_hears_of_the_first_request_and_max_requests_recycles() -> None:
    seen = both([GET, GET, GET, GET], max_requests=3)
    told = [s[2][7] for s in seen]
    assert told == [["Serving"], [], [], []]
    assert [s[2][5] for s in seen] == [False, False, True, True]


def test_progress_and_end_without_a_request_do_nothing() -> None:
    for engine in ("python", "native"):
        world = World(engine)
        try:
            world.worker.progress()
            world.worker.end_request()
            assert world.worker.requests.inflight == {}
        finally:
            world.close()


def test_references_are_released() -> None:
    world = World("native")
    try:
        w = world.worker
        objects = [world.conn, w, w.info, w.requests.inflight, Connection]
        steps(world, [GET] * 5)
        gc.collect()  # classes other tests made (subclasses hold their base)
        before = [sys.getrefcount(o) for o in objects]
        steps(world, [GET] * 200)
        gc.collect()
        assert [sys.getrefcount(o) for o in objects] == before
    finally:
        world.close()


# -- follow: a pool thread's loop (Worker._follow and WorkerCalls.follow) --------------------


class Stop(Exception):
    """Raised by the test's _rest_then_watch to end a pool thread's loop."""


def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def reply(client: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b")"):
        chunk = client.recv(65536)
        assert chunk, data
        data += chunk
    return re.sub(rb"Date: [^\r]*\r\n", b"", data)


def pool_thread(w: Worker, listen: socket.socket, ended: list[str]) -> threading.Thread:
    """A pool thread running the worker's loop, with one listener; "stopped" when Stop
    ends it."""

    def thread() -> None:
        try:
            w.follow({listen.fileno(): "the listener"})
        except Stop:
            ended.append("stopped")

    return threading.Thread(target=thread, daemon=True)


def counters(w: Worker) -> tuple[int, int, int]:
    return w.watching, w.busy, w.resting


def follow_story(engine: str) -> list[Any]:
    """One pool thread over a real epoll: a request served; a connection another thread
    holds left alone, then served once given back; a listener's wake-up (its _accept),
    one whose _accept raises, a connection whose arming raises (_pool_error, the
    connection closed); the counters after each; the loop ended."""

    class Other(Connection):  # armed by worker._arm in both engines
        __slots__ = ()

    world, other = World(engine), World(engine, conn_type=Other)
    w = world.worker
    base = dict(world.conn.base)  # the app's worker is this one
    second = Other(other.conn.sock.dup(), ("127.0.0.1", "40001"), base, w.ctx)
    other.conn.close()
    second.claimed = True
    w.conns[second.fd] = second
    listen = socket.create_server(("127.0.0.1", 0))
    listen.setblocking(False)
    w.ep.register(listen.fileno(), select.EPOLLIN)
    seen: list[Any] = []
    accepted: list[socket.socket] = []
    errors: list[tuple[Any, str]] = []
    real_error = w._pool_error

    def accept(listener: str) -> None:
        sock, _ = listen.accept()
        accepted.append(sock)
        if len(accepted) == 2:
            raise ValueError("second accept fails")
        seen.append(("accept", listener))

    def pool_error(conn: Connection | None, exc: BaseException) -> None:
        errors.append((conn is second, type(exc).__name__))
        real_error(conn, exc)

    w._accept = accept  # type: ignore[method-assign]
    w._pool_error = pool_error  # type: ignore[method-assign]
    ended: list[str] = []

    for conn in (world.conn, second):
        w._arm(conn, Next.READ)
    pool = pool_thread(w, listen, ended)
    try:
        pool.start()
        until(lambda: w.watching == 1, "the thread to watch")
        world.client.sendall(GET)
        seen.append(reply(world.client))
        until(lambda: not world.conn.claimed and w.busy == 0, "the claim released")
        seen.append(counters(w))
        # held by another thread (the sweep): left alone, though its bytes came
        with w.lock:
            world.conn.claimed = True
        world.client.sendall(GET)
        second.sock.setblocking(False)
        other.client.sendall(GET)  # after it: served once the first wake-up is dropped
        seen.append(reply(other.client))
        world.client.setblocking(False)
        with pytest.raises(BlockingIOError):
            world.client.recv(10)
        world.client.setblocking(True)
        until(lambda: w.busy == 0, "the thread back")
        seen.append((world.conn.claimed, world.conn.woken, counters(w)))
        # given back by the sweep: woken meanwhile, so handed to a pool thread (_kick)
        seen.append(w._arm(world.conn, Next.READ))
        w._kick(world.conn)
        seen.append(reply(world.client))
        for n in (1, 2):  # a listener woke us: its _accept (raising the second time)
            socket.create_connection(listen.getsockname()).close()
            until(lambda n=n: len(accepted) == n and w.busy == 0, "the accept")
        seen.append(errors[:])

        class Refusing:
            def register(self, fd: int, mask: int) -> None:
                raise RuntimeError("registration refused")

        w.epoll = Refusing()  # type: ignore[assignment]
        second.watch = Watch.NOTHING  # (it is in the epoll) registered again when parked
        other.client.sendall(GET)  # served, then its registration raises: closed
        seen.append(reply(other.client))
        until(lambda: len(errors) == 2 and w.busy == 0, "the error reported")
        seen.append((errors[1], second.fd in w.conns, second.sock.fileno(), counters(w)))

        def stop() -> None:
            raise Stop

        w.watchers = 0  # coming back calls _rest_then_watch: it ends the loop
        w._rest_then_watch = stop  # type: ignore[method-assign]
        socket.create_connection(listen.getsockname()).close()
        pool.join(10)
        seen.append((pool.is_alive(), ended, counters(w)))
    finally:
        for sock in accepted:
            sock.close()
        listen.close()
        second.close()
        other.client.close()
        other.master.close()
        other.worker.ep.close()
        world.close()
    return seen


def test_a_pool_threads_loop_does_in_c_what_the_reference_does() -> None:
    story = follow_story("python")
    assert story == follow_story("native")
    assert b"HTTP/1.1 200 OK" in story[0] and story[1] == (1, 0, 0)
    # the held connection's bytes came first (it is marked woken), the other's were
    # served (request 2) ...
    assert b"True, 2)" in story[2] and story[3] == (True, True, (1, 0, 0))
    assert story[4] is True  # ... the sweep may not let it go, so it kicks it ...
    assert b"True, 3)" in story[5]  # ... and a pool thread serves it
    assert story[6] == ("accept", "the listener")
    assert story[7] == [(False, "ValueError")]  # the accept's error, no connection
    assert b"True, 4)" in story[8]  # served, then its registration raised: closed
    assert story[9] == ((True, "RuntimeError"), False, -1, (1, 0, 0))
    assert story[10] == ("accept", "the listener")
    assert story[11] == (False, ["stopped"], (0, 0, 0))


def test_the_native_worker_runs_its_pool_threads_in_c() -> None:
    world = World("native")
    try:
        assert world.worker.follow.func == world.worker.serve.__self__.follow  # type: ignore[attr-defined]
    finally:
        world.close()


def rest_story(engine: str) -> list[Any]:
    """Two pool threads, one watcher: the other rests; it is called in when the watcher
    leaves to serve, and the one done serving rests in its place."""
    world = World(engine)
    w = world.worker
    w.watchers = 1
    listen = socket.create_server(("127.0.0.1", 0))
    listen.setblocking(False)
    w.ep.register(listen.fileno(), select.EPOLLIN)
    ended: list[str] = []

    def accept(listener: str) -> None:
        with contextlib.suppress(BlockingIOError):
            listen.accept()[0].close()

    w._accept = accept  # type: ignore[method-assign]
    w._arm(world.conn, Next.READ)
    RELEASE.clear()
    seen: list[Any] = []
    pool = [pool_thread(w, listen, ended) for _ in range(2)]
    try:
        for t in pool:
            t.start()
        until(lambda: counters(w) == (1, 0, 1), "one watching, one resting")
        world.client.sendall(b"GET /wait HTTP/1.1\r\nHost: h\r\n\r\n")
        until(lambda: counters(w) == (1, 1, 0), "the resting thread called in")
        seen.append(counters(w))
        RELEASE.set()
        seen.append(reply(world.client)[:15])
        until(lambda: counters(w) == (1, 0, 1), "the thread done serving resting")
        seen.append(counters(w))
        # The end: both threads watching, each ends on coming back from one wake-up.
        w._rest_then_watch = lambda: (_ for _ in ()).throw(Stop)  # type: ignore[method-assign]
        with w.rest:
            w.watchers = 2
            w.rest.notify()
        until(lambda: counters(w) == (2, 0, 0), "both watching")
        w.watchers = 0
        for _ in range(10):
            if not any(t.is_alive() for t in pool):
                break
            socket.create_connection(listen.getsockname()).close()
            for t in pool:
                t.join(0.5)
        seen.append((ended, counters(w)))
    finally:
        RELEASE.set()
        listen.close()
        world.close()
    return seen


def test_resting_threads_are_called_in_as_the_reference_calls_them() -> None:
    story = rest_story("python")
    assert story == rest_story("native")
    assert story == [(1, 1, 0), b"HTTP/1.1 200 OK", (1, 0, 1), (["stopped"] * 2, (0, 0, 0))]


def test_follow_refuses_a_worker_whose_class_defines_a_counter() -> None:
    """The loop reads the counters in the worker's instance dict: a class attribute of
    the same name (a descriptor could be one) would make that differ from getattr."""
    world = World("native")
    try:
        class Odd(Worker):
            watchers = 2

        world.worker.__class__ = Odd
        with pytest.raises(TypeError, match=r"Odd\.watchers is defined by the class"):
            world.worker.follow({})
    finally:
        world.close()


@contextlib.contextmanager
def listening_world(engine: str) -> Iterator[tuple[World, Any, Callable[[Any], Any]]]:
    """A world whose worker has one loopback listener, as run() sets it up, and the call a
    pool thread's loop makes when that listener wakes (the native engine: its C twin of
    Worker._accept; the Python engine: the method, looked up each time as _follow does);
    every connection the worker took is closed after."""
    from functools import partial

    from prefork.sockets import Listener

    world = World(engine)
    w = world.worker
    listen = socket.create_server(("127.0.0.1", 0))
    listen.setblocking(False)
    listener = Listener(listen, "127.0.0.1:0")
    w.listeners = [listener]
    w.bases = {id(listener): w.ctx.engine.environ_base(
        base_environ("127.0.0.1", "80", "", False))}
    w.bases[id(listener)]["test.worker"] = w  # (the world's app reads it)
    accept = (partial(w.serve.__self__.accept, w)  # type: ignore[attr-defined]
              if w.engine.worker_calls is not None
              else lambda listener: w._accept(listener))
    try:
        yield world, listener, accept
    finally:
        for conn in list(w.conns.values()):
            if conn is not world.conn:
                w._close(conn)
        listen.close()
        world.close()


def accept_story(engine: str) -> list[Any]:
    """A listener woken, as a pool thread's loop handles it (the native engine: its C
    twin of Worker._accept; the Python engine: the method): a connection served and
    closed, one kept alive (armed), nothing waiting, a stop and a recycle (nothing
    taken), a full table (accepting paused), and an _accept replaced on the instance (it is called)."""
    with listening_world(engine) as (world, listener, accept):
        w = world.worker
        listen = listener.sock
        seen: list[Any] = []
        clients: list[socket.socket] = []

        def connect(request: bytes) -> socket.socket:
            client = socket.create_connection(listen.getsockname(), timeout=5)
            client.sendall(request)
            clients.append(client)
            select.select([listen], [], [], 5)
            return client

        def table() -> list[Any]:
            return sorted((c.claimed, c.watch, c.state.name, c.served)
                          for c in w.conns.values() if c is not world.conn)

        try:
            client = connect(b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            seen.append((accept(listener), table(), w.info.served))
            seen.append(re.sub(rb"Date: [^\r]*\r\n", b"", client.recv(4096))[:40])
            client = connect(GET)
            seen.append((accept(listener), table(), w.info.served))
            seen.append(client.recv(4096)[:15])
            seen.append((accept(listener), table()))  # nothing waiting
            w.stopping = True
            connect(GET)
            seen.append((accept(listener), table()))  # a stop: left in the backlog
            w.stopping = False
            w.recycle = True
            seen.append((accept(listener), table()))  # recycling: left there too
            w.recycle = False
            w.accepting = True
            w.ep.register(listen.fileno(), select.EPOLLIN)
            w.config = Config(http_engine=engine, worker_connections=len(w.conns))
            seen.append((accept(listener), table(), w.accepting))  # full: paused
            w.config = Config(http_engine=engine)
            taken: list[Any] = []
            w._accept = taken.append  # type: ignore[method-assign,assignment]
            seen.append((accept(listener), taken == [listener], table()))
        finally:
            for c in clients:
                c.close()
        return seen


def test_a_listener_woken_is_handled_in_c_as_the_reference_handles_it() -> None:
    story = accept_story("python")
    assert story == accept_story("native")
    assert story[0] == (None, [], 1)  # served and closed
    assert story[1].startswith(b"HTTP/1.1 200 OK")
    assert story[2] == (None, [(False, Watch.READ, "PARKED", 1)], 2)  # kept, armed
    assert story[4] == story[5] == story[6] == (None, [(False, Watch.READ, "PARKED", 1)])
    assert story[7] == (None, [(False, Watch.READ, "PARKED", 1)], False)
    assert story[8] == (None, True, [(False, Watch.READ, "PARKED", 1)])


def test_the_twin_of_accept_stands_in_for_the_method_in_a_native_worker() -> None:
    """Each worker hands Worker._accept to the native engine as it starts (the engine's
    module does not import the worker's): a listener woken in a native worker is then
    handled by the C twin, and no Python frame of Worker._accept runs; replaced on the
    instance, the replacement is called."""
    frames: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is Worker._accept.__code__:
            frames.append(event)

    with listening_world("native") as (world, listener, accept), \
            socket.create_connection(listener.sock.getsockname(), timeout=5) as client:
        client.sendall(b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        select.select([listener.sock], [], [], 5)
        sys.setprofile(profile)
        try:
            accept(listener)
        finally:
            sys.setprofile(None)
        assert frames == [], "the C twin took the listener's wake-up"
        assert client.recv(4096).startswith(b"HTTP/1.1 200")
        taken: list[Any] = []
        world.worker._accept = taken.append  # type: ignore[method-assign,assignment]
        accept(listener)
        assert taken == [listener]
