"""Static files through the real server: semantics, and no byte outside the mount."""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest

from tests.server import Server

pytestmark = pytest.mark.timeout(60)
SECRET = b"TOP-SECRET-OUTSIDE-THE-MOUNT"
BIG = os.urandom(1 << 20)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    base = tmp_path_factory.mktemp("static")
    (base / "secret.txt").write_bytes(SECRET)
    root = base / "public"
    (root / "sub").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "a.txt").write_bytes(b"hello static\n")
    (root / "app.wasmx").write_bytes(b"\x00asm")
    (root / "big.bin").write_bytes(BIG)
    (root / "sub" / "index.html").write_bytes(b"<p>index</p>")
    (root / "style.css").write_bytes(b"body { color: red }\n" * 50)
    (root / "style.css.gz").write_bytes(gzip.compress((root / "style.css").read_bytes()))
    (root / "style.css.br").write_bytes(b"pretend-brotli")
    os.symlink(base / "secret.txt", root / "link-out")
    os.symlink(root / "a.txt", root / "link-in")
    os.mkfifo(root / "fifo")
    mounts = f'[[static]]\nprefix = "/static/"\ndirectory = "{root}"\n' \
             f'cache_control = "public, max-age=60"\n' \
             f'types = {{ ".wasmx" = "application/x-test-wasm" }}\n'
    with Server("tests.apps.basic:app", workers=1, config=mounts) as srv:
        yield srv, root


def raw(srv: Server, target: bytes, extra: bytes = b"") -> bytes:
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     + extra + b"\r\n")
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_file_with_validators_and_cache_control(site: tuple[Server, Path]) -> None:
    srv, _ = site
    status, headers, body = srv.get("/static/a.txt")
    assert status == 200 and body == b"hello static\n"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == "13" and headers["accept-ranges"] == "bytes"
    assert headers["etag"].startswith('"') and headers["last-modified"].endswith("GMT")
    assert headers["cache-control"] == "public, max-age=60"
    assert srv.get("/hello")[2] == b"Hello, world!", "other paths still reach the app"


def test_configured_content_type(site: tuple[Server, Path]) -> None:
    srv, _ = site
    assert srv.get("/static/app.wasmx")[1]["content-type"] == "application/x-test-wasm"


def test_head_and_big_file(site: tuple[Server, Path]) -> None:
    srv, _ = site
    status, headers, body = srv.request("HEAD", "/static/big.bin")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(BIG))
    assert srv.get("/static/big.bin")[2] == BIG


def test_conditional_requests(site: tuple[Server, Path]) -> None:
    srv, _ = site
    _, headers, _ = srv.get("/static/a.txt")
    etag, lm = headers["etag"], headers["last-modified"]
    assert srv.get("/static/a.txt", headers={"If-None-Match": etag})[:3:2] == (304, b"")
    assert srv.get("/static/a.txt", headers={"If-None-Match": f'"x", W/{etag}'})[0] == 304
    assert srv.get("/static/a.txt", headers={"If-Modified-Since": lm})[0] == 304
    assert srv.get("/static/a.txt", headers={"If-Modified-Since": formatdate(0, usegmt=True)}
                   )[0] == 200
    assert srv.get("/static/a.txt", headers={"If-Match": '"nope"'})[0] == 412
    assert srv.get("/static/a.txt", headers={"If-Match": "*"})[0] == 200
    assert srv.get("/static/a.txt", headers={"If-Unmodified-Since": formatdate(0, usegmt=True)}
                   )[0] == 412
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)
    assert srv.get("/static/a.txt", headers={"If-None-Match": '"other"',
                                             "If-Modified-Since": lm})[0] == 200


def test_ranges(site: tuple[Server, Path]) -> None:
    srv, _ = site
    status, headers, body = srv.get("/static/big.bin", headers={"Range": "bytes=10-19"})
    assert status == 206 and body == BIG[10:20]
    assert headers["content-range"] == f"bytes 10-19/{len(BIG)}"
    assert srv.get("/static/big.bin", headers={"Range": "bytes=-5"})[2] == BIG[-5:]
    assert srv.get("/static/big.bin", headers={"Range": f"bytes={len(BIG) - 3}-"})[2] == BIG[-3:]
    status, headers, _ = srv.get("/static/big.bin", headers={"Range": f"bytes={len(BIG)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(BIG)}"
    status, _, body = srv.get("/static/big.bin", headers={"Range": "bytes=0-1,5-6"})
    assert status == 200 and body == BIG, "several ranges: the whole file (documented)"
    etag = srv.get("/static/big.bin")[1]["etag"]
    assert srv.get("/static/big.bin", headers={"Range": "bytes=0-0", "If-Range": etag}
                   )[0] == 206
    assert srv.get("/static/big.bin", headers={"Range": "bytes=0-0", "If-Range": '"old"'}
                   )[0] == 200
    assert srv.get("/static/big.bin", headers={"Range": "lines=1-2"})[0] == 200


def test_precompressed_variants(site: tuple[Server, Path]) -> None:
    srv, root = site
    status, headers, body = srv.get("/static/style.css", headers={"Accept-Encoding": "gzip, br"})
    assert status == 200
    assert headers["content-encoding"] == "br" and body == b"pretend-brotli"
    assert headers["vary"] == "Accept-Encoding"
    status, headers, body = srv.get("/static/style.css", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == (root / "style.css").read_bytes()
    status, headers, body = srv.get("/static/style.css",
                                    headers={"Accept-Encoding": "br;q=0, identity"})
    assert status == 200 and "content-encoding" not in headers and body == (root / "style.css").read_bytes()
    assert headers["vary"] == "Accept-Encoding"


def test_directories(site: tuple[Server, Path]) -> None:
    srv, _ = site
    out = raw(srv, b"/static/sub?x=1")
    assert out.startswith(b"HTTP/1.1 301") and b"Location: /static/sub/?x=1\r\n" in out
    assert srv.get("/static/sub/")[2] == b"<p>index</p>"
    assert srv.get("/static/empty-dir/")[0] == 404, "no directory listings"
    assert srv.request("POST", "/static/a.txt", body=b"x")[0] == 405
    assert srv.get("/static/link-in")[2] == b"hello static\n", "symlinks inside are fine"


TRAVERSALS = [
    b"/static/../secret.txt", b"/static/%2e%2e/secret.txt", b"/static/%2E%2E/secret.txt",
    b"/static/..%2fsecret.txt", b"/static/..%2Fsecret.txt", b"/static/%2e%2e%2fsecret.txt",
    b"/static/..%5csecret.txt", b"/static/..\\secret.txt", b"/static/sub/../../secret.txt",
    b"/static/sub/%2e%2e/%2e%2e/secret.txt", b"/static/.%2e/secret.txt",
    b"/static/%252e%252e/secret.txt", b"/static//../secret.txt", b"/static/./../secret.txt",
    b"/static/%2fetc%2fpasswd", b"/static//etc/passwd", b"/static/a.txt%00.png",
    b"/static/%00", b"/static/link-out", b"/static/fifo", b"/static/missing",
    b"/static/sub/index.html/..", b"/static/%c0%ae%c0%ae/secret.txt",
    b"/static/..;/secret.txt", b"/static/....//secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=lambda t: t.decode("latin-1"))
def test_no_escape_from_the_mount(site: tuple[Server, Path], target: bytes) -> None:
    srv, _ = site
    out = raw(srv, target)
    status = int(out[9:12])
    assert status in (301, 400, 404), out[:200]
    assert SECRET not in out and b"root:" not in out
