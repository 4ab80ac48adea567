"""A connection's output: what is sent at once, and what waits for the socket to drain.

`send` and `sendfile` write what the socket takes now and queue the rest (bytes as
memoryviews, file parts as a duplicated descriptor and a range); the connection is then
armed for EPOLLOUT and `flush` writes more each time the socket drains, holding no
thread. Past OUTPUT_QUEUE_BYTES queued, the app's thread waits for the client instead
(`wait_flushed`, up to send_timeout per bit of progress), so a client that stalls a huge
streamed response costs one thread for a while, never unbounded memory.

`wsgi.Exchange` writes the response through it; `Connection` owns it. Touched only by the
thread that owns the connection; `abort` is the one call from the worker's main thread
(request_timeout), and it only sends and shuts the write side.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import IO

from prefork.engine import ClientSocket, SocketIO
from prefork.errors import ClientGone
from prefork.seam import native_calls

# A response the client does not take at once is queued and written as the socket drains;
# past this many queued bytes the app's thread waits (see above).
OUTPUT_QUEUE_BYTES = 1 << 20
POLLIN = select.POLLIN | select.POLLPRI
POLLOUT = select.POLLOUT


def wait_for(fd: int, events: int, timeout_s: float) -> bool:
    """poll() one descriptor: True if `events` came within `timeout_s`."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(max(0.0, timeout_s) * 1000))


class FileTail:
    """The unsent part of a file response, waiting in the output queue."""

    __slots__ = ("count", "fd", "offset")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self.fd, self.offset, self.count = fd, offset, count


class Output:
    __slots__ = ("fd", "io", "progress", "queue", "queued_bytes", "send_timeout_s", "sock")

    def __init__(self, sock: ClientSocket, io: SocketIO, send_timeout_s: float,
                 progress: Callable[[], None]) -> None:
        self.sock = sock
        self.io = io  # send, by the engine's call (engine.py)
        self.fd = sock.fileno()
        self.send_timeout_s = send_timeout_s
        self.progress = progress  # the request watchdog's sign that writing moves on
        self.queue: deque[memoryview | FileTail] = deque()  # empty: nothing waits
        self.queued_bytes = 0

    @native_calls
    def send(self, data: bytes) -> None:
        """Send now what the socket takes; queue the rest (written on EPOLLOUT).
        Raises ClientGone if the client is gone."""
        sent = 0
        if not self.queue:
            try:
                sent = self.io.send(data)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise ClientGone(str(exc)) from None
            if sent == len(data):
                return
        view = memoryview(data)[sent:]
        self.queue.append(view)
        self.queued_bytes += len(view)
        if self.queued_bytes > OUTPUT_QUEUE_BYTES:
            self.wait_flushed()

    def send_quietly(self, data: bytes) -> None:
        """send(), for a reply to a client that may be gone already (then nothing)."""
        try:
            self.send(data)
        except ClientGone:
            self.discard()

    def sendfile(self, file: IO[bytes], offset: int, count: int) -> int:
        return self.sendfile_fd(file.fileno(), offset, count)

    def sendfile_fd(self, in_fd: int, offset: int, count: int) -> int:
        """Send a file with os.sendfile; what the socket does not take now is queued
        (on a duplicate descriptor, as the caller may close its file at once)."""
        sent = 0
        if not self.queue:
            try:
                while sent < count:
                    n = os.sendfile(self.fd, in_fd, offset + sent, count - sent)
                    if n == 0:
                        return sent  # the file is shorter than it was
                    sent += n
            except BlockingIOError:
                pass
            except OSError as exc:
                raise ClientGone(str(exc)) from None
        if sent < count:
            self.queue.append(FileTail(os.dup(in_fd), offset + sent, count - sent))
        return count

    def flush(self) -> bool:
        """Write queued output without blocking; True once all of it is out.
        Raises ClientGone if the client is gone."""
        queue = self.queue
        sock = self.io
        try:
            while queue:
                item = queue[0]
                if isinstance(item, memoryview):
                    sent = sock.send(item)
                    self.queued_bytes -= sent
                    if sent < len(item):
                        queue[0] = item[sent:]
                        return False
                    queue.popleft()
                else:
                    sent = os.sendfile(self.fd, item.fd, item.offset, item.count)
                    item.offset += sent
                    item.count -= sent
                    if item.count and sent:
                        continue
                    os.close(item.fd)
                    queue.popleft()
        except BlockingIOError:
            return False
        except OSError as exc:
            raise ClientGone(str(exc)) from None
        return True

    def wait_flushed(self) -> None:
        """Write the queue out from this thread, waiting up to send_timeout for each bit
        of progress. Raises ClientGone if the client does not take it in time."""
        deadline = time.monotonic() + self.send_timeout_s
        while not self.flush():
            before = self.queued_bytes
            if not wait_for(self.fd, POLLOUT, deadline - time.monotonic()):
                raise ClientGone("client did not accept the response in time")
            if self.queued_bytes != before:
                deadline = time.monotonic() + self.send_timeout_s
                self.progress()

    def abort(self, data: bytes) -> None:
        """From the worker's main thread, for a request given up while its app still runs:
        send `data` (a complete response) and end our side; the pool thread then finds
        the client gone (ClientGone) whenever the app next writes."""
        with contextlib.suppress(OSError):
            self.sock.send(data)
            self.sock.shutdown(socket.SHUT_WR)

    @native_calls
    def discard(self) -> None:
        """Drop what is queued (the client is gone, or the connection closes)."""
        for item in self.queue:
            if isinstance(item, FileTail):
                os.close(item.fd)
        self.queue.clear()
        self.queued_bytes = 0
