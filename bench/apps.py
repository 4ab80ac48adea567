"""The WSGI apps every server is benchmarked with (the same module for all of them)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

HELLO = b"Hello, world!"
BIG = b"x" * 65536
DOC = [{"id": i, "name": f"item {i}", "price": i * 1.25, "tags": ["a", "b", "c"],
        "active": i % 2 == 0} for i in range(200)]


def _reply(start_response: Callable[..., Any], body: bytes,
           ctype: str = "text/plain") -> list[bytes]:
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    return _reply(start_response, HELLO)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/big":
        return _reply(start_response, BIG, "application/octet-stream")
    if path == "/io":
        time.sleep(0.002)
        return _reply(start_response, HELLO)
    if path == "/cpu":
        return _reply(start_response, json.dumps(DOC).encode(), "application/json")
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        return _reply(start_response, environ["wsgi.input"].read(length),
                      "application/octet-stream")
    if path == "/slowbig":  # for the stalled-reader scenario: bigger than socket buffers
        return _reply(start_response, b"y" * (3 << 20), "application/octet-stream")
    return _reply(start_response, HELLO)
