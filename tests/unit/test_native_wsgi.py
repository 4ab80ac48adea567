"""The compiled core's WSGI loops (prefork/_native_wsgi.c, bound by prefork/native.py)
against their Python references in wsgi.py and http/response.py: on generated inputs,
valid and not, the same result, or the same exception type and message. Both share the
references' caches, so each example runs them in a drawn order: the compiled one meets
both a cold cache (deciding by calling the reference) and a warm one (deciding alone)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("prefork._native")

from prefork import native, wsgi
from prefork.errors import BadRequest
from prefork.http import response
from prefork.http.request import Request

pytestmark = pytest.mark.timeout(120)

Outcome = tuple[str, Any]


def outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return "ok", call()
    except Exception as exc:  # the comparison is the point: any exception, by type and text
        return type(exc).__name__, str(exc)


def both(first_native: bool, python: Callable[[], Any], compiled: Callable[[], Any]
         ) -> tuple[Outcome, Outcome]:
    if first_native:
        c = outcome(compiled)
        return outcome(python), c
    p = outcome(python)
    return p, outcome(compiled)


# -- build_environ: the fields -------------------------------------------------------------

REQUEST_NAMES = [b"Host", b"host", b"Cookie", b"cookie", b"Accept", b"accept", b"X-Forwarded-For",
                 b"X_Forwarded_For", b"Content-Type", b"content-length", b"User-Agent",
                 b"Authorization", b"X-A", b"Referer", b"Via", b"Warning"]
request_names = st.one_of(st.sampled_from(REQUEST_NAMES),
                          st.binary(min_size=1, max_size=12),
                          st.text("abcXYZ-_~!", min_size=1, max_size=10).map(str.encode))
request_fields = st.lists(st.tuples(request_names, st.binary(max_size=20)), max_size=12)


def stand_in(headers: list[Any], target: bytes = b"/x?y") -> Request:
    """A request as the parser hands it on, with any fields at all (build_environ reads
    them as given: the parser has checked them before)."""
    req = Request(0, list(headers))
    req.method, req.target = "GET", target
    return req


def environ(build: Callable[..., dict[str, Any]], req: Request) -> dict[str, Any]:
    env = dict(build(req, wsgi.base_environ("h", "80", "", True), "10.0.0.1", "5000"))
    assert env.pop("wsgi.input") is req.body
    return env


@settings(max_examples=1500, deadline=None)
@given(request_fields, st.booleans())
def test_environ_fields_agree(headers: list[tuple[bytes, bytes]], first_native: bool) -> None:
    p, c = both(first_native, lambda: environ(wsgi.build_environ, stand_in(headers)),
                lambda: environ(native.build_environ, stand_in(headers)))
    assert p == c


def test_environ_fields_refuse_a_repeated_singleton_and_join_cookies() -> None:
    env = environ(native.build_environ, stand_in([
        (b"Cookie", b"a=1"), (b"cookie", b"b=2"), (b"Accept", b"x"), (b"ACCEPT", b"y"),
        (b"X_Bad", b"dropped")]))
    assert env["HTTP_COOKIE"] == "a=1; b=2" and env["HTTP_ACCEPT"] == "x, y"
    assert not any(k.startswith("HTTP_X") for k in env)
    with pytest.raises(BadRequest, match="repeated host field"):
        environ(native.build_environ, stand_in([(b"Host", b"a"), (b"host", b"b")]))


def test_environ_fields_refuse_what_the_parser_never_gives() -> None:
    for bad in ([(b"Host", "text")], [(b"Host",)], ["Host: x"]):
        with pytest.raises(TypeError):
            environ(native.build_environ, stand_in(bad))


# -- response_fields ------------------------------------------------------------------------

RESPONSE_NAMES = ["Content-Type", "Content-Length", "content-length", "Connection",
                  "connection", "X-A", "Set-Cookie", "Transfer-Encoding", "Keep-Alive",
                  "Bad Name", "", "É", "X-\u20ac", "Upgrade", "te"]
values = st.one_of(
    st.sampled_from(["12", " 12 ", "0", "012", "1_2", "-1", "", "²", "١٢", "close",
                     "Keep-Alive, CLOSE", "keep-alive", "x\r\ny", "a\tb", "\x7f", "é",
                     "\u20ac", "9" * 19, "9" * 40]),
    st.text(max_size=12),
)
items = st.one_of(
    st.tuples(st.one_of(st.sampled_from(RESPONSE_NAMES), st.text(max_size=8)), values),
    st.tuples(st.sampled_from(RESPONSE_NAMES), st.integers()),  # a value that is no str
    st.tuples(st.binary(max_size=4), values),  # a name that is no str
    st.just(("A", "b", "c")),
    st.just(["Content-Type", "text/plain"]),  # a list, not a tuple
    st.just("Content-Type: text/plain"),
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(items, max_size=6), st.booleans())
def test_response_fields_agree(headers: list[Any], first_native: bool) -> None:
    p, c = both(first_native, lambda: response.response_fields(headers),
                lambda: native.NativeExchange.fields(headers))
    assert p == c


def test_response_fields_read_length_and_connection() -> None:
    fields = native.NativeExchange.fields
    assert fields([("Content-Type", "text/plain"), ("Content-Length", "13")]) == (13, False,
                                                                                False)
    assert fields([("Connection", "Close")]) == (None, True, True)
    assert fields([("Content-Length", "9" * 30)]) == (int("9" * 30), False, False)
    with pytest.raises(ValueError, match="invalid Content-Length"):
        fields([("Content-Length", "-1")])
    with pytest.raises(ValueError, match="control character"):
        fields([("X-A", "a\r\nSet-Cookie: evil")])


# -- encode_head ----------------------------------------------------------------------------

text = st.text(st.characters(max_codepoint=0x2FF), max_size=16)


@settings(max_examples=1500, deadline=None)
@given(text, st.lists(st.one_of(st.tuples(text, text),
                                st.tuples(text, st.integers()),
                                st.just(("a", "b", "c"))), max_size=6),
       st.binary(max_size=40))
def test_encode_head_agrees(status: str, headers: list[Any], extra: bytes) -> None:
    p = outcome(lambda: response.encode_head(status, headers, extra))
    c = outcome(lambda: native.NativeExchange.encode(status, headers, extra))
    assert p == c


def test_encode_head_is_the_reference_on_a_real_head() -> None:
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Set-Cookie", "a=é")]
    extra = b"Server: prefork\r\nContent-Length: 5\r\n"
    assert native.NativeExchange.encode("200 OK", headers, extra) == \
        response.encode_head("200 OK", headers, extra)
    big = [(f"X-{i}", "v" * 1000) for i in range(200)]
    assert native.NativeExchange.encode("404 Not Found", big, b"") == \
        response.encode_head("404 Not Found", big, b"")


def test_no_reference_is_leaked() -> None:
    """Refcounts stay put over many calls, on success and on each error path."""
    headers = [("Content-Type", "text/plain"), ("Content-Length", "13")]
    bad = [("Content-Length", " 1 x")]
    req_headers = [(b"Host", b"x"), (b"Cookie", b"a"), (b"Cookie", b"b")]
    objects = [*headers[0], *headers[1], bad[0][1], *req_headers[1]]
    req = _request(b"/a?b", b"Cookie: a\r\n", b"1.1")
    base = wsgi.base_environ("h", "80", "", True)
    objects += [req.target, req.body, req.method, base["SERVER_NAME"]]
    before: list[int] = []
    for turn in range(1001):
        if turn == 1:  # the first turn fills the references' caches (names, keys)
            gc.collect()  # and the parser that made `req` (a cycle) goes
            before = [sys.getrefcount(o) for o in objects]
        native.build_environ(req, base, "a", "1")
        native.NativeExchange.fields(headers)
        outcome(lambda: native.NativeExchange.fields(bad))
        native.NativeExchange.encode("200 OK", headers, b"")
        outcome(lambda: native.NativeExchange.encode("200 \u20ac", headers, b""))
        native.build_environ(stand_in(req_headers), base, "a", "1")
        outcome(lambda: native.build_environ(stand_in(req_headers * 2), base, "a", "1"))
    gc.collect()
    assert [sys.getrefcount(o) for o in objects] == before


# -- build_environ --------------------------------------------------------------------------

TARGET_CASES = [b"/", b"/a/b?x=1&y", b"/caf%C3%A9?q=%20", b"*", b"http://h.example:8/p?q",
                b"/?", b"/a?b?c", b"/%E9x", b"/a%2Fb"]
ENV_FIELDS = [b"Accept: a\r\nAccept: b\r\n", b"Cookie: a=1\r\nCookie: b=2\r\n",
              b"Referer: x\r\nReferer: y\r\n", b"X_Under: 1\r\n", b""]


def _request(target: bytes, fields: bytes, version: bytes) -> Any:
    from prefork.http.parser import RequestParser

    method = b"OPTIONS" if target == b"*" else b"GET"
    parser = RequestParser()
    parser.feed(b"%s %s HTTP/%s\r\nHost: h\r\n%s\r\n" % (method, target, version, fields))
    assert parser.error is None and parser.ready, parser.error
    return parser.ready[0]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TARGET_CASES), st.sampled_from(ENV_FIELDS),
       st.sampled_from([b"1.1", b"1.0"]), st.sampled_from(["", "/a", "/app"]))
def test_build_environ_agrees(target: bytes, fields: bytes, version: bytes, root: str) -> None:
    base = wsgi.base_environ("h", "80", root, True)
    req_p, req_c = _request(target, fields, version), _request(target, fields, version)
    p = outcome(lambda: wsgi.build_environ(req_p, base, "10.0.0.1", "5000"))
    c = outcome(lambda: native.build_environ(req_c, base, "10.0.0.1", "5000"))
    if p[0] == "ok" and c[0] == "ok":  # each environ has its own request's body
        assert p[1]["wsgi.input"] is req_p.body and c[1]["wsgi.input"] is req_c.body
        p[1]["wsgi.input"] = c[1]["wsgi.input"] = None
    assert p == c
    assert req_p.headers == req_c.headers


class Renamed(Request):
    """A subclass whose method is a property: read by name, as the reference reads it."""

    @property  # type: ignore[override]
    def method(self) -> str:
        return "PATCH"

    @method.setter
    def method(self, value: str) -> None:  # kept in Request's slot, which is not read
        Request.method.__set__(self, value)  # type: ignore[attr-defined]


def test_build_environ_reads_the_request_as_the_reference_does() -> None:
    """The compiled build_environ reads Request's own __slots__ where they are stored; a
    subclass, an unset field or another class entirely is read by name, as the reference
    reads it (the same environ, or the same AttributeError)."""
    base = wsgi.base_environ("h", "80", "", True)
    plain = _request(b"/p?q=1", b"", b"1.1")
    renamed = Renamed(0, list(plain.headers))
    for name in Request.__slots__:
        if name != "method" and hasattr(plain, name):
            setattr(renamed, name, getattr(plain, name))
    unset = _request(b"/u", b"", b"1.1")
    del unset.version
    for req in (plain, renamed, plain, unset, plain):
        p = outcome(lambda req=req: wsgi.build_environ(req, base, "10.0.0.1", "5000"))
        c = outcome(lambda req=req: native.build_environ(req, base, "10.0.0.1", "5000"))
        assert p == c
    assert native.build_environ(renamed, base, "a", "1")["REQUEST_METHOD"] == "PATCH"
    assert outcome(lambda: native.build_environ(unset, base, "a", "1"))[0] == "AttributeError"


def test_a_roomy_base_gives_environs_that_do_not_grow() -> None:
    """native.environ_base: the same keys and values in the same order, a copy (the
    listener's base is not shared), and room for a request's keys: a copy of it takes 32
    more without growing its table, where a copy of the plain base grows."""
    base = wsgi.base_environ("h", "80", "", True)
    roomy = native.environ_base(base)
    assert roomy == base and list(roomy) == list(base) and roomy is not base
    roomy["x"] = 1
    assert "x" not in base
    del roomy["x"]
    for source, grows in ((roomy, False), (base, True)):
        environ = source.copy()
        size = sys.getsizeof(environ)
        for i in range(32):
            environ[f"HTTP_X_{i}"] = "v"
        assert (sys.getsizeof(environ) > size) is grows
    req = _request(b"/p?q=1", b"Accept: */*\r\n", b"1.1")
    environ = native.build_environ(req, roomy, "10.0.0.1", "5000")
    assert environ == wsgi.build_environ(req, base, "10.0.0.1", "5000")
    with pytest.raises(TypeError):
        native._native.roomy_dict([], 1)
    with pytest.raises(ValueError):
        native._native.roomy_dict({}, -1)
