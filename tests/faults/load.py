"""Bounded load for the fault tests: client threads making requests until told to stop
(or a hard cap on count and time), recording every outcome.

A test that waits for the load to make progress uses `more`, which fails at once, and says
so, when the clients have already reached their cap: a load that ran out must not read as
a server that stopped serving (the netns test did, once the native engine was fast enough
for 4 clients to make their 4 x 20,000 requests before the test's last step)."""

from __future__ import annotations

import http.client
import select
import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar

from tests.server import Server, wait_for


def dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle kept-alive connection the server has closed (its FIN is readable)."""
    return conn.sock is not None and bool(select.select([conn.sock], [], [], 0)[0])


@dataclass(eq=False)  # a load is itself (identity), not its figures
class Load:
    srv: Server
    path: str = "/"
    clients: int = 4
    keep_alive: bool = False
    max_requests: int = 250_000  # per client: a hard bound (max_seconds comes first)
    max_seconds: float = 30.0
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    retried: int = 0  # requests that crossed a drain's FIN on an idle connection
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Loads started and not stopped: the test teardown stops them (tests/conftest.py), so a
    # test failing half way leaves no client threads running into the next tests (they
    # would hammer a stopped server, and the leak tests count their memory and sockets).
    running_loads: ClassVar[list[Load]] = []

    def _client(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn: http.client.HTTPConnection | None = None
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() > deadline:
                break
            try:
                if conn is not None and dropped(conn):  # urllib3's check before reuse
                    conn.close()
                    conn = None
                reused = conn is not None
                if conn is None:
                    conn = self.srv.connection(timeout=15)
                try:
                    conn.request("GET", self.path)
                    resp = conn.getresponse()
                except http.client.RemoteDisconnected:
                    if not reused:
                        raise
                    # The request crossed a drain's FIN on an idle keep-alive connection:
                    # nothing answered it, so it is retried once on a new connection, as
                    # HTTP clients retry an idempotent request (RFC 9112 §9.3.1).
                    with self._lock:
                        self.retried += 1
                    conn.close()
                    conn = self.srv.connection(timeout=15)
                    conn.request("GET", self.path)
                    resp = conn.getresponse()
                body = resp.read()
                good = resp.status == 200 and bool(body)
                if resp.will_close or not self.keep_alive:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                good = False
                body = repr(exc).encode()
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                if good:
                    self.ok += 1
                else:
                    self.failed.append(body.decode("utf-8", "replace")[:200])
        if conn is not None:
            conn.close()

    def start(self) -> Load:
        for _ in range(self.clients):
            t = threading.Thread(target=self._client, daemon=True)
            t.start()
            self._threads.append(t)
        Load.running_loads.append(self)
        return self

    def stop(self) -> Load:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        if self in Load.running_loads:
            Load.running_loads.remove(self)
        return self

    @classmethod
    def stop_all(cls) -> None:
        for load in list(cls.running_loads):
            load.stop()

    @property
    def running(self) -> bool:
        """Whether any client is still making requests."""
        return any(t.is_alive() for t in self._threads)

    def more(self, count: int, timeout: float, what: str) -> int:
        """Wait until `count` more requests than now have succeeded; fail with the reason
        when the clients stopped first (their cap reached), not with a timeout."""
        start = self.ok

        def grown() -> bool:
            if self.ok > start + count:
                return True
            if not self.running and not self._stop.is_set():
                raise AssertionError(
                    f"the load ran out while waiting for {what}: its clients reached their cap "
                    f"({self.max_requests} requests or {self.max_seconds} s each); "
                    f"{self.ok} ok, {len(self.failed)} failed")
            return False
        wait_for(grown, timeout=timeout, what=what)
        return self.ok - start

    @property
    def total(self) -> int:
        return self.ok + len(self.failed)
