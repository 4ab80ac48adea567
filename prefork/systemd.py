"""systemd integration without a systemd library: socket activation and sd_notify.

Socket activation: when systemd started us with sockets (LISTEN_PID is our pid and
LISTEN_FDS says how many), they are descriptors 3, 4, ...; the master listens on those
instead of binding `bind`. The variables are removed so that nothing forked inherits them.

Notify (Type=notify or notify-reload): datagrams to $NOTIFY_SOCKET (a path, or an abstract
socket when it begins with "@"): READY=1 once the first workers are ready, RELOADING=1
(with MONOTONIC_USEC) on SIGHUP and READY=1 when the reload has finished, STOPPING=1 on
a stop, and WATCHDOG=1 every half of WATCHDOG_USEC when systemd's watchdog is on.

Used by the master's main thread only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import MutableMapping

SD_LISTEN_FDS_START = 3


def listen_fds(environ: MutableMapping[str, str]) -> list[int]:
    """The descriptors systemd passed to this process (and forget the variables)."""
    pid, count = environ.get("LISTEN_PID", ""), environ.get("LISTEN_FDS", "")
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(key, None)
    if pid != str(os.getpid()) or not count.isdigit():
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))


class Notifier:
    def __init__(self, environ: MutableMapping[str, str]) -> None:
        path = environ.pop("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if path:
            self.address = "\0" + path[1:] if path.startswith("@") else path
        usec = environ.pop("WATCHDOG_USEC", "")
        wd_pid = environ.pop("WATCHDOG_PID", "")
        self.watchdog_s = 0.0
        if usec.isdigit() and (not wd_pid or wd_pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6 / 2
        self.next_watchdog = 0.0
        self.sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *states: str) -> None:
        if self.address is None:
            return
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.setblocking(False)
        with contextlib.suppress(OSError):  # systemd gone: nothing to tell
            self.sock.sendto("\n".join(states).encode(), self.address)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def tick(self, now: float) -> None:
        """Called from the master's loop: pet systemd's watchdog when it is due."""
        if self.watchdog_s and now >= self.next_watchdog:
            self.next_watchdog = now + self.watchdog_s
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
