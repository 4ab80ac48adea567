"""Hostile traffic under load: malformed floods and slow clients, bounded in count and time."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.corpus.test_corpus import INVALID
from tests.integration.test_slow_clients import kernel_absorbs, stalled_client
from tests.server import Server

pytestmark = pytest.mark.timeout(90)

SMALL_INVALID = [c["bytes"] for c in INVALID if len(c["bytes"]) < 4096]


def send_malformed(srv: Server, data: bytes) -> bytes:
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def normal_client(srv: Server, requests: int) -> list[int]:
    statuses = []
    conn = srv.connection(timeout=10)
    for i in range(requests):
        conn.request("POST", "/echo", body=b"payload %d" % i)
        resp = conn.getresponse()
        body = resp.read()
        statuses.append(resp.status if body == b"payload %d" % i else -1)
    conn.close()
    return statuses


def test_malformed_flood_leaves_normal_traffic_untouched() -> None:
    with Server("tests.apps.basic:app", workers=2, threads=4) as srv:
        workers = srv.worker_pids()
        cases = itertools.cycle(SMALL_INVALID)
        flood = [next(cases) for _ in range(3000)]
        with ThreadPoolExecutor(max_workers=12) as pool:
            normal = [pool.submit(normal_client, srv, 150) for _ in range(4)]
            answers = list(pool.map(lambda d: send_malformed(srv, d), flood))
            statuses = [s for f in normal for s in f.result()]
        assert statuses == [200] * 600, "every normal request answered correctly"
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 4") or a.startswith(b"HTTP/1.1 5")]
        assert len(refused) == len(flood), "every malformed request got its refusal"
        assert srv.worker_pids() == workers, "no worker died of a client's bytes"
        assert "Traceback" not in srv.log()


def test_slow_and_stalled_clients_leave_normal_traffic_untouched() -> None:
    size = kernel_absorbs(4096) + 128 * 1024
    with Server("tests.apps.basic:app", workers=2, threads=4) as srv:
        held: list[socket.socket] = []
        stop = threading.Event()

        def trickle() -> None:  # keep the slow heads dribbling, one byte at a time
            while not stop.is_set():
                for sock in list(held[:150]):
                    with contextlib.suppress(OSError):
                        sock.send(b"a")
                stop.wait(0.5)

        try:
            for _ in range(150):
                sock = socket.create_connection((srv.host, srv.port), timeout=5)
                sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                held.append(sock)
            held += [stalled_client(srv, f"/big?n={size}") for _ in range(20)]
            dribbler = threading.Thread(target=trickle, daemon=True)
            dribbler.start()
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=10) as pool:
                statuses = [s for f in [pool.submit(normal_client, srv, 20) for _ in range(10)]
                            for s in f.result()]
            assert statuses == [200] * 200
            assert time.monotonic() - started < 20
        finally:
            stop.set()
            for sock in held:
                sock.close()
