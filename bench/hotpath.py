"""The per-request cost of a worker's own code, without the network or other threads.

    python bench/hotpath.py                  # µs per request for each request kind
    python bench/hotpath.py --profile hello  # and where that time goes (cProfile)

One Worker is built as a worker process builds itself (its ServerContext, the bench app),
one Connection is made over a UNIX socketpair, and each iteration does what a pool thread
does when the epoll wakes it: claim, receive, parse, build the environ, run the app, send,
re-arm. The client's send and recv are inside the loop too, so the figure is an upper
bound of the server's share; compare runs of the same machine only. This is where a
change to the hot path is measured first (seconds, few-percent resolution), before a run
of bench/run.py confirms it against the other servers.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import socket
import sys
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # after PYTHONPATH: A/B runs can point elsewhere
sys.path.insert(0, str(HERE))

from apps import app  # noqa: E402

from prefork.config import Config  # noqa: E402
from prefork.connection import Connection  # noqa: E402
from prefork.sockets import Listener  # noqa: E402
from prefork.worker import Worker  # noqa: E402
from prefork.wsgi import base_environ  # noqa: E402

REQUESTS = {
    # what wrk sends
    "hello": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    # what a browser behind nginx sends
    "browser": (b"GET /?q=1 HTTP/1.1\r\nHost: example.com\r\nX-Real-IP: 10.0.0.1\r\n"
                b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n"
                b"Connection: keep-alive\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
                b"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en\r\n"
                b"Accept-Encoding: gzip, br\r\nCookie: session=abc; theme=dark\r\n\r\n"),
    # a 64 KiB response (bench/run.py's "big")
    "big": b"GET /big HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    "echo": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 16384\r\n\r\n"
             + b"e" * 16384),
    # a new TCP connection for each request (wrk -H "Connection: close"): accepted,
    # served and closed by the worker's own calls
    "connect": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n",
}


ENGINE = "auto"  # --engine


def make(kind: str) -> tuple[Worker, Connection, socket.socket]:
    client, server = socket.socketpair()
    _parent, child = socket.socketpair()  # the master's end of the channel: unused
    worker = Worker(1, Config(max_keepalive_requests=0, http_engine=ENGINE), [], child, app)
    worker.ctx = worker.context()
    base = worker.ctx.engine.environ_base(base_environ("127.0.0.1", "8080", "", True))
    conn = Connection(server, ("127.0.0.1", "40000"), base, worker.ctx)
    worker.conns[conn.fd] = conn
    return worker, conn, client


def whole_reply(client: socket.socket) -> bytes:
    """One response with a Content-Length body, read whole (the first one: its size is
    then the size of every reply in the loop)."""
    reply = client.recv(65536)
    while b"\r\n\r\n" not in reply:
        reply += client.recv(65536)
    head, _, body = reply.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += client.recv(65536)
    return head + b"\r\n\r\n" + body


def connect_loop(n: int) -> float:
    """A new loopback connection per request: the client connects and sends, the worker
    accepts, serves and closes (Worker._accept, as a pool thread woken for the
    listener), the client reads to the end."""
    listen = socket.create_server(("127.0.0.1", 0), backlog=128)
    listen.setblocking(False)
    address = listen.getsockname()
    listener = Listener(listen, "127.0.0.1:0")
    _parent, child = socket.socketpair()  # the master's end of the channel: unused
    worker = Worker(1, Config(http_engine=ENGINE), [listener], child, app)
    worker.ctx = worker.context()
    worker.bases = {id(listener): base_environ("127.0.0.1", str(address[1]), "", True)}
    request = REQUESTS["connect"]
    # What a pool thread's loop calls for a listener woken: the engine's twin (C) of
    # Worker._accept, or the method itself.
    accept = (partial(worker.serve.__self__.accept, worker)  # type: ignore[attr-defined]
              if worker.engine.worker_calls is not None else worker._accept)

    def one() -> bytes:
        client = socket.create_connection(address)
        client.sendall(request)
        accept(listener)
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
        client.close()
        return reply

    one()
    start = time.perf_counter()
    for _ in range(n):
        reply = one()
    elapsed = time.perf_counter() - start
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert not worker.conns, worker.conns
    listen.close()
    return elapsed / n * 1e6


def loop(kind: str, n: int) -> float:
    if kind == "connect":
        return connect_loop(n)
    worker, conn, client = make(kind)
    request = REQUESTS[kind]
    on_ready = worker.serve
    lock = worker.lock
    client.sendall(request)
    conn.claimed = True
    on_ready(conn)
    size = len(whole_reply(client))
    start = time.perf_counter()
    for _ in range(n):
        client.sendall(request)
        with lock:  # as a pool thread claims what the epoll woke it for
            conn.claimed = True
        on_ready(conn)
        reply = client.recv(65536)
        while len(reply) < size:
            reply += client.recv(65536)
    elapsed = time.perf_counter() - start
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    client.close()
    conn.close()
    return elapsed / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=",".join(REQUESTS))
    ap.add_argument("-n", type=int, default=50000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", metavar="KIND")
    ap.add_argument("--engine", default="auto", choices=("auto", "native", "python"))
    args = ap.parse_args()
    global ENGINE
    ENGINE = args.engine
    for kind in args.kinds.split(","):
        best = min(loop(kind, args.n) for _ in range(args.repeat))
        print(f"{kind:8s} {best:6.2f} µs per request (best of {args.repeat} x {args.n})")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(loop, args.profile, args.n)
        pstats.Stats(prof).sort_stats("tottime").print_stats(70)


if __name__ == "__main__":
    main()
