"""Differential test of the two request paths (http_engine native and python): every
corpus case, valid and invalid, sent whole, in seeded random pieces and pipelined, to a
server on each engine; the bytes that come back must be the same (the Date header aside),
and so must the environ the app saw (the app returns it)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from tests.corpus.test_corpus import AFTER, INVALID, SERVER_ARGS, VALID
from tests.corpus.test_corpus import exchange as corpus_exchange
from tests.server import Server

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(importlib.util.find_spec("prefork._native") is None,
                       reason="the compiled core is not built: only one engine here"),
]
VOLATILE = {"REMOTE_PORT", "SERVER_PORT"}  # differ between two servers, whatever the engine


def environ_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    length = environ.get("CONTENT_LENGTH")
    body = environ["wsgi.input"].read(int(length)) if length else environ["wsgi.input"].read()
    seen = {k: v for k, v in environ.items() if isinstance(v, str | bool | int | tuple)
            and k not in VOLATILE}
    out = json.dumps({"environ": seen, "body": body.decode("latin-1")}, sort_keys=True,
                     default=str).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Server, Server]]:
    app = "tests.corpus.test_engines:environ_app"
    with Server(app, *SERVER_ARGS, "--http-engine", "native", workers=1, threads=4) as native, \
            Server(app, *SERVER_ARGS, "--http-engine", "python", workers=1, threads=4) as python:
        assert "request path: native" in native.log()
        assert "request path: python" in python.log()
        yield native, python


def pieces(data: bytes, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    i = 0
    while i < len(data):
        n = rng.choice((1, 2, 5, 64, 1000))
        yield data[i:i + n]
        i += n


def exchange(srv: Server, data: bytes, seed: int) -> bytes:
    """The reply, without its Date header (the one field allowed to differ)."""
    out = corpus_exchange(srv, data, None if seed < 0 else pieces(data, seed))
    return b"\r\n".join(line for line in out.split(b"\r\n") if not line.startswith(b"Date: "))


CASES = [(c["name"], c["bytes"] + AFTER) for c in VALID + INVALID]
PIPELINED = [(f"{a[0]}+{b[0]}", a[1] + b[1]) for a, b in itertools.pairwise(CASES[:41])]


@pytest.mark.parametrize("seed", [-1, 7], ids=["whole", "pieces"])
def test_both_engines_answer_every_case_alike(servers: tuple[Server, Server],
                                              seed: int) -> None:
    native, python = servers
    differ = []
    for name, data in CASES + PIPELINED:
        ours, reference = exchange(native, data, seed), exchange(python, data, seed)
        if ours != reference:
            differ.append((name, ours[:300], reference[:300]))
    assert not differ, differ[:3]
    assert len(CASES) > 100
