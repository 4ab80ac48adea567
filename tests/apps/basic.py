"""Fixture apps for the integration tests: each route exercises one part of PEP 3333."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]
_barriers: dict[int, threading.Barrier] = {}
_barriers_lock = threading.Lock()


def _text(start_response: StartResponse, body: bytes, status: str = "200 OK",
          ctype: str = "text/plain") -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


class Closing:
    """An iterable whose close() leaves a mark, to prove the server calls it."""

    def __init__(self, parts: list[bytes], mark: str | None) -> None:
        self.parts = parts
        self.mark = mark

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)

    def close(self) -> None:
        if self.mark:
            with open(self.mark, "w") as fh:
                fh.write("closed")


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    q = _query(environ)
    if path == "/hello":
        return _text(start_response, b"Hello, world!")
    if path == "/pid":
        return _text(start_response, str(os.getpid()).encode())
    if path == "/environ":
        safe = {k: v for k, v in environ.items() if isinstance(v, str | bool | int)}
        safe["wsgi.version"] = list(environ["wsgi.version"])
        return _text(start_response, json.dumps(safe).encode(), ctype="application/json")
    if path == "/echo":
        length = environ.get("CONTENT_LENGTH")
        stream = environ["wsgi.input"]
        body = stream.read(int(length)) if length else stream.read()
        return _text(start_response, body, ctype="application/octet-stream")
    if path == "/echo-lines":
        lines = list(environ["wsgi.input"])
        return _text(start_response, json.dumps([ln.decode() for ln in lines]).encode())
    if path == "/read-some":
        n = int(q.get("n", "1"))
        data = environ["wsgi.input"].read(n)
        return _text(start_response, data)
    if path == "/ignore-body":
        return _text(start_response, b"ignored")
    if path == "/chunked":
        start_response("200 OK", [("Content-Type", "text/plain")])
        n = int(q.get("n", "3"))
        return (b"part %d\n" % i for i in range(n))
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"and ", b"returned"]
    if path == "/slow":
        mark = q.get("mark")
        if mark:
            with open(mark, "w") as fh:
                fh.write(str(os.getpid()))
        time.sleep(float(q.get("s", "1")))
        return _text(start_response, b"slow done")
    if path == "/raise":
        raise RuntimeError("boom from the fixture app")
    if path == "/raise-late":
        def gen() -> Iterator[bytes]:
            yield b"first part\n"
            raise RuntimeError("late boom from the fixture app")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/short":  # declares more than it sends
        start_response("200 OK", [("Content-Length", "100")])
        return [b"only this"]
    if path == "/long":  # sends more than it declares
        start_response("200 OK", [("Content-Length", "4")])
        return [b"abcdefgh"]
    if path == "/bad-header":
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: x=1")])
        return [b"never"]
    if path == "/hop":
        start_response("200 OK", [("Transfer-Encoding", "chunked")])
        return [b"never"]
    if path == "/close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing([b"a", b"b"], q.get("mark"))
    if path == "/file":
        fh = open(q["path"], "rb")  # noqa: SIM115 - the server closes it via the wrapper
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](fh)
    if path == "/no-content":
        start_response("204 No Content", [])
        return [b""]
    if path == "/live-connections":
        import gc

        from prefork.connection import Connection

        count = sum(1 for o in gc.get_objects() if type(o) is Connection)
        return _text(start_response, str(count).encode())
    if path == "/chunks":  # a streamed body (chunked on HTTP/1.1): n pieces of `size`
        piece = b"c" * int(q.get("size", "65536"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (piece for _ in range(int(q.get("n", "16"))))
    if path == "/big":
        n = int(q.get("n", "65536"))
        return _text(start_response, b"x" * n, ctype="application/octet-stream")
    if path == "/rendezvous":  # answers only once n requests are running at the same time
        n = int(q.get("n", "2"))
        with _barriers_lock:
            barrier = _barriers.setdefault(n, threading.Barrier(n))
        try:
            barrier.wait(timeout=float(q.get("timeout", "10")))
        except threading.BrokenBarrierError:
            return _text(start_response, b"alone", status="504 Gateway Timeout")
        return _text(start_response, b"met")
    if path == "/threads":
        return _text(start_response, str(threading.active_count()).encode())
    return _text(start_response, b"not found", status="404 Not Found")


def factory() -> Callable[..., Iterable[bytes]]:
    return app


def validated() -> Callable[..., Iterable[bytes]]:
    """The app wrapped in wsgiref's PEP 3333 validator (it raises on any violation)."""
    from wsgiref.validate import validator

    return validator(app)
