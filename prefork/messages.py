"""What a worker and its master say to each other, in one place for both ends.

The channel is a SEQPACKET socketpair made by the master for each worker: one datagram
per message, so no framing. A worker `send()`s; the master `receive()`s and gets a typed
message back. A worker also tells its master, and the master tells the shell, how it
ended through its exit status (`ExitStatus`).

    Ready        once, when the app is loaded and the pool threads run
    Serving      once, on its first request: a crash from now on is no boot loop
    Heartbeat    every second: busy threads, requests served, connections, in flight,
                 and the metrics snapshot (when the admin listener is on)
    Reload       --reload: a file of the app changed
    Retire       the worker asks to be replaced (max_requests, a stuck request)

The master speaks to a worker through signals only: TERM is a graceful stop (finish
what was accepted; `Stop.GRACEFUL`), INT and QUIT a quick one (`Stop.QUICK`), USR1
reopens the logs.

Imported by worker.py (its main thread and pool threads send) and master.py (its main
thread receives). Sending never blocks: a full channel (a master busy for seconds) drops
a heartbeat rather than stall a worker.
"""

from __future__ import annotations

import contextlib
import enum
import json
import socket
from dataclasses import dataclass

from prefork.metrics import Snapshot


class ExitStatus(enum.IntEnum):
    """How a prefork process ends: a worker tells its master, the master tells the shell."""

    OK = 0
    ERROR = 1  # a crash, or --check-config found a problem
    USAGE = 2  # bad command line or config, or a hook refused to start
    BIND = 3  # an address cannot be bound
    APP_LOAD = 4  # the app cannot be imported: respawning would not help


class Stop(enum.Enum):
    """How a master or worker stops."""

    GRACEFUL = "finish the requests accepted, within graceful_timeout"
    QUICK = "exit now"


@dataclass(frozen=True, slots=True)
class Ready:
    pass


@dataclass(frozen=True, slots=True)
class Serving:
    pass


@dataclass(frozen=True, slots=True)
class Reload:
    pass


@dataclass(frozen=True, slots=True)
class Retire:
    reason: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    busy: int  # pool threads serving a connection
    served: int  # requests begun since the worker started
    conns: int  # connections open
    inflight: int  # requests running now
    metrics: Snapshot | None = None


Message = Ready | Serving | Reload | Retire | Heartbeat

_FIXED: dict[bytes, Message] = {b"ready": Ready(), b"serving": Serving(), b"reload": Reload()}
_BY_TYPE = {type(msg): raw for raw, msg in _FIXED.items()}
MAX_BYTES = 65536  # a datagram larger than this is truncated (and then unreadable)


def encode(msg: Message) -> bytes:
    if isinstance(msg, Heartbeat):
        beat: dict[str, object] = {"busy": msg.busy, "served": msg.served,
                                   "conns": msg.conns, "inflight": msg.inflight}
        if msg.metrics is not None:
            beat["m"] = msg.metrics
        return b"hb " + json.dumps(beat, separators=(",", ":")).encode()
    if isinstance(msg, Retire):
        return b"retire " + msg.reason.encode("utf-8", "replace")
    return _BY_TYPE[type(msg)]


def decode(data: bytes) -> Message | None:
    """The message in one datagram; None for one that cannot be read (ignored)."""
    fixed = _FIXED.get(data)
    if fixed is not None:
        return fixed
    if data.startswith(b"retire "):
        return Retire(data[7:].decode("utf-8", "replace"))
    if data.startswith(b"hb "):
        try:
            beat = json.loads(data[3:])
            return Heartbeat(int(beat["busy"]), int(beat["served"]), int(beat["conns"]),
                             int(beat["inflight"]), beat.get("m"))
        except (ValueError, KeyError, TypeError):
            return None
    return None


def send(channel: socket.socket, msg: Message) -> None:
    """From a worker: never blocks; a full or closed channel drops the message."""
    with contextlib.suppress(OSError):
        channel.send(encode(msg), socket.MSG_DONTWAIT)


class Closed:
    """The other end closed the channel (the worker is exiting, or the master is gone)."""


CLOSED = Closed()


def receive(channel: socket.socket) -> Message | Closed | None:
    """One message; CLOSED at end of file; None when nothing (readable) is waiting."""
    try:
        data = channel.recv(MAX_BYTES)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return CLOSED
    if not data:
        return CLOSED
    return decode(data)
