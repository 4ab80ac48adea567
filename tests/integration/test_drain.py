"""A drain (stop, reload, recycling) closes idle keep-alive connections at once (those
busy a moment ago after a short grace) and loses nothing; recycling stops within max_requests plus the requests in flight. Through
a real server (CI runs this on both engines)."""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import threading
import time
from collections import Counter

import pytest

from tests.server import Server, alive, wait_for

pytestmark = pytest.mark.timeout(90)

HELLO = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
IDLE = 100


def idle_clients(srv: Server, n: int = IDLE) -> list[socket.socket]:
    """n keep-alive connections, each served one request and left idle."""
    socks = []
    for _ in range(n):
        sock = socket.create_connection((srv.host, srv.port), timeout=10)
        sock.sendall(HELLO)
        data = b""
        while not data.endswith(b"Hello, world!"):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert b"Connection: close" not in data
        socks.append(sock)
    return socks


def ends(sock: socket.socket) -> str:
    """How the server ended an idle connection: "fin", "reset", or "open" (still open
    after 10 s)."""
    sock.settimeout(10)
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "open"
    finally:
        sock.close()
    return "fin" if data == b"" else f"bytes {data[:40]!r}"


def retired_cleanly(srv: Server, old: set[int], socks: list[socket.socket],
                    started: float) -> float:
    """The workers `old` gone (in under 5 s, however long keepalive is), every idle
    connection ended by a FIN, nobody killed, the server serving; the seconds it took."""
    wait_for(lambda: not any(alive(p) for p in old), timeout=20, what="old workers gone")
    took = time.monotonic() - started
    endings = Counter(ends(s) for s in socks)
    assert srv.get("/hello")[0] == 200
    assert endings == {"fin": len(socks)}
    assert "killing it" not in srv.log()
    assert took < 5, f"{took:.1f} s: the drain waited for idle clients"
    return took


def test_sigterm_with_only_idle_keepalive_clients_exits_at_once_with_a_fin_each() -> None:
    with Server("tests.apps.basic:app", "--keepalive", "75", workers=2) as srv:
        socks = idle_clients(srv)
        started = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(timeout=20) == 0
        took = time.monotonic() - started
        endings = Counter(ends(s) for s in socks)
        log = srv.log()
    print(f"SIGTERM to exit with {IDLE} idle keep-alive clients: {took:.2f} s")
    assert endings == {"fin": IDLE}
    assert "killing it" not in log and "did not finish in time" not in log
    assert took < 5, f"{took:.1f} s: the drain waited for idle clients (keepalive is 75 s)"


def test_hup_retires_old_workers_with_idle_clients_at_once() -> None:
    with Server("tests.apps.basic:app", "--keepalive", "75", workers=2) as srv:
        socks = idle_clients(srv)
        old = srv.worker_pids()
        started = time.monotonic()
        srv.signal(signal.SIGHUP)
        took = retired_cleanly(srv, old, socks, started)
    print(f"HUP to old workers gone with {IDLE} idle keep-alive clients: {took:.2f} s")


def test_a_worker_recycled_by_max_requests_with_idle_clients_exits_at_once() -> None:
    """max_requests reached while idle keep-alive clients hold connections to the worker
    (keepalive 75 s): it is replaced, and gone well before its clients' keep-alive."""
    with Server("tests.apps.basic:app", "--keepalive", "75", "--max-requests", "20",
                "--max-requests-jitter", "0", workers=1) as srv:
        old = srv.worker_pids()
        socks = idle_clients(srv, 20)  # the 20th request recycles the worker
        took = retired_cleanly(srv, old, socks, time.monotonic())
    print(f"recycled worker with 20 idle keep-alive clients gone in {took:.2f} s")


def test_a_request_sent_as_the_drain_begins_is_answered_or_ended_by_a_fin() -> None:
    """Idle clients send their next request just as SIGTERM arrives: each gets its
    response (with Connection: close) or a FIN before any response, never a reset."""
    with Server("tests.apps.basic:app", "--keepalive", "75", workers=2) as srv:
        socks = idle_clients(srv, 50)
        srv.signal(signal.SIGTERM)
        for sock in socks:
            # Refused if the server closed first: then a FIN came first (checked below).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(HELLO)
        outcomes: Counter[str] = Counter()
        for sock in socks:
            sock.settimeout(10)
            data = b""
            try:
                while chunk := sock.recv(65536):
                    data += chunk
                outcomes["answered" if data.endswith(b"Hello, world!") else
                         "fin" if not data else "cut"] += 1
            except ConnectionResetError:
                outcomes["reset"] += 1
            sock.close()
        assert srv.wait_exit(timeout=20) == 0
    assert set(outcomes) <= {"answered", "fin"}, outcomes


def busy_client(srv: Server, stop: threading.Event, lost: list[str], done: Counter[str]) -> None:
    """Requests back to back on one keep-alive connection, as a proxy's upstream pool
    reuses a hot connection, with no retry: a request whose connection ended before its
    response is recorded as lost. A new connection only after "Connection: close"."""
    conn = srv.connection(timeout=10)
    for _ in range(50_000):  # a bound; the test stops it long before
        if stop.is_set():
            break
        try:
            conn.request("GET", "/hello")
            resp = conn.getresponse()
            resp.read()
        except (http.client.HTTPException, OSError) as exc:
            lost.append(repr(exc))
            conn.close()
            conn = srv.connection(timeout=10)
            continue
        done["ok" if resp.status == 200 else str(resp.status)] += 1
        if resp.will_close:
            done["closed"] += 1
            conn.close()
            conn = srv.connection(timeout=10)
    conn.close()


def test_busy_keepalive_clients_lose_no_request_across_reloads() -> None:
    """Clients reusing their connections back to back (nginx's upstream keep-alive pool
    under load) while the workers are replaced: the drain closes an idle connection only
    once it has been quiet a moment, so a request never crosses the drain's FIN; each
    client's connection ends after a response with "Connection: close"."""
    stop, lost, done = threading.Event(), [], Counter[str]()
    with Server("tests.apps.basic:app", "--keepalive", "75", workers=2, threads=4) as srv:
        threads = [threading.Thread(target=busy_client, args=(srv, stop, lost, done))
                   for _ in range(8)]
        for t in threads:
            t.start()
        try:
            for _ in range(3):
                wait_for(lambda m=done["ok"]: done["ok"] > m + 200, timeout=20,
                         what="requests served")
                old = srv.worker_pids()
                srv.signal(signal.SIGHUP)
                wait_for(lambda old=old: not any(alive(p) for p in old), timeout=20,
                         what="the old workers gone")
            wait_for(lambda m=done["ok"]: done["ok"] > m + 200, timeout=20,
                     what="requests served after the reloads")
        finally:
            stop.set()
            for t in threads:
                t.join(20)
    assert lost == [], f"{len(lost)} request(s) lost of {done['ok']}: {lost[:3]}"
    assert set(done) <= {"ok", "closed"}, done
    assert done["closed"] >= 8, "each client's connection to an old worker was closed"


def test_recycling_stops_a_worker_within_max_requests_and_those_in_flight() -> None:
    """max_requests = 50, 2 workers x 8 threads, 4 keep-alive clients: no worker serves
    more than 50 + the requests in flight (one per client) before it is replaced, and no
    request fails (a connection closed by recycling is retried on a new one)."""
    max_requests, clients, total = 50, 4, 600
    per_pid: Counter[int] = Counter()
    lock = threading.Lock()
    failures = []

    def client(srv: Server, n: int) -> None:
        conn = srv.connection(timeout=10)
        done = 0
        retries = 0
        while done < n:
            try:
                conn.request("GET", "/pid")
                resp = conn.getresponse()
                body = resp.read()
            except (http.client.HTTPException, OSError):
                retries += 1
                if retries > 50:
                    failures.append("too many retries")
                    return
                conn.close()
                conn = srv.connection(timeout=10)
                continue
            if resp.status != 200:
                failures.append(resp.status)
            with lock:
                per_pid[int(body)] += 1
            done += 1
            if resp.getheader("Connection") == "close":
                conn.close()
                conn = srv.connection(timeout=10)
        conn.close()

    with Server("tests.apps.basic:app", "--max-requests", str(max_requests), workers=2,
                threads=8) as srv:
        threads = [threading.Thread(target=client, args=(srv, total // clients))
                   for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not failures
    assert sum(per_pid.values()) == total
    assert len(per_pid) >= total // (max_requests + clients), "workers were recycled"
    most = max(per_pid.values())
    print(f"requests per worker: most {most}, {sorted(per_pid.values())}")
    assert most <= max_requests + clients, per_pid
