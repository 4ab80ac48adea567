"""Connection on its own: a real socketpair, no worker, no epoll. Each test hands the
connection the events a worker would and checks what it asks for next (Next), its state
and what the client receives."""

from __future__ import annotations

import importlib.util
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from prefork.connection import (
    ACTIVE,
    CLOSE,
    LINGER,
    PARKED,
    READ,
    WRITE,
    WRITING,
    Connection,
    ServerContext,
)
from prefork.engine_choice import choose
from prefork.wsgi import base_environ

pytestmark = pytest.mark.timeout(20)

GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    size = int(environ.get("HTTP_X_SIZE", "5"))
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(size))])
    return [b"h" * size]


ENGINES = ["python", *(["native"] if importlib.util.find_spec("prefork._native") else [])]


@pytest.fixture(params=ENGINES)
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Connection, socket.socket]]:
    client, server = socket.socketpair()
    client.settimeout(5)
    ctx = ServerContext(app, keepalive_s=7.0, header_timeout_s=3.0, send_timeout_s=4.0,
                        engine=choose(request.param))
    conn = Connection(server, ("127.0.0.1", "4000"), base_environ("a", "80", "", False), ctx)
    yield conn, client
    conn.close()
    client.close()


def read_response(client: socket.socket) -> bytes:
    """One whole response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += client.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_new_connection_is_parked_with_the_header_deadline(pair: Any) -> None:
    conn, _client = pair
    before = time.monotonic()
    assert conn.state is PARKED
    assert before + 2.5 < conn.deadline <= time.monotonic() + 3.0


def test_a_complete_request_is_served_and_the_connection_parked_for_the_next(
        pair: Any) -> None:
    conn, client = pair
    client.sendall(GET)
    assert conn.on_ready() is READ
    assert read_response(client).startswith(b"HTTP/1.1 200 OK\r\n")
    assert conn.state is PARKED
    assert conn.deadline > time.monotonic() + 6  # keepalive_s now, not header_timeout
    client.sendall(GET)
    assert conn.on_ready() is READ
    assert read_response(client).endswith(b"hhhhh")
    assert conn.served == 2


def test_a_partial_head_waits_then_is_served(pair: Any) -> None:
    conn, client = pair
    client.sendall(GET[:10])
    assert conn.on_ready() is READ
    assert conn.state is PARKED and conn.served == 0
    client.sendall(GET[10:])
    assert conn.on_ready() is READ
    assert read_response(client).startswith(b"HTTP/1.1 200")


def test_nothing_to_read_asks_to_wait_again(pair: Any) -> None:
    conn, _client = pair
    assert conn.on_ready() is READ
    assert conn.state is PARKED


def test_connection_close_asks_to_close(pair: Any) -> None:
    conn, client = pair
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert conn.on_ready() is CLOSE
    assert b"Connection: close" in read_response(client)


def test_the_client_closing_asks_to_close(pair: Any) -> None:
    conn, client = pair
    client.shutdown(socket.SHUT_WR)
    assert conn.on_ready() is CLOSE


def test_pipelined_requests_are_answered_in_order(pair: Any) -> None:
    conn, client = pair
    client.sendall(GET + b"GET / HTTP/1.1\r\nHost: a\r\nX-Size: 3\r\n\r\n")
    assert conn.on_ready() is READ
    data = b""
    while not data.endswith(b"\r\n\r\nhhh"):
        data += client.recv(65536)
    first, second = data.split(b"HTTP/1.1 200 OK")[1:]
    assert first.endswith(b"\r\n\r\nhhhhh") and b"Content-Length: 3\r\n" in second
    assert conn.served == 2


def test_a_malformed_request_gets_400_then_lingers_until_the_client_closes(
        pair: Any) -> None:
    conn, client = pair
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
    assert conn.on_ready() is READ
    assert conn.state is LINGER
    reply = client.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in reply
    assert client.recv(65536) == b""  # our side is shut
    client.sendall(b"more bytes are dropped")
    assert conn.on_ready() is READ
    client.shutdown(socket.SHUT_WR)
    assert conn.on_ready() is CLOSE


def test_a_client_that_does_not_read_leaves_the_rest_queued_for_epollout(
        pair: Any) -> None:
    conn, client = pair
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    size = 800_000  # more than the socket takes, less than OUTPUT_QUEUE_BYTES
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Size: %d\r\n\r\n" % size)
    assert conn.on_ready() is WRITE
    assert conn.state is WRITING and conn.out.queue
    assert conn.deadline > time.monotonic() + 3  # send_timeout
    got = b""
    deadline = time.monotonic() + 10
    then = WRITE
    while then is WRITE and time.monotonic() < deadline:
        got += client.recv(1 << 20)
        then = conn.on_ready()
    assert then is READ and conn.state is PARKED and not conn.out.queue
    while len(got) < size:
        got += client.recv(1 << 20)
    assert got.endswith(b"h" * 100) and got.count(b"h") >= size


def test_an_idle_connection_past_its_deadline_is_closed_quietly(pair: Any) -> None:
    conn, client = pair
    now = time.monotonic()
    assert not conn.due(now)
    assert conn.due(conn.deadline)
    assert conn.on_deadline(conn.deadline) is CLOSE
    conn.close()
    assert client.recv(100) == b""  # no 408 for a connection that sent nothing


def test_a_head_begun_and_not_finished_in_time_gets_408(pair: Any) -> None:
    conn, client = pair
    client.sendall(b"GET / HT")
    assert conn.on_ready() is READ
    assert conn.on_deadline(conn.deadline) is CLOSE
    assert client.recv(65536).startswith(b"HTTP/1.1 408 ")


def test_a_deadline_that_moved_on_meanwhile_rearms_instead(pair: Any) -> None:
    conn, _client = pair
    now = conn.deadline - 1  # the sweep looked, then a request re-armed it
    assert conn.on_deadline(now) is READ
    conn.state = WRITING
    assert conn.on_deadline(now) is WRITE


def test_a_connection_being_served_is_never_due(pair: Any) -> None:
    conn, _client = pair
    conn.state = ACTIVE
    assert not conn.due(conn.deadline + 100)
