"""Benchmark prefork against other WSGI servers, side by side, interleaved in one run.

    bench/run.sh                                   # installs wrk and the other servers, then runs
    python bench/run.py --rounds 3 --duration 5    # the same, without installing
    python bench/run.py --workloads hello --modes keepalive --servers prefork,gunicorn
    python bench/run.py --baseline /tmp/old-checkout   # adds prefork-baseline: A/B a change

Every server runs the same apps (bench/apps.py) with 2 workers x 8 threads where it has
those knobs, access logs off, on 127.0.0.1. All servers are started once; measurements
are interleaved (A B C A B C...) over several rounds so that drift of the machine hits
every server alike, and the median round is reported. wrk drives the load (2 threads,
64 connections). For each measurement:

  requests/s, p50 and p99 latency        from wrk --latency
  server CPU time per request (µs)       user+system time of the server's whole process
                                         tree (psutil), before and after, / requests
  wrk's CPU time per request (µs)        the same for wrk (its rusage): wrk shares the
                                         cores, so req/s is about their number over the
                                         server's and wrk's CPU per request together, and
                                         wrk's part depends on how the server paces its
                                         responses (fewer per wake-up cost wrk more)
  peak RSS per worker (MiB)              sampled every 0.2 s during the run
  errors                                 socket errors and non-2xx responses

Results are printed as Markdown tables with each figure's ratio to gunicorn's threaded
worker, appended as JSON lines to bench/results/results.jsonl, and drawn as an SVG chart
(bench/charts.py; --chart bench/latest.svg writes the one the README shows).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import free_port, wait_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKERS, THREADS, CONNECTIONS = 2, 8, 64
IO_SLEEP_S = 0.002

# The venv's own granian when the venv is not activated.
GRANIAN = shutil.which("granian") or str(Path(sys.executable).with_name("granian"))
UWSGI = shutil.which("uwsgi") or str(Path(sys.executable).with_name("uwsgi"))
SERVERS: dict[str, list[str]] = {
    "prefork": [sys.executable, "-m", "prefork", "apps:app", "--bind", "127.0.0.1:{port}",
                "--workers", str(WORKERS), "--threads", str(THREADS), "--loglevel", "warning"],
    # The pure-Python request path (http_engine = python): the reference engine.
    "prefork-python": [sys.executable, "-m", "prefork", "apps:app", "--bind",
                       "127.0.0.1:{port}", "--workers", str(WORKERS), "--threads",
                       str(THREADS), "--loglevel", "warning", "--http-engine", "python"],
    # prefork with its admin listener on, so that workers keep metrics: the cost of them.
    "prefork-metrics": [sys.executable, "-m", "prefork", "apps:app",
                        "--bind", "127.0.0.1:{port}", "--workers", str(WORKERS),
                        "--threads", str(THREADS), "--loglevel", "warning",
                        "--admin-bind", "127.0.0.1:0"],
    "gunicorn": [sys.executable, "-m", "gunicorn", "apps:app", "-b", "127.0.0.1:{port}",
                 "-w", str(WORKERS), "--threads", str(THREADS), "-k", "gthread",
                 "--log-level", "warning"],
    "waitress": [sys.executable, "-m", "waitress", "--listen=127.0.0.1:{port}",
                 f"--threads={THREADS}", "apps:app"],  # one process: it has no workers knob
    # Optional (C, libev, one thread per process): see bjoern_serve.py.
    "bjoern": [sys.executable, "bjoern_serve.py", "{port}", str(WORKERS)],
    "granian": [GRANIAN, "--interface", "wsgi", "--host", "127.0.0.1", "--port", "{port}",
                "--workers", str(WORKERS), "--blocking-threads", str(THREADS),
                "--no-access-log", "apps:app"],
    # Optional peers (bench/peers_serve.py says how each is run, and why so).
    "fastpysgi": [sys.executable, "peers_serve.py", "fastpysgi", "{port}", str(WORKERS)],
    "pyruvate": [sys.executable, "peers_serve.py", "pyruvate", "{port}", str(WORKERS),
                 str(THREADS)],
    # uWSGI from the pyuwsgi wheel: --http11-socket speaks HTTP/1.1 keep-alive itself (no
    # router process in between), the closest to the others' shape. Each thread serves
    # one connection until it closes, so 16 of wrk's 64 are served and 48 wait in the
    # accept queue (its p50 is 16 connections' p50), and it ignores "Connection: close"
    # (bench/RESULTS.md).
    "uwsgi": [UWSGI, "--http11-socket", "127.0.0.1:{port}", "--processes", str(WORKERS),
              "--threads", str(THREADS), "--wsgi-file", "apps.py", "--callable", "app",
              "--master", "--disable-logging", "--die-on-term", "--lazy-apps"],
}
WORKLOADS = {  # name -> (path, wrk lua script or None)
    "hello": ("/", None),
    "big": ("/big", None),
    "io": ("/io", None),
    "cpu": ("/cpu", None),
    "echo": ("/echo", "echo.lua"),
    "pipelined": ("/", "pipeline.lua"),
}
MODES = ("keepalive", "close")


@dataclass
class Result:
    server: str
    workload: str
    mode: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    rss_mib: float
    wrk_cpu_us: float
    errors: int
    requests: int


class Server:
    def __init__(self, name: str, tree: Path = ROOT) -> None:
        self.name = name
        self.port = free_port()
        argv = [a.replace("{port}", str(self.port))
                for a in SERVERS[name.removesuffix("-baseline")]]
        env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{tree}"}
        # A process group of its own (to stop the whole tree), not a session of its own:
        # with the kernel's autogroup scheduling a new session is a new scheduling group,
        # and CPU would be split evenly between wrk's group and the server's, throttling
        # every server (hello keep-alive: prefork 35k vs 62k, gunicorn 10k vs 16k,
        # granian 80k vs 118k req/s on this machine).
        self.proc = subprocess.Popen(argv, cwd=HERE, env=env, process_group=0,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        time.sleep(1.0)  # let every worker finish booting before measuring

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def cpu_s(self) -> float:
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def worker_rss(self) -> float:
        procs = self.tree()
        workers = procs[1:] or procs  # waitress is a single process
        rss = 0
        for p in workers:
            with contextlib.suppress(psutil.Error):
                rss = max(rss, p.memory_info().rss)
        return rss / 2**20

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def installed(name: str) -> bool:
    """Whether an optional server can run here (granian's command, bjoern's module)."""
    if name == "granian":
        return os.access(GRANIAN, os.X_OK)
    if name == "uwsgi":
        return os.access(UWSGI, os.X_OK)
    if name in ("bjoern", "fastpysgi", "pyruvate"):
        import importlib.util

        return importlib.util.find_spec(name) is not None
    return True


def lua_scripts(folder: Path) -> None:
    body = "x" * 16384
    (folder / "echo.lua").write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    (folder / "pipeline.lua").write_text(
        "init = function(args)\n"
        "  local r = {}\n"
        "  for i = 1, 16 do r[i] = wrk.format(nil, '/') end\n"
        "  req = table.concat(r)\n"
        "end\n"
        "request = function() return req end\n")


def parse_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def figure(pattern: str, out: str, default: str = "nan") -> str:
    m = re.search(pattern, out)
    return m.group(1) if m else default


def measure(server: Server, workload: str, mode: str, seconds: int, scripts: Path,
            rnd: int, connections: int = CONNECTIONS) -> Result:
    path, script = WORKLOADS[workload]
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script:
        argv += ["-s", str(scripts / script)]
    if mode == "close":
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{server.port}{path}")
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            with contextlib.suppress(psutil.Error):
                peak[0] = max(peak[0], server.worker_rss())

    sampler = threading.Thread(target=sample, daemon=True)
    cpu_before = server.cpu_s()
    wrk_before = waited_children_cpu_s()
    sampler.start()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    done.set()
    sampler.join()
    cpu = server.cpu_s() - cpu_before
    wrk_cpu = waited_children_cpu_s() - wrk_before  # the servers are not waited for yet
    requests = int(figure(r"(\d+) requests in", out, "0"))
    rps = float(figure(r"Requests/sec:\s+([\d.]+)", out))
    # Anchored: the stdev column of wrk's summary can end in "...50%" too.
    p50 = parse_ms(figure(r"(?m)^\s+50%\s+(\S+)", out, ""))
    p99 = parse_ms(figure(r"(?m)^\s+99%\s+(\S+)", out, ""))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    return Result(server.name, workload, mode, rnd, rps, p50, p99,
                  cpu / max(requests, 1) * 1e6, peak[0], wrk_cpu / max(requests, 1) * 1e6,
                  errors, requests)


def waited_children_cpu_s() -> float:
    """User+system time of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def commit() -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
    return "unknown"


def measured_sleep(n: int = 300) -> float:
    """What time.sleep(IO_SLEEP_S) takes here, idle: timer slack and wake-up latency make
    it longer than asked, so the io ceiling no server can pass is below the nominal one."""
    start = time.perf_counter()
    for _ in range(n):
        time.sleep(IO_SLEEP_S)
    return (time.perf_counter() - start) / n


def table(results: list[Result], servers: list[str], sleep_s: float = IO_SLEEP_S) -> str:
    lines = []
    keys = sorted({(r.workload, r.mode) for r in results},
                  key=lambda k: (list(WORKLOADS).index(k[0]), MODES.index(k[1])))
    lines.append("| workload | server | req/s | p50 ms | p99 ms | CPU µs/req | wrk CPU µs/req "
                 "| RSS/worker MiB | errors | req/s vs gunicorn | p99 vs gunicorn "
                 "| CPU vs gunicorn |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for workload, mode in keys:
        rows = {}
        for name in servers:
            rs = [r for r in results if (r.server, r.workload, r.mode) == (name, workload, mode)]
            if rs:
                rows[name] = {
                    "rps": statistics.median(r.rps for r in rs),
                    "p50": statistics.median(r.p50_ms for r in rs),
                    "p99": statistics.median(r.p99_ms for r in rs),
                    "cpu": statistics.median(r.cpu_us for r in rs),
                    "wrk": statistics.median(r.wrk_cpu_us for r in rs),
                    "rss": max(r.rss_mib for r in rs),
                    "errors": sum(r.errors for r in rs),
                }
        base = rows.get("gunicorn")
        for name, row in rows.items():
            ratio = "|" + "|".join(
                f" {row[k] / base[k]:.2f}x " if base and base[k] and row[k] == row[k] else " - "
                for k in ("rps", "p99", "cpu")) + "|"
            label = f"{workload} ({mode})"
            if workload == "io":
                ceiling = WORKERS * THREADS / IO_SLEEP_S
                label += f" [{row['rps'] / ceiling:.0%} of ceiling"
                if sleep_s > IO_SLEEP_S:
                    label += f", {row['rps'] / (WORKERS * THREADS / sleep_s):.0%} of measured"
                label += "]"
            lines.append(f"| {label} | {name} | {row['rps']:.0f} | {row['p50']:.2f} | "
                         f"{row['p99']:.2f} | {row['cpu']:.1f} | {row['wrk']:.1f} | "
                         f"{row['rss']:.1f} | "
                         f"{row['errors']} {ratio}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--servers", default="prefork,granian,bjoern,fastpysgi,uwsgi,"
                        "pyruvate,gunicorn", help="those not installed are skipped")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--connections", type=int, default=CONNECTIONS,
                        help="wrk's open connections (the issue's low-concurrency figure: 4)")
    parser.add_argument("--chart", type=Path, default=HERE / "results" / "latest.svg",
                        help="where to draw the run's chart (SVG; needs matplotlib)")
    parser.add_argument("--baseline", type=Path, metavar="TREE",
                        help="another checkout of prefork (the code before a change): run "
                             "as prefork-baseline beside the others")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: run bench/run.sh, or apt-get install -y wrk")
    servers = [s for s in args.servers.split(",") if s]
    if args.baseline is not None:
        servers.insert(servers.index("prefork") + 1 if "prefork" in servers else 0,
                       "prefork-baseline")
    for name in list(servers):
        if not installed(name):
            print(f"skipping {name}: not installed", file=sys.stderr)
            servers.remove(name)
    workloads = [w for w in args.workloads.split(",") if w]
    modes = [m for m in args.modes.split(",") if m]
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "commit": commit(),
            "connections": args.connections,
            "machine": f"{platform.machine()}, {psutil.cpu_count()} CPUs, "
                       f"{psutil.virtual_memory().total / 2**30:.0f} GiB, "
                       f"Python {platform.python_version()}"}
    sleep_s = measured_sleep() if "io" in workloads else IO_SLEEP_S
    results: list[Result] = []
    running: dict[str, Server] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scripts = Path(tmp)
        lua_scripts(scripts)
        try:
            for name in servers:
                baseline = name == "prefork-baseline"
                running[name] = Server(name, args.baseline if baseline else ROOT)
            for rnd in range(1, args.rounds + 1):
                for workload in workloads:
                    for mode in (modes if workload != "pipelined" else ["keepalive"]):
                        for name in servers:  # interleaved: A B C, A B C...
                            r = measure(running[name], workload, mode, args.duration,
                                        scripts, rnd, args.connections)
                            results.append(r)
                            with open(out_dir / "results.jsonl", "a") as fh:
                                fh.write(json.dumps({**meta, **asdict(r)}) + "\n")
                            print(f"round {rnd} {workload:9} {mode:9} {name:9} "
                                  f"{r.rps:9.0f} req/s p99 {r.p99_ms:7.2f} ms "
                                  f"cpu {r.cpu_us:6.1f} µs wrk {r.wrk_cpu_us:5.1f} µs "
                                  f"errors {r.errors}", flush=True)
        finally:
            for server in running.values():
                server.stop()
    print(f"\n{meta['date']}, commit {meta['commit']}, {meta['machine']}; "
          f"{WORKERS} workers x {THREADS} threads, wrk -t2 -c{args.connections}, "
          f"{args.duration} s x {args.rounds} rounds, medians")
    if "io" in workloads:
        print(f"io: time.sleep({IO_SLEEP_S}) measured {sleep_s * 1e3:.3f} ms here (idle): "
              f"ceiling {WORKERS * THREADS / IO_SLEEP_S:.0f} req/s nominal, "
              f"{WORKERS * THREADS / sleep_s:.0f} req/s measured")
    print()
    print(table(results, servers, sleep_s))
    from charts import write

    title = (f"{meta['date'][:10]}, commit {meta['commit']}: {meta['machine']}; {WORKERS} "
             f"workers x {THREADS} threads, wrk -t2 -c{args.connections}, medians of "
             f"{args.rounds} rounds")
    try:
        print("chart:", write([{**meta, **asdict(r)} for r in results], args.chart, title))
    except ModuleNotFoundError as exc:
        print(f"no chart ({exc}): pip install -e '.[bench]'")


if __name__ == "__main__":
    main()
