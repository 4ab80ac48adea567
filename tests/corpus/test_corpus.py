"""Replay the raw-bytes corpus: whole, one byte at a time, in seeded random chunks, and a
sample over a real socket. A valid case must parse to exactly what it says; an invalid one
must be refused with its status, and nothing after it may be parsed."""

from __future__ import annotations

import json
import random
import socket
import time
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from prefork.errors import HTTPError
from prefork.http.parser import ParserLimits, RequestParser
from prefork.wsgi import base_environ, build_environ
from tests.server import Server

HERE = Path(__file__).parent
LIMITS = {"limit_request_line": 8190, "limit_request_fields": 100,
          "limit_request_field_size": 8190, "head_limit": 8190 + 100 * 8192 + 4,
          "max_body": 1 << 20, "framing_limit": 8192}
SERVER_ARGS = ("--limit-request-body", str(1 << 20))
AFTER = b"GET /after-the-case HTTP/1.1\r\nHost: a\r\n\r\n"


def load(kind: str) -> list[dict[str, Any]]:
    cases = tomllib.loads((HERE / kind / "cases.toml").read_text())["case"]
    for case in cases:
        raw = case["raw"]
        if "fill" in case:
            marker, text, count = case["fill"]
            raw = raw.replace(marker, text * count)
        case["bytes"] = raw.encode("latin-1")
    return cases


VALID = load("valid")
INVALID = load("invalid")


def chunks(data: bytes, mode: str, seed: int) -> Iterator[bytes]:
    if mode == "whole":
        yield data
    elif mode == "bytes":
        for i in range(len(data)):
            yield data[i:i + 1]
    else:
        rng = random.Random(seed)
        i = 0
        while i < len(data):
            n = rng.choice((1, 2, 3, 7, 64, 1000, 4096))
            yield data[i:i + n]
            i += n


BASE = base_environ("localhost", "80", "", False)


def environ_of(req: Any) -> dict[str, Any]:
    return build_environ(req, BASE, "127.0.0.1", "5000")


def replay(data: bytes, mode: str, seed: int = 0) -> RequestParser:
    parser = RequestParser(ParserLimits(**LIMITS))
    for piece in chunks(data, mode, seed):
        parser.feed(piece)
    return parser


def mode_for(case: dict[str, Any]) -> list[str]:
    # Byte-at-a-time over a megabyte of input says nothing more than random chunks.
    return ["whole", "random"] if len(case["bytes"]) > 20000 else ["whole", "bytes", "random"]


def test_corpus_is_large_enough() -> None:
    assert len(VALID) + len(INVALID) >= 150
    names = [c["name"] for c in VALID + INVALID]
    assert len(names) == len(set(names)), "case names are unique"


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["name"])
def test_valid_in_process(case: dict[str, Any]) -> None:
    for mode in mode_for(case):
        for seed in range(3 if mode == "random" else 1):
            parser = replay(case["bytes"], mode, seed)
            assert parser.error is None, (mode, parser.error)
            assert len(parser.ready) == case.get("count", 1), mode
            req = parser.ready[0]
            assert req.method == case["method"]
            if "target" in case:
                assert req.target == case["target"].encode("latin-1")
            if "headers" in case:
                assert req.headers == [(n.encode("latin-1"), v.encode("latin-1"))
                                       for n, v in case["headers"]]
            if "body" in case:
                assert req.body.complete
                assert req.body.read() == case["body"].encode("latin-1")
            if "keep_alive" in case:
                assert req.keep_alive == case["keep_alive"]
            if "version" in case:
                assert req.version == case["version"]
            if "expect_continue" in case:
                assert req.expect_continue == case["expect_continue"]
            env = environ_of(req)  # the WSGI layer accepts it too
            if "host" in case:
                assert env["HTTP_HOST"] == case["host"]
            if "path" in case:
                assert env["PATH_INFO"] == case["path"]
            if "query" in case:
                assert env["QUERY_STRING"] == case["query"]
            for key, value in case.get("environ", []):
                assert env[key] == value, key


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["name"])
def test_invalid_in_process(case: dict[str, Any]) -> None:
    for mode in mode_for(case):
        for seed in range(3 if mode == "random" else 1):
            parser = replay(case["bytes"] + AFTER, mode, seed)
            error = parser.error
            if error is None and parser.ready:
                # Refused by the WSGI layer (a repeated singleton field): the request is
                # answered with the error and the connection closed, as for the parser's.
                try:
                    environ_of(parser.ready[0])
                except HTTPError as exc:
                    error = exc
                assert error is not None, (mode, [r.target for r in parser.ready])
                assert error.status == case["status"], (mode, error)
                continue
            assert error is not None, (mode, [r.target for r in parser.ready])
            assert error.status == case["status"], (mode, error)
            assert parser.stopped
            assert all(r.target != b"/after-the-case" for r in parser.ready), mode
            # Whatever was served before the error must not be a smuggled request.
            assert len(parser.ready) <= 1


# -- over a real socket --------------------------------------------------------------------

def echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    length = environ.get("CONTENT_LENGTH")
    body = environ["wsgi.input"].read(int(length)) if length else environ["wsgi.input"].read()
    out = json.dumps({"method": environ["REQUEST_METHOD"], "target": environ["RAW_URI"],
                      "body": body.decode("latin-1")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]


@pytest.fixture(scope="module")
def echo_server() -> Iterator[Server]:
    with Server("tests.corpus.test_corpus:echo_app", *SERVER_ARGS, workers=1,
                threads=4) as srv:
        yield srv


def exchange(srv: Server, data: bytes, pieces: Iterable[bytes] | None = None) -> bytes:
    """Send `data` (as `pieces`, each its own send, if given), half-close, and read all
    that comes back."""
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i, piece in enumerate([data] if pieces is None else pieces):
                sock.sendall(piece)
                if i % 7 == 6:
                    time.sleep(0.001)  # let some pieces arrive as reads of their own
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before we finished sending: the reply is still there to read
        out = bytearray()
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return bytes(out)


SOCKET_VALID = [c for c in VALID if c.get("count", 1) == 1 and not c["name"].startswith(
    ("websocket", "options-asterisk", "absolute-form"))][::2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", SOCKET_VALID, ids=lambda c: c["name"])
def test_valid_over_socket(echo_server: Server, case: dict[str, Any]) -> None:
    out = exchange(echo_server, case["bytes"])
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), out[:200]
    got = json.loads(body[: int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])])
    assert got["method"] == case["method"]
    if "target" in case:
        assert got["target"] == case["target"]
    if "body" in case:
        assert got["body"] == case["body"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", INVALID[::2], ids=lambda c: c["name"])
def test_invalid_over_socket(echo_server: Server, case: dict[str, Any]) -> None:
    out = exchange(echo_server, case["bytes"] + AFTER)
    assert out.startswith(b"HTTP/1.1 %d " % case["status"]), out[:120]
    assert out.count(b"HTTP/1.1 ") == out.count(b"HTTP/1.1 %d " % case["status"]) == 1 or \
        b"/after-the-case" not in out
    assert b"Connection: close\r\n" in out
    assert b'"target"' not in out, "the request after a refused one was answered"


def mutations(data: bytes, rng: random.Random, count: int) -> Iterator[bytes]:
    """Deterministic damage to a valid request: flipped, dropped, doubled and inserted
    bytes, truncations, and splices of two requests (what a fuzzer starts with)."""
    alphabet = b" \t\r\n:;,=\"()@/\\[]{}?#%\x00\x7f\xff0123456789abcdefxHTP."
    for _ in range(count):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(5)
            i = rng.randrange(len(buf) + 1)
            if op == 0 and buf:
                buf[min(i, len(buf) - 1)] = rng.choice(alphabet)
            elif op == 1:
                del buf[i:i + rng.randint(1, 8)]
            elif op == 2:
                buf[i:i] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
            elif op == 3:
                buf[i:i] = buf[i:i + rng.randint(1, 16)]
            else:
                other = rng.choice(VALID)["bytes"]
                buf[i:] = other[rng.randrange(len(other) + 1):]
        yield bytes(buf)


@pytest.mark.timeout(300)
def test_no_client_bytes_cause_a_server_error() -> None:
    """Every corpus case, and 1500 damaged variants of the valid ones, through a real
    server: each answer is a deliberate status (never a 500), and the error log holds
    no traceback. An app that raises would be a 500: the echo app never does."""
    rng = random.Random(20261130)
    inputs = [c["bytes"] for c in VALID + INVALID if len(c["bytes"]) < 100_000]
    small = [c["bytes"] for c in VALID if len(c["bytes"]) < 2000]
    for data in small:
        inputs += mutations(data, rng, 1500 // len(small) + 1)
    with Server("tests.corpus.test_corpus:echo_app", *SERVER_ARGS, "--header-timeout", "1",
                workers=1, threads=4) as srv:
        statuses: dict[int, int] = {}
        for data in inputs:
            out = exchange(srv, data)
            for line in out.split(b"\r\n"):
                if line.startswith(b"HTTP/1.1 "):
                    code = int(line[9:12])
                    statuses[code] = statuses.get(code, 0) + 1
                    assert code < 500 or code in (501, 505), (code, data[:200])
        log = srv.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 300:][:3000]
    assert "error in app" not in log and "unexpected error" not in log
    assert statuses.get(200, 0) > 50 and statuses.get(400, 0) > 50, statuses
    print(f"\nFIGURE no-5xx: {len(inputs)} inputs, statuses {dict(sorted(statuses.items()))}")
