"""1,000 slow and stalled clients against prefork and gunicorn, side by side.

    python bench/slow_clients.py [--slow 1000] [--seconds 10]

Half the slow connections trickle a request head one byte at a time (slow-loris); the other
half ask for a 3 MiB response and never read it. Meanwhile wrk (32 keep-alive connections)
measures how normal clients fare. Every loop is bounded in count and time, and only
127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from loopback import free_port, wait_port  # noqa: E402

ROOT = HERE.parent






def start(server: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}"}
    if server == "prefork":
        argv = [sys.executable, "-m", "prefork", "apps:app", "--bind", f"127.0.0.1:{port}",
                "--workers", "2", "--threads", "8", "--loglevel", "warning",
                "--worker-connections", "2000"]
    else:
        argv = [sys.executable, "-m", "gunicorn", "apps:app", "-b", f"127.0.0.1:{port}",
                "-w", "2", "--threads", "8", "-k", "gthread", "--log-level", "warning",
                "--worker-connections", "2000"]
    proc = subprocess.Popen(argv, env=env, cwd=HERE, process_group=0,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def run(server: str, slow: int, seconds: int) -> dict[str, object]:
    port = free_port()
    proc = start(server, port)
    held: list[socket.socket] = []
    stop_event = threading.Event()
    try:
        for i in range(slow):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                break
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(b"GET /slowbig HTTP/1.1\r\nHost: x\r\n\r\n")
            else:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(sock)

        def trickle() -> None:
            while not stop_event.is_set():
                for sock in held[::2]:
                    with contextlib.suppress(OSError):
                        sock.send(b"a")
                stop_event.wait(1.0)

        threading.Thread(target=trickle, daemon=True).start()
        out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--timeout", "5s",
                              f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                             timeout=seconds + 30).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
        non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
        return {"server": server, "slow": len(held), "rps": rps, "requests": total,
                "errors": errors + non2xx}
    finally:
        stop_event.set()
        for sock in held:
            sock.close()
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--servers", default="prefork,gunicorn")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")
    rows = [run(s, args.slow, args.seconds) for s in args.servers.split(",")]
    print(f"\n{args.slow} slow clients (half slow-loris, half never reading a 3 MiB reply); "
          f"wrk -c32 for {args.seconds} s alongside:\n")
    print("| server | slow connections held | normal requests/s | normal requests | errors |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['server']} | {r['slow']} | {r['rps']:.0f} | {r['requests']} | {r['errors']} |")


if __name__ == "__main__":
    main()
