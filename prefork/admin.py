"""The admin listener: /metrics, /healthz, /readyz and /status, served by the master.

It runs inside the master's own select loop, never in a worker, so it answers even when
every app thread is busy or stuck. Connections are non-blocking, GET only, one request
each, with a small head limit and a 5-second deadline, so no client can hold the master.

Figures come from the workers' once-a-second heartbeats (their counters, see metrics.py)
plus what the master sees itself (worker processes through psutil, restarts by cause, the
listen backlog through TCP_INFO).

`AdminServer` owns the listener, its connections and the once-a-second samples of the
status page's charts (status_history.History); the master registers it in its selector
and hands it its events. The page itself is status_page.py's.
Touched only by the master's main thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from prefork import __version__, procstats
from prefork.handle import WorkerHandle
from prefork.http.response import server_head
from prefork.metrics import BUCKETS, Totals
from prefork.sockets import bind_tcp
from prefork.status_history import Event, History, Row, WorkerStateName, class_counts
from prefork.status_page import PAGE

log = logging.getLogger(__name__)

HEAD_LIMIT = 8192
DEADLINE_S = 5.0

class WorkerState(TypedDict):
    """One worker as the status page and /metrics show it."""

    number: int
    pid: int
    state: WorkerStateName
    age_s: float
    requests: int
    busy_threads: int
    in_flight: int
    connections: int
    rss: int
    cpu: float
    generation: int
    last_restart_cause: str


class ServerState(TypedDict):
    """The master's view of the server (Master.admin_state), what every endpoint reports."""

    pid: int
    version: str
    target: int
    threads: int
    workers: list[WorkerState]
    worker_states: dict[str, int]
    ready_workers: int
    draining: bool
    totals: Totals
    in_flight: int
    connections: int
    restarts: dict[str, int]
    history: list[Row]
    backlog: list[tuple[str, int]]
    events: NotRequired[list[Event]]  # the admin listener's timeline (status_history)


def worker_state(h: WorkerHandle, now: float, last_cause: str) -> WorkerState:
    rss, cpu = procstats.usage(h.pid)
    state: WorkerStateName = ("retiring" if h.retiring_since is not None else
                              "ready" if h.ready else "booting")
    return {"number": h.number, "pid": h.pid, "state": state,
            "age_s": round(now - h.started, 1), "requests": h.beat.served,
            "busy_threads": h.beat.busy, "in_flight": h.beat.inflight,
            "connections": h.beat.conns, "rss": rss, "cpu": round(cpu, 3),
            "generation": h.generation, "last_restart_cause": last_cause}


@dataclass(slots=True)
class AdminConn:
    sock: socket.socket
    deadline: float
    inbuf: bytearray = field(default_factory=bytearray)
    out: bytes = b""


class AdminServer:
    """The admin listener and its connections, in the master's selector: non-blocking,
    one GET each, closed at DEADLINE_S. `state` is called for each request."""

    def __init__(self, address: str, sel: selectors.BaseSelector,
                 state: Callable[[], ServerState], inherited_fd: int = -1) -> None:
        # A SIGUSR2 upgrade hands the old master's socket over (the port is taken).
        self.sock = (socket.socket(fileno=inherited_fd) if inherited_fd >= 0 else
                     bind_tcp(address, 64))
        self.sock.setblocking(False)
        self.sel = sel
        self.master_state = state
        self.conns: dict[int, AdminConn] = {}
        self.timeline = History()  # one sample a second, for the status page
        self.next_sample = 0.0
        sel.register(self.sock, selectors.EVENT_READ, self)
        host, port = self.sock.getsockname()[:2]
        log.info("admin listener at http://%s:%d (/metrics /healthz /readyz /status)",
                 f"[{host}]" if ":" in host else host, port)

    def state(self) -> ServerState:
        """The master's view, with the timeline this listener keeps."""
        return {**self.master_state(), "events": list(self.timeline.events)}

    def fds(self) -> list[int]:
        """What a forked worker must close."""
        return [self.sock.fileno(), *self.conns]

    def on_event(self, data: AdminServer | AdminConn, mask: int) -> None:
        if data is self:
            self._accept()
        elif isinstance(data, AdminConn):
            self._io(data, mask)

    def _accept(self) -> None:
        for _ in range(16):
            try:
                sock, _ = self.sock.accept()
            except OSError:
                return
            sock.setblocking(False)
            conn = AdminConn(sock, time.monotonic() + DEADLINE_S)
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def _io(self, conn: AdminConn, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ and not conn.out:
                data = conn.sock.recv(4096)
                if not data:
                    self._close(conn)
                    return
                conn.inbuf += data
                end = conn.inbuf.find(b"\r\n\r\n")
                if end < 0:
                    if len(conn.inbuf) > HEAD_LIMIT:
                        self._close(conn)
                    return
                method, path, headers = parse_request(bytes(conn.inbuf[:end]))
                conn.out = handle(method, path, headers, self.state)
                if method == "HEAD":
                    conn.out = conn.out.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            sent = conn.sock.send(conn.out)
            conn.out = conn.out[sent:]
            if conn.out:
                self.sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
            else:
                self._close(conn)
        except BlockingIOError:
            pass
        except OSError:
            self._close(conn)

    def _close(self, conn: AdminConn) -> None:
        self.conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn.sock)
        conn.sock.close()

    def tick(self, now: float) -> None:
        """Once per master loop: close connections past their deadline; once a second,
        sample the counters and the worker table for the status page."""
        for conn in [c for c in self.conns.values() if c.deadline < now]:
            self._close(conn)
        if now >= self.next_sample:
            self.next_sample = now + 1.0
            s = self.master_state()
            self.timeline.sample(time.time(), s["totals"], s["workers"], s["restarts"])

    def history(self) -> list[Row]:
        """Per second: (time, requests/s, mean, p50, p95, p99 ms, 4xx/s, 5xx/s)."""
        return list(self.timeline.rows)

    def close(self, finish_s: float = 1.0) -> None:
        """Stop taking connections, answer those already taken (for at most `finish_s`:
        after a SIGUSR2 the new master shares the listening socket and answers the
        rest), then close them."""
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(self.sock)
        self.sock.close()
        own = selectors.DefaultSelector()  # the master's selector has its other sources
        for conn in list(self.conns.values()):
            with contextlib.suppress(KeyError, ValueError):
                own.register(conn.sock, self.sel.get_key(conn.sock).events, conn)
                self.sel.unregister(conn.sock)
        self.sel = own
        deadline = time.monotonic() + finish_s
        while self.conns and (left := deadline - time.monotonic()) > 0:
            for key, mask in own.select(left):
                self._io(key.data, mask)
        for conn in list(self.conns.values()):
            self._close(conn)
        own.close()


def response(status: int, body: bytes, ctype: str) -> bytes:
    return server_head(status, [("Content-Type", ctype), ("Cache-Control", "no-store")],
                       length=len(body), close=True, server=b"prefork-admin") + body


def parse_request(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = ([*lines[0].split(" "), "", "", ""])[:3]
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, target.split("?", 1)[0], headers


def backlog(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, backlog size) of a TCP listener, from Linux's
    TCP_INFO (tcpi_unacked / tcpi_sacked of a listening socket)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (OSError, AttributeError):
        return None
    waiting, size = struct.unpack_from("II", info, 24)
    return waiting, size


def prometheus(state: ServerState) -> bytes:
    """Render the master's view (see Master.admin_state) in Prometheus text format."""
    out: list[str] = []

    def metric(name: str, kind: str, doc: str, samples: Sequence[tuple[str, float]]) -> None:
        out.append(f"# HELP prefork_{name} {doc}")
        out.append(f"# TYPE prefork_{name} {kind}")
        for labels, value in samples:
            out.append(f"prefork_{name}{labels} {value:g}" if isinstance(value, float)
                       else f"prefork_{name}{labels} {value}")

    t = state["totals"]
    metric("info", "gauge", "Server version and size.",
           [(f'{{version="{__version__}",workers="{state["target"]}",'
             f'threads="{state["threads"]}"}}', 1)])
    metric("requests_total", "counter", "Requests answered, by method and status class.",
           [(f'{{method="{m}",status="{c}"}}', n) for (m, c), n in sorted(t["requests"].items())])
    cumulative = 0
    buckets = []
    for bound, n in zip((*BUCKETS, float("inf")), t["buckets"], strict=True):
        cumulative += n
        le = "+Inf" if bound == float("inf") else f"{bound:g}"
        buckets.append((f'_bucket{{le="{le}"}}', cumulative))
    out.append("# HELP prefork_request_duration_seconds Time from request head to the end "
               "of the response.")
    out.append("# TYPE prefork_request_duration_seconds histogram")
    for suffix, value in buckets:
        out.append(f"prefork_request_duration_seconds{suffix} {value}")
    out.append(f"prefork_request_duration_seconds_sum {t['sum']:.6f}")
    out.append(f"prefork_request_duration_seconds_count {t['count']}")
    metric("requests_in_flight", "gauge", "Requests being served now.",
           [("", state["in_flight"])])
    metric("connections_open", "gauge", "Client connections open in the workers.",
           [("", state["connections"])])
    metric("requests_rejected_total", "counter", "Requests refused before the app, by reason.",
           [(f'{{reason="{r}"}}', n) for r, n in sorted(t["rejected"].items())])
    metric("received_body_bytes_total", "counter", "Request body bytes received.",
           [("", t["bytes_in"])])
    metric("sent_body_bytes_total", "counter", "Response body bytes sent.",
           [("", t["bytes_out"])])
    metric("worker_restarts_total", "counter", "Workers that ended, by cause.",
           [(f'{{cause="{c}"}}', n) for c, n in sorted(state["restarts"].items())])
    metric("worker_resident_memory_bytes", "gauge", "RSS of each worker.",
           [(f'{{worker="{w["number"]}"}}', w["rss"]) for w in state["workers"]])
    metric("worker_cpu_seconds_total", "counter", "CPU time of each worker.",
           [(f'{{worker="{w["number"]}"}}', float(w["cpu"])) for w in state["workers"]])
    metric("workers", "gauge", "Workers by state.",
           [(f'{{state="{s}"}}', n) for s, n in sorted(state["worker_states"].items())])
    waiting = [(f'{{listener="{addr}"}}', n) for addr, n in state["backlog"]]
    if waiting:
        metric("listen_backlog", "gauge", "Connections waiting in the listen queue.", waiting)
    return ("\n".join(out) + "\n").encode()


def handle(method: str, path: str, headers: dict[str, str],
           state: Callable[[], ServerState]) -> bytes:
    if method not in ("GET", "HEAD"):
        return response(405, b"GET only\n", "text/plain")
    if path == "/healthz":
        s = state()
        ok = s["ready_workers"] > 0
        return response(200 if ok else 503,
                        b"ok\n" if ok else b"no worker is serving\n", "text/plain")
    if path == "/readyz":
        s = state()
        if s["draining"]:
            return response(503, b"draining\n", "text/plain")
        if s["ready_workers"] == 0:
            return response(503, b"no worker is ready\n", "text/plain")
        return response(200, b"ready\n", "text/plain")
    if path == "/metrics":
        return response(200, prometheus(state()),
                        "text/plain; version=0.0.4; charset=utf-8")
    if path == "/status" and "text/html" in headers.get("accept", ""):
        return response(200, PAGE.encode(), "text/html; charset=utf-8")
    if path == "/status":
        s = state()
        body: dict[str, object] = {k: s[k] for k in (
            "pid", "version", "target", "threads", "draining", "workers", "restarts",
            "in_flight", "connections", "history")}
        body["events"] = s.get("events", [])
        body["requests_total"] = s["totals"]["count"]
        body["errors_total"] = dict(zip(("4xx", "5xx"), class_counts(s["totals"]),
                                        strict=True))
        body["time"] = time.time()
        return response(200, json.dumps(body, indent=1).encode(), "application/json")
    return response(404, b"try /metrics, /healthz, /readyz or /status\n",
                    "text/plain")
