"""The chaos soak's app: every answer proves which request it answers (and X-Pid says
which worker answered).

GET  /item?id=ID            -> "ID:<pid>" (fixed length)
POST /echo?id=ID            -> the body back, prefixed "ID:" (read whole)
GET  /stream?id=ID&n=N      -> N pieces "ID-i;" with no Content-Length (chunked)
GET  /leak?mb=N             -> keeps N MiB alive in this worker (memory recycling)
GET  /hang                  -> never returns (request_timeout)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

_leak: list[bytes] = []
_never = threading.Event()


def _pid() -> tuple[str, str]:
    return ("X-Pid", str(os.getpid()))


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    rid = q.get("id", "-").encode()
    if path == "/echo":
        body = rid + b":" + environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body))), _pid()])
        return [body]
    if path == "/stream":
        n = int(q.get("n", "4"))
        start_response("200 OK", [("Content-Type", "text/plain"), _pid()])

        def pieces() -> Iterator[bytes]:
            for i in range(n):
                yield b"%s-%d;" % (rid, i)

        return pieces()
    if path == "/leak":
        _leak.append(os.urandom(int(q.get("mb", "1")) << 20))
        start_response("200 OK", [("Content-Length", "6"), _pid()])
        return [b"leaked"]
    if path == "/hang":
        _never.wait()
    body = rid + b":" + str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body))), _pid()])
    return [body]
