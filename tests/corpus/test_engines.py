"""Differential test of the two request paths (http_engine native and python): every
corpus case, valid and invalid, sent whole, in seeded random pieces and pipelined, and
the parser property tests' generated and mutated requests, to a server on each engine;
the bytes that come back must be the same (the Date header aside), and so must the
environ the app saw (the app returns it)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from prefork.http.parser import RequestParser
from tests.corpus.test_corpus import AFTER, INVALID, SERVER_ARGS, VALID
from tests.corpus.test_corpus import exchange as corpus_exchange
from tests.server import Server
from tests.unit.test_parser_properties import mutations, requests

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
        if timing_dependent(data):
            continue
        ours, reference = exchange(native, data, seed), exchange(python, data, seed)
        if ours != reference:
            differ.append((name, ours[:300], reference[:300]))
    assert not differ, differ[:3]
    assert sum(not timing_dependent(data) for _, data in CASES) > 100


# The property generator of tests/unit/test_parser_properties.py: generated requests (one
# to three, pipelined, with bodies and chunking) and their mutations, split at generated
# points. Bounded and derandomized like the parser's property tests.
ENGINE_EXAMPLES = int(os.environ.get("ENGINE_EXAMPLES", "150"))


def timing_dependent(raw: bytes) -> bool:
    """Inputs whose answer depends on TCP read boundaries, whatever the engine (found by
    this test; left to their own issue, see the closing note of 2026-11-30):

    - a refused method pipelined behind a complete request: the parser judges 400 or 501
      (and its wording) on the bytes of the read the refused request arrived in;
    - bytes pipelined behind a request whose response closes the connection (HTTP/1.0
      without keep-alive): if they are already read the connection lingers, if not it is
      closed with them unread, and the client may see a reset instead of the response.
    """
    parser = RequestParser()
    parser.feed(raw)
    err = parser.error
    if err is not None and parser.ready and (
            err.status == 501 or err.detail in ("malformed request line",
                                                "the method is not a token (RFC 9110 §9.1)")):
        return True
    ready = list(parser.ready)
    return any(not req.keep_alive for req in ready[:-1]) or (
        bool(ready) and not ready[-1].keep_alive
        and (err is not None or parser.stopped or not parser.idle))


@settings(max_examples=ENGINE_EXAMPLES, deadline=None, derandomize=ENGINE_EXAMPLES <= 150,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(st.data(), requests(), st.booleans(), st.integers(0, 1000))
def test_both_engines_answer_generated_requests_alike(
        servers: tuple[Server, Server], data: st.DataObject,
        req: tuple[bytes, list[Any]], mutate: bool, seed: int) -> None:
    raw = data.draw(mutations(req[0])) if mutate else req[0]
    assume(not timing_dependent(raw))
    native, python = servers
    assert exchange(native, raw, seed) == exchange(python, raw, seed), raw
