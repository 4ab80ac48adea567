"""The WSGI adapter without sockets: environ building and response framing."""

from __future__ import annotations

import io
import sys
from typing import IO, Any

import pytest

from prefork.http.parser import RequestParser
from prefork.http.request import Request
from prefork.wsgi import Exchange, FileWrapper, base_environ, build_environ


class Out:
    def __init__(self) -> None:
        self.data = bytearray()
        self.files: list[tuple[int, int]] = []

    def send(self, data: bytes) -> None:
        self.data += data

    def sendfile(self, file: IO[bytes], offset: int, count: int) -> int:
        file.seek(offset)
        self.data += file.read(count)
        self.files.append((offset, count))
        return count

    def parts(self) -> tuple[bytes, bytes]:
        head, _, body = bytes(self.data).partition(b"\r\n\r\n")
        return head, body


def parse(raw: bytes) -> Request:
    p = RequestParser()
    p.feed(raw)
    assert p.error is None and p.ready
    return p.ready[0]


def run(app: Any, raw: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        keep_alive: bool = True) -> tuple[Exchange, Out]:
    req = parse(raw)
    out = Out()
    ex = Exchange(out, req, keep_alive)
    environ = build_environ(req, base_environ("h", "80", "", True), "1.2.3.4", "5")
    ex.run(app, environ)
    return ex, out


def simple(body: list[bytes], headers: list[tuple[str, str]] | None = None,
           status: str = "200 OK") -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status, headers or [])
        return body
    return app


def test_single_item_gets_content_length_in_one_send() -> None:
    ex, out = run(simple([b"hello"]))
    head, body = out.parts()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 5" in head and body == b"hello" and ex.keep_alive


def test_iterable_without_length_is_chunked() -> None:
    _ex, out = run(simple([b"a", b"", b"bc"]))
    head, body = out.parts()
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"1\r\na\r\n2\r\nbc\r\n0\r\n\r\n"


def test_http10_without_length_closes() -> None:
    ex, out = run(simple([b"a", b"b"]), b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head, body = out.parts()
    assert b"Connection: close" in head and body == b"ab" and not ex.keep_alive


def test_http10_keep_alive_with_length() -> None:
    ex, out = run(simple([b"ab"]), b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head, _ = out.parts()
    assert b"Connection: keep-alive" in head and ex.keep_alive


def test_head_keeps_length_and_sends_no_body() -> None:
    _, out = run(simple([b"hello"]), b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = out.parts()
    assert b"Content-Length: 5" in head and body == b""


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_statuses(status: str) -> None:
    _, out = run(simple([b"ignored"], status=status))
    head, body = out.parts()
    assert body == b"" and b"Content-Length" not in head and b"Transfer-Encoding" not in head


def test_declared_length_short_body_closes() -> None:
    ex, out = run(simple([b"abc", b"d"], [("Content-Length", "10")]))
    assert out.parts()[1] == b"abcd" and not ex.keep_alive


def test_declared_length_long_body_is_cut_and_closes() -> None:
    ex, out = run(simple([b"abc", b"def"], [("Content-Length", "4")]))
    assert out.parts()[1] == b"abcd" and not ex.keep_alive


@pytest.mark.parametrize("headers", [
    [("X-A", "a\r\nInjected: 1")],
    [("X-A", "a\nb")],
    [("X-A", "nul\x00")],
    [("Bad Name", "v")],
    [("Transfer-Encoding", "chunked")],
    [("Keep-Alive", "timeout=5")],
    [("Upgrade", "h2c")],
    [("Content-Length", "abc")],
])
def test_unsafe_app_headers_are_refused(headers: list[tuple[str, str]]) -> None:
    with pytest.raises((ValueError, TypeError)):
        run(simple([b"x"], headers))


@pytest.mark.parametrize("status", ["200", "OK 200", b"200 OK", "200 OK\r\nX: y", "099 Low"])
def test_bad_status_refused(status: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        run(simple([b"x"], status=status))


def test_connection_close_from_app_is_honoured_not_copied() -> None:
    ex, out = run(simple([b"x"], [("Connection", "close")]))
    head, _ = out.parts()
    assert head.count(b"Connection") == 1 and b"Connection: close" in head
    assert not ex.keep_alive


def test_start_response_twice_without_exc_info_fails() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("500 Oops", [])
        return [b""]
    with pytest.raises(AssertionError):
        run(app)


def test_exc_info_replaces_status_before_head_is_sent() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        try:
            raise ValueError("x")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"err"]
    _, out = run(app)
    assert out.parts()[0].startswith(b"HTTP/1.1 500")


def test_exc_info_after_head_reraises() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        write = start_response("200 OK", [])
        write(b"sent")
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b""]
    with pytest.raises(KeyError):
        run(app)


def test_body_before_start_response_fails() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        yield b"too early"
    with pytest.raises(AssertionError):
        run(app)


def test_str_body_refused() -> None:
    with pytest.raises(TypeError):
        run(simple(["text"]))  # type: ignore[list-item]


def test_close_called_even_on_error() -> None:
    closed = []

    class Body:
        def __iter__(self) -> Any:
            yield b"a"
            raise RuntimeError("mid-body")

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        return Body()
    with pytest.raises(RuntimeError):
        run(app)
    assert closed == [True]


def test_file_wrapper_uses_sendfile_for_real_files(tmp_path: Any) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fh = open(path, "rb")  # noqa: SIM115
    fh.seek(2)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](fh)
    _, out = run(app)
    head, body = out.parts()
    assert b"Content-Length: 8" in head and body == b"23456789" and out.files == [(2, 8)]
    assert fh.closed


def test_file_wrapper_falls_back_to_iteration() -> None:
    wrapper = FileWrapper(io.BytesIO(b"abc" * 10), blksize=7)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        return wrapper
    _, out = run(app)
    assert out.files == [] and b"Transfer-Encoding: chunked" in out.parts()[0]


# -- environ -------------------------------------------------------------------------------

def environ_for(raw: bytes, root: str = "") -> dict[str, Any]:
    req = parse(raw)
    return build_environ(req, base_environ("srv", "8080", root, True), "10.0.0.1", "4321")


def test_environ_required_keys_and_types() -> None:
    env = environ_for(b"POST /p%20q/r?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: a/b\r\n"
                      b"Content-Length: 0\r\nX-Multi: 1\r\nX-Multi: 2\r\n"
                      b"Cookie: a=1\r\nCookie: b=2\r\n\r\n")
    assert env["REQUEST_METHOD"] == "POST"
    assert env["PATH_INFO"] == "/p q/r" and env["QUERY_STRING"] == "x=1"
    assert env["RAW_URI"] == "/p%20q/r?x=1"
    assert env["CONTENT_TYPE"] == "a/b" and env["CONTENT_LENGTH"] == "0"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_X_MULTI"] == "1, 2" and env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["SERVER_NAME"] == "srv" and env["SERVER_PORT"] == "8080"
    assert env["REMOTE_ADDR"] == "10.0.0.1" and env["REMOTE_PORT"] == "4321"
    for key, value in env.items():
        if key.isupper():
            assert type(value) is str, key


def test_path_info_is_latin1_of_decoded_bytes() -> None:
    env = environ_for(b"GET /caf%C3%A9 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9"  # PEP 3333: bytes as latin-1
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café"


def test_root_path_becomes_script_name() -> None:
    env = environ_for(b"GET /api/users HTTP/1.1\r\nHost: h\r\n\r\n", root="/api")
    assert env["SCRIPT_NAME"] == "/api" and env["PATH_INFO"] == "/users"
    env = environ_for(b"GET /apix HTTP/1.1\r\nHost: h\r\n\r\n", root="/api")
    assert env["PATH_INFO"] == "/apix"


def test_underscored_header_names_are_dropped() -> None:
    env = environ_for(b"GET / HTTP/1.1\r\nHost: h\r\nX_Real_IP: 6.6.6.6\r\n\r\n")
    assert "HTTP_X_REAL_IP" not in env


def test_absolute_form_target() -> None:
    env = environ_for(b"GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: other\r\n\r\n")
    assert env["PATH_INFO"] == "/a/b" and env["QUERY_STRING"] == "c=d"
    assert env["HTTP_HOST"] == "example.com:8080"


def test_wsgi_input_reads() -> None:
    req = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 14\r\n\r\nab\ncd\nef\nlast!")
    body = req.body
    assert body.read(1) == b"a"
    assert body.readline() == b"b\n"
    assert body.readline(1) == b"c"
    assert body.readlines() == [b"d\n", b"ef\n", b"last!"]
    assert body.read() == b"" and body.read(5) == b""
