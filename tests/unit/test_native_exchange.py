"""The compiled exchange (prefork/_native_exchange.c: NativeExchange.run) against its
Python reference (wsgi.Exchange.run) on generated apps: whatever the app does (its
status, fields, result, calls to write, exceptions) and whatever the request (method,
version, keep-alive, request_timeout's guard), the same bytes go out, the exchange ends in
the same state, the result is closed alike, and the same exception comes out."""

from __future__ import annotations

import gc
import re
import sys
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("prefork._native")

from prefork import _native, native, wsgi
from prefork.errors import ClientGone
from prefork.http.request import Request

pytestmark = pytest.mark.timeout(120)

DATE = re.compile(rb"Date: [^\r]*\r\n")
STATE = ("status", "code", "headers", "head_sent", "length", "sent", "chunked", "keep_alive")


class Out:
    """What an Exchange writes to: each send recorded; the n-th send may fail."""

    def __init__(self, fail_at: int | None) -> None:
        self.sent: list[bytes] = []
        self.fail_at = fail_at

    def send(self, data: bytes) -> None:
        if len(self.sent) == self.fail_at:
            raise ClientGone("the client went away")
        self.sent.append(bytes(data))


class Closing(list):  # type: ignore[type-arg]
    """A list subclass with close(): not the exact list the compiled path takes."""

    def __init__(self, items: list[bytes], log: list[str]) -> None:
        super().__init__(items)
        self.log = log

    def close(self) -> None:
        self.log.append("closed")


def make_app(spec: dict[str, Any], log: list[str]) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        write = None
        if spec["start"] == "keywords":
            write = start_response(status=spec["status"], headers=list(spec["headers"]),
                                   exc_info=None)
        elif spec["start"]:
            write = start_response(spec["status"], list(spec["headers"]))
        if spec["again"] == "exc_info":
            start_response("500 Oops", [], (ValueError, ValueError("x"), None))
        elif spec["again"]:  # a second call without exc_info: an error (PEP 3333)
            start_response("200 OK", [])
        if spec["write"] is not None and write is not None:
            write(spec["write"])
        if spec["raise_"]:
            raise RuntimeError("the app failed")
        body = spec["body"]
        kind = spec["shape"]
        if kind == "list":
            return list(body)
        if kind == "tuple":
            return tuple(body)
        if kind == "closing":
            return Closing(list(body), log)
        if kind == "generator":
            def gen() -> Iterator[Any]:
                try:
                    yield from body
                finally:
                    log.append("generator closed")
            return gen()
        return body[0] if body else None  # not iterable of bytes at all (or bytes itself)

    return app


def run(exchange_type: type[wsgi.Exchange], spec: dict[str, Any]) -> tuple[Any, ...]:
    req = Request(0, [])
    req.method, req.version = spec["method"], spec["version"]
    out = Out(spec["fail_at"])
    ex = exchange_type(out, req, spec["keep_alive"], spec["guarded"])  # type: ignore[arg-type]
    log: list[str] = []
    try:
        ex.run(make_app(spec, log), {})
        error: tuple[str, str] | None = None
    except Exception as exc:  # the comparison is the point: any exception, by type and text
        error = (type(exc).__name__, str(exc))
    sent = DATE.sub(b"Date: -\r\n", b"".join(out.sent))
    return error, sent, len(out.sent), log, [getattr(ex, name) for name in STATE]


statuses = st.sampled_from(["200 OK", "204 No Content", "304 Not Modified", "101 Switching",
                            "404 Not Found", "500 Internal Server Error", "200 \u20ac",
                            "200 caf\u00e9", "99 Low", "200", "abc"])
fields = st.lists(st.one_of(
    st.sampled_from([("Content-Type", "text/plain"), ("Content-Length", "0"),
                     ("Content-Length", "5"), ("Content-Length", "13"),
                     ("Content-Length", "99999999999999999999999"), ("Connection", "close"),
                     ("Connection", "keep-alive"), ("X-A", "caf\u00e9"), ("X-B", "\u20ac"),
                     ("X-C", "a\r\nb"), ("Bad Name", "x")]),
    st.tuples(st.text("abXY-", min_size=1, max_size=6), st.text(max_size=8))), max_size=5)
bodies = st.lists(st.one_of(st.binary(max_size=20), st.just(b"Hello, world!"),
                            st.binary(max_size=20).map(bytearray), st.just("text"),
                            st.just(1)), max_size=3)
specs = st.fixed_dictionaries({
    "start": st.sampled_from([True, True, False, "keywords"]), "status": statuses,
    "headers": fields, "again": st.sampled_from([False, False, "exc_info", "plain"]),
    "write": st.one_of(st.none(), st.just(b"early"), st.just(b"")),
    "raise_": st.booleans(), "body": bodies,
    "shape": st.sampled_from(["list", "list", "list", "tuple", "closing", "generator",
                              "other"]),
    "method": st.sampled_from(["GET", "HEAD", "POST"]),
    "version": st.sampled_from(["1.1", "1.0"]),
    "keep_alive": st.booleans(), "guarded": st.booleans(),
    "fail_at": st.one_of(st.none(), st.just(0), st.just(1)),
})


@settings(max_examples=3000, deadline=None)
@given(specs)
def test_exchange_run_agrees(spec: dict[str, Any]) -> None:
    assert run(native.NativeExchange, spec) == run(wsgi.Exchange, spec)


# The compiled path's own domain: start_response once, a list of one item.
def _fields(length: str | None, connection: str | None, rest: list[tuple[str, str]]
            ) -> list[tuple[str, str]]:
    return ([("Content-Length", length)] if length is not None else []) + \
        ([("Connection", connection)] if connection is not None else []) + rest


single_specs = st.fixed_dictionaries({
    "start": st.just(True),
    "status": st.one_of(st.sampled_from(["200 OK", "404 Not Found"]), statuses),
    "headers": st.builds(_fields, st.sampled_from([None, "0", "5", "13"]),
                         st.sampled_from([None, "close", "keep-alive"]),
                         st.one_of(st.just([]), fields)),
    "again": st.just(False),
    "write": st.just(None), "raise_": st.just(False),
    "body": st.lists(st.one_of(st.binary(max_size=20), st.sampled_from(
        [b"", b"Hell", b"Hello", b"Hello!", b"Hello, world", b"Hello, world!"])),
        min_size=1, max_size=1),
    "shape": st.just("list"), "method": st.sampled_from(["GET", "HEAD", "POST"]),
    "version": st.sampled_from(["1.1", "1.0"]), "keep_alive": st.booleans(),
    "guarded": st.just(False), "fail_at": st.one_of(st.none(), st.just(0)),
})


@settings(max_examples=3000, deadline=None)
@given(single_specs)
def test_exchange_run_agrees_on_single_item_responses(spec: dict[str, Any]) -> None:
    assert run(native.NativeExchange, spec) == run(wsgi.Exchange, spec)


COMMON = {"start": True, "status": "200 OK", "again": False, "write": None, "raise_": False,
          "shape": "list", "method": "GET", "version": "1.1", "keep_alive": True,
          "guarded": False, "fail_at": None}


@pytest.mark.parametrize(("headers", "body", "version", "keep_alive", "expect"), [
    ([("Content-Type", "text/plain")], b"hi", "1.1", True,
     b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: prefork\r\nDate: -\r\n"
     b"Content-Length: 2\r\n\r\nhi"),
    ([("Content-Length", "5")], b"Hello, world!", "1.1", True,
     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: prefork\r\nDate: -\r\n\r\nHello"),
    ([], b"", "1.0", True,
     b"HTTP/1.1 200 OK\r\nServer: prefork\r\nDate: -\r\nContent-Length: 0\r\n"
     b"Connection: keep-alive\r\n\r\n"),
    ([("Connection", "close")], b"x", "1.1", True,
     b"HTTP/1.1 200 OK\r\nServer: prefork\r\nDate: -\r\nContent-Length: 1\r\n"
     b"Connection: close\r\n\r\nx"),
])
def test_exchange_run_writes_the_head_and_body_at_once(
        headers: list[tuple[str, str]], body: bytes, version: str, keep_alive: bool,
        expect: bytes) -> None:
    """The compiled path's own cases, spelled out: one send, the server's fields after the
    app's, Content-Length only when the app gave none, a long body cut to the declared
    length (then the connection closes)."""
    spec = {**COMMON, "headers": headers, "body": [body], "version": version,
            "keep_alive": keep_alive}
    error, sent, sends, _log, state = run(native.NativeExchange, spec)
    assert (error, sent, sends) == (None, expect, 1)
    assert state[STATE.index("head_sent")] is True
    long_body = len(body) > 5 and ("Content-Length", "5") in headers
    assert state[STATE.index("keep_alive")] is (keep_alive and not long_body
                                                and ("Connection", "close") not in headers)


def test_http_date_is_the_references_format() -> None:
    for seconds in [0, 951782400, 1796042209, 253402300799, *range(0, 10**10, 999_983)]:
        assert _native.http_date(seconds) == \
            b"Date: " + formatdate(seconds, usegmt=True).encode() + b"\r\n"
    with pytest.raises(ValueError):
        _native.http_date(253402300800)  # the year 10000


def test_the_date_sent_is_the_current_second() -> None:
    spec = {**COMMON, "headers": [], "body": [b"x"]}
    before = int(time.time())
    req = Request(0, [])
    req.method, req.version = "GET", "1.1"
    sink = Out(None)
    native.NativeExchange(sink, req, True).run(make_app(spec, []), {})  # type: ignore[arg-type]
    after = int(time.time())
    dates = {_native.http_date(s) for s in range(before, after + 1)}
    assert DATE.search(sink.sent[0]).group(0) in dates  # type: ignore[union-attr]


def test_no_reference_is_leaked() -> None:
    """Refcounts stay put over many exchanges, answered here and handed to the reference,
    sent and failing."""
    body = b"Hello, world!"
    status = "200 OK"
    headers = [("Content-Type", "text/plain"), ("Content-Length", "13")]
    objects = [body, status, *headers[0], *headers[1]]
    specs = [{**COMMON, "headers": headers, "body": [body], "status": status},
             {**COMMON, "headers": headers, "body": [body], "status": status, "fail_at": 0},
             {**COMMON, "headers": headers, "body": [body, body], "status": status},
             {**COMMON, "headers": headers, "body": [body], "status": status,
              "shape": "closing"}]
    before: list[int] = []
    for turn in range(1001):
        if turn == 1:
            gc.collect()
            before = [sys.getrefcount(o) for o in objects]
        for spec in specs:
            run(native.NativeExchange, spec)
    gc.collect()
    assert [sys.getrefcount(o) for o in objects] == before


def test_the_c_type_has_every_field_and_method_of_the_reference() -> None:
    """NativeExchange is not a wsgi.Exchange subclass: its fields are a C type's and its
    methods the reference's, by name. A field or method added to one must be in the other."""
    members = {name for name, value in vars(_native.Exchange).items()
               if type(value).__name__ == "member_descriptor"}
    assert members == set(wsgi.Exchange.__slots__)
    methods = {name for name, value in vars(wsgi.Exchange).items()
               if callable(value) or isinstance(value, staticmethod)} - {"__init__"}
    assert methods <= set(dir(native.NativeExchange))
    for name in methods - {"start_response", "run", "fields", "encode"}:
        assert getattr(native.NativeExchange, name) is getattr(wsgi.Exchange, name), name
