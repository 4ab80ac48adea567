"""HeadFields, the parser's callbacks for a head's fields: the compiled twin
(prefork._native.HeadFields, bound by prefork.native) against the reference
(prefork.http.fields), call for call; and the whole parser built on each, byte for byte.

1. Any sequence of callbacks (message begins, target pieces, field lines of any bytes,
   with the framing names in any case, the head ending, trailer fields) leaves both with
   the same notes, and each call returns or raises alike (type and words).
2. The same bytes, cut into the same pieces, give two RequestParsers (one per HeadFields)
   the same requests (every field of a request and of its body, and the body's bytes),
   the same error and the same state after each piece. The compiled twin also ends a
   common head itself (on_headers_complete, setting the Request's fields in C); which
   heads it ends and which it hands to the reference is checked too."""

from __future__ import annotations

import gc
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefork.http.fields import HeadFields
from prefork.http.parser import FieldsFactory, ParserLimits, RequestParser
from prefork.http.request import Body, Request
from tests.quiet import alone
from tests.unit.test_parser_properties import mutations, requests

native = pytest.importorskip("prefork.native")

pytestmark = pytest.mark.timeout(120)

NOTES = ("in_head", "url", "url_len", "headers", "hosts", "host", "te", "connection",
         "content_length", "expect_continue")
NAMES = [b"Host", b"HOST", b"host", b"Content-Length", b"content-LENGTH", b"Transfer-Encoding",
         b"Connection", b"connection", b"Expect", b"EXPECT", b"Cookie", b"Upgrade", b"X-A",
         b"Hosts", b"Expects", b"Accept", b"Trailer", b"te"]
VALUES = [b"", b"x", b"  x \t", b"12", b"007", b"chunked", b"close", b"keep-alive",
          b"100-continue", b" 100-Continue\t", b"\x0b100-continue\x0c", b"100-continue2",
          b"\t \t", b"\xff\x00 "]


def notes(fields: Any) -> tuple[Any, ...]:
    return tuple(getattr(fields, n) for n in NOTES)


def call(method: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", method(*args)
    except Exception as exc:  # the comparison is the point
        return type(exc).__name__, str(exc)


step = st.one_of(
    st.just(("begin",)),
    st.tuples(st.just("url"), st.binary(max_size=30)),
    st.tuples(st.just("header"), st.one_of(st.sampled_from(NAMES), st.binary(max_size=18)),
              st.one_of(st.sampled_from(VALUES), st.binary(max_size=40))),
    st.just(("end",)),  # the parser ends the head: what follows is a trailer
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(step, max_size=30), st.integers(1, 60), st.integers(0, 8),
       st.integers(1, 80))
def test_each_callback_agrees(steps: list[tuple[Any, ...]], line_limit: int, max_fields: int,
                              field_size: int) -> None:
    ref = HeadFields(line_limit, max_fields, field_size)
    twin = native.head_fields(line_limit, max_fields, field_size)
    assert notes(ref) == notes(twin)
    for op, *args in steps:
        if op == "begin":
            results = [call(f.on_message_begin) for f in (ref, twin)]
        elif op == "url":
            results = [call(f.on_url, *args) for f in (ref, twin)]
        elif op == "header":
            results = [call(f.on_header, *args) for f in (ref, twin)]
        else:
            ref.in_head = twin.in_head = False
            results = [("ok", None)] * 2
        assert results[0] == results[1], (op, args)
        assert notes(ref) == notes(twin), (op, args)


def test_the_twin_checks_what_it_is_given() -> None:
    twin = native.head_fields(10, 10, 10)
    with pytest.raises(TypeError):
        twin.on_header("Host", b"x")
    with pytest.raises(TypeError):
        twin.on_url("/")
    with pytest.raises(RuntimeError):  # made without __init__: refuses, never crashes
        native._native.HeadFields.__new__(native._native.HeadFields).on_header(b"a", b"b")


REQUEST_ATTRS = tuple(a for a in Request.__slots__ if a != "body")
BODY_ATTRS = tuple(a for a in Body.__slots__ if a not in ("_buf", "_pos"))
PARSER_STATE = ("stopped", "idle", "_head_bytes", "_chunks", "_lead", "_sniffing")


def state(parser: RequestParser) -> tuple[Any, ...]:
    """What the parser keeps between pieces (not the Request under way: see parse)."""
    return (*(getattr(parser, a) for a in PARSER_STATE), len(parser.ready),
            None if parser._req is None else any(r is parser._req for r in parser.ready))


def parse(fields: FieldsFactory, data: bytes, pieces: list[int], limits: ParserLimits
          ) -> tuple[list[tuple[Any, ...]], Any, list[tuple[Any, ...]]]:
    parser = RequestParser(limits, fields)
    start = 0
    states = []
    for cut in [*sorted(pieces), len(data)]:
        end = max(start, min(cut, len(data)))
        parser.feed(data[start:end])
        states.append(state(parser))
        start = end
    seen = []
    for req in parser.ready:
        fields_of_body = tuple(getattr(req.body, a) for a in BODY_ATTRS)
        body = call(req.body.read) if req.body.complete else ("incomplete", None)
        seen.append((type(req), *(getattr(req, a) for a in REQUEST_ATTRS), fields_of_body,
                     body))
    error = (type(parser.error).__name__, str(parser.error)) if parser.error else None
    parser.close()
    return seen, error, states


LIMITS = [ParserLimits(), ParserLimits(limit_request_line=12, limit_request_fields=2,
                                       limit_request_field_size=24, head_limit=80),
          ParserLimits(max_body=2)]
CASES = [
    b"GET /a?b HTTP/1.1\r\nHost: x\r\nConnection: a\r\nConnection: close\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nHost: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
    b"GET http://h:1/p?q HTTP/1.1\r\nHost: x\r\n\r\nGET * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 40 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.0\r\nX: " + b"v" * 40 + b"\r\n\r\n",
    # what the compiled twin judges itself (origin_head), and what it leaves to the parser
    b"GET /a HTTP/1.1\r\nHost: h:80\r\nConnection: Keep-Alive , CLOSE\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive,\tx\r\n\r\n",
    b"GET /a HTTP/1.0\r\nConnection:  KEEP-ALIVE \r\nExpect: 100-continue\r\n\r\n",
    b"GET /a HTTP/1.0\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"GET /a HTTP/1.2\r\nHost: h\r\n\r\n",
    b"GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: bad host\r\n\r\nGET /b HTTP/1.1\r\nHost: good\r\n\r\n",
    b"GET /a HTTP/1.1\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: h\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nabGET /c HTTP/1.1\r\n"
    b"Host: h\r\n\r\n",
    # what the compiled twin ends itself (on_headers_complete), and what it hands over
    b"PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\nHEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"PATCH /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
    b"PROPFIND /a HTTP/1.1\r\nHost: h\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"DELETE /a HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
    b"GET /a HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"CONNECT h:1 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
]


class Recorder:
    """The reference on_headers_complete, counting the heads handed to it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, parser: RequestParser) -> None:
        self.calls += 1
        RequestParser.on_headers_complete(parser)


@pytest.fixture
def handed_over() -> Iterator[Recorder]:
    """The compiled on_headers_complete bound to a Recorder for one test."""
    recorder = Recorder()
    native._native.bind_parser(RequestParser, Request, Body, recorder,
                               RequestParser.on_message_complete, RequestParser.on_body)
    try:
        yield recorder
    finally:
        native._native.bind_parser(RequestParser, Request, Body,
                                   RequestParser.on_headers_complete,
                                   RequestParser.on_message_complete, RequestParser.on_body)


@pytest.mark.parametrize(("data", "max_body", "handed"), [
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", 0, 0),
    (b"GET / HTTP/1.0\r\n\r\nGET /b?c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0, 0),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", 2, 0),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 2, 1),  # 413
    (b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 0, 1),  # absolute-form
    (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n", 0, 1),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 1),
    (b"GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", 0, 1),  # 400
])
def test_which_heads_end_in_c(handed_over: Recorder, data: bytes, max_body: int,
                              handed: int) -> None:
    limits = ParserLimits(max_body=max_body)
    for host in (b"127.0.0.1:8080", b"x"):  # the Host cache: validated once, by the reference
        RequestParser(limits, HeadFields).feed(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    handed_over.calls = 0
    parser = RequestParser(limits, native.head_fields)
    parser.feed(data)
    assert handed_over.calls == handed
    assert parse(HeadFields, data, [], limits) == parse(native.head_fields, data, [], limits)


def test_a_host_not_validated_yet_goes_to_the_reference(handed_over: Recorder) -> None:
    host = f"h{uuid.uuid4().hex}.example".encode()
    data = b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    for handed in (1, 1):  # validated (and remembered) by the reference, then ended in C
        parser = RequestParser(ParserLimits(), native.head_fields)
        parser.feed(data)
        assert handed_over.calls == handed and parser.ready[0].target == b"/"


def test_the_end_of_a_head_refuses_what_is_not_its_parser() -> None:
    fields = native.head_fields(100, 10, 100)
    with pytest.raises(RuntimeError):
        fields.on_headers_complete()  # bound to no parser: refuses, never crashes
    with pytest.raises(RuntimeError):
        fields.on_message_complete()
    with pytest.raises(RuntimeError):
        fields.on_body(b"x")
    other = RequestParser(ParserLimits(), native.head_fields)
    fields.parser = other  # not the parser whose fields these are
    with pytest.raises(RuntimeError):
        fields.on_headers_complete()
    with pytest.raises(TypeError):
        native._native.bind_parser(RequestParser, Request, dict,
                                   RequestParser.on_headers_complete,
                                   RequestParser.on_message_complete, RequestParser.on_body)
    other.close()
    assert fields.parser is other and other._fields.parser is None


def test_a_parser_closed_frees_its_requests() -> None:
    """The C code's references: every object it makes or keeps is released (the Request
    and Body it makes, the values it stores in them and in the parser)."""
    data = b"GET /r HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
    target_probe = [b"/r"]
    def run() -> None:
        for _ in range(200):
            parser = RequestParser(ParserLimits(), native.head_fields)
            parser.feed(data)
            req = parser.ready.popleft()
            target_probe.append(req.target)
            del target_probe[-1]
            parser.close()
    alone()
    run()
    gc.collect()
    singletons = [True, False, None, b"", "GET", "1.1", 0]
    before = [sys.getrefcount(o) for o in singletons]
    objects = len(gc.get_objects())
    run()
    gc.collect()
    assert [sys.getrefcount(o) for o in singletons] == before
    assert len(gc.get_objects()) <= objects


@pytest.mark.parametrize("data", CASES)
@pytest.mark.parametrize("limits", LIMITS)
def test_the_parser_on_either_agrees_on_known_cases(data: bytes, limits: ParserLimits) -> None:
    for pieces in ([], list(range(1, len(data)))):  # whole, then byte by byte
        assert parse(HeadFields, data, pieces, limits) == \
            parse(native.head_fields, data, pieces, limits)


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data(), requests(), st.lists(st.integers(0, 600), max_size=5), st.booleans(),
       st.sampled_from(LIMITS))
def test_the_parser_on_either_agrees_on_generated_requests(
        data: st.DataObject, req: tuple[bytes, Any], pieces: list[int], mutate: bool,
        limits: ParserLimits) -> None:
    raw = data.draw(mutations(req[0])) if mutate else req[0]
    assert parse(HeadFields, raw, pieces, limits) == parse(native.head_fields, raw, pieces,
                                                           limits)


@pytest.mark.parametrize("read", [0, 1, 3, 7])
@pytest.mark.parametrize(("head", "pieces", "max_body"), [
    (b"Content-Length: 12", (b"efg", b"hijkl"), 0),
    (b"Content-Length: 12", (b"efg", b"hijkl"), 12),
    (b"Transfer-Encoding: chunked", (b"3\r\nefg\r\n", b"5\r\nhijkl\r\n0\r\n\r\n"), 0),
    # the limit passed in a later piece: 413 from the body reader
    (b"Transfer-Encoding: chunked", (b"3\r\nefg\r\n", b"5\r\nhijkl\r\n0\r\n\r\n"), 9),
])
def test_a_body_fed_while_the_app_reads_it(read: int, head: bytes, pieces: tuple[bytes, ...],
                                           max_body: int) -> None:
    """Pieces of a body arriving after the app has read part of it (llhttp's on_body,
    in C for the native engine): the same buffer, counts, reads and limit."""
    start = b"POST / HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n"
    first = b"abcd" if head.startswith(b"Content") else b"4\r\nabcd\r\n"

    def run(fields: FieldsFactory) -> list[Any]:
        parser = RequestParser(ParserLimits(max_body=max_body), fields)
        seen: list[Any] = []
        try:
            parser.feed(start + first)
            body = parser.ready[0].body
            for piece in pieces:
                seen.append(call(body.read, read))
                seen.append(call(parser.feed, piece))
                seen.append((bytes(body._buf), body._pos, body.received, body.complete,
                             repr(parser.error)))
            seen.append(call(body.read))
        finally:
            parser.close()
        return seen

    assert run(HeadFields) == run(native.head_fields)
