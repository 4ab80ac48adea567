"""Bounded load for the fault tests: client threads making requests until told to stop
(or a hard cap on count and time), recording every outcome."""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field

from tests.server import Server


@dataclass
class Load:
    srv: Server
    path: str = "/"
    clients: int = 4
    keep_alive: bool = False
    max_requests: int = 20000  # per client: a hard bound
    max_seconds: float = 30.0
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn: http.client.HTTPConnection | None = None
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() > deadline:
                break
            try:
                if conn is None:
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
        return self

    def stop(self) -> Load:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self

    @property
    def total(self) -> int:
        return self.ok + len(self.failed)
