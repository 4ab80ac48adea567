"""Static files from configured mounts, answered before the app is called.

Safety first: a request's path is percent-decoded once; encoded slashes or backslashes,
NUL bytes, ".." segments and backslashes are refused, the file is resolved with realpath
and must stay inside its mount (unless the mount allows symlinks out), and only regular
files are opened (never a FIFO or a device). Directories redirect to add their trailing
slash and serve their index file; there are no listings.

Then HTTP semantics (RFC 9110): ETag (from size and mtime) and Last-Modified; If-Match and
If-Unmodified-Since give 412, If-None-Match and If-Modified-Since give 304, in the order of
§13.2.2; a single Range gives 206 with Content-Range (416 when unsatisfiable; If-Range
honoured); several ranges get the whole file (200), which RFC 9110 §14.2 allows and no
client depends on otherwise. A `file.br` or `file.gz` beside `file` is served to clients
that accept it, with Content-Encoding and Vary: Accept-Encoding. The body goes out with
os.sendfile through the connection's output (a slow client holds no thread).

Used by pool threads; `StaticFiles` is built once per worker and read-only after that.
"""

from __future__ import annotations

import enum
import mimetypes
import os
import stat
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

from prefork.http.request import Request
from prefork.http.response import server_head
from prefork.values import StaticMount

_ENCODINGS = (("br", ".br"), ("gzip", ".gz"))


@dataclass(slots=True)
class Reply:
    """What a static request produced: the head, and the file part to send (if any)."""

    status: int
    head: bytes
    fd: int = -1
    offset: int = 0
    count: int = 0


@dataclass(slots=True)
class _File:
    path: str
    st: os.stat_result
    encoding: str | None


def _head(status: int, fields: list[tuple[str, str]], length: int, close: bool) -> bytes:
    return server_head(status, fields, length=None if status == 304 else length, close=close)


def _simple(status: int, close: bool, fields: list[tuple[str, str]] | None = None) -> Reply:
    body = f"{status} {HTTPStatus(status).phrase}\n".encode()
    head = _head(status, [("Content-Type", "text/plain"), *(fields or [])], len(body), close)
    return Reply(status, head + body)


def _date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etag_list(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


class NoRange(enum.Enum):
    """A Range header that does not give one satisfiable byte range."""

    IGNORED = "not bytes, malformed, or several ranges: the whole file is sent (200)"
    UNSATISFIABLE = "past the end of the file: 416"


@dataclass(frozen=True, slots=True)
class _Found:
    """A regular file a request resolved to, before variants are looked at."""

    mount: StaticMount
    root: str
    path: str
    st: os.stat_result


class StaticFiles:
    def __init__(self, mounts: tuple[StaticMount, ...]) -> None:
        # Longest prefix first, so /static/img/ wins over /static/.
        self.mounts = sorted(mounts, key=lambda m: len(m.prefix), reverse=True)
        self.roots = {m.prefix: os.path.realpath(m.directory) for m in mounts}
        self.prefixes = tuple(m.prefix.encode() for m in self.mounts)

    def match(self, target: bytes) -> StaticMount | None:
        if not target.startswith(self.prefixes):
            return None
        for mount in self.mounts:
            if target.startswith(mount.prefix.encode()):
                return mount
        return None

    def respond(self, req: Request, mount: StaticMount, close: bool) -> Reply:
        """The whole answer to a request under `mount`: resolve, then serve."""
        if req.method not in ("GET", "HEAD"):
            return _simple(405, close, [("Allow", "GET, HEAD")])
        found = self._resolve(req, mount, close)
        if isinstance(found, Reply):
            return found
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in req.headers}
        return self._serve(req, headers, found, close)

    def _resolve(self, req: Request, mount: StaticMount, close: bool) -> _Found | Reply:
        """The regular file a request names, safely (see the module docstring); or the
        reply instead: 400, 404, or 301 to add a directory's trailing slash."""
        raw_path, _, query = req.target.partition(b"?")
        lowered = raw_path.lower()
        if b"%2f" in lowered or b"%5c" in lowered or b"\\" in raw_path:
            return _simple(404, close)
        decoded = unquote_to_bytes(raw_path)
        if b"\x00" in decoded:
            return _simple(400, close)
        parts = [p for p in decoded[len(mount.prefix):].split(b"/") if p not in (b"", b".")]
        if b".." in parts or b"\\" in decoded:
            return _simple(404, close)
        root = self.roots[mount.prefix]
        full = os.path.join(root, *[os.fsdecode(p) for p in parts]) if parts else root
        st = self._stat(full, root, mount)
        if st is not None and stat.S_ISDIR(st.st_mode):
            if not decoded.endswith(b"/"):
                location = raw_path.decode("latin-1") + "/" + (
                    "?" + query.decode("latin-1") if query else "")
                return _simple(301, close, [("Location", location)])
            full = os.path.join(full, mount.index)
            st = self._stat(full, root, mount)
        if st is None or not stat.S_ISREG(st.st_mode):
            return _simple(404, close)
        return _Found(mount, root, full, st)

    @staticmethod
    def _stat(path: str, root: str, mount: StaticMount) -> os.stat_result | None:
        """stat() a path that stays inside the mount (None if it does not, or is gone)."""
        real = os.path.realpath(path)
        if not mount.follow_symlinks and real != root and not real.startswith(root + os.sep):
            return None  # a symlink leads out of the mount
        try:
            return os.stat(real)
        except (OSError, ValueError):
            return None

    def _regular(self, path: str, found: _Found) -> os.stat_result | None:
        st = self._stat(path, found.root, found.mount)
        return st if st is not None and stat.S_ISREG(st.st_mode) else None

    def _variant(self, found: _Found, accept: str) -> tuple[_File, bool]:
        """The precompressed file to send (or the file itself), and whether any variant
        exists (then the response varies on Accept-Encoding)."""
        variants = [(enc, found.path + sfx, st) for enc, sfx in _ENCODINGS
                    if (st := self._regular(found.path + sfx, found)) is not None]
        if variants:
            accepted = {t.split(";")[0].strip().lower() for t in accept.split(",")
                        if "q=0" not in t.replace(" ", "")}
            for encoding, path, st in variants:
                if encoding in accepted or "*" in accepted:
                    return _File(path, st, encoding), True
        return _File(found.path, found.st, None), bool(variants)

    def _serve(self, req: Request, headers: dict[str, str], found: _Found,
               close: bool) -> Reply:
        f, varies = self._variant(found, headers.get("accept-encoding", ""))
        size = f.st.st_size
        etag = f'"{f.st.st_mtime_ns:x}-{size:x}{"-" + f.encoding if f.encoding else ""}"'
        mtime = int(f.st.st_mtime)
        fields = _fields(found, f, etag, mtime, varies)
        refused = _preconditions(headers, etag, mtime)
        if refused == 412:
            return _simple(412, close)
        if refused == 304:
            return Reply(304, _head(304, fields, 0, close))
        start, end, status = 0, size - 1, 200
        rng = headers.get("range")
        if rng and req.method == "GET" and _if_range(headers.get("if-range"), etag, mtime):
            parsed = _parse_range(rng, size)
            if parsed is NoRange.UNSATISFIABLE:
                return _simple(416, close, [("Content-Range", f"bytes */{size}")])
            if parsed is not NoRange.IGNORED:
                start, end = parsed
                status = 206
                fields.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        count = max(0, end - start + 1)
        head = _head(status, fields, count, close)
        if req.method == "HEAD" or count == 0:
            return Reply(status, head)
        try:
            fd = os.open(f.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return _simple(404, close)
        return Reply(status, head, fd, start, count)


def _fields(found: _Found, f: _File, etag: str, mtime: int, varies: bool) -> list[tuple[str, str]]:
    """The representation's header fields: type, validators, caching, encoding."""
    mount = found.mount
    ext = os.path.splitext(found.path)[1].lower()
    ctype = dict(mount.types).get(ext) or mimetypes.guess_type(found.path)[0] \
        or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        ctype += "; charset=utf-8"
    fields = [("Content-Type", ctype), ("ETag", etag),
              ("Last-Modified", formatdate(mtime, usegmt=True)), ("Accept-Ranges", "bytes")]
    if mount.cache_control:
        fields.append(("Cache-Control", mount.cache_control))
    if f.encoding:
        fields.append(("Content-Encoding", f.encoding))
    if varies:
        fields.append(("Vary", "Accept-Encoding"))
    return fields


def _preconditions(headers: dict[str, str], etag: str, mtime: int) -> int | None:
    """RFC 9110 §13.2.2, in its order: 412, 304, or None to go on. A pure decision."""
    if "if-match" in headers:
        tags = _etag_list(headers["if-match"])
        if "*" not in tags and etag not in tags:  # strong comparison
            return 412
    elif "if-unmodified-since" in headers:
        since = _date(headers["if-unmodified-since"])
        if since is not None and mtime > since:
            return 412
    if "if-none-match" in headers:
        tags = [t.removeprefix("W/") for t in _etag_list(headers["if-none-match"])]
        if "*" in tags or etag in tags:  # weak comparison
            return 304
    elif "if-modified-since" in headers:
        since = _date(headers["if-modified-since"])
        if since is not None and mtime <= since:
            return 304
    return None


def _if_range(value: str | None, etag: str, mtime: int) -> bool:
    """RFC 9110 §13.1.5: the range applies only if the validator still matches."""
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == etag  # strong comparison; a weak tag never matches
    when = _date(value)
    return when is not None and int(when) == mtime


def _parse_range(value: str, size: int) -> tuple[int, int] | NoRange:
    """One byte range as (first, last), or why there is none."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return NoRange.IGNORED
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return NoRange.IGNORED
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return NoRange.UNSATISFIABLE
            return max(0, size - n), size - 1
        a = int(first)
        b = int(last) if last else size - 1
    except ValueError:
        return NoRange.IGNORED
    if a < 0 or (last and b < a):
        return NoRange.IGNORED
    if a >= size:
        return NoRange.UNSATISFIABLE
    return a, min(b, size - 1)
