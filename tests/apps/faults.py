"""A fixture app that misbehaves on request: crashes, hangs, leaks, sleeps."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

_leak: list[bytes] = []
_never = threading.Event()


def _ok(start_response: Callable[..., Any], body: bytes) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def hang_forever() -> None:
    _never.wait()  # a deadlock, as far as anyone can tell


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/crash":
        os._exit(70)  # the worker dies mid-request, as with a segfault in a C extension
    if path == "/hang":
        if "mark" in q:
            with open(q["mark"], "w") as fh:
                fh.write(str(os.getpid()))
        hang_forever()
    if path == "/slow":
        if "mark" in q:  # tell the test this request is running
            with open(q["mark"], "w") as fh:
                fh.write(str(os.getpid()))
        time.sleep(float(q.get("s", "1")))
        return _ok(start_response, b"slow done")
    if path == "/leak":
        # Every page written (so RSS grows), cheaply: os.urandom of 64 MiB took seconds
        # on a loaded machine and starved the soak's chaos schedule.
        _leak.append(b"x" * (int(q.get("mb", "1")) << 20))
        return _ok(start_response, b"leaked")
    if path == "/pid":
        return _ok(start_response, str(os.getpid()).encode())
    if path == "/version":
        return _ok(start_response, os.environ.get("FIXTURE_VERSION", "1").encode())
    return _ok(start_response, b"ok")
