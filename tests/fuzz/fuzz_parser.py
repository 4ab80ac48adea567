"""Coverage-guided fuzzing of the parser facade and the body reader (atheris; not in CI).

    pip install atheris
    python tests/fuzz/fuzz_parser.py -max_total_time=600 -max_len=8192 -seed_corpus_dir=auto

With `-seed_corpus_dir=auto` the raw requests of tests/corpus/ are written to a
temporary folder and used as seeds. Findings are written as crash-* files; each one
fixed becomes a case in tests/corpus/.

Properties checked on every input:
  * feed() never raises, whatever the bytes;
  * the result does not depend on how the bytes are split (whole vs. fuzzer-chosen pieces);
  * an error stops the parser and carries a 4xx/5xx status;
  * every request handed out is well formed: a known version, a target without space or
    '#', headers within limits, and a Content-Length body of exactly that length;
  * the body reader's read/readline/readlines agree with each other.
"""

from __future__ import annotations

import os
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    from prefork.http.parser import ParserLimits, RequestParser

LIMITS = {"limit_request_line": 512, "limit_request_fields": 20,
          "limit_request_field_size": 512, "head_limit": 4096,
          "max_body": 1 << 16, "framing_limit": 256}


def summary(parser: RequestParser) -> tuple[Any, ...]:
    reqs = []
    for r in parser.ready:
        body = r.body.read() if r.body.complete else None
        reqs.append((r.method, r.target, r.version, tuple(r.headers), r.keep_alive, body,
                     r.chunked, r.content_length))
    status = parser.error.status if parser.error else None
    return tuple(reqs), status, parser.stopped


def check(parser: RequestParser) -> None:
    if parser.error is not None:
        assert parser.stopped
        assert 400 <= parser.error.status < 600
    for r in parser.ready:
        assert r.version in ("1.0", "1.1")
        assert r.method and " " not in r.method
        assert b" " not in r.target and b"#" not in r.target
        assert len(r.headers) <= LIMITS["limit_request_fields"]
        for name, value in r.headers:
            assert len(name) + len(value) <= LIMITS["limit_request_field_size"]
            assert b"\r" not in value and b"\n" not in value and b"\x00" not in value
        assert not (r.chunked and r.content_length is not None)
        if r.body.complete and not r.chunked:
            assert r.body.received == (r.content_length or 0)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = sorted(fdp.ConsumeIntListInRange(fdp.ConsumeIntInRange(0, 8), 0, 4096))
    sizes = fdp.ConsumeIntListInRange(4, 1, 64)
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())

    whole = RequestParser(ParserLimits(**LIMITS))
    whole.feed(raw)
    check(whole)

    pieces = RequestParser(ParserLimits(**LIMITS))
    start = 0
    for cut in [c for c in cuts if c < len(raw)] + [len(raw)]:
        pieces.feed(raw[start:cut])
        start = max(start, cut)
    check(pieces)
    a, b = summary(whole), summary(pieces)
    # Splitting may only change *where* a framing-limit error is noticed (the limit is
    # enforced per slice); otherwise the outcome must be identical.
    if a != b:
        assert a[1] is not None or b[1] is not None, (a, b)
        assert a[0][:-1] == b[0][:-1] or not a[0] or not b[0], (a, b)

    # The body reader: read(n) pieces and readline agree with read().
    again = RequestParser(ParserLimits(**LIMITS))
    again.feed(raw)
    for r in again.ready:
        if not r.body.complete:
            continue
        body = bytearray()
        i = 0
        while True:
            n = sizes[i % len(sizes)]
            i += 1
            piece = r.body.readline(n) if i % 2 else r.body.read(n)
            if not piece:
                break
            assert len(piece) <= n
            body += piece
        assert r.body.received == len(body)


def seed_dir() -> str:
    folder = tempfile.mkdtemp(prefix="prefork-fuzz-seeds-")
    corpus = Path(__file__).resolve().parents[1] / "corpus"
    n = 0
    for kind in ("valid", "invalid"):
        for case in tomllib.loads((corpus / kind / "cases.toml").read_text())["case"]:
            raw = case["raw"]
            if "fill" in case:
                marker, text, count = case["fill"]
                raw = raw.replace(marker, text * min(count, 50))
            # Five zero bytes: the chunking parameters (no cuts, 1-byte reads), then the request.
            (Path(folder) / f"{n:04d}").write_bytes(b"\x00" * 5 + raw.encode("latin-1"))
            n += 1
    return folder


def main() -> None:
    argv = list(sys.argv)
    if "-seed_corpus_dir=auto" in argv:
        argv.remove("-seed_corpus_dir=auto")
        argv.append(seed_dir())
    os.environ.setdefault("PYTHONHASHSEED", "0")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
