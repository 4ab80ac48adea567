"""System calls and context switches per request, server by server (hello, keep-alive).

    python bench/syscalls.py        # prefork, granian and bjoern (those installed)
    python bench/syscalls.py --servers prefork --connections 64,4 --duration 4
    python bench/syscalls.py --close   # a new connection per request (Connection: close)
    python bench/syscalls.py --pipelined  # 16 requests per write (bench/run.py's pipelined)
    python bench/syscalls.py --perf    # counted by perf's tracepoints, not strace

Each server runs as in bench/run.py (2 workers x 8 threads where it has those knobs).
For each connection count, two wrk runs of the same length:

  1. context switches: voluntary + involuntary, summed over every thread of the server's
     process tree (/proc/PID/task/TID/status) before and after, per request;
  2. system calls: `strace -f -c` attached to every process of the tree, per request and
     by name. strace slows the server down several times; the counts per request are
     what matter, not the throughput of that run. But the slowdown changes some counts:
     how often threads wait on each other (futex, sched_yield) depends on timing. With
     --perf they are counted by perf's syscall tracepoints, the server at full speed
     (2026-12-01: prefork 4.63 per hello request under strace, 4.01 under perf; granian
     8.05 and 2.68).

Sends per response counts every call that writes to a socket (sendto, sendmsg, write,
writev, sendfile): 1.00 when each response goes out on its own, less when responses
ready together leave in one call (pipelined traffic). Prints a Markdown table;
bench/NOTES.md keeps the figures of record. Linux only.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import SERVERS, Server, figure, installed, lua_scripts

SENDS = ("sendto", "sendmsg", "sendmmsg", "write", "writev", "sendfile", "sendfile64")


def context_switches(server: Server) -> int:
    total = 0
    for proc in server.tree():
        for task in Path(f"/proc/{proc.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                text = (task / "status").read_text()
                total += sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", text))
    return total


# wrk's arguments before the URL: --close's header asking for a new connection per
# request, or --pipelined's script (16 requests per write)
CLOSE: list[str] = []


def wrk(port: int, connections: int, seconds: int) -> int:
    """Requests completed by wrk in `seconds` on hello (keep-alive, or --close)."""
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
                          *CLOSE, f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    return int(figure(r"(\d+) requests in", out, "0"))


def strace_counts(server: Server, connections: int, seconds: int) -> tuple[int, dict[str, int]]:
    """(requests, {syscall: calls}) over one wrk run with strace attached to the tree."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        argv = ["strace", "-f", "-c", "-o", out.name]
        for proc in server.tree():
            argv += ["-p", str(proc.pid)]
        tracer = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached to every thread before the load starts
        requests = wrk(server.port, connections, seconds)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        calls: dict[str, int] = {}
        for line in out.read().splitlines():
            # % time  seconds  usecs/call  calls  [errors]  syscall
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
            if m and m.group(2) != "total":
                calls[m.group(2)] = int(m.group(1))
    return requests, calls


def perf_counts(server: Server, connections: int, seconds: int) -> tuple[int, dict[str, int]]:
    """(requests, {syscall: calls}) over one wrk run, counted by perf's syscall
    tracepoints: the server runs at full speed (strace stops it at every call, which
    changes how its threads meet: GIL waits time out every few requests instead of every
    few hundred)."""
    with tempfile.NamedTemporaryFile("r", suffix=".perf") as out:
        pids = ",".join(str(proc.pid) for proc in server.tree())
        argv = ["perf", "stat", "-x,", "-o", out.name, "-e", "syscalls:sys_enter_*",
                "-p", pids, "--", "wrk", "-t2", f"-c{connections}", f"-d{seconds}s",
                "--timeout", "5s", *CLOSE, f"http://127.0.0.1:{server.port}/"]
        wrk_out = subprocess.run(argv, capture_output=True, text=True,
                                 timeout=seconds + 120).stdout
        requests = int(figure(r"(\d+) requests in", wrk_out, "0"))
        calls: dict[str, int] = {}
        for line in out.read().splitlines():
            # count,unit,event,...
            fields = line.split(",")
            if len(fields) > 2 and fields[0].isdigit() and int(fields[0]) > 0:
                calls[fields[2].removeprefix("syscalls:sys_enter_")] = int(fields[0])
    return requests, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="prefork,granian,bjoern")
    parser.add_argument("--connections", default="64,4")
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--close", action="store_true",
                        help="a new connection per request (Connection: close)")
    parser.add_argument("--perf", action="store_true",
                        help="count with perf's syscall tracepoints instead of strace (the "
                             "server at full speed; needs linux-perf and tracefs)")
    parser.add_argument("--pipelined", action="store_true",
                        help="16 requests per write, as bench/run.py's pipelined workload")
    args = parser.parse_args()
    if args.close:
        CLOSE[:] = ["-H", "Connection: close"]
    if args.pipelined:
        scripts = Path(tempfile.mkdtemp(prefix="prefork-syscalls-"))
        lua_scripts(scripts)
        CLOSE[:] = ["-s", str(scripts / "pipeline.lua")]
    for tool in ("wrk", "perf" if args.perf else "strace"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed (apt-get install -y {tool})")
    rows = []
    for name in [s for s in args.servers.split(",") if s]:
        if name not in SERVERS:
            sys.exit(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
        if not installed(name):
            print(f"skipping {name}: not installed", file=sys.stderr)
            continue
        try:
            server = Server(name)
        except (OSError, TimeoutError) as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        try:
            for connections in [int(c) for c in args.connections.split(",")]:
                before = context_switches(server)
                requests = wrk(server.port, connections, args.duration)
                switches = (context_switches(server) - before) / max(requests, 1)
                counts = perf_counts if args.perf else strace_counts
                traced, calls = counts(server, connections, args.duration)
                total = sum(calls.values()) / max(traced, 1)
                top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
                sends = sum(calls.get(k, 0) for k in SENDS) / max(traced, 1)
                rows.append((name, connections, total, switches, sends, ", ".join(
                    f"{k} {v / max(traced, 1):.2f}" for k, v in top)))
                print(f"{name:9} c={connections:<3} syscalls/req {total:6.2f}  "
                      f"ctx switches/req {switches:5.2f}  sends/response {sends:5.2f}",
                      flush=True)
        finally:
            server.stop()
    print("\n| server | connections | syscalls per request | context switches per request "
          "| sends per response | most frequent (per request) |\n|---|---|---|---|---|---|")
    for name, connections, total, switches, sends, top in rows:
        print(f"| {name} | {connections} | {total:.2f} | {switches:.2f} | {sends:.2f} | {top} |")


if __name__ == "__main__":
    main()
