"""Load-test prefork (or gunicorn, or both in turns) with locust, in one command.

    python loadtests/run.py                                  # prefork, 50 users, 30 s
    python loadtests/run.py --users 200 --spawn-rate 20 --duration 60s --threads 16
    python loadtests/run.py --compare                        # prefork, then gunicorn
    python loadtests/run.py --users 10 --duration 10s --smoke   # what CI runs

It starts the server on a free 127.0.0.1 port with the chosen settings, runs locust
headless against it (users, spawn rate and duration always bounded), samples each worker's
RSS with psutil while it runs, stops the server, and writes into the results folder
(default loadtests/results/<date>-<server>/):

  report.html          locust's HTML report
  locust_stats.csv ... locust's CSV files
  summary.md / .json   requests/s, failures, p50/p95/p99 by endpoint, RSS per worker

With --compare both servers run the same scenario in turns and comparison.md puts them
side by side. Exit status: 0 when the run had no failures, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "bench"))
from loopback import free_port, wait_port  # noqa: E402


def server_argv(server: str, port: int, args: argparse.Namespace) -> list[str]:
    if server == "prefork":
        return [sys.executable, "-m", "prefork", "loadtests.app:app",
                "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
                "--threads", str(args.threads), "--keepalive", str(args.keepalive),
                "--loglevel", "warning"]
    return [sys.executable, "-m", "gunicorn", "loadtests.app:app", "-b", f"127.0.0.1:{port}",
            "-w", str(args.workers), "--threads", str(args.threads), "-k", "gthread",
            "--keep-alive", str(args.keepalive), "--log-level", "warning"]


def sample_rss(pid: int, samples: dict[int, list[float]], done: threading.Event) -> None:
    while not done.wait(0.5):
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children():
                with contextlib.suppress(psutil.Error):
                    samples.setdefault(child.pid, []).append(child.memory_info().rss / 2**20)


def run_one(server: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFORK_")}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    log = open(out / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(server_argv(server, port, args), cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, process_group=0)
    samples: dict[int, list[float]] = {}
    done = threading.Event()
    try:
        wait_port(port)
        sampler = threading.Thread(target=sample_rss, args=(proc.pid, samples, done),
                                   daemon=True)
        sampler.start()
        locust = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"),
                  "--headless", "-u", str(args.users), "-r", str(args.spawn_rate),
                  "-t", args.duration, "--stop-timeout", "10",
                  "--host", f"http://127.0.0.1:{port}", "--csv", str(out / "locust"),
                  "--html", str(out / "report.html"), "--only-summary"]
        budget = parse_seconds(args.duration) + 120
        result = subprocess.run(locust, cwd=ROOT, capture_output=True, text=True,
                                timeout=budget, env=env)
        (out / "locust.log").write_text(result.stdout + result.stderr)
    finally:
        done.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
    summary = summarize(server, out, samples, args)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(summary_markdown(summary))
    return summary


def parse_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def summarize(server: str, out: Path, samples: dict[int, list[float]],
              args: argparse.Namespace) -> dict[str, Any]:
    rows = list(csv.DictReader((out / "locust_stats.csv").open()))
    endpoints = []
    total: dict[str, Any] = {}
    for row in rows:
        entry = {
            "method": row["Type"], "name": row["Name"],
            "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "rps": float(row["Requests/s"]),
            "p50_ms": float(row["50%"] or 0), "p95_ms": float(row["95%"] or 0),
            "p99_ms": float(row["99%"] or 0),
        }
        if row["Name"] == "Aggregated":
            total = entry
        else:
            endpoints.append(entry)
    rss = {str(pid): {"min": min(v), "max": max(v), "mean": sum(v) / len(v)}
           for pid, v in samples.items() if v}
    return {
        "server": server, "users": args.users, "spawn_rate": args.spawn_rate,
        "duration": args.duration, "workers": args.workers, "threads": args.threads,
        "keepalive": args.keepalive, "total": total, "endpoints": endpoints,
        "rss_mib_per_worker": rss,
        "peak_rss_mib": max((v["max"] for v in rss.values()), default=0.0),
    }


def summary_markdown(s: dict[str, Any]) -> str:
    t = s["total"]
    lines = [
        f"# {s['server']}: {s['users']} users (spawn {s['spawn_rate']}/s) for {s['duration']}, "
        f"{s['workers']} workers x {s['threads']} threads, keepalive {s['keepalive']} s",
        "",
        f"**{t['rps']:.1f} requests/s**, {t['requests']} requests, **{t['failures']} failures**, "
        f"p50 {t['p50_ms']:.0f} ms, p95 {t['p95_ms']:.0f} ms, p99 {t['p99_ms']:.0f} ms; "
        f"peak RSS per worker {s['peak_rss_mib']:.1f} MiB",
        "",
        "| endpoint | requests | failures | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in s["endpoints"]:
        lines.append(f"| {e['method']} {e['name']} | {e['requests']} | {e['failures']} | "
                     f"{e['rps']:.1f} | {e['p50_ms']:.0f} | {e['p95_ms']:.0f} | "
                     f"{e['p99_ms']:.0f} |")
    lines += ["", "| worker pid | RSS min MiB | RSS mean MiB | RSS max MiB |", "|---|---|---|---|"]
    for pid, r in s["rss_mib_per_worker"].items():
        lines.append(f"| {pid} | {r['min']:.1f} | {r['mean']:.1f} | {r['max']:.1f} |")
    return "\n".join(lines) + "\n"


def comparison_markdown(a: dict[str, Any], b: dict[str, Any]) -> str:
    lines = [
        f"# {a['server']} vs {b['server']}: {a['users']} users for {a['duration']}, "
        f"{a['workers']} workers x {a['threads']} threads",
        "",
        f"| figure | {a['server']} | {b['server']} | ratio |",
        "|---|---|---|---|",
    ]
    for label, key in (("requests/s", "rps"), ("requests", "requests"),
                       ("failures", "failures"), ("p50 ms", "p50_ms"), ("p95 ms", "p95_ms"),
                       ("p99 ms", "p99_ms")):
        x, y = a["total"][key], b["total"][key]
        ratio = f"{x / y:.2f}x" if y else "-"
        lines.append(f"| {label} | {x:.1f} | {y:.1f} | {ratio} |")
    x, y = a["peak_rss_mib"], b["peak_rss_mib"]
    lines.append(f"| peak RSS per worker MiB | {x:.1f} | {y:.1f} | {x / y:.2f}x |")
    lines += ["", f"| endpoint p95 ms | {a['server']} | {b['server']} |", "|---|---|---|"]
    theirs = {(e["method"], e["name"]): e for e in b["endpoints"]}
    for e in a["endpoints"]:
        other = theirs.get((e["method"], e["name"]))
        lines.append(f"| {e['method']} {e['name']} | {e['p95_ms']:.0f} | "
                     f"{other['p95_ms'] if other else '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("prefork", "gunicorn"), default="prefork")
    parser.add_argument("--compare", action="store_true", help="prefork, then gunicorn")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--duration", default="30s", help="e.g. 30s, 2m (always bounded)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--keepalive", type=float, default=5)
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument("--smoke", action="store_true", help="small uploads, for CI")
    args = parser.parse_args(argv)
    if parse_seconds(args.duration) > 3600 or args.users > 5000:
        parser.error("runs are bounded: at most 1 h and 5000 users")
    if args.smoke:
        os.environ["LOADTEST_UPLOAD_BYTES"] = str(256 << 10)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = args.out or HERE / "results" / stamp
    servers = ["prefork", "gunicorn"] if args.compare else [args.server]
    summaries = []
    for server in servers:
        out = base / server
        summary = run_one(server, args, out)
        summaries.append(summary)
        print((out / "summary.md").read_text())
    if args.compare:
        text = comparison_markdown(summaries[0], summaries[1])
        (base / "comparison.md").write_text(text)
        print(text)
    print(f"results in {base}")
    return 0 if all(s["total"].get("failures", 1) == 0 and s["total"].get("requests", 0) > 0
                    for s in summaries) else 1


if __name__ == "__main__":
    raise SystemExit(main())
