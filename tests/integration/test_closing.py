"""How connections end, through a real server: a response is never cut short by a reset
(lingering close), and `max_keepalive_requests` ends a connection after exactly that many
responses (issue "Nothing lost, part 2", findings 1 and 8). CI runs this on both engines."""

from __future__ import annotations

import socket
import time

import pytest

from tests.server import Server

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20


def read_to_end(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; and whether that end was a reset."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except ConnectionResetError:
        return bytes(data), True
    return bytes(data), False


def split_responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """(head, body) of each whole response in `data` (Content-Length or chunked bodies);
    a response cut short is left out."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (line.partition(b":") for line in head.split(b"\r\n")[1:])}
        if fields.get(b"transfer-encoding") == b"chunked":
            body = bytearray()
            while True:
                size_line, sep, rest = rest.partition(b"\r\n")
                if not sep:
                    return out
                size = int(size_line.split(b";")[0], 16)
                if len(rest) < size + 2:
                    return out
                body += rest[:size]
                rest = rest[size + 2:]
                if size == 0:
                    break
        else:
            length = int(fields.get(b"content-length", b"0"))
            if len(rest) < length:
                break
            body, rest = bytearray(rest[:length]), rest[length:]
        out.append((head, bytes(body)))
        data = rest
    return out


def get(target: str, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"GET " + target.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


@pytest.mark.parametrize("target,body", [
    (f"/big?n={MIB}", b"x" * MIB),
    ("/chunks?n=16&size=65536", b"c" * MIB),
])
def test_the_last_keepalive_response_is_whole_though_more_requests_follow(
        target: str, body: bytes) -> None:
    """Three pipelined requests that fill the socket buffers, two more 50 ms later, the
    client reading only after 0.5 s: the third response (the limit) is whole and ends the
    connection with a FIN, not a reset that would cut it."""
    with Server("tests.apps.basic:app", "--max-keepalive-requests", "3", workers=1) as srv:
        for _ in range(3):
            with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
                sock.sendall(get(target) * 3)
                time.sleep(0.05)
                sock.sendall(get("/hello") * 2)
                time.sleep(0.5)
                data, reset = read_to_end(sock)
            responses = split_responses(data)
            assert not reset, f"reset after {len(data)} bytes"
            assert [b for _, b in responses] == [body] * 3
            assert [h.count(b"\r\nConnection: close") for h, _ in responses] == [0, 0, 1]


def test_a_connection_ends_after_exactly_max_keepalive_requests() -> None:
    """One request at a time: responses 1..N-1 keep the connection, the Nth says close,
    and the server then closes cleanly (EOF, no reset) although the client asked for
    keep-alive each time."""
    with Server("tests.apps.basic:app", "--max-keepalive-requests", "4", workers=1) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
            heads = []
            for _ in range(4):
                sock.sendall(get("/hello"))
                data = b""
                while not data.endswith(b"Hello, world!"):
                    chunk = sock.recv(65536)
                    assert chunk, "closed before the response ended"
                    data += chunk
                heads.append(data.partition(b"\r\n\r\n")[0])
            rest, reset = read_to_end(sock)
        assert [h.count(b"\r\nConnection: close") for h in heads] == [0, 0, 0, 1]
        assert (rest, reset) == (b"", False)


def test_requests_pipelined_behind_connection_close_are_dropped_and_the_response_kept(
        ) -> None:
    """The client says close but sends more in the same write (RFC 9112 §9.6 says it must
    not): the response is whole and the connection ends with a FIN, the rest unanswered.
    (Bytes a client sends after it said close, once the server has closed, may still be
    answered by the kernel with a reset, as with nginx: nothing tells the server to wait.)"""
    with Server("tests.apps.basic:app", workers=1) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
            sock.sendall(get(f"/big?n={MIB}", close=True) + get("/hello") * 4)
            time.sleep(0.3)
            data, reset = read_to_end(sock)
        assert not reset
        assert [b for _, b in split_responses(data)] == [b"x" * MIB]


POST = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n"


@pytest.mark.parametrize("cut", [0, len(POST), len(POST) + 5, len(POST) + 12])
def test_bytes_after_a_body_are_judged_as_themselves(cut: int) -> None:
    """A body of 11 bytes, "\\r\\nhello wor", then "ld / HTTP/1.1...": the echo, then 501
    for the method "ld", whether the bytes come in one write or cut anywhere after the
    head (finding 7: they were judged as the body's word "hello")."""
    data = POST + b"\r\nhello world / HTTP/1.1\r\nHost: t\r\n\r\n"
    with Server("tests.apps.basic:app", workers=1) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
            for piece in (data[:cut], data[cut:]):
                if piece:
                    sock.sendall(piece)
                    time.sleep(0.05)  # two reads on the server's side (not a condition)
            got, reset = read_to_end(sock)
    responses = split_responses(got)
    assert not reset
    assert [h.split(b"\r\n")[0] for h, _ in responses] == [
        b"HTTP/1.1 200 OK", b"HTTP/1.1 501 Not Implemented"]
    assert responses[0][1] == b"\r\nhello wor"
    assert b"unknown method 'ld'" in responses[1][1]
