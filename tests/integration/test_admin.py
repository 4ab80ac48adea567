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


def test_requests_a_worker_served_after_its_last_heartbeat_are_counted() -> None:
    """Requests served, then at once a reload (before the next once-a-second heartbeat):
    the old worker's last counts go to the master as it exits; none is lost."""
    with Server("tests.apps.basic:app", "--admin-bind", "127.0.0.1:0", workers=1) as srv:
        port = admin_port(srv)
        for _ in range(40):
            srv.get("/hello")
        srv.signal(signal.SIGHUP)
        key = ("prefork_requests_total", (("method", "GET"), ("status", "2xx")))
        restarted = ("prefork_worker_restarts_total", (("cause", "retired"),))

        def reaped() -> dict | None:  # the master has judged the old worker's exit
            m = samples(admin_get(port, "/metrics")[1].decode())
            return m if m.get(restarted, 0) >= 1 else None
        m = wait_for(reaped, timeout=20, what="the old worker's exit counted")
        assert m.get(key, 0) == 40


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


def browse(browser: str, profile: Path, url: str, *extra: str) -> str:
    """Headless Chromium on `url` for 4 s of virtual time (the page refreshes every
    second); its stdout (the DOM with --dump-dom)."""
    import subprocess

    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=4000",
         *extra, url], capture_output=True, text=True, timeout=60).stdout


def metric_totals(port: int) -> dict[str, float]:
    """What /metrics says of the figures the status page shows in its totals line."""
    m = samples(admin_get(port, "/metrics")[1].decode())
    by_class: dict[str, float] = {}
    for (name, labels), value in m.items():
        if name == "prefork_requests_total":
            cls = dict(labels)["status"]
            by_class[cls] = by_class.get(cls, 0) + value
    return {"requests-total": m[("prefork_request_duration_seconds_count", ())],
            "errors-4xx-total": by_class.get("4xx", 0), "errors-5xx-total":
            by_class.get("5xx", 0), "restarts-total": sum(
                v for (n, _), v in m.items() if n == "prefork_worker_restarts_total")}


@pytest.mark.timeout(120)
def test_status_page_in_headless_chromium(tmp_path: Path) -> None:
    """Traffic with 404s and 500s, then a reload: the page draws requests/s, p50/p95/p99,
    4xx and 5xx per second with labelled axes, marks and lists the reload and its worker
    starts and ends, and its totals are /metrics' figures (the old workers' last
    requests among them: a worker's last counts go with it to the master). Checked in the
    DOM Chromium built and in a screenshot (the charts' colours are drawn)."""
    pil = pytest.importorskip("PIL.Image")
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    with Server("tests.apps.basic:app", "--admin-bind", "127.0.0.1:0", workers=2) as srv:
        port = admin_port(srv)
        for i in range(300):  # a burst the charts must show, with errors of each class
            srv.get("/hello" if i % 10 else "/nothing-here")
        for _ in range(5):
            srv.get("/raise")
        old = srv.worker_pids()
        srv.signal(signal.SIGHUP)
        wait_for(lambda: not srv.worker_pids() & old and len(srv.worker_pids()) == 2,
                 timeout=20, what="the reload done")

        def status() -> dict:
            return json.loads(admin_get(port, "/status")[1])

        def settled() -> bool:  # the timeline has the reload, the totals stopped moving
            s = status()
            kinds = {e["kind"] for e in s["events"]}
            return {"reload", "start", "exit"} <= kinds and \
                s["requests_total"] == metric_totals(port)["requests-total"] >= 305
        wait_for(settled, timeout=20, what="the reload in the timeline, totals settled")
        url = f"http://127.0.0.1:{port}/status"
        dom = browse(browser, tmp_path / "profile", url, "--dump-dom")
        shot = tmp_path / "status.png"
        browse(browser, tmp_path / "profile2", url, f"--screenshot={shot}",
               "--window-size=1500,1300", "--hide-scrollbars")
        expected = metric_totals(port)
    assert "<title>prefork status</title>" in dom
    rows = re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td><td>ready</td>", dom)
    assert len(rows) == 2, dom[-2000:]

    def svg(name: str) -> str:
        return re.search(rf'<svg id="{name}"[^>]*>.*?</svg>', dom, re.S).group(0)

    def data_max(name: str) -> float:
        return float(re.search(r'data-max="([\d.]+)"', svg(name)).group(1))

    assert data_max("rps") > 0, "requests/s drawn"
    assert data_max("lat") > 0, "latency drawn"
    assert data_max("err") > 0, "4xx and 5xx drawn"
    for series in ("p50", "p95", "p99", "mean", "4xx/s", "5xx/s", "requests/s"):
        assert f'data-series="{series}"' in dom, series
    for label in ("requests/s", "latency, ms", "responses/s", "time", "now"):
        assert f">{label}</text>" in dom, f"axis label {label!r}"
    assert 'class="event"' in svg("rps"), "the reload's events are marked on the charts"
    events = re.search(r'<tbody id="events">(.*?)</tbody>', dom, re.S).group(1)
    for kind in ("reload", "start", "exit"):  # (a retirement shorter than the sampling
        assert f'class="kind-{kind}">{kind}<' in events, kind  # second shows as its end)
    assert "ended: retired" in events
    for name, value in expected.items():
        shown = re.search(rf'id="{name}">(\d+)<', dom).group(1)
        assert int(shown) == value, (name, shown, value)
    assert expected["errors-4xx-total"] >= 30 and expected["errors-5xx-total"] >= 5
    # The screenshot: each chart's line colours are drawn (not only the keys' swatches,
    # 36 pixels each): requests/s green, p50 blue, the 5xx/p99 red.
    image = pil.open(shot).convert("RGB")
    counts = {colour: n for n, colour in image.getcolors(maxcolors=1 << 24)}
    near = {name: sum(n for c, n in counts.items()
                      if sum(abs(a - b) for a, b in zip(c, rgb, strict=True)) < 40)
            for name, rgb in {"green": (0, 170, 102), "blue": (51, 102, 204),
                              "red": (187, 0, 0)}.items()}
    assert all(n > 150 for n in near.values()), near
