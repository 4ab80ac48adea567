"""Static files: prefork against nginx serving the same files, side by side.

    python bench/static.py [--rounds 2] [--duration 5]

Files of 1 KiB, 100 KiB and 10 MB in a temporary folder; nginx (installed from the
distribution's packages if missing: apt-get install nginx) with 2 worker processes,
sendfile on and no access log; prefork with 2 workers x 8 threads and a [[static]] mount.
wrk -t2 -c32 keep-alive on 127.0.0.1, measurements interleaved, medians of the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import figure, free_port, parse_ms, wait_port  # noqa: E402

SIZES = {"1 KiB": 1024, "100 KiB": 100 * 1024, "10 MB": 10_000_000}


def nginx_conf(folder: Path, root: Path, port: int) -> Path:
    conf = folder / "nginx.conf"
    conf.write_text(f"""
worker_processes 2;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  types {{ application/octet-stream bin; }}
  server {{
    listen 127.0.0.1:{port};
    location /static/ {{ alias {root}/; }}
  }}
}}
""")
    return conf


def measure(port: int, name: str, seconds: int) -> tuple[float, float, float]:
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "--timeout", "10s",
                          f"http://127.0.0.1:{port}/static/{name}"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{name}: the server answered errors:\n{out}")
    rps = float(figure(r"Requests/sec:\s+([\d.]+)", out))
    mb = figure(r"Transfer/sec:\s+([\d.]+\w+)", out, "0")
    p99 = parse_ms(figure(r"(?m)^\s+99%\s+(\S+)", out, ""))
    scale = {"GB": 1024.0, "MB": 1.0, "KB": 1 / 1024, "B": 1 / 2**20}
    unit = "".join(c for c in mb if c.isalpha())
    value = float(mb.rstrip("GMKB") or 0)
    return rps, value * scale.get(unit, 1.0), p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx) or not shutil.which("wrk"):
        sys.exit("needs nginx and wrk: apt-get install -y nginx wrk")
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)  # nginx's workers run as an unprivileged user: let them read
        root = folder / "public"
        root.mkdir(mode=0o755)
        for size in SIZES.values():
            (root / f"f{size}.bin").write_bytes(os.urandom(size))
            (root / f"f{size}.bin").chmod(0o644)
        nport, pport = free_port(), free_port()
        procs = [
            subprocess.Popen([nginx, "-c", str(nginx_conf(folder, root, nport)), "-p",
                              str(folder)], process_group=0,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([sys.executable, "-m", "prefork", "--bind", f"127.0.0.1:{pport}",
                              "--workers", "2", "--threads", "8", "--loglevel", "warning",
                              "--static", f"/static/={root}"], cwd=HERE.parent,
                             process_group=0, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL),
        ]
        try:
            wait_port(nport)
            wait_port(pport)
            time.sleep(1)
            for rnd in range(args.rounds):
                for label, size in SIZES.items():
                    for server, port in (("nginx", nport), ("prefork", pport)):
                        r = measure(port, f"f{size}.bin", args.duration)
                        results.setdefault((label, server), []).append(r)
                        print(f"round {rnd + 1} {label:8} {server:8} {r[0]:9.0f} req/s "
                              f"{r[1]:8.0f} MiB/s p99 {r[2]:.2f} ms", flush=True)
        finally:
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, wrk -t2 -c32 keep-alive, "
          f"{args.duration} s x {args.rounds} rounds, medians\n")
    print("| file | server | req/s | MiB/s | p99 ms | req/s vs nginx |")
    print("|---|---|---|---|---|---|")
    for label in SIZES:
        base = statistics.median(r[0] for r in results[(label, "nginx")])
        for server in ("nginx", "prefork"):
            rs = results[(label, server)]
            rps = statistics.median(r[0] for r in rs)
            print(f"| {label} | {server} | {rps:.0f} | {statistics.median(r[1] for r in rs):.0f}"
                  f" | {statistics.median(r[2] for r in rs):.2f} | {rps / base:.2f}x |")


if __name__ == "__main__":
    main()
