"""A worker's per-request calls in C (prefork/_native_worker.c: WorkerCalls) against the
reference (Worker._serve and _arm, Worker._begin_request, RequestWatch.end/.progress).

Two workers, one per engine, built as a worker process builds itself, each with one
connection over a real socketpair, are given the same request bytes and woken the same
way (`worker.serve`): the same bytes back, the same claims and registrations, the same
arming in the worker's real epoll (what it reports once the client sends or reads), the
same closing, the same watchdog entries seen by the app, the same counts, messages to
the master and recycling at max_requests.
"""

from __future__ import annotations

import gc
import re
import select
import socket
import sys
import threading
from typing import Any

import pytest

from prefork import messages
from prefork.config import Config
from prefork.connection import Connection
from prefork.worker import Worker
from prefork.wsgi import base_environ

native = pytest.importorskip("prefork.native")

pytestmark = pytest.mark.timeout(60)

# More than a socketpair takes at once (the rest waits for EPOLLOUT), less than the
# output queue's bound (past it the app's thread would wait for the client instead).
BIG = 600 << 10


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Says what the watchdog's table holds for this thread while it runs."""
    worker: Worker = environ["test.worker"]
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
        return (self.conn.claimed, self.conn.registered, self.conn.fd in w.conns,
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
    says it is registered while it is not: the epoll refuses the next arming)."""
    seen: list[Any] = []
    for step in script:
        if step == "read":
            seen.append(("read", len(world.received())))
        elif step == "poll":
            seen.append(("poll", world.armed()))
        elif step == "forget":
            world.conn.registered = True
            world.worker.ep.unregister(world.conn.fd)
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
    # parked after each request: armed for reading, reported only once bytes come
    served = [s for s in seen if s[0] != "poll"]
    assert all(s[2][:4] == (False, True, True, False) for s in served)
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
