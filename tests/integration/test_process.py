"""The process model: supervision, stopping, orphans, binds, start-up errors."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.server import ROOT, Server, alive, wait_for

pytestmark = pytest.mark.timeout(60)


def test_demo_app_served_without_config() -> None:
    with Server(workers=2) as srv:
        status, headers, body = srv.get("/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"worker" in body and b"/json" in body
        facts = json.loads(srv.get("/json")[2])
        assert facts["pid"] in srv.worker_pids()
        assert facts["worker"] in (1, 2)
        assert facts["requests_served"] >= 1
        # Each page view reconnects, so a browser reload can land on another worker (which
        # idle worker wins a new connection is the scheduler's choice; spreading under
        # load is test_http.py::test_requests_spread_over_workers).
        assert headers["connection"] == "close"
        pids = {json.loads(srv.get("/json")[2])["pid"] for _ in range(20)}
        assert pids <= srv.worker_pids()


def test_config_file_is_used_and_cli_wins() -> None:
    config = 'app = "tests.apps.basic:app"\n[workers]\nthreads = 3\nworkers = 3\n'
    with Server(workers=1, config=config) as srv:  # --workers 1 on the command line wins
        assert len(srv.worker_pids()) == 1
        assert srv.get("/hello")[0] == 200


def test_sigkill_worker_is_replaced_and_service_continues() -> None:
    with Server("tests.apps.basic:app", workers=2) as srv:
        before = srv.worker_pids()
        assert len(before) == 2
        victim = next(iter(before))
        os.kill(victim, signal.SIGKILL)
        after = wait_for(lambda: (p := srv.worker_pids()) and len(p) == 2 and victim not in p
                         and p, timeout=5, what="a replacement worker")
        assert len(after - before) == 1
        wait_for(lambda: srv.log().count(" is ready") >= 3, timeout=5, what="replacement ready")
        assert all(srv.get("/hello")[0] == 200 for _ in range(20))
        assert "killed by signal SIGKILL" in srv.log()


def test_sigterm_drains_in_flight_request(tmp_path: Path) -> None:
    with Server("tests.apps.basic:app", workers=2) as srv:
        mark = tmp_path / "started"
        result: dict[str, object] = {}

        def slow() -> None:
            result["response"] = srv.get(f"/slow?s=1.5&mark={mark}", timeout=20)

        thread = threading.Thread(target=slow)
        thread.start()
        wait_for(mark.exists, timeout=10, what="the slow request to start")
        pids = srv.tree_pids()
        srv.signal(signal.SIGTERM)
        thread.join(20)
        status, _, body = result["response"]  # type: ignore[misc]
        assert status == 200 and body == b"slow done"
        assert srv.wait_exit(15) == 0
        wait_for(lambda: not any(alive(p) for p in pids), timeout=5, what="no process left")
        with pytest.raises(OSError):  # refused once stopped
            socket.create_connection((srv.host, srv.port), timeout=2).close()


def test_graceful_timeout_kills_overlong_requests(tmp_path: Path) -> None:
    with Server("tests.apps.basic:app", "--graceful-timeout", "1", workers=1) as srv:
        mark = tmp_path / "started"
        thread = threading.Thread(
            target=lambda: _quiet(lambda: srv.get(f"/slow?s=30&mark={mark}", timeout=20)))
        thread.start()
        wait_for(mark.exists, timeout=10, what="the slow request to start")
        started = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0
        assert time.monotonic() - started < 8
        thread.join(20)


def _quiet(fn: object) -> None:
    with contextlib.suppress(OSError):
        fn()  # type: ignore[operator]


def test_sigint_stops_quickly_and_leaves_nothing() -> None:
    with Server("tests.apps.basic:app", workers=3) as srv:
        pids = srv.tree_pids()
        assert len(pids) == 4
        srv.signal(signal.SIGINT)
        assert srv.wait_exit(10) == 0
        wait_for(lambda: not any(alive(p) for p in pids), timeout=5, what="no process left")


def test_workers_exit_when_master_is_killed() -> None:
    with Server("tests.apps.basic:app", workers=2) as srv:
        workers = srv.worker_pids()
        srv.signal(signal.SIGKILL)
        srv.wait_exit(5)
        wait_for(lambda: not any(alive(p) for p in workers), timeout=3,
                 what="orphaned workers to exit")


def test_app_import_error_stops_server_with_clear_message() -> None:
    srv = Server("tests.apps.broken:app", wait_ready=False)
    try:
        code = srv.wait_exit(20)
        assert code == 4
        log = srv.log()
        assert "cannot import module 'tests.apps.broken'" in log
        assert "this fixture app is broken on purpose" in log
        assert log.count("could not load the app") <= 2, "must not respawn forever"
    finally:
        srv.stop()


def test_missing_attribute_is_reported() -> None:
    srv = Server("tests.apps.basic:nope", wait_ready=False)
    try:
        assert srv.wait_exit(20) == 4
        assert "has no attribute 'nope'" in srv.log()
    finally:
        srv.stop()


def test_factory_app_and_preload() -> None:
    with Server("tests.apps.basic:factory()", "--preload-app", "--gc-freeze") as srv:
        assert srv.get("/hello")[2] == b"Hello, world!"
        # Preloaded: the app module was imported once, in the master, before the fork.
        assert "cannot import" not in srv.log()


def test_bind_error_is_reported() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        srv = Server("tests.apps.basic:app", bind=f"127.0.0.1:{port}", wait_ready=False)
        try:
            assert srv.wait_exit(20) == 3
            assert "cannot listen on 127.0.0.1" in srv.log()
        finally:
            srv.stop()


def test_bad_config_names_key_value_and_allowed() -> None:
    out = subprocess.run([sys.executable, "-m", "prefork", "--threads", "lots"],
                         capture_output=True, text=True, cwd=ROOT, timeout=20)
    assert out.returncode == 2
    assert "'threads'" in out.stderr and "'lots'" in out.stderr and "whole number" in out.stderr


def test_check_config_prints_resolved_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[http]\nkeepalive = 7\n")
    out = subprocess.run(
        [sys.executable, "-m", "prefork", "-c", str(cfg), "--check-config", "--threads", "5"],
        capture_output=True, text=True, cwd=ROOT, timeout=20,
        env={**os.environ, "PREFORK_WORKERS": "3"})
    assert out.returncode == 0, out.stderr
    assert "keepalive = 7" in out.stdout
    assert "threads = 5" in out.stdout
    assert "workers = 3" in out.stdout


def test_unix_socket_with_mode(tmp_path: Path) -> None:
    path = tmp_path / "prefork.sock"
    with Server("tests.apps.basic:app", "--unix-socket-mode", "600",
                bind=f"unix:{path}") as srv:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"Hello, world!")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(10) == 0
    assert not path.exists(), "the socket file is removed on exit"


def test_stale_unix_socket_is_replaced_but_live_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: stale
    with Server("tests.apps.basic:app", bind=f"unix:{path}", workers=1):
        other = Server("tests.apps.basic:app", bind=f"unix:{path}", wait_ready=False)
        try:
            assert other.wait_exit(20) == 3
            assert "another server is listening there" in other.log()
        finally:
            other.stop()


def test_ipv6_and_several_binds() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured here")
    with Server("tests.apps.basic:app", "--bind", "[::1]:0", workers=1) as srv:
        urls = [line.split("listening at ")[1].strip()
                for line in srv.log().splitlines() if "listening at" in line]
        assert len(urls) == 2
        v6 = next(u for u in urls if "[::1]" in u)
        port = int(v6.rsplit(":", 1)[1])
        with socket.create_connection(("::1", port), timeout=5) as sock:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        assert data.endswith(b"Hello, world!")
        assert srv.get("/hello")[0] == 200  # and the IPv4 listener too


def test_max_requests_recycles_workers() -> None:
    with Server("tests.apps.basic:app", "--max-requests", "20", workers=1) as srv:
        first = srv.worker_pids()
        for _ in range(45):
            assert srv.get("/hello")[0] == 200
        wait_for(lambda: srv.worker_pids() and srv.worker_pids() != first, timeout=5,
                 what="a recycled worker")
        assert "recycling" in srv.log()


def test_wsgiref_validator_accepts_our_server() -> None:
    with Server("tests.apps.basic:validated()", workers=1) as srv:
        for method, path, body in [("GET", "/hello", None), ("POST", "/echo", b"x" * 1000),
                                   ("HEAD", "/hello", None), ("GET", "/chunked", None),
                                   ("GET", "/write", None), ("GET", "/environ?x=1", None)]:
            status, _, _ = srv.request(method, path, body=body)
            assert status == 200, (method, path, srv.log()[-2000:])
        log = srv.log()
        assert "AssertionError" not in log and "WSGIWarning" not in log, log[-3000:]


def test_python_dash_m_and_console_script_agree() -> None:
    dash_m = subprocess.run([sys.executable, "-m", "prefork", "--version"],
                            capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert dash_m.returncode == 0 and dash_m.stdout.startswith("prefork ")
    exe = Path(sys.executable).with_name("prefork-serve")
    if not exe.exists():
        pytest.skip("prefork-serve is not installed next to this interpreter")
    script = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=20)
    assert script.stdout == dash_m.stdout


def test_no_stray_threads_grow(server: Server) -> None:
    counts = {int(server.get("/threads")[2]) for _ in range(20)}
    assert max(counts) <= 4 + 2, counts  # pool threads + main thread (+ none per request)
    assert psutil.pid_exists(server.pid)


def test_closed_connections_are_not_retained() -> None:
    with Server("tests.apps.basic:app", workers=1) as srv:
        for i in range(300):
            with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
                if i % 3 == 0:
                    continue  # connect and leave without a word
                sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while sock.recv(4096):
                    pass
        # Only the connection asking is alive (closing is asynchronous for a moment: poll).
        wait_for(lambda: srv.get("/live-connections")[2] == b"1", timeout=5,
                 what="closed connections to be released")


def test_access_log_lines_through_the_server(tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    with Server("tests.apps.basic:app", "--access-log", str(access),
                "--access-log-format", "json", workers=1) as srv:
        srv.request("GET", "/hello?x=1", headers={"User-Agent": "test-agent"})
        srv.request("POST", "/echo", body=b"12345")
        srv.get("/raise")
        with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
            while sock.recv(4096):
                pass

        def lines() -> list[dict[str, object]]:
            return [json.loads(x) for x in access.read_text().splitlines()] if \
                access.exists() else []

        wait_for(lambda: len(lines()) >= 4, timeout=5, what="4 access-log lines")
        # Each line is written once its response is out, by whichever thread served it:
        # find them by what they say, not by their order.
        by_path = {line["path"]: line for line in lines()}
        first, echo, boom = by_path["/hello"], by_path["/echo"], by_path["/raise"]
        bad = next(line for line in lines() if line["method"] == "-")
        assert first["path"] == "/hello" and first["query"] == "x=1"
        assert first["status"] == 200 and first["bytes"] == 13
        assert first["user_agent"] == "test-agent" and first["worker"] == 1
        assert echo["method"] == "POST" and echo["bytes"] == 5
        assert boom["status"] == 500
        assert bad["status"] == 400


def test_forwarded_headers_trusted_only_from_allowed_peers(tmp_path: Path) -> None:
    spoof = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    with Server("tests.apps.basic:app", workers=1) as srv:  # default: loopback is trusted
        env = json.loads(srv.get("/environ", headers=spoof)[2])
        assert env["REMOTE_ADDR"] == "203.0.113.9" and env["wsgi.url_scheme"] == "https"
    with Server("tests.apps.basic:app", "--forwarded-allow-ips", "10.9.9.9", workers=1) as srv:
        env = json.loads(srv.get("/environ", headers=spoof)[2])
        assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"
        assert "HTTP_X_FORWARDED_FOR" not in env and "HTTP_X_FORWARDED_PROTO" not in env
    path = tmp_path / "p.sock"
    for flag, trusted in (("--unix-socket-trusted", True), ("--no-unix-socket-trusted", False)):
        with Server("tests.apps.basic:app", flag, bind=f"unix:{path}", workers=1):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
                sock.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             b"X-Forwarded-For: 203.0.113.9\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            env = json.loads(data.split(b"\r\n\r\n", 1)[1])
            assert (env["REMOTE_ADDR"] == "203.0.113.9") is trusted


def test_unix_socket_owner_and_group(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("changing a file's owner needs root")
    import grp
    import pwd

    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    path = tmp_path / "owned.sock"
    with Server("tests.apps.basic:app", "--unix-socket-owner", "nobody", "--unix-socket-group",
                group, bind=f"unix:{path}", workers=1):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
