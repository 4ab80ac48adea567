"""How long a graceful stop takes with idle keep-alive clients, and how they are closed:
prefork and gunicorn (gthread) side by side, `keepalive = 75` (what a load balancer with
a 60 s idle timeout needs), 100 idle connections, 2 workers.

    python bench/stop_time.py [--idle 100] [--keepalive 75] [--rounds 3]

Each connection has had one response and sits idle; then SIGTERM goes to the master and
the time until it has exited is taken, with how each connection ended (FIN, reset).
Only 127.0.0.1 is used; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from loopback import free_port, wait_port  # noqa: E402

ROOT = HERE.parent
GET = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def argv(server: str, port: int, keepalive: str) -> list[str]:
    if server == "prefork":
        return [sys.executable, "-m", "prefork", "apps:app", "--bind", f"127.0.0.1:{port}",
                "--workers", "2", "--threads", "8", "--loglevel", "warning",
                "--keepalive", keepalive]
    return [sys.executable, "-m", "gunicorn", "apps:app", "-b", f"127.0.0.1:{port}", "-w", "2",
            "--threads", "8", "-k", "gthread", "--log-level", "warning",
            "--keep-alive", keepalive]


def one(server: str, idle: int, keepalive: str) -> tuple[float, Counter[str], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen(argv(server, port, keepalive), env=env, cwd=HERE, process_group=0,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    socks = []
    try:
        wait_port(port)
        time.sleep(1.0)  # both workers up
        for _ in range(idle):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(GET)
            data = b""
            while not data.endswith(b"Hello, world!"):
                data += sock.recv(65536)
            socks.append(sock)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        took = time.monotonic() - started
        ends: Counter[str] = Counter()
        for sock in socks:
            sock.settimeout(5)
            try:
                ends["fin" if sock.recv(1) == b"" else "data"] += 1
            except ConnectionResetError:
                ends["reset"] += 1
            except TimeoutError:
                ends["open"] += 1
        log = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        return took, ends, "SIGKILL" if "killing it" in log or "SIGKILL" in log else ""
    finally:
        for sock in socks:
            sock.close()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--idle", type=int, default=100)
    ap.add_argument("--keepalive", default="75")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results: dict[str, list[tuple[float, Counter[str], str]]] = {"prefork": [], "gunicorn": []}
    for _ in range(args.rounds):  # interleaved
        for server in results:
            results[server].append(one(server, args.idle, args.keepalive))
    print(f"| server | keepalive | idle connections | SIGTERM to exit, s (median of "
          f"{args.rounds}) | each round, s | connections ended | SIGKILL |")
    print("|---|---|---|---|---|---|---|")
    for server, rows in results.items():
        times = [t for t, _, _ in rows]
        ends = sum((e for _, e, _ in rows), Counter())
        print(f"| {server} | {args.keepalive} s | {args.idle} | {statistics.median(times):.2f} | "
              f"{', '.join(f'{t:.2f}' for t in times)} | {dict(ends)} | "
              f"{'yes' if any(k for _, _, k in rows) else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
