"""The conformance tests' app: it reports what it was given, and answers with the
response shapes the RFC has rules for."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/stream":  # no Content-Length: the server chooses the framing
        start_response("200 OK", [("Content-Type", "text/plain")])

        def pieces() -> Iterator[bytes]:
            yield b"one,"
            yield b"two"

        return pieces()
    if path == "/204":
        # An app that wrongly declares a length: RFC 9110 §8.6 forbids it in a 204.
        start_response("204 No Content", [("Content-Length", "0")])
        return []
    if path == "/304":
        start_response("304 Not Modified", [("ETag", '"x"')])
        return [b""]
    if path == "/sized":
        body = b"x" * int(q.get("n", "10"))
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/noread":  # answers without reading the request body
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    body = environ["wsgi.input"].read()
    out = json.dumps({
        "method": environ["REQUEST_METHOD"], "path": path,
        "query": environ["QUERY_STRING"], "protocol": environ["SERVER_PROTOCOL"],
        "host": environ.get("HTTP_HOST"), "body": body.decode("latin-1"),
        "headers": {k: v for k, v in environ.items()
                    if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")},
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]
