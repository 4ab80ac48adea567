"""Every event a connection gets is served when it comes: none waits for a deadline.

The worker's epoll watches connections edge-triggered (connection.Watch): a byte, the
client's FIN or room to write is announced once. Each client here would wait for the
server's keep-alive or header deadline (60 s, past the client's own 10 s timeout) if one
announcement were lost or left unserved: a request and its FIN together or apart, heads
and bodies in pieces, pipelined requests, a FIN while the app runs, responses larger
than the socket takes, and many keep-alive requests from several threads at once.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Server, wait_for

pytestmark = pytest.mark.timeout(120)

DEADLINES = ("--keepalive", "60", "--header-timeout", "60", "--body-timeout", "60")
FIN = b""  # a step of talk(): the client shuts its sending side
GET = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server("tests.apps.basic:app", *DEADLINES, workers=1, threads=4) as srv:
        yield srv


def talk(srv: Server, steps: list[bytes], pause_s: float = 0.0) -> bytes:
    """Send each step (FIN: shut the sending side), then read until the server closes;
    the client gives up after 10 s of silence (socket.timeout fails the test)."""
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for step in steps:
            if step is FIN:
                sock.shutdown(socket.SHUT_WR)
            else:
                sock.sendall(step)
            if pause_s:
                time.sleep(pause_s)
        out = bytearray()
        while chunk := sock.recv(65536):
            out += chunk
        return bytes(out)


def post(path: str, body: bytes) -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (
        path.encode(), len(body), body)


def test_a_request_and_its_fin_sent_together_are_answered_and_closed(server: Server) -> None:
    for i in range(150):
        request = GET if i % 2 else post("/echo", b"b%d" % i)
        out = talk(server, [request, FIN])
        assert out.count(b"HTTP/1.1 200 OK") == 1, out
        assert out.endswith(b"Hello, world!" if i % 2 else b"b%d" % i)


def test_heads_and_bodies_in_pieces_then_fin(server: Server) -> None:
    rng = random.Random(5)
    for i in range(25):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
        data = post("/echo", body)
        cuts = sorted(rng.sample(range(1, len(data)), 6))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        out = talk(server, [*pieces, FIN], pause_s=0.001)
        assert out.count(b"HTTP/1.1 200 OK") == 1 and out.endswith(body), (i, out[:200])


def test_requests_larger_than_one_read(server: Server) -> None:
    body = bytes(range(256)) * 1200  # 300 KiB: several reads, sent before the first
    for _ in range(10):
        out = talk(server, [post("/echo", body) + GET, FIN])
        assert out.count(b"HTTP/1.1 200 OK") == 2 and body in out


def test_more_pipelined_requests_than_one_read_holds(tmp_path: Path) -> None:
    """All of it has come before the only pool thread reads (it was busy with another
    connection): the first read comes back full, and no edge will come for the rest."""
    n = 900  # (max_keepalive_requests is 1000) ~120 KiB of heads
    padded = GET[:-2] + b"X-Pad: %s\r\n\r\n" % (b"p" * 100)
    with Server("tests.apps.basic:app", *DEADLINES, workers=1, threads=1) as srv, \
            socket.create_connection((srv.host, srv.port), timeout=10) as busy, \
            socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(GET)  # parked: in the epoll from now on
        assert sock.recv(4096).endswith(b"Hello, world!")
        mark = tmp_path / "in-the-app"
        busy.sendall(b"GET /slow?s=0.3&mark=%s HTTP/1.1\r\nHost: t\r\n\r\n" % bytes(mark))
        wait_for(mark.exists, what="the only pool thread in the app")
        sock.sendall(padded * n)
        out = bytearray()
        while out.count(b"Hello, world!") < n:
            chunk = sock.recv(1 << 20)
            assert chunk, out.count(b"Hello, world!")
            out += chunk
        assert busy.recv(4096).endswith(b"slow done")


def test_pipelined_requests_then_fin(server: Server) -> None:
    for _ in range(30):
        out = talk(server, [GET + post("/echo", b"two") + GET, FIN])
        assert out.count(b"HTTP/1.1 200 OK") == 3 and out.endswith(b"Hello, world!")


def test_a_fin_that_comes_while_the_app_runs(server: Server) -> None:
    slow = b"GET /slow?s=0.05 HTTP/1.1\r\nHost: t\r\n\r\n"
    for _ in range(10):  # the first GET parks the connection: in the epoll from then on
        out = talk(server, [GET, slow, FIN], pause_s=0.01)  # the FIN while the app sleeps
        assert out.count(b"HTTP/1.1 200 OK") == 2 and out.endswith(b"slow done")
        out = talk(server, [GET, slow, GET, FIN], pause_s=0.01)  # and the next request
        assert out.count(b"HTTP/1.1 200 OK") == 3 and out.endswith(b"Hello, world!")


def test_responses_larger_than_the_socket_takes_then_the_next_request(server: Server) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        for _ in range(8):
            conn.request("GET", f"/big?n={4 << 20}")
            response = conn.getresponse()
            time.sleep(0.02)  # the server's send fills the socket and waits for room
            assert len(response.read()) == 4 << 20
            conn.request("GET", "/hello")
            assert conn.getresponse().read() == b"Hello, world!"
    finally:
        conn.close()


def test_many_keep_alive_requests_from_several_threads(server: Server) -> None:
    failures: list[BaseException] = []
    served = [0] * 6

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            for i in range(300):
                if i % 3:
                    conn.request("GET", "/hello")
                else:
                    conn.request("POST", "/echo", body=b"x" * (i * 7))
                response = conn.getresponse()
                assert response.status == 200 and len(response.read()) in (13, i * 7)
                served[n] += 1
        except BaseException as exc:  # reported below, with the count that came
            failures.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, (failures[:3], served)
    assert served == [300] * 6
