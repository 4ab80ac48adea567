"""Thousands of idle keep-alive connections and slow-loris clients held open while new
clients arrive: each server's time to first byte for the new clients, and its memory per
idle connection. prefork, gunicorn (gthread) and granian, one after another in one run.

    python bench/idle.py [--idle 20000] [--loris 100] [--probes 500] [--servers ...]

Holder processes open the idle connections (each served one GET, then left open: the
state of connections from a proxy's upstream keep-alive pool); a thread keeps the
slow-loris clients sending a request head one byte a second; then new clients connect
one at a time, each sending a GET with "Connection: close", and the time from the
connect to the response's first byte is taken (within a minute: a probe not answered in
10 s, or not tried by then, is a failure). "idle still open" is counted once the probes
are done: a server that took longer than its keep-alive (75 s) has let them go. Every
loop is bounded in count and time, and only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from loopback import free_port, wait_port  # noqa: E402

ROOT = HERE.parent
GET = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
PROBE = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
HOLDERS = 4
PROBE_BUDGET_S = 60.0  # the probes' time; past it the rest count as failed
OPEN_BUDGET_S = 120.0  # each holder's time to open its connections; past it, failed
KEEPALIVE = "75"
GRANIAN = str(Path(sys.executable).with_name("granian"))
SERVERS = {
    "prefork": [sys.executable, "-m", "prefork", "apps:app", "--bind", "127.0.0.1:{port}",
                "--workers", "2", "--threads", "8", "--loglevel", "warning",
                "--keepalive", KEEPALIVE],
    "gunicorn": [sys.executable, "-m", "gunicorn", "apps:app", "-b", "127.0.0.1:{port}",
                 "-w", "2", "--threads", "8", "-k", "gthread", "--log-level", "warning",
                 "--keep-alive", KEEPALIVE, "--worker-connections", "25000"],
    "granian": [GRANIAN, "--interface", "wsgi", "--host", "127.0.0.1", "--port", "{port}",
                "--workers", "2", "--blocking-threads", "8", "--no-access-log", "apps:app"],
}


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def answered(sock: socket.socket) -> bool:
    data = b""
    while not data.endswith(b"Hello, world!"):
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    return True


def holder(port: int, n: int, report: multiprocessing.Queue, release: multiprocessing.Event
           ) -> None:
    """Open n connections, one GET each, then hold them until released (10 min at most)."""
    raise_nofile()
    socks, failed = [], 0
    deadline = time.monotonic() + OPEN_BUDGET_S
    for _ in range(n):
        if time.monotonic() > deadline:  # a server that stopped answering: the rest fail
            failed += 1
            continue
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(GET)
            if answered(sock):
                socks.append(sock)
                continue
        except OSError:
            pass
        failed += 1
    report.put((len(socks), failed))
    release.wait(600)
    still = 0
    for sock in socks:  # how many the server kept open all along
        sock.setblocking(False)
        try:
            sock.recv(1)  # b"": the server closed it (a byte cannot come: it was idle)
        except BlockingIOError:
            still += 1  # nothing to read: still open
        except OSError:
            pass
        sock.close()
    report.put(still)


def loris(port: int, n: int, stop: threading.Event, held: list[int]) -> None:
    """n clients sending a head one byte a second, reconnecting when closed."""
    head = b"GET /slow HTTP/1.1\r\nHost: bench\r\nX-Pad: " + b"a" * 4096
    socks: list[tuple[socket.socket, int]] = []
    for _ in range(n):
        with contextlib.suppress(OSError):
            socks.append((socket.create_connection(("127.0.0.1", port), timeout=5), 0))
    held.append(len(socks))
    for _ in range(600):
        if stop.wait(1.0):
            break
        kept = []
        for sock, at in socks:
            try:
                sock.send(head[at:at + 1])
                kept.append((sock, (at + 1) % len(head)))
            except OSError:
                sock.close()
                with contextlib.suppress(OSError):
                    kept.append((socket.create_connection(("127.0.0.1", port), timeout=5), 0))
        socks = kept
    for sock, _ in socks:
        sock.close()


def probe(port: int) -> float | None:
    """Seconds from connect to the first byte of the answer; None if it failed."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(PROBE)
            if not sock.recv(1):
                return None
            first = time.perf_counter() - started
            sock.settimeout(10)
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
            return first if rest.endswith(b"Hello, world!") else None
    except OSError:
        return None


def tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def run_one(name: str, idle: int, loris_n: int, probes: int) -> dict[str, object]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}"}
    argv = [a.replace("{port}", str(port)) for a in SERVERS[name]]
    server = subprocess.Popen(argv, env=env, cwd=HERE, process_group=0,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=raise_nofile)
    try:
        wait_port(port)
        time.sleep(1.0)  # workers up (wait_port sees the master's socket)
        for _ in range(50):  # warm: every worker has imported the app
            probe(port)
        rss_before = tree_rss(server.pid)
        ctx = multiprocessing.get_context("spawn")
        report, release = ctx.Queue(), ctx.Event()
        holders = [ctx.Process(target=holder, args=(port, idle // HOLDERS, report, release))
                   for _ in range(HOLDERS)]
        started = time.monotonic()
        for h in holders:
            h.start()
        opened = [report.get(timeout=300) for _ in holders]
        print(f"{name}: {sum(o[0] for o in opened)} idle connections open", file=sys.stderr,
              flush=True)
        open_s = time.monotonic() - started
        held_ok = sum(o[0] for o in opened)
        rss_idle = tree_rss(server.pid)
        stop, loris_held = threading.Event(), []
        slow = threading.Thread(target=loris, args=(port, loris_n, stop, loris_held))
        slow.start()
        time.sleep(2.0)  # the slow clients have begun their heads
        times, failed = [], 0
        budget = time.monotonic() + PROBE_BUDGET_S  # a server that times out every probe
        for _ in range(probes):
            if time.monotonic() > budget:
                failed += 1  # not tried: counted as failed
                continue
            t = probe(port)
            if t is None:
                failed += 1
            else:
                times.append(t)
        stop.set()
        slow.join(30)
        release.set()
        still_open = sum(report.get(timeout=120) for _ in holders)
        for h in holders:
            h.join(60)
        times.sort()
        q = statistics.quantiles(times, n=100) if len(times) >= 2 else [float("nan")] * 99
        return {
            "server": name, "idle asked": idle, "idle served": held_ok,
            "idle failed": sum(o[1] for o in opened), "idle still open": still_open,
            "open s": round(open_s, 1), "loris": loris_held[0] if loris_held else 0,
            "probes": probes, "probe failures": failed,
            "ttfb p50 ms": round(q[49] * 1000, 2), "ttfb p99 ms": round(q[98] * 1000, 2),
            "ttfb max ms": round(max(times) * 1000, 2) if times else float("nan"),
            "RSS before MiB": round(rss_before / 2**20, 1),
            "RSS idle MiB": round(rss_idle / 2**20, 1),
            "KiB per idle conn": round((rss_idle - rss_before) / 1024 / max(held_ok, 1), 2),
        }
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, 15)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--idle", type=int, default=20000)
    ap.add_argument("--loris", type=int, default=100)
    ap.add_argument("--probes", type=int, default=500)
    ap.add_argument("--servers", default="prefork,gunicorn,granian")
    args = ap.parse_args()
    raise_nofile()
    for i, name in enumerate(args.servers.split(",")):
        row = run_one(name, args.idle, args.loris, args.probes)
        if i == 0:
            print("| " + " | ".join(row) + " |")
            print("|" + "---|" * len(row))
        print("| " + " | ".join(str(v) for v in row.values()) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
