"""Supervision under fault, each scenario driving a real server with bounded load on
loopback and checking the figure the design promises."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.faults.load import Load
from tests.server import Server, alive, wait_for

pytestmark = pytest.mark.timeout(90)
APP = "tests.apps.faults:app"


def pid_of_response(srv: Server) -> int:
    return int(srv.get("/pid", timeout=5)[2])


def test_sigkill_worker_under_load() -> None:
    with Server(APP, workers=2, threads=4) as srv:
        load = Load(srv, "/", clients=4).start()
        load.more(200, timeout=10, what="load to run")
        victim = min(srv.worker_pids())
        before = srv.worker_pids()
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()

        def replacement_serving() -> bool:
            new = srv.worker_pids() - before
            return not (not new or srv.log().count(" is ready") < 3)

        wait_for(replacement_serving, timeout=5, what="a replacement worker")
        replaced_s = time.monotonic() - killed_at
        assert replaced_s < 1.0, "a replacement serves within 1 s"
        load.more(200, timeout=10, what="service to go on")
        load.stop()
        # Only what was in flight on the killed worker may fail: at most its 4 threads.
        assert len(load.failed) <= 4, load.failed
        assert "killed by signal SIGKILL" in srv.log()
        print(f"\nFIGURE sigkill: replacement ready after {replaced_s * 1000:.0f} ms; "
              f"{len(load.failed)} failed of {load.total}")


def test_crashing_route_is_replaced_at_once_and_other_routes_keep_working() -> None:
    """A worker that served and then crashed is no boot loop: it is replaced at once, so
    50 crashes in 10 s leave the pool short only for a moment, and the log is not flooded."""
    with Server(APP, workers=2, threads=4) as srv:
        load = Load(srv, "/", clients=3, max_requests=500_000, max_seconds=60).start()
        crashes = 0
        refill_s = []
        started = time.monotonic()
        while crashes < 50 and time.monotonic() - started < 30:
            ready_before = srv.log().count(" is ready")
            with contextlib.suppress(OSError):  # the worker dies under it: that is the point
                srv.get("/crash", timeout=5)
            crashed = time.monotonic()
            crashes += 1
            # The pool is back to N once the replacement reports ready.
            wait_for(lambda n=ready_before: srv.log().count(" is ready") > n, timeout=5,
                     interval=0.01, what="a replacement worker")
            refill_s.append(time.monotonic() - crashed)
            time.sleep(max(0.0, 0.2 - refill_s[-1]))  # pacing: 50 crashes over about 10 s
        load.stop()
        assert crashes == 50
        assert load.total > 500
        log = srv.log()
        assert "exited with status 70" in log
        assert "restarting in" not in log, "no back-off for workers that served"
        assert max(refill_s) < 1.0, f"the pool was short for {max(refill_s):.2f} s"
        # Only requests in flight on a crashing worker may fail: at most 3 per crash (the
        # load's 3 clients), far fewer in practice.
        assert len(load.failed) <= 3 * crashes, load.failed[:5]
        assert load.ok / load.total >= 0.99, (load.ok, load.total, load.failed[:5])
        crash_lines = log.count("replacing it now") + log.count("more worker crash(es)")
        assert 1 <= crash_lines <= 6, f"{crash_lines} crash lines for 50 crashes"
        assert alive(srv.pid) and srv.get("/")[0] == 200
        print(f"\nFIGURE crash: 50 crashes; pool back to 2 after at most "
              f"{max(refill_s) * 1000:.0f} ms (median {sorted(refill_s)[25] * 1000:.0f} ms); "
              f"other route {load.ok}/{load.total} ok "
              f"({100 * load.ok / load.total:.2f}%); {crash_lines} crash log lines")


def test_worker_that_dies_before_serving_backs_off() -> None:
    """An app whose workers die as they start is a boot loop: back-off, and it says so."""
    with Server("tests.apps.dies:app", workers=1, wait_ready=False) as srv:
        wait_for(lambda: len(re.findall(r"restarting in (\d+\.\d) s", srv.log())) >= 4,
                 timeout=20, what="four restarts with back-off")
        delays = [float(d) for d in re.findall(r"restarting in (\d+\.\d) s", srv.log())]
        assert delays[:4] == [0.0, 0.5, 1.0, 2.0], delays
        assert "before serving" in srv.log()


def test_stuck_requests_are_found_logged_and_recovered(tmp_path: Path) -> None:
    timeout = 2.0
    with Server(APP, "--timeout", str(timeout), "--graceful-timeout", "5",
                workers=2, threads=2) as srv:
        hung = []
        for i in range(4):  # every thread of both workers
            sock = socket.create_connection((srv.host, srv.port), timeout=30)
            sock.sendall(b"GET /hang?mark=%s/h%d HTTP/1.1\r\nHost: x\r\n\r\n"
                         % (str(tmp_path).encode(), i))
            hung.append(sock)
        # Each running /hang leaves a mark: four marks mean all four threads are hung.
        wait_for(lambda: len(list(tmp_path.glob("h*"))) == 4, timeout=10,
                 what="four hung requests running")
        started = time.monotonic()

        def served() -> bool:
            try:
                return srv.get("/", timeout=1)[0] == 200
            except OSError:
                return False

        wait_for(served, timeout=timeout + 8, interval=0.1, what="service to recover")
        recovered = time.monotonic() - started
        assert recovered < timeout + 2.0 + 0.5, f"recovered after {recovered:.1f} s"
        print(f"\nFIGURE stuck: all 4 threads hung; served again after {recovered:.2f} s "
              f"(timeout {timeout} s)")
        log = srv.log()
        assert "every thread (2) has made no progress" in log
        assert re.search(r"request GET /hang\S*, thread", log)
        assert "in hang_forever" in log, "the stuck threads' stacks are logged"
        assert "retiring worker" in log
        for sock in hung:
            sock.close()


def test_hup_every_two_seconds_under_load_loses_nothing() -> None:
    with Server(APP, workers=2, threads=4) as srv:
        load = Load(srv, "/", clients=4, keep_alive=True, max_seconds=40).start()
        pids_seen = [srv.worker_pids()]
        for _ in range(5):  # 10 s of load, a reload every 2 s
            time.sleep(2.0)  # pacing the reloads, not synchronising
            srv.signal(signal.SIGHUP)
        wait_for(lambda: srv.log().count("reload: ") >= 5, timeout=20, what="5 reloads")
        load.stop()
        pids_seen.append(srv.worker_pids())
        assert load.failed == [], load.failed[:5]
        assert load.ok > 1000
        assert not pids_seen[0] & pids_seen[1], "every worker was replaced"
        print(f"\nFIGURE hup: 5 reloads in 10 s; {load.ok} requests ok, "
              f"{len(load.failed)} failed")


def test_hup_with_broken_app_keeps_old_workers(tmp_path: Path) -> None:
    module = tmp_path / "hupapp.py"
    module.write_text("def app(e, s):\n    s('200 OK', [('Content-Length', '2')])\n"
                      "    return [b'v1']\n")
    with Server("hupapp:app", "--pythonpath", str(tmp_path), workers=2) as srv:
        before = srv.worker_pids()
        module.write_text("raise ImportError('broken on purpose')\n")
        srv.signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in srv.log(), timeout=20, what="the failed reload")
        assert before <= srv.worker_pids(), "the old workers still serve"
        assert srv.get("/")[2] == b"v1"
        module.write_text("def app(e, s):\n    s('200 OK', [('Content-Length', '2')])\n"
                          "    return [b'v2']\n")
        srv.signal(signal.SIGHUP)
        wait_for(lambda: srv.log().count("reload: ") >= 1, timeout=20, what="a good reload")
        wait_for(lambda: srv.get("/")[2] == b"v2", timeout=10, what="new code served")


def test_term_drains_in_flight_and_queued_then_refuses(tmp_path: Path) -> None:
    with Server(APP, "--graceful-timeout", "15", workers=2, threads=4) as srv:
        results: list[int] = []
        lock = threading.Lock()

        def request(path: str) -> None:
            status = srv.get(path, timeout=30)[0]
            with lock:
                results.append(status)

        pool = ThreadPoolExecutor(max_workers=16)
        for i in range(8):  # every thread busy for 2 s
            pool.submit(request, f"/slow?s=2&mark={tmp_path}/m{i}")
        wait_for(lambda: len(list(tmp_path.glob("m*"))) == 8, timeout=10,
                 what="8 slow requests in flight")
        # 8 more: no thread is free, so they wait in the listen backlog.
        queued = []
        for _ in range(8):
            sock = socket.create_connection((srv.host, srv.port), timeout=30)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            queued.append(sock)
        started = time.monotonic()
        srv.signal(signal.SIGTERM)
        answers = []
        for sock in queued:
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            answers.append(data)
            sock.close()
        pool.shutdown(wait=True)
        assert srv.wait_exit(20) == 0
        stopped_s = time.monotonic() - started
        assert stopped_s < 15
        print(f"\nFIGURE term: 8 in flight + 8 queued answered; exit after {stopped_s:.2f} s")
        assert results == [200] * 8, "all 8 in-flight requests finished"
        assert all(a.startswith(b"HTTP/1.1 200") for a in answers), "all queued answered"
        with pytest.raises(OSError):
            socket.create_connection((srv.host, srv.port), timeout=2).close()


def test_master_sigkill_leaves_no_workers() -> None:
    with Server(APP, workers=3) as srv:
        workers = srv.worker_pids()
        srv.signal(signal.SIGKILL)
        started = time.monotonic()
        wait_for(lambda: not any(alive(p) for p in workers), timeout=5, what="orphans to exit")
        gone_s = time.monotonic() - started
        assert gone_s < 2.0
        print(f"\nFIGURE orphans: 3 workers gone {gone_s * 1000:.0f} ms after the master")


def test_leaking_app_is_recycled_under_its_memory_limit() -> None:
    limit_mb = 80
    with Server(APP, "--max-worker-memory", str(limit_mb), "--memory-samples", "1",
                workers=1, threads=2) as srv:
        peak = 0
        failures = 0
        started = time.monotonic()
        for _ in range(120):  # about 6 s at ~20 requests/s, 2 MiB each
            try:
                status = srv.get("/leak?mb=2", timeout=10)[0]
                failures += status != 200
            except OSError:
                failures += 1
            for pid in srv.worker_pids():
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, psutil.Process(pid).memory_info().rss)
            time.sleep(0.05)  # pacing the leak
        assert failures == 0
        assert "over max_worker_memory" in srv.log()
        # One sample's growth: what this pace leaks in a sampling interval (1 s), plus the
        # requests the retiring worker finishes while its replacement starts.
        rate = 120 / (time.monotonic() - started)
        growth_per_sample = int((rate * 1.0 + 4) * (2 << 20))
        assert peak <= (limit_mb << 20) + growth_per_sample, f"peak RSS {peak >> 20} MiB"
        print(f"\nFIGURE leak: limit {limit_mb} MiB, {rate:.0f} req/s x 2 MiB, peak RSS "
              f"{peak >> 20} MiB (bound {(limit_mb << 20) + growth_per_sample >> 20}), "
              f"{srv.log().count('over max_worker_memory')} recycles, {failures} failed")


def test_a_long_request_outlives_timeout_while_other_threads_are_free() -> None:
    """gunicorn's gthread meaning: `timeout` is about a worker that can serve nobody, not
    about one long request. A 5 s request under --timeout 2 gets its 200."""
    with Server(APP, "--timeout", "2", workers=1, threads=2) as srv:
        pid = srv.worker_pids()
        started = time.monotonic()
        status, _, body = srv.get("/slow?s=5", timeout=15)
        took = time.monotonic() - started
        assert (status, body) == (200, b"slow done")
        assert took >= 4.9
        assert srv.worker_pids() == pid, "the worker was not replaced"
        assert "retiring" not in srv.log()


def test_request_timeout_answers_504_and_retires_the_worker(tmp_path: Path) -> None:
    with Server(APP, "--request-timeout", "2", "--graceful-timeout", "10",
                workers=1, threads=4) as srv:
        (old,) = srv.worker_pids()
        sock = socket.create_connection((srv.host, srv.port), timeout=15)
        sock.sendall(b"GET /hang?mark=%s/h HTTP/1.1\r\nHost: x\r\n\r\n" % str(tmp_path).encode())
        started = time.monotonic()
        wait_for(lambda: (tmp_path / "h").exists(), timeout=5, what="the hang to run")
        # Another request on the same worker, still running when the hung one is given up
        # (at 2 s), within its own limit (1.5 s): it must finish normally.
        results: dict[str, Any] = {}

        def slow() -> None:
            results["slow"] = srv.get("/slow?s=1.5", timeout=15)

        t = threading.Thread(target=slow)
        t.start()
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        took = time.monotonic() - started
        sock.close()
        head = reply.split(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 504 Gateway Timeout"), reply
        assert b"Connection: close" in head
        assert 1.9 < took < 3.0, took
        t.join(15)
        assert results["slow"][0] == 200, "the other request was not cut short"
        log = wait_for(lambda: "in hang_forever" in srv.log() and srv.log(), timeout=5,
                       what="the given-up thread's stack in the log")
        assert "past request_timeout" in log and "answered 504" in log
        wait_for(lambda: old not in srv.worker_pids() and len(srv.worker_pids()) == 1,
                 timeout=10, what="the worker to be replaced")
        assert srv.get("/")[0] == 200
