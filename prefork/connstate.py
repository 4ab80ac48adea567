"""The vocabulary a worker and its connections share: a connection's states (`State`),
what the worker does with one handed back (`Next`), what the epoll watches it for
(`Watch`, `HANGUP`), how it ends (`Ending`), whether a PROXY header is due
(`ProxyHeader`), and what a connection needs from its worker (`ServerContext`).

Declarations only: connection.py owns the transitions, worker.py the epoll and the
claims. The compiled core mirrors these members by name (prefork/native.py binds them).
The context is built once per worker by its main thread and read by every pool thread.
"""

from __future__ import annotations

import enum
import select
from collections.abc import Callable
from dataclasses import dataclass, field

from prefork.accesslog import AccessLog
from prefork.config import ProxyProtocol
from prefork.engine import Engine
from prefork.hooks import WorkerView
from prefork.http.parser import DEFAULT_LIMITS, ParserLimits
from prefork.http.request import Request
from prefork.loader import WSGIApp
from prefork.metrics import WorkerMetrics
from prefork.proxy import Trust
from prefork.static import StaticFiles
from prefork.wsgi import Exchange


class State(enum.Enum):
    PARKED = "armed for reading: a head is arriving, or it is idle between requests"
    ACTIVE = "a pool thread is serving it"
    WRITING = "armed for writing: its output queue drains as the client reads"
    LINGER = "after a refusal: write side shut, the client's bytes dropped until EOF"
    CLOSED = "closed and gone from the worker's table"


class Next(enum.Enum):
    """What the worker does with a connection handed back to it."""

    READ = "arm it in the epoll for reading"
    WRITE = "arm it in the epoll for writing"
    CLOSE = "take it out of the table and close it"


class Watch(enum.IntEnum):
    """What the worker's epoll watches a connection for (its mask): edge-triggered, so a
    connection is registered once and not re-armed per request. Written by its owner."""

    NOTHING = 0  # not in the epoll yet
    READ = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
    READ_WRITE = READ | select.EPOLLOUT  # after a blocked send


# An event's news of the peer's end (its FIN, a reset): after a short read, recv still has
# that to report, and no edge will come for it.
HANGUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR


class Ending(enum.Enum):
    """How the connection ends once its output is written."""

    KEEP = "park it for the next request"
    CLEAN = "close it: the client said it sends no more, and every byte it sent was read"
    LINGER = "shut our side, drop what the client still sends, then close"


class ProxyHeader(enum.Enum):
    """PROXY protocol on this connection."""

    NONE = "no header due"
    EXPECTED = "its first bytes are a PROXY header"
    REFUSED = "the peer may not send one (not in proxy_allow_ips)"


# Module-level names: a global lookup and an identity test on the hot path, as cheap as
# the plain ints they replace, and mypy tells one family from another.
PARKED, ACTIVE, WRITING, LINGER, CLOSED = (State.PARKED, State.ACTIVE, State.WRITING,
                                           State.LINGER, State.CLOSED)
READ, WRITE, CLOSE = Next.READ, Next.WRITE, Next.CLOSE
KEEP, END_CLEAN, END_LINGER = Ending.KEEP, Ending.CLEAN, Ending.LINGER
PROXY_NONE, PROXY_EXPECTED, PROXY_REFUSED = (ProxyHeader.NONE, ProxyHeader.EXPECTED,
                                             ProxyHeader.REFUSED)



@dataclass(slots=True)
class ServerContext:
    """What a connection needs from its worker: settings, and the watchdogs' clocks.

    Built once per worker; read by every pool thread (the callbacks are thread-safe).
    """

    app: WSGIApp
    keepalive_s: float = 2.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    send_timeout_s: float = 30.0
    max_keepalive_requests: int = 0
    request_timeout_s: float = 0.0
    lingering_time_s: float = 30.0
    lingering_timeout_s: float = 5.0
    lingering_bytes: int = 16 << 20
    parser_limits: ParserLimits = DEFAULT_LIMITS
    # Whose calls the connections make (engine_choice.choose's): always given.
    engine: Engine = field(kw_only=True)
    begin_request: Callable[[Request, Exchange], None] = lambda req, exchange: None
    end_request: Callable[[], None] = lambda: None
    progress: Callable[[], None] = lambda: None  # slow I/O moved on: the request is not stuck
    access_log: AccessLog | None = None
    metrics: WorkerMetrics | None = None
    static: StaticFiles | None = None
    trust: Trust | None = None  # forwarded headers: who is a trusted proxy
    proxy_mode: ProxyProtocol = "off"  # PROXY protocol
    proxy_trust: Trust | None = None  # who may send a PROXY header
    worker_number: int = 0
    # Server hooks around each request (None when unset: one comparison per request).
    pre_request: Callable[..., object] | None = None
    post_request: Callable[..., object] | None = None
    hook_worker: WorkerView | None = None  # what those hooks get as `worker`
    stopping: bool = False  # set by the worker's main thread on a graceful stop
    timed: bool = False  # requests are timed (access log or metrics): set after init

    def __post_init__(self) -> None:
        self.timed = self.access_log is not None or self.metrics is not None
