"""Signals and recycling settings of the master, through a real server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.faults.load import Load
from tests.server import Server, alive, wait_for

pytestmark = pytest.mark.timeout(90)
APP = "tests.apps.faults:app"


def new_pid(pidfile: Path, old: int) -> int | None:
    """The pid in `pidfile` once it is no longer `old` (a new master's)."""
    try:  # the old master renames the file away while the new one writes it
        pid = int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid != old else None


def test_stopped_worker_is_killed_and_replaced_within_timeout() -> None:
    with Server(APP, "--timeout", "2", workers=2) as srv:
        victim = min(srv.worker_pids())
        os.kill(victim, signal.SIGSTOP)  # alive, but its loop answers nothing
        stopped_at = time.monotonic()
        wait_for(lambda: victim not in srv.worker_pids() and len(srv.worker_pids()) == 2,
                 timeout=10, what="the stopped worker to be replaced")
        assert time.monotonic() - stopped_at < 2 + 1.5
        assert "sent no heartbeat" in srv.log()
        assert srv.get("/")[0] == 200


def test_ttin_and_ttou_change_the_worker_count() -> None:
    with Server(APP, workers=2) as srv:
        srv.signal(signal.SIGTTIN)
        wait_for(lambda: len(srv.worker_pids()) == 3, timeout=10, what="a third worker")
        srv.signal(signal.SIGTTOU)
        # Signals of one kind coalesce while pending: let the first be handled.
        wait_for(lambda: "workers 3 -> 2" in srv.log(), timeout=5, what="the first TTOU")
        srv.signal(signal.SIGTTOU)
        wait_for(lambda: len(srv.worker_pids()) == 1, timeout=15, what="one worker left")
        assert srv.get("/")[0] == 200


def test_usr1_reopens_log_files(tmp_path: Path) -> None:
    logfile = tmp_path / "error.log"
    with Server("tests.apps.basic:app", errorlog=str(logfile), workers=1) as srv:
        rotated = tmp_path / "error.log.1"
        logfile.rename(rotated)  # what logrotate does
        srv.signal(signal.SIGUSR1)
        wait_for(logfile.exists, timeout=10, what="the master to reopen its log")

        def worker_reopened() -> bool:
            srv.get("/raise")  # the worker logs a traceback
            return "boom from the fixture app" in logfile.read_text()

        wait_for(worker_reopened, timeout=10, what="the worker to log into the new file")
        assert "listening at" in rotated.read_text()


def test_usr2_upgrade_hands_over_without_losing_requests(tmp_path: Path) -> None:
    pidfile = tmp_path / "prefork.pid"
    with Server(APP, "--pidfile", str(pidfile), workers=2) as srv:
        old = srv.pid
        assert int(pidfile.read_text()) == old
        load = Load(srv, "/", clients=3, keep_alive=True).start()
        load.more(100, timeout=10, what="load")
        srv.signal(signal.SIGUSR2)
        new = wait_for(lambda: new_pid(pidfile, old), timeout=20, what="the new master's pid")
        assert srv.wait_exit(30) == 0, "the old master stops once the new one is ready"
        load.more(100, timeout=10, what="service by the new master")
        load.stop()
        assert load.failed == [], load.failed[:5]
        assert alive(new)
        assert int(srv.get("/pid")[2]) in {c.pid for c in psutil.Process(new).children()}
        os.kill(new, signal.SIGTERM)
        wait_for(lambda: not alive(new), timeout=20, what="the new master to stop")
        assert not pidfile.exists()


def test_pidfile_written_and_removed(tmp_path: Path) -> None:
    pidfile = tmp_path / "p.pid"
    with Server(APP, "--pidfile", str(pidfile), workers=1) as srv:
        assert int(pidfile.read_text()) == srv.pid
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(10) == 0
    assert not pidfile.exists()


def test_shutdown_delay_keeps_serving_then_drains() -> None:
    with Server(APP, "--shutdown-delay", "1.5", workers=1) as srv:
        srv.signal(signal.SIGTERM)
        termed = time.monotonic()
        wait_for(lambda: "shutdown_delay" in srv.log(), timeout=5, what="the delay to begin")
        assert srv.get("/")[0] == 200, "new connections are still served during the delay"
        assert srv.wait_exit(20) == 0
        assert time.monotonic() - termed >= 1.5


def test_lifetime_recycling_loses_nothing() -> None:
    with Server(APP, "--max-worker-lifetime", "1.5", workers=2, threads=2) as srv:
        first = srv.worker_pids()
        load = Load(srv, "/", clients=3, keep_alive=True).start()
        wait_for(lambda: not (srv.worker_pids() & first) and len(srv.worker_pids()) == 2,
                 timeout=20, what="both workers recycled")
        load.stop()
        assert load.failed == [], load.failed[:5]
        assert "lifetime of" in srv.log()


@pytest.mark.timeout(120)
def test_max_requests_recycling_under_new_connections_loses_nothing() -> None:
    """Recycle every ~30 requests while clients open a new connection per request: every
    drain closes listeners while pool threads accept, and nothing may be reset."""
    with Server(APP, "--max-requests", "30", "--max-requests-jitter", "10",
                workers=2, threads=4) as srv:
        load = Load(srv, "/", clients=4, max_requests=2000, max_seconds=60).start()
        wait_for(lambda: load.total >= 6000 or not any(t.is_alive() for t in load._threads),
                 timeout=90, interval=0.1, what="6000 requests")
        load.stop()
        recycled = srv.log().count("recycling")
        assert load.total >= 6000, load.total
        assert recycled >= 50, recycled
        assert load.failed == [], (len(load.failed), load.failed[:5])
        assert "unexpected error" not in srv.log()
        print(f"\nFIGURE recycle: {load.total} requests, {recycled} recycles, 0 failed")


def test_usr2_hands_the_admin_listener_over_and_metrics_answer_throughout(
        tmp_path: Path) -> None:
    """With the admin listener on, the new master inherits its socket (the port is the
    old master's): the upgrade completes, and /metrics answers at every scrape."""
    import http.client
    import re
    import threading

    pidfile = tmp_path / "prefork.pid"
    with Server(APP, "--pidfile", str(pidfile), "--admin-bind", "127.0.0.1:0",
                workers=1) as srv:
        old = srv.pid
        port = int(wait_for(lambda: re.search(r"admin listener at http://[^:]+:(\d+)",
                                              srv.log()), what="the admin port").group(1))
        scrapes: list[object] = []
        done = threading.Event()

        def scrape() -> None:
            while not done.is_set() and len(scrapes) < 5000:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", "/metrics")
                    resp = conn.getresponse()
                    body = resp.read()
                    conn.close()
                    scrapes.append(resp.status if b"prefork_" in body else body[:80])
                except OSError as exc:
                    scrapes.append(repr(exc))
                time.sleep(0.02)

        scraper = threading.Thread(target=scrape)
        scraper.start()
        try:
            wait_for(lambda: len(scrapes) >= 5, what="scrapes before the upgrade")
            srv.signal(signal.SIGUSR2)

            new = wait_for(lambda: new_pid(pidfile, old), timeout=20,
                           what="the new master's pid")
            assert srv.wait_exit(30) == 0, "the old master stops once the new one is ready"
            count = len(scrapes)
            wait_for(lambda: len(scrapes) >= count + 5, what="scrapes of the new master")
        finally:
            done.set()
            scraper.join(10)
        assert "Address already in use" not in srv.log()
        assert set(scrapes) == {200}, [s for s in scrapes if s != 200][:5]
        os.kill(new, signal.SIGTERM)
        wait_for(lambda: not alive(new), timeout=20, what="the new master to stop")
