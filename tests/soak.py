"""The chaos soak: steady mixed load on a real server while a chaos driver reloads,
scales, upgrades, kills and recycles it; every answer is checked against its request.

    python tests/soak.py --minutes 10        # by hand; prints the report, exits 1 on a breach
    tests/faults/test_soak.py                 # the 60-second version, in CI

Load: client threads, each making requests of six kinds at random (GET on a keep-alive
connection, GET on a new connection, POST with a body of up to 64 KiB that is echoed,
a chunked streamed response, 8 GETs pipelined in one write on a new connection that
max_keepalive_requests ends after 5 (5 whole answers, then a FIN, never a reset), a
malformed request with a valid one behind it (its 400, then a FIN: the lingering close)),
each carrying an id that the answer must contain.

Chaos, at random intervals: HUP, TTIN/TTOU (between 1 and 4 workers), USR2 (a new master),
SIGKILL to a random worker, a memory leak that max_worker_memory recycles, a hung request
that request_timeout gives up (its client must get 504), and max_requests recycling all
along.

The invariant: a request may fail only if it was in flight, or its keep-alive connection
open, when a worker was killed with SIGKILL (it may have been on that worker); every other
request is answered, correctly (hung requests: with 504).
Traffic goes to 127.0.0.1 only; the load and the run are bounded in time.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.server import Server, wait_for

KINDS = ("keepalive", "new_connection", "post", "stream", "pipelined", "refused")
PIPELINED = 8  # requests in one write; max_keepalive_requests (5) ends the connection first
MAX_KEEPALIVE = 5


@dataclass
class Report:
    sent: int = 0
    verified: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # cause -> count
    unexplained: list[str] = field(default_factory=list)
    chaos: Counter[str] = field(default_factory=Counter)
    timeouts_answered: int = 0
    retried: int = 0  # keep-alive requests that crossed a drain's FIN, retried
    kills: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, pid) SIGKILLed
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (+s, chaos event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def text(self, seconds: float) -> str:
        lines = [f"soak: {seconds:.0f} s, {self.sent} requests sent, {self.verified} verified",
                 f"  failed by cause: {dict(self.failed) or 'none'}",
                 f"  unexplained failures: {len(self.unexplained)}",
                 f"  chaos events: {dict(self.chaos)}",
                 f"  hung requests answered 504 by request_timeout: {self.timeouts_answered}",
                 f"  keep-alive requests retried after a drain's FIN: {self.retried}"]
        lines += [f"    {u}" for u in self.unexplained[:10]]
        if self.unexplained:  # what the chaos did, to set beside the failures' times
            lines.append("  chaos timeline: " + ", ".join(
                f"+{at:.2f} {what}" for at, what in self.timeline[:40]))
        return "\n".join(lines)


class Soak:
    def __init__(self, seconds: float, clients: int = 6, seed: int | None = None) -> None:
        self.seconds = seconds
        self.clients = clients
        self.rng = random.Random(seed)
        self.report = Report()
        self.stop = threading.Event()
        self.pidfile = Path(self._tmpdir()) / "soak.pid"
        self.target = 2
        self.hangs: list[threading.Thread] = []  # hung requests still waiting for their 504
        # Client -> the worker its connection is on. One dict for all the clients, made
        # here: each client thread used to make its own and replace the others'.
        self.last_pid: dict[int, int] = {}

    def _tmpdir(self) -> str:
        import tempfile

        self._dir = tempfile.TemporaryDirectory(prefix="prefork-soak-")
        return self._dir.name

    # -- the server ------------------------------------------------------------------------
    def master(self) -> int:
        def read() -> int | None:
            try:
                return int(self.pidfile.read_text())
            except (OSError, ValueError):
                return None
        return int(wait_for(read, timeout=30, what="the master's pidfile"))

    # -- load ------------------------------------------------------------------------------
    def client(self, n: int) -> None:
        rng = random.Random(self.rng.random())
        conn: http.client.HTTPConnection | None = None
        seq = 0
        while not self.stop.is_set():
            seq += 1
            rid = f"c{n}r{seq}"
            kind = rng.choice(KINDS)
            if kind != "keepalive" and conn is not None:
                conn.close()
                conn = None
            started = time.monotonic()
            with self.report.lock:
                self.report.sent += 1
            try:
                if kind in RAW:
                    if conn is not None:
                        conn.close()
                        conn = None
                    self.last_pid[n] = 0
                    ok = RAW[kind](self, rid, n)
                    self.account("" if ok else "wrong answer", started, f"{kind} {rid}",
                                 self.last_pid.get(n, 0))
                    continue
                reused = conn is not None
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                    self.last_pid[n] = 0
                try:
                    ok = self.one(conn, kind, rid, rng, n)
                except http.client.RemoteDisconnected:
                    if not reused:
                        raise
                    # An idle keep-alive connection closed by a drain as this request
                    # crossed its FIN: answered by nothing, so retried on a new
                    # connection, as HTTP clients do (RFC 9112 §9.3.1). A reset would not
                    # be retried: it raises ConnectionResetError, counted.
                    with self.report.lock:
                        self.report.retried += 1
                    conn.close()
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                    self.last_pid[n] = 0
                    ok = self.one(conn, kind, rid, rng, n)
                if ok is None:  # the server said it closes: fine, reconnect next time
                    conn.close()
                    conn = None
                    ok = True
                cause = "" if ok else "wrong answer"
            except (OSError, http.client.HTTPException) as exc:
                cause = type(exc).__name__
                conn.close() if conn is not None else None
                conn = None
            if kind != "keepalive" and conn is not None:
                conn.close()
                conn = None
            self.account(cause, started, f"{kind} {rid}", self.last_pid.get(n, 0))
        if conn is not None:
            conn.close()

    def one(self, conn: http.client.HTTPConnection, kind: str, rid: str,
            rng: random.Random, n: int) -> bool | None:
        """One request; True if verified, None if verified and the server closes."""
        if kind == "post":
            body = rng.randbytes(rng.randint(0, 64 * 1024))
            conn.request("POST", f"/echo?id={rid}", body=body)
            expect = rid.encode() + b":" + body
        elif kind == "stream":
            # Not `n`, the client's number: that one keys last_pid below (it did: a stream
            # of 1-5 pieces overwrote clients 1-5's record of the worker their keep-alive
            # connection is on, and a SIGKILL of that worker then looked unexplained).
            pieces = rng.randint(1, 20)
            conn.request("GET", f"/stream?id={rid}&n={pieces}")
            expect = b"".join(b"%s-%d;" % (rid.encode(), i) for i in range(pieces))
        else:
            conn.request("GET", f"/item?id={rid}")
            expect = rid.encode() + b":"
        resp = conn.getresponse()
        self.last_pid[n] = int(resp.getheader("X-Pid") or 0)
        data = resp.read()
        good = resp.status == 200 and (data.startswith(expect) if kind in ("keepalive",
                                       "new_connection") else data == expect)
        if good and resp.will_close:
            return None
        return good

    def pipelined(self, rid: str, n: int) -> bool:
        """PIPELINED GETs in one write: the first MAX_KEEPALIVE answered in order (fewer if
        the worker drains meanwhile), the last with "Connection: close", then a FIN (a
        reset raises: counted)."""
        reqs = b"".join(b"GET /item?id=%s-%d HTTP/1.1\r\nHost: soak\r\n\r\n" % (rid.encode(), i)
                        for i in range(PIPELINED))
        data = self.raw(reqs, n)
        answers = data.split(b"HTTP/1.1 ")[1:]
        return (1 <= len(answers) <= MAX_KEEPALIVE  # fewer: a drain closed it early
                and all(a.startswith(b"200 ") and b"\r\n\r\n%s-%d:" % (rid.encode(), i) in a
                        for i, a in enumerate(answers))
                and b"Connection: close" in answers[-1])

    def refused(self, rid: str, n: int) -> bool:
        """A malformed request with a good one behind it: 400, then a FIN."""
        data = self.raw(b"GET /item?id=%s HTTP/1.1\r\nHost: soak\r\nBad Field: x\r\n\r\n"
                        b"GET /item HTTP/1.1\r\nHost: soak\r\n\r\n" % rid.encode(), n)
        return data.startswith(b"HTTP/1.1 400 ") and data.count(b"HTTP/1.1 ") == 1

    def raw(self, request: bytes, n: int) -> bytes:
        """Send `request` on a new connection; everything until the server's FIN."""
        with socket.create_connection((self.host, self.port), timeout=30) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
                pid = data.find(b"X-Pid: ")
                if pid >= 0 and not self.last_pid.get(n):
                    self.last_pid[n] = int(data[pid + 7:data.find(b"\r", pid)] or 0)
        return data

    def account(self, cause: str, started: float, what: str, on_pid: int = 0) -> None:
        """One outcome; `on_pid`: the worker that answered the connection's last request."""
        ended = time.monotonic()
        with self.report.lock:
            if not cause:
                self.report.verified += 1
                return
            self.report.failed[cause] += 1
            # Explained only if a worker was SIGKILLed while this request was in flight (it
            # may have been on it), or its keep-alive connection was on a killed worker.
            if not any(started <= t <= ended or pid == on_pid
                       for t, pid in self.report.kills):
                self.report.unexplained.append(f"{what}: {cause} at +{ended - self.t0:.2f} s")

    # -- chaos -----------------------------------------------------------------------------
    def chaos(self) -> None:
        rng = self.rng
        actions = ["hup", "ttin", "ttou", "usr2", "kill", "leak", "hang"]
        weights = [3, 2, 2, 1, 3, 2, 2]
        first = rng.sample(actions, len(actions))  # every kind of chaos early on, then at random
        while not self.stop.wait(rng.uniform(0.5, 2.0)):
            action = first.pop() if first else rng.choices(actions, weights)[0]
            with self.report.lock:
                self.report.timeline.append((time.monotonic() - self.t0, action))
            try:
                self.act(action)
            except (OSError, psutil.Error, AssertionError) as exc:
                self.report.chaos[f"{action} failed: {type(exc).__name__}"] += 1
                continue
            self.report.chaos[action] += 1

    def act(self, action: str) -> None:
        master = self.master()
        if action == "hup":
            os.kill(master, signal.SIGHUP)
        elif action == "ttin" and self.target < 4:
            self.target += 1
            os.kill(master, signal.SIGTTIN)
        elif action == "ttou" and self.target > 1:
            self.target -= 1
            os.kill(master, signal.SIGTTOU)
        elif action == "usr2":
            os.kill(master, signal.SIGUSR2)
            # Wait for the hand-over before more chaos: a new pid in the pidfile.
            wait_for(lambda: self.master() != master, timeout=30, what="the new master")
            self.target = 2  # the new master starts with the configured count
        elif action == "kill":
            pids = psutil.Process(master).children()
            victim = self.rng.choice(pids) if pids else None
            if victim is not None:
                with self.report.lock:
                    self.report.kills.append((time.monotonic(), victim.pid))
                os.kill(victim.pid, signal.SIGKILL)
        elif action == "leak":
            # Leak in every worker (new connections land on any of them), so that memory
            # recycling, not only max_requests, gets its turn.
            workers = {c.pid for c in psutil.Process(master).children()}
            leaked: set[int] = set()
            for _ in range(4 * len(workers) + 4):
                leaked.add(http_get(self.host, self.port, "/leak?mb=64"))
                if workers <= leaked:
                    break
        elif action == "hang":
            t = threading.Thread(target=self.hang, daemon=True)
            t.start()
            self.hangs.append(t)

    def hang(self) -> None:
        """A request that hangs in the app: request_timeout must answer it with 504."""
        started = time.monotonic()
        try:
            with socket.create_connection((self.host, self.port), timeout=30) as sock:
                sock.sendall(b"GET /hang HTTP/1.1\r\nHost: soak\r\n\r\n")
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
        except OSError:
            reply = b""
        if reply.startswith(b"HTTP/1.1 504 "):
            with self.report.lock:
                self.report.timeouts_answered += 1
        else:
            self.account("hang not answered 504", started, "GET /hang")

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> Report:
        args = ("tests.apps.soak:app", "--pidfile", str(self.pidfile),
                "--max-requests", "3000", "--max-requests-jitter", "1000",
                "--max-worker-memory", "80", "--memory-samples", "1",
                "--request-timeout", "2", "--graceful-timeout", "10", "--loglevel", "info",
                "--max-keepalive-requests", str(MAX_KEEPALIVE))
        with Server(*args, workers=self.target, threads=4) as srv:
            self.host, self.port = srv.host, srv.port
            self.srv = srv
            self.t0 = time.monotonic()
            threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                       for i in range(self.clients)]
            threads.append(threading.Thread(target=self.chaos, daemon=True))
            for t in threads:
                t.start()
            self.stop.wait(self.seconds)
            self.stop.set()
            for t in threads + self.hangs:  # a late hang gets its request_timeout too
                t.join(60)
            self.log = srv.log()
        return self.report


RAW = {"pipelined": Soak.pipelined, "refused": Soak.refused}


def http_get(host: str, port: int, path: str) -> int:
    """GET on a new connection; the pid of the worker that answered."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return int(resp.getheader("X-Pid") or 0)
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log", help="write the server's log to this file")
    args = parser.parse_args()
    soak = Soak(args.minutes * 60, args.clients, args.seed)
    report = soak.run()
    print(report.text(args.minutes * 60))
    print(f"  recycled by max_requests: {soak.log.count('; recycling')}, "
          f"by memory: {soak.log.count('over max_worker_memory')}")
    if report.unexplained:
        print("  chaos timeline:", ", ".join(f"+{t:.2f} {a}" for t, a in report.timeline))
    if args.log:
        Path(args.log).write_text(soak.log)
    return 1 if report.unexplained or not report.verified else 0


if __name__ == "__main__":
    sys.exit(main())
