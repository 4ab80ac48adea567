"""Coverage-guided, differential fuzzing of the compiled core's request path
(prefork/_native_http.c, _native_wsgi.c, _native_exchange.c, _native_conn.c) against the
Python references, under AddressSanitizer (atheris; not in CI). Built and run as fuzz_native.py says, with this
file instead:

    LD_PRELOAD=... ASAN_OPTIONS=detect_leaks=0 NATIVE_SO=/tmp/native-asan/prefork/_native*.so \\
        python tests/fuzz/fuzz_native_wsgi.py -max_total_time=1800 -rss_limit_mb=4096

Each input becomes a request's header fields (any bytes, names that repeat in any case),
an app's response header list (items of every shape: tuples of str of any code point,
ints, bytes, lists, wrong lengths; Content-Length and Connection values of any text) and a
status line. build_environ, response_fields and encode_head must each give what the
reference gives: the same value and environ, or the same exception type and text; an
exchange whose app gives that status, that list and a body (GET or HEAD, HTTP/1.1 or 1.0,
keep-alive or not, a send that fails or not) sends the same bytes and ends in the same
state in both engines. Then
the input's remaining bytes, cut where it says, go to two RequestParsers, one on each
HeadFields (the compiled one also ends common heads: on_headers_complete), at tight
limits: the same requests (every field, the body's too), the same error and state; and
to a connection of each engine over a socketpair (the compiled on_ready, serve, settle
and serve_one), with an app that reads the body or fails, with metrics or without: the
same answer, bytes, state and counts. ASan reports any read
or write outside a buffer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
from collections.abc import Callable
from typing import Any

import atheris
from fuzz_native import native as asan_native

import prefork

# prefork.native binds whichever prefork._native is imported: make it the ASan build.
sys.modules["prefork._native"] = asan_native
prefork._native = asan_native  # type: ignore[attr-defined]

with atheris.instrument_imports():
    from prefork import native, wsgi
    from prefork.connection import Connection, ServerContext
    from prefork.engine_choice import choose
    from prefork.http import response
    from prefork.http.fields import HeadFields
    from prefork.http.parser import ParserLimits, RequestParser
    from prefork.http.request import Request
    from prefork.metrics import WorkerMetrics
    from prefork.proxy import Trust

logging.disable(logging.ERROR)  # the app's exceptions are logged by both engines alike

LIMITS = ParserLimits(limit_request_line=40, limit_request_fields=6,
                      limit_request_field_size=60, head_limit=400, framing_limit=200,
                      max_body=30)

NAMES = [b"Host", b"Cookie", b"cookie", b"Accept", b"X_Under", b"Content-Type",
         b"content-length", b"Authorization", b"X-A"]
APP_NAMES = ["Content-Type", "Content-Length", "Connection", "X-A", "Transfer-Encoding",
             "Bad Name", "", "\u00c9", "X-\u20ac"]
APP_VALUES = ["12", " 12 ", "-1", "", "\u00b2", "close", "Keep-Alive, Close", "a\r\nb", "\u20ac",
              "9" * 30]


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:
        return type(exc).__name__, str(exc)


def text(fdp: atheris.FuzzedDataProvider) -> str:
    if fdp.ConsumeBool():
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))
    return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40)).decode("latin-1")


def app_item(fdp: atheris.FuzzedDataProvider) -> object:
    shape = fdp.ConsumeIntInRange(0, 6)
    name: object = fdp.PickValueInList(APP_NAMES) if fdp.ConsumeBool() else text(fdp)
    value: object = fdp.PickValueInList(APP_VALUES) if fdp.ConsumeBool() else text(fdp)
    if shape == 1:
        value = fdp.ConsumeInt(4)
    elif shape == 2:
        name = fdp.ConsumeBytes(4)
    elif shape == 3:
        return (name, value, value)
    elif shape == 4:
        return [name, value]
    elif shape == 5:
        return name
    return (name, value)


def test_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    fields = []
    for _ in range(fdp.ConsumeIntInRange(0, 12)):
        name = fdp.PickValueInList(NAMES) if fdp.ConsumeBool() else \
            fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 12))
        if fdp.ConsumeBool():
            name = name.lower()
        fields.append((name, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 60))))
    p = outcome(lambda: environ_of(wsgi.build_environ, stand_in(fields), BASES[0]))
    c = outcome(lambda: environ_of(native.build_environ, stand_in(fields), BASES[0]))
    assert p == c, (p, c)

    items = [app_item(fdp) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    compiled_first = fdp.ConsumeBool()  # the shared name cache: cold or warm for C
    if compiled_first:
        c = outcome(lambda: native.NativeExchange.fields(items))
        p = outcome(lambda: response.response_fields(items))
    else:
        p = outcome(lambda: response.response_fields(items))
        c = outcome(lambda: native.NativeExchange.fields(items))
    assert p == c, (p, c)

    status = text(fdp)
    extra = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 100))
    p = outcome(lambda: response.encode_head(status, items, extra))  # type: ignore[arg-type]
    c = outcome(lambda: native.NativeExchange.encode(status, items, extra))  # type: ignore[arg-type]
    assert p == c, (p, c)

    body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
    how = (fdp.PickValueInList(["GET", "HEAD"]), fdp.PickValueInList(["1.1", "1.0"]),
           fdp.ConsumeBool(), fdp.ConsumeBool())
    assert exchange(wsgi.Exchange, status, items, body, how) == \
        exchange(native.NativeExchange, status, items, body, how)

    cuts = sorted(fdp.ConsumeIntInRange(0, 300) for _ in range(fdp.ConsumeIntInRange(0, 4)))
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    assert parse(HeadFields, wsgi.build_environ, raw, cuts) == \
        parse(native.head_fields, native.build_environ, raw, cuts)

    # The same bytes to a connection of each engine (serve_one: _native_conn.c).
    options = {"keepalive_s": 5.0 if how[2] else 0.0,
               "max_keepalive_requests": len(cuts), "stopping": how[3],
               "trust": Trust(("127.0.0.1",), True) if body[:1] > b"m" else None}
    kind = len(body) % 4
    assert served(PYTHON_ENGINE, raw, kind, options) == \
        served(NATIVE_ENGINE, raw, kind, options)


class Sink:
    def __init__(self, fail: bool) -> None:
        self.sent: list[bytes] = []
        self.fail = fail

    def send(self, data: bytes) -> None:
        if self.fail:
            raise OSError("gone")
        self.sent.append(bytes(data))


def exchange(kind: Any, status: str, items: list[object], body: bytes,
             how: tuple[str, str, bool, bool]) -> tuple[Any, ...]:
    """One exchange (wsgi.Exchange.run, or the compiled exchange_run): an app that gives
    `status` and `items` to start_response and returns [body]."""
    req = Request(0, [])
    req.method, req.version, keep_alive, fail = how
    out = Sink(fail)
    ex = kind(out, req, keep_alive)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status, list(items))
        return [body]

    result = outcome(lambda: ex.run(app, {}))
    sent = re.sub(rb"Date: [^\r]*\r\n", b"", b"".join(out.sent))  # it may be a second later
    return result, sent, ex.head_sent, ex.sent, ex.keep_alive, ex.length, ex.code


BASES = [wsgi.base_environ("h", "80", "", True), wsgi.base_environ("h", "80", "/a", True)]
PYTHON_ENGINE, NATIVE_ENGINE = choose("python"), choose("native")


def connection_app(kind: int) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if kind == 0:
            raise ValueError("the app failed")
        data = environ["wsgi.input"].read(kind - 1 if kind > 1 else -1)
        start_response("200 OK", [("X-A", environ.get("HTTP_X_FORWARDED_FOR", "-"))])
        items = [environ["REMOTE_ADDR"].encode(), environ["PATH_INFO"].encode("latin-1"), data]
        # one item (odd kinds): the C exchange's single-item response, sent in C
        return [b"".join(items)] if kind % 2 else items
    return app


def served(engine: Any, raw: bytes, kind: int, options: dict[str, Any]) -> tuple[Any, ...]:
    """What a connection of this engine answers to `raw` (one wake-up), and its state."""
    client, server = accepted() if engine.new_connection else socket.socketpair()
    ctx = ServerContext(connection_app(kind), engine=engine, body_timeout_s=0.01,
                        parser_limits=LIMITS, metrics=WorkerMetrics() if kind > 1 else None,
                        **options)
    # The native engine's connection made (and closed) as its worker does: in C.
    conn = (engine.new_connection or Connection)(server, ("127.0.0.1", "4000"), BASES[0],
                                                 ctx, None)
    try:
        client.sendall(raw)
        try:  # woken as its worker wakes it: the engine's on_ready (C) or the reference
            answer: Any = (engine.on_ready or Connection.on_ready)(conn)
        except BaseException as exc:  # compared, not handled
            answer = type(exc).__name__
        client.setblocking(False)
        got = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := client.recv(65536):
                got += chunk
        got = re.sub(rb"Date: [^\r]*\r\n", b"", got)
        metrics = ctx.metrics
        counted = None if metrics is None else (metrics.requests, metrics.rejected,
                                                metrics.bytes_in, metrics.bytes_out)
        return (answer, got, conn.state, conn.end, conn.served, conn.request,
                conn.parser.idle, counted)
    finally:
        (engine.close_connection or Connection.close)(conn)
        client.close()


_LISTENER: list[socket.socket] = []


def accepted() -> tuple[socket.socket, Any]:
    """A client and the native accept's Sock for it (a UNIX socket, as a socketpair)."""
    if not _LISTENER:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(f"\0prefork-fuzz-{os.getpid()}")  # abstract: no file
        listener.listen(8)
        _LISTENER.append(listener)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(_LISTENER[0].getsockname())
    got = asan_native.accept(_LISTENER[0])
    assert got is not None
    return client, got[0]


def parse(fields: Any, build: Any, raw: bytes, cuts: list[int]) -> tuple[Any, ...]:
    """What one engine's parser makes of the bytes, and the environ of each request."""
    parser = RequestParser(LIMITS, fields)
    start = 0
    for cut in [*cuts, len(raw)]:
        end = max(start, min(cut, len(raw)))
        parser.feed(raw[start:end])
        start = end
    seen = [(r.method, r.target, r.version, r.headers, r.keep_alive, r.content_length,
             r.chunked, r.expect_continue, r.upgrade, r.authority, r.path_query,
             type(r), r.body.limit, r.body.received, r.body.complete, r.body.fill,
             outcome(r.body.read) if r.body.complete else None,
             [outcome(lambda r=r, b=b: environ_of(build, r, b)) for b in BASES])
            for r in parser.ready]
    error = parser.error
    state = (parser.idle, parser.stopped, parser._head_bytes, parser._chunks, parser._lead)
    parser.close()
    return seen, (type(error).__name__, str(error)) if error else None, state


def stand_in(fields: list[tuple[bytes, bytes]]) -> Request:
    """A request with any fields at all, as build_environ takes it."""
    req = Request(0, fields)
    req.method, req.target = "GET", b"/x?y"
    return req


def environ_of(build: Any, req: Any, base: dict[str, Any]) -> dict[str, Any]:
    environ = dict(build(req, base, "1.2.3.4", "5"))
    assert environ.pop("wsgi.input") is req.body
    return environ


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
