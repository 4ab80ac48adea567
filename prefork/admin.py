"""The admin listener: /metrics, /healthz, /readyz and /status, served by the master.

It runs inside the master's own select loop, never in a worker, so it answers even when
every app thread is busy or stuck. Connections are non-blocking, GET only, one request
each, with a small head limit and a 5-second deadline, so no client can hold the master.

Figures come from the workers' once-a-second heartbeats (their counters, see metrics.py)
plus what the master sees itself (worker processes through psutil, restarts by cause, the
listen backlog through TCP_INFO).

`AdminServer` owns the listener, its connections and the once-a-second samples of the
status page's chart; the master registers it in its selector and hands it its events.
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
from typing import Literal, TypedDict

from prefork import __version__, procstats
from prefork.handle import WorkerHandle
from prefork.http.response import server_head
from prefork.metrics import BUCKETS, Totals
from prefork.sockets import bind_tcp

log = logging.getLogger(__name__)

HEAD_LIMIT = 8192
DEADLINE_S = 5.0
HISTORY_S = 600  # the status page charts the last ten minutes, one point a second

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prefork status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.3rem; margin: 0 0 .5rem; } .muted { color: #777; }
table { border-collapse: collapse; margin-top: 1rem; }
th, td { padding: .25rem .7rem; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; }
.chart { display: flex; gap: 1.5rem; flex-wrap: wrap; }
figure { margin: 0; } figcaption { font-weight: 600; }
svg { background: #fafafa; border: 1px solid #ddd; }
.draining { color: #b00; font-weight: 600; }
</style></head><body>
<h1>prefork <span id="version"></span> <span class="muted" id="summary"></span></h1>
<div class="chart">
 <figure><figcaption>requests/s <span id="rps-now"></span></figcaption>
  <svg id="rps" width="420" height="120" data-max="0"></svg></figure>
 <figure><figcaption>mean latency ms <span id="lat-now"></span></figcaption>
  <svg id="lat" width="420" height="120" data-max="0"></svg></figure>
</div>
<table><thead><tr><th>worker</th><th>pid</th><th>state</th><th>age s</th><th>requests</th>
<th>busy</th><th>conns</th><th>RSS MiB</th><th>CPU s</th><th>last restart</th></tr></thead>
<tbody id="workers"></tbody></table>
<p class="muted">Refreshed every second from <a href="/status">/status</a>
(JSON with Accept: application/json); metrics at <a href="/metrics">/metrics</a>.</p>
<script>
function draw(id, values) {
  const svg = document.getElementById(id), w = +svg.getAttribute("width"),
        h = +svg.getAttribute("height"), max = Math.max(1e-9, ...values);
  svg.dataset.max = Math.max(0, ...values).toFixed(3);
  const pts = values.map((v, i) =>
    (i * w / Math.max(1, values.length - 1)).toFixed(1) + "," +
    (h - 4 - v / max * (h - 12)).toFixed(1)).join(" ");
  svg.innerHTML = '<polyline fill="none" stroke="#0a6" stroke-width="1.5" points="' + pts +
    '"/><text x="4" y="12" font-size="10" fill="#777">max ' + max.toFixed(1) + '</text>';
}
function cell(v) { const td = document.createElement("td"); td.textContent = v; return td; }
async function refresh() {
  try {
    const s = await (await fetch("/status", {headers: {Accept: "application/json"}})).json();
    document.getElementById("version").textContent = s.version;
    document.getElementById("summary").textContent = "master " + s.pid + ", " + s.target +
      " workers x " + s.threads + " threads, " + s.requests_total + " requests, " +
      s.in_flight + " in flight" + (s.draining ? ", DRAINING" : "");
    const rows = document.getElementById("workers");
    rows.replaceChildren(...s.workers.map(w => {
      const tr = document.createElement("tr");
      [w.number, w.pid, w.state, w.age_s.toFixed(0), w.requests, w.busy_threads,
       w.connections, (w.rss / 1048576).toFixed(1), w.cpu.toFixed(1),
       w.last_restart_cause || "-"].forEach(v => tr.appendChild(cell(v)));
      return tr; }));
    const rps = s.history.map(p => p[1]), lat = s.history.map(p => p[2]);
    draw("rps", rps); draw("lat", lat);
    const last = a => a.length ? a[a.length - 1] : 0;
    document.getElementById("rps-now").textContent = "now " + last(rps).toFixed(0);
    document.getElementById("lat-now").textContent = "now " + last(lat).toFixed(2);
  } catch (e) { document.getElementById("summary").textContent = "unreachable: " + e; }
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


WorkerStateName = Literal["booting", "ready", "retiring"]


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
    history: list[tuple[float, float, float]]
    backlog: list[tuple[str, int]]


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
        self.state = state
        self.conns: dict[int, AdminConn] = {}
        # One sample a second for the status page: (time, requests total, duration sum).
        self.samples: list[tuple[float, int, float]] = []
        self.next_sample = 0.0
        sel.register(self.sock, selectors.EVENT_READ, self)
        host, port = self.sock.getsockname()[:2]
        log.info("admin listener at http://%s:%d (/metrics /healthz /readyz /status)",
                 f"[{host}]" if ":" in host else host, port)

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

    def tick(self, now: float, totals: Callable[[], Totals]) -> None:
        """Once per master loop: close connections past their deadline; once a second,
        record the request count and time for the status page's chart."""
        for conn in [c for c in self.conns.values() if c.deadline < now]:
            self._close(conn)
        if now >= self.next_sample:
            self.next_sample = now + 1.0
            total = totals()
            self.samples.append((time.time(), total["count"], total["sum"]))
            del self.samples[: -HISTORY_S - 1]

    def history(self) -> list[tuple[float, float, float]]:
        """(time, requests/s, mean latency ms) per second, from consecutive samples."""
        out = []
        for (t0, n0, s0), (t1, n1, s1) in zip(self.samples, self.samples[1:], strict=False):
            n = max(0, n1 - n0)
            out.append((round(t1, 1), n / max(t1 - t0, 1e-6),
                        (s1 - s0) / n * 1000 if n else 0.0))
        return out

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
        body["requests_total"] = s["totals"]["count"]
        body["time"] = time.time()
        return response(200, json.dumps(body, indent=1).encode(), "application/json")
    return response(404, b"try /metrics, /healthz, /readyz or /status\n",
                    "text/plain")
