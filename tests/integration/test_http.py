"""HTTP/1.1 behaviour of a real prefork-serve, through real sockets."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.server import Server, wait_for

pytestmark = pytest.mark.timeout(60)


def raw_exchange(srv: Server, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def read_response(sock: socket.socket, buf: bytearray) -> tuple[bytes, bytes]:
    """Read one Content-Length-framed response from `sock`; leftover stays in buf."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response head"
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a response body"
        rest += chunk
    buf[:] = rest[length:]
    return head, rest[:length]


def test_hello_and_date(server: Server) -> None:
    status, headers, body = server.get("/hello")
    assert status == 200
    assert body == b"Hello, world!"
    assert headers["content-length"] == "13"
    assert headers["date"].endswith("GMT")
    assert headers["server"] == "prefork"


def test_keep_alive_reuses_one_connection(server: Server) -> None:
    conn = server.connection()
    ports = []
    for _ in range(5):
        conn.request("GET", "/environ")
        resp = conn.getresponse()
        env = json.loads(resp.read())
        assert resp.status == 200
        assert resp.getheader("connection") is None  # HTTP/1.1 default: persistent
        ports.append(env["REMOTE_PORT"])
    conn.close()
    assert len(set(ports)) == 1, "every request should have come over the same connection"


def test_http10_keep_alive_only_when_asked(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        buf = bytearray()
        sock.sendall(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head, body = read_response(sock, buf)
        assert b"Connection: keep-alive" in head and body == b"Hello, world!"
        sock.sendall(b"GET /hello HTTP/1.0\r\n\r\n")
        head, body = read_response(sock, buf)
        assert b"Connection: close" in head and body == b"Hello, world!"
        assert sock.recv(10) == b""


def test_connection_close_is_honoured(server: Server) -> None:
    out = raw_exchange(server, b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in out
    assert out.endswith(b"Hello, world!")


def test_pipelined_requests_answered_in_order(server: Server) -> None:
    reqs = b"".join(
        b"GET /read-some?n=%d HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n%s" % (n, b"abcde")
        for n in (1, 2, 3)
    ) + b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw_exchange(server, reqs)
    bodies = [part.split(b"\r\n\r\n", 1)[1][:13] for part in out.split(b"HTTP/1.1 ")[1:]]
    assert out.count(b"HTTP/1.1 200 OK") == 4
    assert bodies[0].startswith(b"a") and not bodies[0].startswith(b"ab")
    assert bodies[1].startswith(b"ab") and not bodies[1].startswith(b"abc")
    assert bodies[2].startswith(b"abc")
    assert bodies[3] == b"Hello, world!"


def test_pipelined_byte_by_byte(server: Server) -> None:
    data = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 2
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
        buf = bytearray()
        for _ in range(2):
            head, body = read_response(sock, buf)
            assert head.startswith(b"HTTP/1.1 200") and body == b"Hello, world!"


def test_chunked_request_body(server: Server) -> None:
    conn = server.connection()
    conn.request("POST", "/echo", body=iter([b"hello ", b"chunked ", b"world"]),
                 encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read() == b"hello chunked world"
    conn.close()


def test_chunked_request_readline_iteration(server: Server) -> None:
    body = b"one\ntwo\nthree"
    out = raw_exchange(server, b"POST /echo-lines HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n"
                       + b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 3]), body[i:i + 3])
                                  for i in range(0, len(body), 3)) + b"0\r\n\r\n")
    assert json.loads(out.split(b"\r\n\r\n", 1)[1]) == ["one\n", "two\n", "three"]


def test_chunked_response_when_no_length(server: Server) -> None:
    out = raw_exchange(server, b"GET /chunked?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"7\r\npart 0\n\r\n7\r\npart 1\n\r\n7\r\npart 2\n\r\n0\r\n\r\n"
    status, _, decoded = server.get("/chunked?n=3")  # and a client decodes it
    assert status == 200 and decoded == b"part 0\npart 1\npart 2\n"


def test_http10_response_without_length_is_close_delimited(server: Server) -> None:
    out = raw_exchange(server, b"GET /chunked?n=2 HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert body == b"part 0\npart 1\n"


def test_write_callable(server: Server) -> None:
    status, _, body = server.get("/write")
    assert status == 200 and body == b"written and returned"


def test_head_has_no_body_but_same_length(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = bytearray()
        while buf.count(b"HTTP/1.1 200") < 2 or not buf.endswith(b"Hello, world!"):
            buf += sock.recv(65536)
    head1, _, rest = bytes(buf).partition(b"\r\n\r\n")
    assert b"Content-Length: 13" in head1
    assert rest.startswith(b"HTTP/1.1 200 OK"), "HEAD response must carry no body"


def test_204_has_no_body(server: Server) -> None:
    out = raw_exchange(server, b"GET /no-content HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204") and body == b""
    assert b"Content-Length" not in head and b"Transfer-Encoding" not in head


def test_expect_100_continue_sent_when_app_reads(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        interim = sock.recv(100)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"ping")
        head, body = read_response(sock, bytearray())
        assert head.startswith(b"HTTP/1.1 200") and body == b"ping"


def test_expect_100_continue_not_sent_when_app_ignores_body(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        head, body = read_response(sock, bytearray())
        assert head.startswith(b"HTTP/1.1 200") and body == b"ignored"
        assert b"100 Continue" not in head


def test_unread_body_is_drained_for_keep_alive(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        buf = bytearray()
        sock.sendall(b"POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
                     b"0123456789GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        _, body1 = read_response(sock, buf)
        _, body2 = read_response(sock, buf)
        assert body1 == b"ignored" and body2 == b"Hello, world!"


def test_malformed_request_gets_400_and_close(server: Server) -> None:
    out = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in out
    assert server.get("/hello")[0] == 200  # the worker is still there


@pytest.mark.parametrize("data, status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
    (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % (b"a" * 9000), 414),
])
def test_rejections(server: Server, data: bytes, status: int) -> None:
    out = raw_exchange(server, data + b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:80]
    assert b"Hello, world!" not in out, "nothing after a rejected request may be answered"
    assert b"Connection: close\r\n" in out


def test_app_exception_gives_500_and_traceback(server: Server) -> None:
    status, headers, _ = server.get("/raise")
    assert status == 500 and headers["connection"] == "close"
    assert "RuntimeError: boom from the fixture app" in server.log()


def test_exception_after_head_closes_connection(server: Server) -> None:
    out = raw_exchange(server, b"GET /raise-late HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert b"first part" in out and not out.endswith(b"0\r\n\r\n"), "no clean end of body"
    assert "late boom from the fixture app" in server.log()


def test_short_body_closes_connection(server: Server) -> None:
    out = raw_exchange(server, b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.endswith(b"only this")  # then the server closed: the client sees it short


def test_long_body_is_cut_at_declared_length(server: Server) -> None:
    out = raw_exchange(server, b"GET /long HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.endswith(b"\r\n\r\nabcd")


def test_header_injection_refused(server: Server) -> None:
    status, _, body = server.get("/bad-header")
    assert status == 500 and b"never" not in body
    assert "control character" in server.log()


def test_hop_by_hop_header_from_app_refused(server: Server) -> None:
    status, _, _ = server.get("/hop")
    assert status == 500


def test_iterable_close_is_called(server: Server, tmp_path: object) -> None:
    mark = f"{tmp_path}/closed"
    status, _, body = server.get(f"/close?mark={mark}")
    assert status == 200 and body == b"ab"
    # close() runs once the last byte is sent, so the client may get here first: poll.
    def closed() -> bool:
        return os.path.exists(mark) and open(mark).read() == "closed"

    wait_for(closed, timeout=5, what="close() to be called")


def test_file_wrapper_sends_file(server: Server, tmp_path: object) -> None:
    path = f"{tmp_path}/data.bin"
    payload = bytes(range(256)) * 4096  # 1 MiB
    with open(path, "wb") as fh:
        fh.write(payload)
    status, headers, body = server.get(f"/file?path={path}")
    assert status == 200 and headers["content-length"] == str(len(payload))
    assert body == payload


def test_large_upload_and_echo(server: Server) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB
    status, _, body = server.request("POST", "/echo", body=payload)
    assert status == 200 and body == payload


def test_environ_contents(server: Server) -> None:
    status, _, body = server.request(
        "GET", "/environ?a=1&b=%20", headers={"X-Custom": "v", "Content-Type": "text/x"})
    env = json.loads(body)
    assert status == 200
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(server.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit()
    assert env["HTTP_X_CUSTOM"] == "v"
    assert env["CONTENT_TYPE"] == "text/x" and "HTTP_CONTENT_TYPE" not in env
    assert env["wsgi.url_scheme"] == "http" and env["wsgi.version"] == [1, 0]
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is True
    assert env["SCRIPT_NAME"] == ""


def test_underscore_headers_cannot_impersonate(server: Server) -> None:
    out = raw_exchange(server, b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       b"X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n")
    env = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert env["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"


def test_percent_decoded_path_is_latin1(server: Server) -> None:
    out = raw_exchange(server,
                       b"GET /caf%C3%A9%2Fx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 404")  # routed on the decoded path, did not crash
    conn = server.connection()
    conn.request("GET", "/environ")
    env = json.loads(conn.getresponse().read())
    conn.close()
    assert env["PATH_INFO"] == "/environ"


def test_200_concurrent_clients_all_answered(server: Server) -> None:
    def one(_: int) -> int:
        return server.get("/hello", timeout=20)[0]

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one, range(200)))
    assert statuses == [200] * 200


def test_requests_spread_over_workers(server: Server) -> None:
    # 4 threads per worker: 12 concurrent slow requests cannot all fit in one worker, and
    # a worker with no free thread does not accept, so the others must take them.
    def one(_: int) -> str:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=20)
        conn.request("GET", "/slow?s=0.3")
        conn.getresponse().read()
        conn.request("GET", "/pid")
        pid = conn.getresponse().read().decode()
        conn.close()
        return pid

    with ThreadPoolExecutor(max_workers=12) as pool:
        pids = set(pool.map(one, range(12)))
    assert len(pids) >= 2, f"all requests served by {pids}"


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_every_pool_thread_serves_at_once(threads: int) -> None:
    # Only two threads wait on the epoll at a time; the rest are called in as those leave
    # to serve. `threads` requests that each wait for all the others must all be met in
    # one worker, at the same time.
    with Server("tests.apps.basic:app", workers=1, threads=threads) as srv:
        def one(_: int) -> tuple[int, bytes]:
            status, _h, body = srv.get(f"/rendezvous?n={threads}&timeout=10", timeout=20)
            return status, body

        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(one, range(threads)))
    assert results == [(200, b"met")] * threads


def test_idle_and_slow_clients_hold_no_thread() -> None:
    # One worker with two threads: 20 idle keep-alive connections and 20 clients that
    # stopped half-way through their head must not keep anyone else waiting.
    with Server("tests.apps.basic:app", workers=1, threads=2) as srv:
        held = []
        try:
            for i in range(40):
                sock = socket.create_connection((srv.host, srv.port), timeout=5)
                held.append(sock)
                if i % 2:
                    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                    read_response(sock, bytearray())  # served; now idle, kept open
                else:
                    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            for _ in range(10):
                assert srv.get("/hello", timeout=3)[0] == 200
        finally:
            for sock in held:
                sock.close()


def test_slow_head_gets_408_after_header_timeout() -> None:
    with Server("tests.apps.basic:app", "--header-timeout", "0.5", workers=1) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
            out = b""
            while chunk := sock.recv(4096):
                out += chunk
        assert out.startswith(b"HTTP/1.1 408 ")


def test_idle_keep_alive_connection_is_closed_after_keepalive() -> None:
    with Server("tests.apps.basic:app", "--keepalive", "0.5", workers=1) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = bytearray()
            read_response(sock, buf)
            assert sock.recv(4096) == b"", "closed silently once idle past keepalive"


def proxied_request(srv: Server, prefix: bytes) -> bytes:
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(prefix + b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                out += chunk
        return out


def test_proxy_protocol() -> None:
    from tests.unit.test_proxyproto import V2_TCP4

    with Server("tests.apps.basic:app", "--proxy-protocol", "auto", workers=1) as srv:
        out = proxied_request(srv, b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n")
        env = json.loads(out.split(b"\r\n\r\n", 1)[1])
        assert env["REMOTE_ADDR"] == "203.0.113.7" and env["REMOTE_PORT"] == "51234"
        env = json.loads(proxied_request(srv, V2_TCP4).split(b"\r\n\r\n", 1)[1])
        assert env["REMOTE_ADDR"] == "203.0.113.7"
        assert proxied_request(srv, b"") == b"", "no header: disconnected"
        assert proxied_request(srv, b"PROXY TCP4 bogus\r\n") == b""
    with Server("tests.apps.basic:app", "--proxy-protocol", "v1", "--proxy-allow-ips",
                "10.9.9.9", workers=1) as srv:
        out = proxied_request(srv, b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n")
        assert out == b"", "a PROXY header from a peer not allowed: disconnected"
