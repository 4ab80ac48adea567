"""What the master makes of a worker's exit: its cause in words and as a /metrics label,
the back-off before replacing a worker that died before serving (a boot loop), and the
rate limit on logging workers that crash after serving.

The policy itself (replace at once, back off, stop) is the master's; this module only
describes and counts. Touched only by the master's main thread.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from prefork.messages import ExitStatus

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
CRASH_REPORT_S = 10.0  # crashes after serving: at most one log line per this period


def backoff(failures: int) -> float:
    """Seconds to wait before the next worker after `failures` deaths before serving in a
    row: the first is replaced at once, then 0.5 s doubling, capped at 30 s."""
    return 0.0 if failures <= 1 else min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (failures - 2))


def label(code: int | None, retired: bool) -> str:
    """The cause as /metrics counts worker restarts (prefork_worker_restarts_total)."""
    if retired:
        return "retired"
    if code == ExitStatus.APP_LOAD:
        return "app_load"
    if code is not None and code < 0:
        return f"signal_{signal.Signals(-code).name}"
    return f"exit_{code}"


@dataclass(slots=True)
class CrashReport:
    """Rate-limits the log of workers that crash after serving: a route that kills its
    worker on every hit must not flood the error log. The first crash in a quiet period
    is logged at once; those within CRASH_REPORT_S of it are counted and summed up in
    one line (with the last cause) when the period ends."""

    since: float = -CRASH_REPORT_S * 2  # when the current period began
    count: int = 0  # crashes in it not yet logged
    last: str = ""

    def note(self, now: float, what: str) -> str | None:
        """A crash; returns the line to log now, if any."""
        if now - self.since >= CRASH_REPORT_S and not self.count:
            self.since = now
            return what
        self.count += 1
        self.last = what
        return None

    def flush(self, now: float) -> str | None:
        """The summary line of a period that has ended, if it had unlogged crashes."""
        if not self.count or now - self.since < CRASH_REPORT_S:
            return None
        line = (f"{self.count} more worker crash(es) in the last {now - self.since:.0f} s, "
                f"each replaced at once; the last: {self.last}")
        self.since, self.count = now, 0
        return line


def describe(code: int | None, killed_by_us: bool) -> str:
    """A worker's exit in words, for the log and the status page."""
    if code is not None and code < 0:
        sig = -code
        cause = f"killed by signal {signal.Signals(sig).name}"
        if sig == signal.SIGKILL and not killed_by_us:
            cause += " (likely the kernel's out-of-memory killer)"
        return cause
    if code == ExitStatus.APP_LOAD:
        return "could not load the app"
    return f"exited with status {code}"
