"""The request watchdogs of a worker: what each pool thread is running, since when, and
whether it still moves (README, "Watchdogs").

    request_timeout (harakiri)  a request running longer is given up: its stack is
                                logged, its client gets 504 if no response has begun,
                                and the worker retires to win its thread back.
    timeout                     one long request among free threads is no fault; when
                                every thread has made no progress for that long the
                                worker can serve nobody, and it retires.

Pool threads write their own entry (`begin`, `progress`, `end`: one dict operation each,
keyed by thread, so no lock; the native engine's worker writes the same entries through
its C twins, prefork/_native_worker.c); the worker's main thread reads them all twice a
second (`check`) and acts on the verdict.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback

from prefork.http.request import Request
from prefork.wsgi import Exchange

log = logging.getLogger(__name__)

# One request a pool thread is running: when it began (for request_timeout), its last
# sign of progress (reading the body, writing: for `timeout`), the request and its
# exchange. A plain tuple: built once per request, where a class instance would cost a
# frame; replaced whole on progress.
Running = tuple[float, float, Request, Exchange]


class RequestWatch:
    def __init__(self, threads: int, timeout_s: float, request_timeout_s: float) -> None:
        self.threads = threads
        self.timeout_s = timeout_s
        self.request_timeout_s = request_timeout_s
        self.inflight: dict[int, Running] = {}  # thread ident -> what it runs
        self.stuck: set[int] = set()  # threads whose request was given up
        self.answered_504 = 0  # requests given up whose client got a 504
        self.all_stuck = False  # every thread was found stuck (said once: the worker retires)

    # -- pool threads --------------------------------------------------------------------------
    def begin(self, req: Request, exchange: Exchange) -> None:
        now = time.monotonic()
        self.inflight[threading.get_ident()] = (now, now, req, exchange)

    def end(self) -> None:
        self.inflight.pop(threading.get_ident(), None)

    def progress(self) -> None:
        ident = threading.get_ident()
        run = self.inflight.get(ident)
        if run is not None:
            self.inflight[ident] = (run[0], time.monotonic(), run[2], run[3])

    # -- the worker's main thread ------------------------------------------------------------
    def check(self, now: float) -> str | None:
        """Give up requests past request_timeout (504 where no response has begun); the
        reason the worker should retire, if it should (each logged with the stacks)."""
        verdict = None
        stalled = []
        for ident, run in list(self.inflight.items()):
            began, active, _req, _exchange = run
            age = now - began
            if self.request_timeout_s and ident not in self.stuck and age > self.request_timeout_s:
                self._give_up(ident, run, age)
                verdict = "request_timeout"
            if self.timeout_s and now - active > self.timeout_s:
                stalled.append(ident)
        if len(stalled) >= self.threads and not self.all_stuck:
            self.all_stuck = True
            log.error("every thread (%d) has made no progress for over %.0f s (timeout); "
                      "retiring this worker. Their stacks:\n%s", len(stalled), self.timeout_s,
                      "\n".join(self.describe(ident) for ident in stalled))
            verdict = "every thread stuck"
        return verdict

    def abandoned(self) -> int:
        """Requests given up that are still running (a stopping worker leaves them)."""
        return sum(1 for ident in self.stuck if ident in self.inflight)

    def describe(self, ident: int) -> str:
        """A running request and the Python stack of its thread, for the error log."""
        run = self.inflight.get(ident)
        frame = sys._current_frames().get(ident)
        stack = "".join(traceback.format_stack(frame)) if frame else "  (thread gone)\n"
        what = f"{run[2].method} {run[2].uri}" if run else "(done)"
        return f"request {what}, thread {ident}:\n{stack.rstrip()}"

    def _give_up(self, ident: int, run: Running, age: float) -> None:
        self.stuck.add(ident)
        answered = run[3].time_out()
        self.answered_504 += answered
        log.error("request ran %.1f s, past request_timeout (%.0f s)%s; %s", age,
                  self.request_timeout_s,
                  "; answered 504" if answered else "; its response had begun",
                  self.describe(ident))
