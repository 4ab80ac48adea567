"""The parser facade: each input fed whole, one byte at a time, and in random chunks."""

from __future__ import annotations

import gc
import random

import pytest

from prefork.errors import HTTPError
from prefork.http.parser import ParserLimits, RequestParser
from prefork.http.request import Request


def feed_all(data: bytes, mode: str, seed: int = 0) -> RequestParser:
    parser = RequestParser(ParserLimits(limit_request_line=100, limit_request_fields=10,
                           limit_request_field_size=200, head_limit=2000))
    if mode == "whole":
        parser.feed(data)
    elif mode == "bytes":
        for i in range(len(data)):
            parser.feed(data[i:i + 1])
    else:
        rng = random.Random(seed)
        i = 0
        while i < len(data):
            n = rng.randint(1, 17)
            parser.feed(data[i:i + n])
            i += n
    return parser


MODES = ["whole", "bytes", "random"]


def bodies(parser: RequestParser) -> list[bytes]:
    return [r.body.read() for r in parser.ready]


@pytest.mark.parametrize("mode", MODES)
def test_simple_get(mode: str) -> None:
    p = feed_all(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n", mode)
    assert p.error is None and len(p.ready) == 1
    req: Request = p.ready[0]
    assert (req.method, req.target, req.version) == ("GET", b"/a?b=c", "1.1")
    assert req.headers == [(b"Host", b"x"), (b"X-A", b"1")]
    assert req.keep_alive and req.body.complete and p.idle


@pytest.mark.parametrize("mode", MODES)
def test_pipelined_with_bodies(mode: str) -> None:
    data = (b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nde\r\n1;ext=1\r\nf\r\n0\r\n\r\n"
            b"GET /3 HTTP/1.0\r\n\r\n")
    p = feed_all(data, mode, seed=7)
    assert p.error is None
    assert [r.target for r in p.ready] == [b"/1", b"/2", b"/3"]
    assert bodies(p) == [b"abc", b"def", b""]
    assert [r.keep_alive for r in p.ready] == [True, True, False]
    assert p.ready[1].chunked and p.ready[0].content_length == 3


@pytest.mark.parametrize("mode", MODES)
def test_trailing_partial_request_stays_pending(mode: str) -> None:
    p = feed_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHo", mode)
    assert len(p.ready) == 1 and not p.idle and p.error is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("data, status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\x00\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GE@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 300 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: v\r\n" * 11 + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: upgrade\r\n"
     b"Content-Length: 2\r\n\r\nab", 400),
])
def test_rejections(data: bytes, status: int, mode: str) -> None:
    p = feed_all(data + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", mode, seed=3)
    assert isinstance(p.error, HTTPError), p.ready
    assert p.error.status == status
    assert p.stopped
    assert all(r.target != b"/smuggled" for r in p.ready), "no request after an error"


def test_requests_before_an_error_are_kept() -> None:
    p = feed_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nBad\r\n\r\n", "whole")
    assert [r.target for r in p.ready] == [b"/ok"]
    assert p.error is not None and p.error.status == 400


def test_head_limit_caps_unterminated_head() -> None:
    p = RequestParser(ParserLimits(head_limit=1000))
    p.feed(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for _ in range(20):
        p.feed(b"X-Long: " + b"a" * 90 + b"\r\n")
    assert p.error is not None and p.error.status == 431


def test_bytes_after_connection_close_are_dropped_silently() -> None:
    p = feed_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGARBAGE", "whole")
    assert len(p.ready) == 1 and not p.ready[0].keep_alive
    assert p.error is None and p.stopped


def test_upgrade_without_body_is_served_then_closed() -> None:
    p = feed_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: upgrade\r\n\r\n\x81\x00", "whole")
    assert len(p.ready) == 1 and p.ready[0].upgrade and not p.ready[0].keep_alive
    assert p.stopped and p.error is None


def test_expect_continue_and_connection_tokens() -> None:
    p = feed_all(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n"
                 b"Connection: Keep-Alive, Close\r\nContent-Length: 1\r\n\r\n", "whole")
    req = p.ready[0]
    assert req.expect_continue and not req.keep_alive and not req.body.complete


def test_body_limit_gives_413() -> None:
    p = RequestParser(ParserLimits(max_body=4))
    p.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
    assert p.error is not None and p.error.status == 413


def test_many_tiny_chunks_are_fine() -> None:
    p = RequestParser(ParserLimits(framing_limit=8192))
    p.feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(5000):
        p.feed(b"1;e=v\r\nx\r\n")
    p.feed(b"0\r\n\r\n")
    assert p.error is None and p.ready[0].body.read() == b"x" * 5000


def test_endless_chunk_extension_is_refused() -> None:
    p = RequestParser(ParserLimits(framing_limit=8192))
    p.feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=")
    for _ in range(100):
        p.feed(b"a" * 1000)
        if p.error:
            break
    assert p.error is not None and p.error.status == 400
    assert p.ready[0].body.received == 0


def test_trailing_whitespace_is_not_part_of_the_value() -> None:
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nHost: a \t\r\nX: b  \r\n\r\n")
    assert p.ready[0].headers == [(b"Host", b"a"), (b"X", b"b")]


def test_closed_parser_needs_no_cyclic_collection() -> None:
    # llhttp's parser holds our callbacks and we hold it: close() breaks that cycle, so a
    # closed connection's parser is freed by reference counting alone.
    def garbage_cycles(close: bool) -> int:
        gc.collect()
        gc.disable()
        try:
            parser = RequestParser()
            parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert len(parser.ready) == 1
            if close:
                parser.close()
            del parser
            return gc.collect()
        finally:
            gc.enable()

    assert garbage_cycles(close=False) > 0  # the cycle is real
    assert garbage_cycles(close=True) == 0


def test_closed_parser_takes_no_more_bytes() -> None:
    parser = RequestParser()
    parser.close()
    parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not parser.ready and parser.error is None
    parser.close()  # twice is fine


LEFTOVER = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n\r\nhello world"
HEAD_END = LEFTOVER.index(b"\r\n\r\n") + 4


@pytest.mark.parametrize("rest,expected", [
    (b"", None),  # "ld" is the start of a method still arriving: no judgement yet
    (b" / HTTP/1.1\r\nHost: a\r\n\r\n", "unknown method 'ld'"),
    (b"\x01 / HTTP/1.1\r\n\r\n", "the method is not a token (RFC 9110 §9.1)"),
])
def test_bytes_left_after_a_body_are_judged_as_themselves_however_they_are_cut(
        rest: bytes, expected: str | None) -> None:
    """A body of 11 bytes ("\\r\\nhello wor") is followed by "ld...": the judgement of the
    method is made on "ld...", not on the body's words, at every cut from the end of the
    head on (a head cut across reads is judged on the piece's tail: see
    refused_request_start)."""
    data = LEFTOVER + rest
    seen = set()
    for cut in range(HEAD_END, len(data) + 1):
        parser = RequestParser(ParserLimits())
        for piece in (data[:cut], data[cut:]):
            if piece:
                parser.feed(piece)
        assert [r.method for r in parser.ready] == ["POST"]
        assert parser.ready[0].body.read() == b"\r\nhello wor"
        seen.add(parser.error.detail if parser.error is not None else None)
    assert seen == {expected}
