"""The admin listener: metrics, health, readiness and status, from the master."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
from pathlib import Path

import pytest

from tests.server import Server, wait_for

pytestmark = pytest.mark.timeout(60)
prometheus_parser = pytest.importorskip("prometheus_client.parser")


def admin_port(srv: Server) -> int:
    m = wait_for(lambda: re.search(r"admin listener at http://[^:]+:(\d+)", srv.log()),
                 timeout=10, what="the admin listener")
    return int(m.group(1))


def admin_get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_count_requests() -> None:
    with Server("tests.apps.basic:app", "--admin-bind", "127.0.0.1:0", workers=2) as srv:
        port = admin_port(srv)
        for _ in range(30):
            srv.get("/hello")
        srv.request("POST", "/echo", body=b"x" * 1000)
        srv.get("/nothing-here")
        srv.get("/raise")
        with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nBad\r\n\r\n")
            while sock.recv(4096):
                pass

        def metrics() -> dict:
            return samples(admin_get(port, "/metrics")[1].decode())

        def counted() -> bool:
            m = metrics()
            return m.get(("prefork_requests_total", (("method", "GET"), ("status", "2xx"))),
                         0) >= 30
        wait_for(counted, timeout=5, what="heartbeats to carry the counts")
        m = metrics()
        assert m[("prefork_requests_total", (("method", "GET"), ("status", "4xx")))] >= 1
        assert m[("prefork_requests_total", (("method", "GET"), ("status", "5xx")))] >= 1
        assert m[("prefork_requests_total", (("method", "POST"), ("status", "2xx")))] >= 1
        assert m[("prefork_requests_rejected_total", (("reason", "bad_request"),))] >= 1
        assert m[("prefork_received_body_bytes_total", ())] >= 1000
        assert m[("prefork_request_duration_seconds_count", ())] >= 33
        assert m[("prefork_request_duration_seconds_bucket", (("le", "+Inf"),))] >= 33
        assert m[("prefork_info", (("threads", "4"), ("version", "0.1.0"),
                                   ("workers", "2")))] == 1
        rss = [v for (n, _), v in m.items() if n == "prefork_worker_resident_memory_bytes"]
        assert len(rss) == 2 and all(v > 1e6 for v in rss)
        assert ("prefork_listen_backlog", (("listener", "127.0.0.1:0"),)) in m


def test_counts_survive_a_worker_restart() -> None:
    with Server("tests.apps.basic:app", "--admin-bind", "127.0.0.1:0", workers=1) as srv:
        port = admin_port(srv)
        for _ in range(20):
            srv.get("/hello")
        key = ("prefork_requests_total", (("method", "GET"), ("status", "2xx")))
        wait_for(lambda: samples(admin_get(port, "/metrics")[1].decode()).get(key, 0) >= 20,
                 timeout=5)
        srv.signal(signal.SIGHUP)  # every worker replaced
        wait_for(lambda: "reload: " in srv.log(), timeout=10)
        restarted = ("prefork_worker_restarts_total", (("cause", "retired"),))
        m = wait_for(lambda: (m := samples(admin_get(port, "/metrics")[1].decode()))
                     .get(restarted, 0) >= 1 and m, timeout=10, what="the old worker's exit")
        assert m[key] >= 20, "counters never go backwards across restarts"


def test_health_readiness_and_status(tmp_path: Path) -> None:
    with Server("tests.apps.basic:app", "--admin-bind", "127.0.0.1:0",
                "--shutdown-delay", "2", workers=2) as srv:
        port = admin_port(srv)
        assert admin_get(port, "/healthz") == (200, b"ok\n")
        assert admin_get(port, "/readyz") == (200, b"ready\n")
        status, body = admin_get(port, "/status")
        info = json.loads(body)
        assert status == 200 and info["pid"] == srv.pid and len(info["workers"]) == 2
        worker = info["workers"][0]
        assert {"pid", "age_s", "requests", "busy_threads", "rss", "cpu",
                "last_restart_cause"} <= set(worker)
        srv.signal(signal.SIGTERM)  # shutdown_delay: still serving, but not ready
        wait_for(lambda: admin_get(port, "/readyz")[0] == 503, timeout=5, what="draining")
        assert admin_get(port, "/healthz")[0] == 200
        assert srv.get("/hello")[0] == 200


def test_admin_answers_while_every_app_thread_is_stuck(tmp_path: Path) -> None:
    with Server("tests.apps.faults:app", "--admin-bind", "127.0.0.1:0", "--timeout", "30",
                workers=1, threads=2) as srv:
        port = admin_port(srv)
        hung = []
        for i in range(2):
            sock = socket.create_connection((srv.host, srv.port), timeout=30)
            sock.sendall(b"GET /hang?mark=%s/h%d HTTP/1.1\r\nHost: x\r\n\r\n"
                         % (str(tmp_path).encode(), i))
            hung.append(sock)
        wait_for(lambda: len(list(tmp_path.glob("h*"))) == 2, timeout=10)
        assert admin_get(port, "/healthz", timeout=2)[0] == 200
        wait_for(lambda: json.loads(admin_get(port, "/status")[1])["in_flight"] == 2,
                 timeout=5, what="the status to show both stuck requests")
        for sock in hung:
            sock.close()


def test_status_command_prints_the_worker_table() -> None:
    import subprocess
    import sys

    from tests.server import ROOT

    with Server("tests.apps.basic:app", "--admin-bind", "127.0.0.1:0", workers=2) as srv:
        port = admin_port(srv)
        srv.get("/hello")
        out = subprocess.run([sys.executable, "-m", "prefork", "status", "--admin-bind",
                              f"127.0.0.1:{port}"], capture_output=True, text=True,
                             cwd=ROOT, timeout=20)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert f"master pid {srv.pid}" in lines[0]
        assert lines[1].split()[:3] == ["worker", "pid", "state"]
        assert len(lines) == 4 and all("ready" in line for line in lines[2:])


def chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.timeout(90)
def test_status_page_in_headless_chromium(tmp_path: Path) -> None:
    import subprocess

    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    with Server("tests.apps.basic:app", "--admin-bind", "127.0.0.1:0", workers=2) as srv:
        port = admin_port(srv)
        for _ in range(300):  # a burst the chart must show
            srv.get("/hello")
        wait_for(lambda: any(p[1] > 0 for p in
                             json.loads(admin_get(port, "/status")[1])["history"]),
                 timeout=10, what="the burst to reach the history")
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=4000", "--dump-dom", f"http://127.0.0.1:{port}/status"],
            capture_output=True, text=True, timeout=60).stdout
        assert "<title>prefork status</title>" in dom
        rows = re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td><td>ready</td>", dom)
        assert {int(pid) for _, pid in rows} == srv.worker_pids(), dom[-2000:]
        rps_max = float(re.search(r'<svg id="rps"[^>]*data-max="([\d.]+)"', dom).group(1))
        assert rps_max > 0, "the chart shows the burst"
        assert "<polyline" in dom
