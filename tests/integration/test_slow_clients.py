"""Slow and stalled clients hold no pool thread (issue: HTTP hardening, deadlines)."""

from __future__ import annotations

import socket

import pytest

from tests.server import Server, wait_for

pytestmark = pytest.mark.timeout(60)


def kernel_absorbs(rcvbuf: int) -> int:
    """How many bytes a loopback connection takes before send() would block, when the
    client reads nothing (socket buffers on both sides)."""
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        with socket.socket() as cli:
            cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            cli.connect(lst.getsockname())
            srv, _ = lst.accept()
            with srv:
                srv.setblocking(False)
                total = 0
                try:
                    while True:
                        total += srv.send(b"x" * 65536)
                except BlockingIOError:
                    return total


def stalled_client(srv: Server, path: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((srv.host, srv.port))
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    return sock


def test_clients_that_stop_reading_hold_no_thread() -> None:
    # A response bigger than the kernel's buffers, but within the server's output queue,
    # to clients that read nothing: the single pool thread must stay free for others.
    size = kernel_absorbs(4096) + 256 * 1024
    with Server("tests.apps.basic:app", workers=1, threads=1) as srv:
        stalled = [stalled_client(srv, f"/big?n={size}") for _ in range(4)]
        try:
            for _ in range(5):
                assert srv.get("/hello", timeout=5)[0] == 200
            # A stalled client that starts reading again gets its whole response.
            sock = stalled[0]
            data = bytearray()
            while not data.endswith(b"x" * 16) or len(data) < size:
                chunk = sock.recv(1 << 20)
                assert chunk, "connection closed early"
                data += chunk
            head, _, body = bytes(data).partition(b"\r\n\r\n")
            assert b"Content-Length: %d" % size in head and len(body) == size
        finally:
            for sock in stalled:
                sock.close()


def test_stalled_reader_is_dropped_after_send_timeout() -> None:
    size = kernel_absorbs(4096) + 256 * 1024
    with Server("tests.apps.basic:app", "--send-timeout", "0.5", workers=1, threads=1) as srv:
        sock = stalled_client(srv, f"/big?n={size}")
        with sock:
            wait_for(lambda: srv.get("/live-connections")[2] == b"1", timeout=10,
                     what="the stalled connection to be dropped")


def test_worker_connections_bound_leaves_the_rest_in_the_backlog() -> None:
    with Server("tests.apps.basic:app", "--worker-connections", "5", workers=1) as srv:
        held = []
        for _ in range(5):
            sock = socket.create_connection((srv.host, srv.port), timeout=5)
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n")  # half a head: held open
            held.append(sock)
        extra = socket.create_connection((srv.host, srv.port), timeout=5)
        extra.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        extra.settimeout(0.5)
        with pytest.raises(TimeoutError):
            extra.recv(100)  # not accepted: the worker is at its bound
        held.pop().close()  # one slot frees up: the waiting connection is taken
        extra.settimeout(5)
        data = b""
        while chunk := extra.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"Hello, world!")
        extra.close()
        for sock in held:
            sock.close()


@pytest.mark.parametrize("defer", ["--defer-accept", "--no-defer-accept"])
def test_silent_client_is_closed_and_others_are_served(defer: str) -> None:
    # With deferred accept the kernel hands a silent connection over after about a second;
    # from then on header_timeout holds it like any other. Either way it is closed, and
    # it keeps nobody else waiting meanwhile.
    with Server("tests.apps.basic:app", defer, "--header-timeout", "0.5", workers=1,
                threads=1) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=10) as silent:
            assert srv.get("/hello", timeout=3)[0] == 200
            assert silent.recv(100) == b""  # closed by the server, with nothing sent
