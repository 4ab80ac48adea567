"""A connection's objects made in C, and closed in C (prefork/_native_adopt.c:
new_connection and close_connection), against the reference (Connection(...) and
Connection.close).

Connections over real accepted sockets, made both ways with the same context: every
field of the connection, its parser (and the callbacks llhttp was given), and its output
is alike; both parse and serve the same bytes; closed both ways, they end alike, and the
client sees its connection end. The cases the C code hands to the reference (a socket
object, a PROXY header due, fields of another type) are checked to be the reference's.
Nothing leaks: descriptors, and memory with the cyclic collector off (the cycles between
a parser, its fields and llhttp's callbacks are broken, not left to it).
"""

from __future__ import annotations

import errno
import gc
import os
import select
import socket
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from prefork.connection import CLOSED, PROXY_EXPECTED, Connection, ServerContext
from prefork.engine_choice import choose
from prefork.http.parser import ParserLimits, RequestParser, _Callbacks
from prefork.output import FileTail, Output
from prefork.proxy import Trust
from prefork.wsgi import base_environ
from tests.quiet import alone

native = pytest.importorskip("prefork.native")
_native = native._native

pytestmark = pytest.mark.timeout(60)

ENGINE = choose("native")


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["PATH_INFO"].encode()]


@pytest.fixture(params=["tcp", "unix"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[socket.socket]:
    if request.param == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(tmp_path / "s"))
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


def accepted(listener: socket.socket) -> tuple[socket.socket, Any, tuple[str, str]]:
    """A client and the native engine's accepted Sock for it."""
    client = socket.socket(listener.family, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(listener.getsockname())
    got = ENGINE.accept(listener)
    assert got is not None
    return client, got[0], got[1]


def context(**options: Any) -> ServerContext:
    options.setdefault("engine", ENGINE)
    return ServerContext(app, header_timeout_s=3.0, send_timeout_s=4.0, **options)


BASE = ENGINE.environ_base(base_environ("127.0.0.1", "80", "", False))


def described(obj: Any, owners: dict[int, str]) -> Any:
    """A field's value, comparable across two connections: the objects of the connection
    itself by their role, bound methods by their owner's role and name, deques by
    their items, anything else by value."""
    if id(obj) in owners:
        return ("the", owners[id(obj)])
    if hasattr(obj, "__self__") and hasattr(obj, "__name__") and not isinstance(obj, type):
        return ("method", described(obj.__self__, owners), obj.__name__)
    if isinstance(obj, deque):
        return ("deque", list(obj))
    return (type(obj).__name__, obj)


def fields_of(conn: Connection) -> dict[str, Any]:
    """Every field of the connection, its parser, llhttp's callbacks and its output."""
    parser = conn.parser
    owners = {id(conn): "connection", id(parser): "parser", id(conn.out): "output",
              id(conn.sock): "sock", id(conn.ctx): "ctx", id(conn.base): "base",
              id(parser._fields): "fields", id(parser._parser): "llhttp"}
    seen: dict[str, Any] = {}
    for prefix, obj, cls in (("conn", conn, Connection), ("parser", parser, RequestParser),
                             ("out", conn.out, Output)):
        assert type(obj) is cls
        for name in cls.__slots__:
            seen[f"{prefix}.{name}"] = (described(getattr(obj, name), owners)
                                        if hasattr(obj, name) else "unset")
    seen["fields"] = (type(parser._fields).__name__, parser._fields.line_limit,
                      parser._fields.max_fields, parser._fields.field_size,
                      described(parser._fields.parser, owners), parser._fields.in_head)
    seen["llhttp"] = type(parser._parser).__name__
    for key in ("conn.fd", "out.fd"):  # two connections' descriptors: the sock's own
        assert seen[key] == ("int", conn.sock.fileno())
        seen[key] = "the sock's"
    return seen


def made_both_ways(listener: socket.socket, ctx: ServerContext, now: float | None = 100.0
                   ) -> Iterator[tuple[Connection, socket.socket]]:
    """The same connection (an accepted Sock each) made by the reference and by C."""
    for make in (Connection, ENGINE.new_connection):
        client, sock, remote = accepted(listener)
        assert make is not None
        yield make(sock, remote, BASE, ctx, now), client


def test_made_in_c_every_field_is_the_references(listener: socket.socket) -> None:
    for options in ({}, {"trust": Trust(("127.0.0.1",), True)},
                    {"trust": Trust(("10.0.0.1",), False)},
                    {"parser_limits": ParserLimits(100, 5, 200, 1000, 7, 64)}):
        ctx = context(**options)
        (ref, ref_client), (ours, our_client) = made_both_ways(listener, ctx)
        assert type(ours) is Connection
        theirs, mine = fields_of(ref), fields_of(ours)
        # The peer's port differs (two clients); everything else is the same.
        assert theirs.pop("conn.remote_port") != "unset" != mine.pop("conn.remote_port")
        assert mine == theirs
        assert ours.fd == ours.sock.fileno() == ours.out.fd and ours.io is ours.sock
        # llhttp calls back into this connection's own fields and parser.
        callbacks = ours.parser._fields.parser
        assert callbacks is ours.parser
        for conn, client in ((ref, ref_client), (ours, our_client)):
            Connection.close(conn)
            client.close()


def test_the_references_callbacks_are_what_new_callbacks_assumes() -> None:
    """What new_callbacks (C) assumes of the reference's _Callbacks, for compiled fields:
    on_chunk_header is the parser's, the six others the fields' own. httptools keeps the
    callbacks it is given to itself, so the C-made ones cannot be read back; a change to
    _Callbacks fails this, and new_callbacks must follow it."""
    parser = RequestParser(ParserLimits(), ENGINE.head_fields)
    ref = _Callbacks(parser, parser._fields)
    owners = {id(parser): "parser", id(parser._fields): "fields"}
    expected = {name: described(getattr(ref, name), owners) for name in _Callbacks.__slots__}
    assert expected["on_chunk_header"] == ("method", ("the", "parser"), "on_chunk_header")
    assert all(v[1] == ("the", "fields") for k, v in expected.items()
               if k != "on_chunk_header")
    parser.close()


def test_now_none_means_the_clock(listener: socket.socket) -> None:
    import time
    ctx = context()
    before = time.monotonic()
    client, sock, remote = accepted(listener)
    assert ENGINE.new_connection is not None
    conn = ENGINE.new_connection(sock, remote, BASE, ctx, None)  # type: ignore[arg-type]
    assert before + 3.0 <= conn.deadline <= time.monotonic() + 3.0
    _native.close_connection(conn)
    client.close()


def test_both_parse_and_serve_alike(listener: socket.socket) -> None:
    ctx = context()
    replies = []
    for conn, client in made_both_ways(listener, ctx):
        client.sendall(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
                       b"GET /two HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        on_ready = ENGINE.on_ready
        assert on_ready is not None
        select.select([conn.fd], [], [], 5)
        outcome = on_ready(conn)  # both requests came in one piece: both served
        _native.close_connection(conn)
        data = b""
        while chunk := client.recv(65536):
            data += chunk
        replies.append((outcome, conn.served, conn.state,
                        [line for line in data.split(b"\r\n") if not line.startswith(b"Date")]))
        client.close()
    assert replies[0] == replies[1]
    assert replies[1][3][-1] == b"/two" and replies[1][1] == 2


def test_what_c_does_not_make_is_the_references(listener: socket.socket,
                                                tmp_path: Path) -> None:
    assert ENGINE.new_connection is not None
    # A socket object (not the native accept's Sock): the reference makes it.
    a, b = socket.socketpair()
    conn = ENGINE.new_connection(a, ("", ""), BASE, context(), 1.0)  # type: ignore[arg-type]
    assert conn.sock is a and conn.io is not a and type(conn.io) is _native.Sock
    _native.close_connection(conn)
    assert a.fileno() == -1
    b.close()
    # A PROXY header due: the reference (its proxy_state).
    client, sock, remote = accepted(listener)
    conn = ENGINE.new_connection(sock, remote, BASE, context(  # type: ignore[arg-type]
        proxy_mode="v1", proxy_trust=Trust(("127.0.0.1",), True)), 1.0)
    assert conn.proxy_state is PROXY_EXPECTED
    _native.close_connection(conn)
    client.close()
    # Fields of the Python engine's kind: the reference (and its fields).
    client, sock, remote = accepted(listener)
    python_fields = replace(ENGINE, head_fields=choose("python").head_fields)
    conn = ENGINE.new_connection(sock, remote, BASE,  # type: ignore[arg-type]
                                 context(engine=python_fields), 1.0)
    assert type(conn.parser._fields).__module__ == "prefork.http.fields"
    _native.close_connection(conn)
    client.close()


def test_closed_in_c_as_the_reference_closes(listener: socket.socket) -> None:
    ctx = context()
    ends = []
    for close in (Connection.close, _native.close_connection):
        for conn, client in made_both_ways(listener, ctx):
            fd = conn.fd
            parser, fields = conn.parser, conn.parser._fields
            close(conn)
            close(conn)  # a second time does nothing
            with pytest.raises(OSError) as gone:
                os.fstat(fd)
            assert gone.value.errno == errno.EBADF
            assert client.recv(10) == b""  # the client sees the end
            ends.append((conn.state, conn.sock.fileno(), conn.io.fileno(), parser.stopped,
                         hasattr(parser, "_parser"), fields.parser, len(conn.out.queue),
                         conn.out.queued_bytes))
            client.close()
    assert ends[0][0] is CLOSED
    assert ends == [ends[0]] * 4


def test_closed_in_c_with_output_queued_drops_it(listener: socket.socket,
                                                 tmp_path: Path) -> None:
    client, sock, remote = accepted(listener)
    assert ENGINE.new_connection is not None
    conn = ENGINE.new_connection(sock, remote, BASE, context(), 1.0)  # type: ignore[arg-type]
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    with open(path, "rb") as f:
        tail = FileTail(os.dup(f.fileno()), 0, 100)
    conn.out.queue.extend([memoryview(b"queued"), tail])
    conn.out.queued_bytes = 6
    _native.close_connection(conn)
    assert not conn.out.queue and conn.out.queued_bytes == 0
    with pytest.raises(OSError):
        os.fstat(tail.fd)  # the file's duplicate was closed by discard
    client.close()


def test_errors_while_making_one_are_raised_and_leave_nothing(listener: socket.socket) -> None:
    class Refuses(Trust):
        def peer(self, remote_addr: str, is_unix: bool) -> bool:
            raise LookupError("no trust today")

    def broken_fields(*args: int) -> Any:
        raise MemoryError("no fields today")

    assert ENGINE.new_connection is not None
    for ctx, error in ((context(trust=Refuses(("127.0.0.1",), True)), LookupError),
                       (context(engine=replace(ENGINE, head_fields=broken_fields)),
                        MemoryError)):
        client, sock, remote = accepted(listener)
        with pytest.raises(error):
            ENGINE.new_connection(sock, remote, BASE, ctx, 1.0)  # type: ignore[arg-type]
        assert sock.fileno() >= 0  # the caller's, still open
        sock.close()
        client.close()


def grown(rounds: Callable[[int], None]) -> tuple[int, int]:
    """Descriptors and bytes still held after 1,000 rounds (the cyclic collector off)."""
    alone()
    rounds(50)
    gc.collect()  # earlier tests' garbage closes its descriptors now, not during the count
    fds = len(os.listdir("/proc/self/fd"))
    gc.disable()
    try:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        rounds(1000)
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    finally:
        gc.enable()
    return len(os.listdir("/proc/self/fd")) - fds, held


def test_made_and_closed_in_c_a_thousand_times_leaks_nothing(listener: socket.socket) -> None:
    ctx = context(trust=Trust(("127.0.0.1",), True))

    class Refuses(Trust):
        def peer(self, remote_addr: str, is_unix: bool) -> bool:
            raise LookupError("no")

    refusing = context(trust=Refuses(("127.0.0.1",), True))
    assert ENGINE.new_connection is not None
    make = ENGINE.new_connection

    def rounds(n: int) -> None:
        for i in range(n):
            client, sock, remote = accepted(listener)
            if i % 3 == 2:  # an error half way: the half-made parser's cycles broken
                with pytest.raises(LookupError):
                    make(sock, remote, BASE, refusing, 1.0)  # type: ignore[arg-type]
                sock.close()
            else:
                conn = make(sock, remote, BASE, ctx, 1.0)  # type: ignore[arg-type]
                if i % 3:
                    conn.parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                _native.close_connection(conn)
            client.close()

    fds, held = grown(rounds)
    assert fds == 0
    assert held < 64 * 1024, f"{held} bytes still held after 1,000 connections"


@pytest.mark.parametrize("raw", [
    # llhttp's leniencies, as the parser module declares them: spaces before a chunk
    # extension, a version llhttp would refuse but the parser judges (1.2 is served as
    # 1.1, 2.0 refused with 505)
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 ;e=1\r\nhello\r\n0\r\n\r\n",
    b"GET /v HTTP/1.2\r\nHost: h\r\n\r\n",
    b"GET /v HTTP/2.0\r\nHost: h\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 1\r\nhello\r\n0\r\n\r\n",
])
def test_a_parser_made_in_c_parses_as_the_references(listener: socket.socket,
                                                      raw: bytes) -> None:
    seen = []
    for conn, client in made_both_ways(listener, context()):
        conn.parser.feed(raw)
        error = conn.parser.error
        seen.append(([(r.method, r.target, r.version,
                       r.body.read() if r.body.complete else None) for r in conn.parser.ready],
                     (type(error).__name__, error.status) if error else None))
        _native.close_connection(conn)
        client.close()
    assert seen[0] == seen[1]
    assert seen[0][0] or seen[0][1]


def test_head_fields_made_by_position_by_keyword_or_refused_alike() -> None:
    """HeadFields' fast call (eight arguments by position, as every connection makes
    them) and its generic one give the same object, and refuse the same way."""
    from prefork.errors import BadRequest, HeaderFieldsTooLarge, URITooLong
    from prefork.http import parser
    from prefork.http.fields import FORBIDDEN_TRAILERS

    lead = (FORBIDDEN_TRAILERS, parser._GOOD_HOSTS, BadRequest, HeaderFieldsTooLarge,
            URITooLong)
    names = ("forbidden", "good_hosts", "bad_request", "too_large", "uri_too_long",
             "line_limit", "max_fields", "field_size")
    by_position = _native.HeadFields(*lead, 10, 20, 30)
    by_keyword = _native.HeadFields(**dict(zip(names, (*lead, 10, 20, 30), strict=True)))
    mixed = _native.HeadFields(*lead, 10, max_fields=20, field_size=30)
    for made in (by_position, by_keyword, mixed):
        assert (made.line_limit, made.max_fields, made.field_size, made.in_head, made.url,
                made.headers, made.host) == (10, 20, 30, False, [], [], None)
    refusals = []
    for args in ((*lead, 10, 20), (*lead, 10, 20, 30, 40), (*lead, "10", 20, 30),
                 (set(), *lead[1:], 10, 20, 30), (*lead, 10, 20, 1 << 80),
                 (lead[0], frozenset(), *lead[2:], 10, 20, 30)):
        with pytest.raises((TypeError, OverflowError)) as refused:
            _native.HeadFields(*args)
        refusals.append(type(refused.value))
    assert refusals == [TypeError, TypeError, TypeError, TypeError, OverflowError, TypeError]
