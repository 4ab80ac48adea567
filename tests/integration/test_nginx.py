"""prefork behind a real nginx, started by the test on loopback (installed by .ci/run).

nginx listens on 127.0.0.2 and the test client connects from 127.0.0.3 (all of 127/8 is
loopback), so the client is *not* a trusted proxy: prefork trusts only 127.0.0.1, where
nginx's upstream connections come from.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.load import Load
from tests.server import Server, wait_for

pytestmark = pytest.mark.timeout(120)
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
if not os.path.exists(NGINX):
    pytest.skip("nginx is not installed (apt-get install nginx); .ci/run installs it",
                allow_module_level=True)
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
CLIENT_ADDR = "127.0.0.3"


def free_port(host: str = "127.0.0.2") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Nginx:
    def __init__(self, folder: Path, http_conf: str = "", stream_conf: str = "") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        load = f"load_module {STREAM_MODULE};\n" if stream_conf else ""
        stream = f"stream {{ {stream_conf} }}" if stream_conf else ""
        (folder / "nginx.conf").write_text(f"""{load}
user root; worker_processes 1; daemon off;
pid {folder}/nginx.pid; error_log {folder}/error.log warn;
events {{ worker_connections 512; }}
{stream}
http {{
  access_log off;
  client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fcgi; uwsgi_temp_path {folder}/uwsgi; scgi_temp_path {folder}/scgi;
  client_max_body_size 64m;
  {http_conf}
}}""")
        self.proc = subprocess.Popen([NGINX, "-c", str(folder / "nginx.conf"), "-p", str(folder)],
                                     start_new_session=True, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

    def wait(self, port: int) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.stderr.read().decode() if self.proc.stderr else "")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.2", port), 0.2):
                return True
            return False
        wait_for(up, timeout=10, what="nginx")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def location(upstream: str) -> str:
    return f"""
    location / {{
      proxy_pass http://{upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffering off;
      proxy_request_buffering off;
    }}
    location /tls/ {{
      proxy_pass http://{upstream}/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;  # as if nginx had terminated TLS
    }}"""


def client(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.2", port, timeout=30,
                                      source_address=(CLIENT_ADDR, 0))


def get(port: int, path: str, **kw: object) -> tuple[int, dict[str, str], bytes]:
    conn = client(port)
    try:
        conn.request(kw.pop("method", "GET"), path, **kw)  # type: ignore[arg-type]
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def tcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    with Server("tests.apps.basic:app", workers=2, threads=4) as srv:
        port = free_port()
        nginx = Nginx(tmp_path_factory.mktemp("nginx-tcp"), f"""
          upstream app {{ server 127.0.0.1:{srv.port}; keepalive 16; }}
          server {{ listen 127.0.0.2:{port}; {location("app")} }}""")
        try:
            nginx.wait(port)
            yield srv, port
        finally:
            nginx.stop()


def test_client_address_and_scheme(tcp: tuple[Server, int]) -> None:
    import json

    _, port = tcp
    env = json.loads(get(port, "/environ")[2])
    assert env["REMOTE_ADDR"] == CLIENT_ADDR
    assert env["wsgi.url_scheme"] == "http"
    env = json.loads(get(port, "/environ", headers={"X-Forwarded-For": "6.6.6.6"})[2])
    assert env["REMOTE_ADDR"] == CLIENT_ADDR, "a spoofed X-Forwarded-For is ignored"
    env = json.loads(get(port, "/tls/environ")[2])
    assert env["wsgi.url_scheme"] == "https" and env["REMOTE_ADDR"] == CLIENT_ADDR


def test_20mb_upload_and_download_intact(tcp: tuple[Server, int]) -> None:
    payload = os.urandom(20 << 20)
    status, _, body = get(port=tcp[1], path="/echo", method="POST", body=payload)
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()


def test_chunked_response_is_streamed(tcp: tuple[Server, int]) -> None:
    status, _, body = get(tcp[1], "/chunked?n=500")
    assert status == 200 and body == b"".join(b"part %d\n" % i for i in range(500))


def test_smuggling_probes_never_desynchronise(tcp: tuple[Server, int]) -> None:
    probes = [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
        b"0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
        b"12345",
        b"GET /hello HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
    ]
    for probe in probes:
        with socket.create_connection(("127.0.0.2", tcp[1]), timeout=10,
                                      source_address=(CLIENT_ADDR, 0)) as sock:
            sock.sendall(probe)
            sock.settimeout(3)
            with contextlib.suppress(OSError):
                while sock.recv(65536):
                    pass
        # The upstream keep-alive connections nginx reuses must still frame correctly:
        for _ in range(20):
            status, _, body = get(tcp[1], "/environ?probe")
            assert status == 200 and b'"QUERY_STRING": "probe"' in body


def test_unix_socket_upstream(tmp_path: Path) -> None:
    import json

    sock_path = tmp_path / "prefork.sock"
    with Server("tests.apps.basic:app", bind=f"unix:{sock_path}", workers=1):
        port = free_port()
        nginx = Nginx(tmp_path / "nginx", f"""
          upstream app {{ server unix:{sock_path}; keepalive 8; }}
          server {{ listen 127.0.0.2:{port}; {location("app")} }}""")
        try:
            nginx.wait(port)
            env = json.loads(get(port, "/environ", headers={"X-Forwarded-For": "6.6.6.6"})[2])
            assert env["REMOTE_ADDR"] == CLIENT_ADDR
        finally:
            nginx.stop()


@pytest.mark.skipif(not os.path.exists(STREAM_MODULE),
                    reason="nginx's stream module is not installed (libnginx-mod-stream)")
def test_proxy_protocol_from_nginx_stream(tmp_path: Path) -> None:
    import json

    with Server("tests.apps.basic:app", "--proxy-protocol", "v1", workers=1) as srv:
        port = free_port()
        nginx = Nginx(tmp_path / "nginx", stream_conf=f"""
          server {{ listen 127.0.0.2:{port}; proxy_pass 127.0.0.1:{srv.port};
                    proxy_protocol on; }}""")
        try:
            nginx.wait(port)
            env = json.loads(get(port, "/environ")[2])
            assert env["REMOTE_ADDR"] == CLIENT_ADDR
        finally:
            nginx.stop()


def test_reload_under_load_through_nginx(tmp_path: Path) -> None:
    with Server("tests.apps.basic:app", workers=2, threads=4) as srv:
        port = free_port()
        nginx = Nginx(tmp_path / "nginx", f"""
          upstream app {{ server 127.0.0.1:{srv.port}; keepalive 16; }}
          server {{ listen 127.0.0.2:{port}; {location("app")} }}""")
        try:
            nginx.wait(port)
            front = Server.__new__(Server)  # point the load at nginx instead of prefork
            front.host, front.port = "127.0.0.2", port
            load = Load(front, "/hello", clients=4, keep_alive=True, max_seconds=30).start()
            load.more(200, timeout=10, what="load through nginx")
            for _ in range(2):
                n = srv.log().count("reload: ")  # before the signal: a quick reload is seen
                srv.signal(signal.SIGHUP)
                wait_for(lambda n=n: srv.log().count("reload: ") > n, timeout=20)
            load.more(200, timeout=10, what="load after reloads")  # service goes on
            load.stop()
            assert load.failed == [], load.failed[:3]
            assert load.ok > 500
        finally:
            nginx.stop()
