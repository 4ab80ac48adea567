"""HeadFields, the parser's callbacks for a head's fields: the compiled twin
(prefork._native.HeadFields, bound by prefork.native) against the reference
(prefork.http.fields), call for call; and the whole parser built on each, byte for byte.

1. Any sequence of callbacks (message begins, target pieces, field lines of any bytes,
   with the framing names in any case, the head ending, trailer fields) leaves both with
   the same notes, and each call returns or raises alike (type and words).
2. The same bytes, cut into the same pieces, give two RequestParsers (one per HeadFields)
   the same requests (every attribute a request has, and its body) and the same error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefork.http.fields import HeadFields
from prefork.http.parser import FieldsFactory, ParserLimits, RequestParser
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


REQUEST_ATTRS = ("method", "target", "version", "headers", "keep_alive", "content_length",
                 "chunked", "expect_continue", "upgrade", "authority", "path_query")


def parse(fields: FieldsFactory, data: bytes, pieces: list[int], limits: ParserLimits
          ) -> tuple[list[tuple[Any, ...]], Any, bool]:
    parser = RequestParser(limits, fields)
    start = 0
    for cut in [*sorted(pieces), len(data)]:
        end = max(start, min(cut, len(data)))
        parser.feed(data[start:end])
        start = end
    seen = []
    for req in parser.ready:
        body = call(req.body.read) if req.body.complete else ("incomplete", None)
        seen.append((*(getattr(req, a) for a in REQUEST_ATTRS), body))
    error = (type(parser.error).__name__, str(parser.error)) if parser.error else None
    return seen, error, parser.idle


LIMITS = [ParserLimits(), ParserLimits(limit_request_line=12, limit_request_fields=2,
                                       limit_request_field_size=24, head_limit=80)]
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
]


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
