"""The load-test app: realistic traffic shapes for locust to drive against prefork.

Routes:
  GET  /  and  /page/<n>        HTML pages, as a browsing user sees them
  GET  /api/items[?limit=N]     JSON list        POST /api/items   create (JSON body)
  GET  /api/items/<id>          JSON item        PUT  /api/items/<id>  update
                                                 DELETE /api/items/<id>
  POST /upload                  form or file upload (multipart or raw), answers size + sha256
  GET  /stream?chunks=N&size=B  a streamed (chunked) download
  GET  /slow?ms=N               holds its thread N ms, as an I/O-bound view waiting on a database
  GET  /cpu?n=N                 CPU-bound work (hashing)

State lives in each worker process (an in-memory store), which is enough for traffic
shape; it is not shared between workers.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]
_lock = threading.Lock()
_ids = itertools.count(1001)
_items: dict[int, dict[str, Any]] = {
    i: {"id": i, "name": f"item {i}", "price": round(i * 1.5, 2), "stock": i % 17}
    for i in range(1, 1001)
}


def _send(start_response: StartResponse, status: str, body: bytes,
          ctype: str = "application/json") -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response: StartResponse, obj: Any, status: str = "200 OK") -> list[bytes]:
    return _send(start_response, status, json.dumps(obj).encode())


def _page(n: int) -> bytes:
    links = "".join(f'<li><a href="/page/{(n + k) % 100}">page {(n + k) % 100}</a></li>'
                    for k in range(1, 11))
    rows = "".join(f"<tr><td>{i}</td><td>{html.escape(_items[i]['name'])}</td>"
                   f"<td>{_items[i]['price']}</td></tr>" for i in range(n * 10 + 1, n * 10 + 11)
                   if i in _items)
    return (f"<!doctype html><html><head><title>Page {n}</title></head><body>"
            f"<h1>Page {n}</h1><ul>{links}</ul><table>{rows}</table>"
            f"<p>{'lorem ipsum ' * 200}</p></body></html>").encode()


def _read_body(environ: dict[str, Any]) -> bytes:
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    return stream.read(int(length)) if length else stream.read()


def _stream(chunks: int, size: int) -> Iterator[bytes]:
    block = b"s" * size
    for _ in range(chunks):
        yield block


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method = environ["REQUEST_METHOD"]
    path = environ["PATH_INFO"]
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/" or path.startswith("/page/"):
        n = int(path.rsplit("/", 1)[1]) if path.startswith("/page/") else 0
        return _send(start_response, "200 OK", _page(n % 100), "text/html; charset=utf-8")
    if path == "/api/items":
        if method == "POST":
            data = json.loads(_read_body(environ) or b"{}")
            with _lock:
                item = {"id": next(_ids), "name": str(data.get("name", "new")),
                        "price": float(data.get("price", 0)), "stock": 0}
                _items[item["id"]] = item
            return _json(start_response, item, "201 Created")
        limit = min(int(q.get("limit", "20")), 200)
        with _lock:
            items = list(itertools.islice(_items.values(), limit))
        return _json(start_response, {"items": items, "count": len(items)})
    if path.startswith("/api/items/"):
        try:
            item_id = int(path.rsplit("/", 1)[1])
        except ValueError:
            return _json(start_response, {"error": "bad id"}, "400 Bad Request")
        with _lock:
            if method == "PUT":
                data = json.loads(_read_body(environ) or b"{}")
                item = _items.setdefault(item_id, {"id": item_id, "name": "", "price": 0,
                                                   "stock": 0})
                item.update({k: v for k, v in data.items() if k in ("name", "price", "stock")})
            elif method == "DELETE":
                _items.pop(item_id, None)
                return _send(start_response, "204 No Content", b"")
            item = _items.get(item_id)
        if item is None:
            return _json(start_response, {"error": "not found"}, "404 Not Found")
        return _json(start_response, item)
    if path == "/upload" and method == "POST":
        digest = hashlib.sha256()
        size = 0
        stream = environ["wsgi.input"]
        while chunk := stream.read(65536):
            digest.update(chunk)
            size += len(chunk)
        return _json(start_response, {"bytes": size, "sha256": digest.hexdigest()})
    if path == "/stream":
        chunks, size = min(int(q.get("chunks", "64")), 4096), min(int(q.get("size", "16384")),
                                                                  1 << 20)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _stream(chunks, size)
    if path == "/slow":
        time.sleep(min(int(q.get("ms", "50")), 5000) / 1000)
        return _json(start_response, {"slept_ms": int(q.get("ms", "50"))})
    if path == "/cpu":
        n = min(int(q.get("n", "2000")), 200000)
        h = b"prefork"
        for _ in range(n):
            h = hashlib.sha256(h).digest()
        return _json(start_response, {"rounds": n, "digest": h.hex()})
    return _json(start_response, {"error": "not found"}, "404 Not Found")
