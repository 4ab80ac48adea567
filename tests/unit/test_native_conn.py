"""The compiled connection loop (prefork/_native_conn.c: on_ready for a parked
connection, serve, settle, serve_one) against the reference (Connection's methods).

Two connections over real socketpairs, one on each engine, with the same settings, app,
callbacks and request bytes, each woken as its worker wakes it (the engine's on_ready):
each event gives the same answer (what comes next, or the same exception), the client receives the same bytes (the Date line aside), and the
connection, the request and the worker's callbacks end in the same state. Generated
over apps (a list, a generator, write() before returning, an exception, a BaseException,
a body read in part or whole) and settings (keep-alive on or off, a request limit, a
graceful stop, request_timeout's guard, forwarded headers trusted or not, hooks, an
access log).
Which requests the C code serves itself, and which it hands to the reference, is checked
with the reference bound to a recorder.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefork.accesslog import AccessLog, Entry
from prefork.connection import Connection, ServerContext
from prefork.engine import Engine
from prefork.engine_choice import choose
from prefork.http.parser import ParserLimits
from prefork.http.request import Body, Request
from prefork.proxy import FORWARDED_KEYS, Trust, apply_forwarded
from prefork.wsgi import base_environ

native = pytest.importorskip("prefork.native")
_native = native._native

pytestmark = pytest.mark.timeout(120)


class Stop(BaseException):
    """Not an Exception: `except Exception` lets it through (as SystemExit)."""


def make_app(kind: str) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        body = environ["wsgi.input"]
        if kind == "raise":
            raise ValueError("the app failed")
        if kind == "stop":
            raise Stop("stop")
        if kind == "read_all":
            data = body.read()
        elif kind == "read_some":
            data = body.read(1)
        else:
            data = b""
        payload = b"%s|%s|%s|%s|%s|%s" % (environ["REMOTE_ADDR"].encode(),
                                          environ["wsgi.url_scheme"].encode(),
                                          environ.get("HTTP_X_FORWARDED_FOR", "-").encode(),
                                          environ["PATH_INFO"].encode(),
                                          environ["SERVER_PROTOCOL"].encode(), data)
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        if kind == "write":
            write(b"w:")
            return [payload]
        if kind == "generator":
            return iter([payload, b"!"])
        return [payload]
    return app


REQUESTS = [
    b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /b HTTP/1.0\r\n\r\n",
    b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"POST /d HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    b"GET /g HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.9.8.7\r\nX-Forwarded-Proto: https\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /i HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    b"GET /j HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",  # refused: 400, then linger
    b"BREW /k HTTP/1.1\r\nHost: h\r\n\r\n",  # 501
    b"GET /l HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",  # > one slice
    b"\r\n",  # an empty line between requests
    # HTTP/1.0 kept alive: what follows it in a piece is read with its own version (the
    # compiled core reads the version off the line that begins a piece, for that head only)
    b"GET /b2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
]


def accepted_pair() -> tuple[socket.socket, Any]:
    """A client and the native engine's accepted Sock for it, over a UNIX socket (as a
    socketpair's, so that trusting UNIX peers means the same on both engines)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(f"\0prefork-test-{os.getpid()}-{next(_NAMES)}")  # abstract: no file
        listener.listen(1)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(listener.getsockname())
        got = _native.accept(listener)
    assert got is not None
    return client, got[0]


_NAMES = itertools.count()


class World:
    """One engine's connection, its client end, and what its callbacks saw."""

    def __init__(self, engine: Engine, app: Any, options: dict[str, Any]) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.client, server = (accepted_pair() if engine.new_connection is not None
                               else socket.socketpair())
        self.client.settimeout(5)
        hooks = options.pop("hooks")
        log = options.pop("log", False)
        ctx = ServerContext(
            app, engine=engine, header_timeout_s=3.0, body_timeout_s=1.0,
            begin_request=lambda req, exchange: self.calls.append(
                ("begin", (req.method, req.target, type(exchange).__mro__[-2].__name__,
                           exchange.keep_alive))),
            end_request=lambda: self.calls.append(("end", None)),
            pre_request=(lambda worker, req: self.calls.append(("pre", req.target)))
            if hooks else None,
            access_log=cast(AccessLog, self) if log else None,
            **options)
        # The native engine's connection is made as its worker makes one (in C, from
        # the Sock its accept gave), the reference's by the class.
        make = engine.new_connection or Connection
        self.conn = make(server, ("127.0.0.1", "4000"), base_environ("a", "80", "", False),
                         ctx, None)  # type: ignore[arg-type]

    def write(self, entry: Entry) -> None:
        """The access log's write (this world stands in for it): what it was told."""
        self.calls.append(("log", (entry.remote, entry.method, entry.target, entry.protocol,
                                   entry.status, entry.body_bytes, entry.worker,
                                   entry.duration_s >= 0)))

    def event(self) -> tuple[str, Any]:
        on_ready = self.conn.ctx.engine.on_ready or Connection.on_ready
        try:
            return "next", on_ready(self.conn)
        except BaseException as exc:  # compared, not handled
            return "raised", type(exc).__name__

    def received(self) -> bytes:
        self.client.setblocking(False)
        data = b""
        try:
            while chunk := self.client.recv(65536):
                data += chunk
        except BlockingIOError:
            pass
        return re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", data)

    def state(self) -> tuple[Any, ...]:
        conn = self.conn
        return (conn.state, conn.end, conn.served, conn.request, conn.continue_sent,
                conn.parser.idle, len(conn.parser.ready), self.calls,
                round(conn.deadline - time.monotonic()))  # which timeout set it

    def close(self) -> None:
        (self.conn.ctx.engine.close_connection or Connection.close)(self.conn)
        self.client.close()


def run(engine: Engine, app_kind: str, options: dict[str, Any],
        chunks: list[bytes]) -> tuple[Any, ...]:
    world = World(engine, make_app(app_kind), dict(options))
    try:
        answers = []
        for chunk in chunks:
            world.client.sendall(chunk)
            answers.append((world.event(), world.state()))
        return tuple(answers), world.received(), world.state()
    finally:
        world.close()


# The first of each is what hypothesis draws most: a connection that keeps alive.
OPTIONS = st.fixed_dictionaries({
    "keepalive_s": st.sampled_from([5.0, 0.0]),
    "max_keepalive_requests": st.sampled_from([0, 3, 1]),
    "stopping": st.sampled_from([False, True]),
    "request_timeout_s": st.sampled_from([0.0, 30.0]),
    # (a socketpair's peer is a UNIX socket: trusted or not by the second argument)
    "trust": st.sampled_from([None, Trust(("127.0.0.1",), True), Trust(("10.0.0.1",), False)]),
    "hooks": st.booleans(),
    "log": st.booleans(),  # an access log: requests are timed and accounted
})
APPS = st.sampled_from(["list", "read_all", "write", "generator", "raise", "stop",
                        "read_some"])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(APPS, OPTIONS, st.lists(st.sampled_from(REQUESTS), min_size=1, max_size=4),
       st.sampled_from([True, False]), st.data())
def test_both_engines_serve_alike(app_kind: str, options: dict[str, Any],
                                  requests: list[bytes], at_boundaries: bool,
                                  data: st.DataObject) -> None:
    """The bytes arrive in pieces: cut anywhere, and (or not) where each request ends."""
    whole = b"".join(requests)
    cuts = set(data.draw(st.lists(st.integers(1, len(whole) - 1), max_size=3))
               if len(whole) > 1 else [])
    if at_boundaries:  # where each request ends, or where some do
        every = data.draw(st.booleans())
        cuts.update(len(b"".join(requests[:i + 1])) for i in range(len(requests) - 1)
                    if every or data.draw(st.booleans()))
    edges = [0, *sorted(cuts), len(whole)]
    chunks = [whole[a:b] for a, b in itertools.pairwise(edges) if b > a]
    python = run(choose("python"), app_kind, options, chunks)
    compiled = run(choose("native"), app_kind, options, chunks)
    assert python == compiled


GET = REQUESTS[0]
KEEP = {"keepalive_s": 5.0, "max_keepalive_requests": 0, "stopping": False,
        "request_timeout_s": 0.0, "trust": None, "hooks": False}


@pytest.mark.parametrize("chunks", [
    [GET, GET[:10], GET[10:]],  # idle, then a head begins: header_timeout from then
    [GET, GET + GET[:10], GET[10:]],  # a head begun behind a request: the deadline stays
    [GET + GET[:10], GET[10:]],
    [GET[:5], GET[5:] + GET, GET],
    [REQUESTS[3][:40], REQUESTS[3][40:] + REQUESTS[9]],  # a body, then a refusal
])
def test_deadlines_and_states_piece_by_piece(chunks: list[bytes]) -> None:
    python = run(choose("python"), "list", KEEP, chunks)
    compiled = run(choose("native"), "list", KEEP, chunks)
    assert python == compiled


GET10 = REQUESTS[-1]  # HTTP/1.0 kept alive


@pytest.mark.parametrize("chunks", [
    [GET + GET10 + GET],  # the piece begins with 1.1; the heads behind it are their own
    [GET10 + GET + GET10],
    [GET10[:20], GET10[20:] + GET],  # the line that begins the piece is not a whole line
    [GET10[:9], GET10[9:], GET],  # a piece that begins inside a request line
    [b"\r\n" + GET10 + GET],  # an empty line first: the request does not begin the piece
    [GET + b"GET /x HTTP/1.1 \r\n\r\n" + GET10],  # refused after a hint was read
    [b"GET /v HTTP/1.2\r\nHost: h\r\n\r\n", GET],  # other versions: httptools says
    [b"GET /v HTTP/2.0\r\nHost: h\r\n\r\n", GET],
    [b"GET /" + b"a" * 8000 + b" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET],
])
def test_a_piece_whose_line_tells_the_version_serves_each_head_with_its_own(
        chunks: list[bytes]) -> None:
    """The compiled core reads HTTP/1.x off the request line a piece begins with
    (native_fields_hint) for that head only; SERVER_PROTOCOL (in the app's reply) and the
    response's framing say which version each request was served as."""
    python = run(choose("python"), "list", KEEP, chunks)
    compiled = run(choose("native"), "list", KEEP, chunks)
    assert python == compiled
    served = re.findall(rb"\|(HTTP/\d\.\d)\|", python[1])
    assert len(served) >= 2 or re.search(rb"HTTP/1.1 (400|505)", python[1]), python[1]


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


CHUNKED = (b"POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           + (b"1;ext=" + b"e" * 60 + b"\r\nx\r\n") * 12 + b"0\r\n\r\n")
LONG_HEAD = b"GET /h HTTP/1.1\r\nHost: h\r\n" + b"X-A: aaaaaaaaaa\r\n" * 12 + b"\r\n"


@pytest.mark.parametrize("app_kind", ["list", "read_all"])
@pytest.mark.parametrize(("limits", "chunks"), [
    # a head growing over head_limit across pieces: 431
    (ParserLimits(head_limit=120), pieces(LONG_HEAD, 40)),
    (ParserLimits(head_limit=120), pieces(GET + LONG_HEAD, 25)),
    # chunk framing (extensions) over framing_limit across pieces: 400
    (ParserLimits(framing_limit=64), pieces(CHUNKED, 30)),
    (ParserLimits(framing_limit=64), pieces(CHUNKED, 7)),
    (ParserLimits(framing_limit=64), [CHUNKED[:70], *pieces(CHUNKED[70:], 50)]),
    (ParserLimits(), pieces(CHUNKED + GET, 11)),
    # a method refused in the second piece of its head: "GE" is an unknown method
    # (501), not a malformed line (400)
    (ParserLimits(), [b"GE", b" / HTTP/1.1\r\nHost: h\r\n\r\n"]),
    (ParserLimits(), [GET + b"GE", b" / HTTP/1.1\r\nHost: h\r\n\r\n"]),
    (ParserLimits(), [b"G", b"E", b"X / HTTP/1.1\r\n\r\n"]),
    (ParserLimits(), [GET, b"BR", b"EW / HTTP/1.1\r\n\r\n"]),
])
def test_pieces_fed_in_c_are_counted_and_refused_alike(app_kind: str, limits: ParserLimits,
                                                       chunks: list[bytes]) -> None:
    """The C feed of one piece (_native_conn.c: feed_piece) against _feed: what a piece
    that ends inside a head or a chunked body adds to the limits, and where a refused
    method began."""
    options = {**KEEP, "parser_limits": limits}
    python = run(choose("python"), app_kind, options, chunks)
    compiled = run(choose("native"), app_kind, options, chunks)
    assert python == compiled


@pytest.mark.parametrize("engine", ["python", "native"])
def test_each_request_asks_for_its_own_100_continue(engine: str) -> None:
    """A second request with Expect: 100-continue on the same connection gets its own
    100 when the app reads its body (the flag is reset for each request)."""
    world = World(choose(engine), make_app("read_all"), {"hooks": False, "keepalive_s": 5.0})
    head = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    errors: list[BaseException] = []

    def client() -> None:
        try:
            for _ in range(2):
                world.client.sendall(head)
                got = b""
                while b"100 Continue\r\n\r\n" not in got:
                    got += world.client.recv(1)
                world.client.sendall(b"abc")
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while world.conn.served < 2 and time.monotonic() < deadline:
            if select.select([world.conn.sock], [], [], 0.05)[0]:
                world.conn.on_ready()
        thread.join(10)
        assert not errors and not thread.is_alive() and world.conn.served == 2
    finally:
        world.close()


class Recorder:
    """Connection.serve_one, counting the requests handed to it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, conn: Connection, req: Request) -> bool:
        self.calls += 1
        return Connection.serve_one(conn, req)


@pytest.fixture
def handed_over() -> Iterator[Recorder]:
    recorder = Recorder()
    bind = (Connection, ServerContext, Engine, Request, Body)
    _native.bind_connection(*bind, recorder, apply_forwarded, FORWARDED_KEYS)
    try:
        yield recorder
    finally:
        _native.bind_connection(*bind, Connection.serve_one, apply_forwarded,
                                FORWARDED_KEYS)


def test_a_parked_connection_is_woken_in_c() -> None:
    """The native engine's worker wakes connections through the compiled on_ready."""
    assert choose("native").on_ready is _native.on_ready
    assert choose("python").on_ready is Connection.on_ready  # the reference


@pytest.mark.parametrize(("options", "handed"), [
    ({}, 0),
    ({"trust": Trust(("127.0.0.1",), False), "request_timeout_s": 5.0}, 0),
    ({"pre_request": lambda worker, req: None}, 1),
    ({"post_request": lambda worker, req, environ, exchange: None}, 1),
    ({"timed": True}, 0),
])
def test_which_requests_are_served_in_c(handed_over: Recorder, options: dict[str, Any],
                                        handed: int) -> None:
    client, server = socket.socketpair()
    ctx = ServerContext(make_app("list"), engine=choose("native"))
    for name, value in options.items():
        setattr(ctx, name, value)
    conn = Connection(server, ("127.0.0.1", "4000"), base_environ("a", "80", "", False), ctx)
    try:
        client.sendall(REQUESTS[0])
        conn.on_ready()
        assert client.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
        assert handed_over.calls == handed and conn.served == 1
    finally:
        conn.close()
        client.close()


def test_serve_one_refuses_what_it_was_not_bound_to() -> None:
    with pytest.raises(TypeError):
        _native.serve_one(object())
    with pytest.raises(TypeError):
        _native.bind_connection(Connection, ServerContext, Engine, Request, dict,
                                Connection.serve_one, apply_forwarded, FORWARDED_KEYS)
    with pytest.raises(TypeError):
        _native.bind_connection(Connection, ServerContext, Engine, Request, Body,
                                Connection.serve_one, apply_forwarded, list(FORWARDED_KEYS))
    # Objects of other classes go to the reference, whose own errors they get.
    with pytest.raises(AttributeError):
        _native.serve_one(object(), object())


def serve_fresh(ctx: ServerContext, n: int) -> None:
    """n connections, each one request (POST with a body) served and closed."""
    for _ in range(n):
        client, server = socket.socketpair()
        conn = Connection(server, ("127.0.0.1", "4000"), base_environ("a", "80", "", False),
                          ctx)
        try:
            client.sendall(REQUESTS[3])
            conn.on_ready()
            assert client.recv(65536).startswith(b"HTTP/1.1 ")
        finally:
            conn.close()
            client.close()


@pytest.mark.parametrize("timed", [False, True])
@pytest.mark.parametrize("kind", ["list", "raise", "read_some", "generator"])
def test_references_are_released(kind: str, timed: bool,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every object serve_one makes or stores is released: the refcounts of what it
    touches are where they were after many requests, on each of its paths. (The error
    log is off: the records the test's log capture keeps hold the tracebacks' frames.)"""
    monkeypatch.setattr(logging.getLogger("prefork.connection"), "disabled", True)
    ctx = ServerContext(make_app(kind), engine=choose("native"), keepalive_s=5.0,
                        trust=Trust(("127.0.0.1",), True))
    ctx.timed = timed  # accounted (with neither a log nor metrics, account() only times)
    objects = [ctx, ctx.app, ctx.trust, ctx.engine]
    singletons = [True, False, None]
    serve_fresh(ctx, 50)
    before = [sys.getrefcount(o) for o in objects]
    before_singletons = [sys.getrefcount(o) for o in singletons]
    serve_fresh(ctx, 300)
    assert [sys.getrefcount(o) for o in objects] == before
    # The interpreter's own use of the singletons moves their counts by a few either way
    # (caches, the collector): a leak or an over-release per request would move one by
    # 300 or more.
    moved = [sys.getrefcount(o) - b for o, b in zip(singletons, before_singletons, strict=True)]
    assert all(abs(m) < 100 for m in moved), moved
