"""The built-in demo app, served when no app is configured.

It shows which worker process answered, so reloading the page in a browser shows the
requests spread over the workers. Runs in pool threads of every worker.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from prefork import __version__

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prefork is serving</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; color: #222; }}
h1 {{ font-size: 1.6rem; }} code {{ background: #f3f3f3; padding: 0 .3em; }}
table {{ border-collapse: collapse; }} td {{ padding: .2rem 1rem .2rem 0; }}
.worker {{ font-size: 2.5rem; font-weight: bold; color: #0a6; }}
</style></head><body>
<h1>prefork {version} is serving</h1>
<p>This page was answered by</p>
<p class="worker">worker {number} &middot; pid {pid}</p>
<table>
<tr><td>requests served by this worker</td><td>{served}</td></tr>
<tr><td>worker started</td><td>{age:.0f} s ago</td></tr>
<tr><td>your request</td><td><code>{method} {path}</code> from {remote}</td></tr>
</table>
<p>Reload the page to see requests spread over the workers.
The same facts as JSON: <a href="/json">/json</a>.</p>
<p>Serve your own app with <code>prefork-serve myproject.wsgi:application</code>
or <code>app = "myproject.wsgi:application"</code> in <code>config.toml</code>.</p>
</body></html>
"""


def _facts(environ: dict[str, Any]) -> dict[str, Any]:
    worker = environ.get("prefork.worker")
    return {
        "pid": os.getpid(),
        "worker": getattr(worker, "number", 0),
        "requests_served": worker.requests_served() if worker is not None else 0,
        "worker_age_s": round(time.monotonic() - getattr(worker, "started", time.monotonic()),
                              3),
        "server": f"prefork/{__version__}",
    }


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    method = environ["REQUEST_METHOD"]
    if method not in ("GET", "HEAD"):
        body = b"Only GET and HEAD are served by the demo.\n"
        start_response("405 Method Not Allowed", [
            ("Content-Type", "text/plain"), ("Allow", "GET, HEAD"),
            ("Content-Length", str(len(body)))])
        return [body]
    facts = _facts(environ)
    if path == "/json":
        body = json.dumps(facts).encode() + b"\n"
        ctype = "application/json"
    elif path == "/":
        body = PAGE.format(
            version=__version__, number=facts["worker"], pid=facts["pid"],
            served=facts["requests_served"], age=facts["worker_age_s"],
            method=html.escape(method), path=html.escape(environ.get("RAW_URI", path)),
            remote=html.escape(environ.get("REMOTE_ADDR", "")),
        ).encode()
        ctype = "text/html; charset=utf-8"
    else:
        body = b"Not found. Try / or /json.\n"
        start_response("404 Not Found", [("Content-Type", "text/plain"),
                                         ("Content-Length", str(len(body)))])
        return [body]
    headers = [("Content-Type", ctype), ("Content-Length", str(len(body))),
               ("Cache-Control", "no-store")]
    if path == "/":
        # A browser would keep reusing one keep-alive connection, and so one worker; a new
        # connection per page view lets a reload show the spread over workers.
        headers.append(("Connection", "close"))
    start_response("200 OK", headers)
    return [body]
