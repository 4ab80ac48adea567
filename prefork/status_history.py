"""What the status page charts: one sample a second of the request counters and of the
worker table, kept for the last HISTORY_S seconds, and what they mean per second.

From consecutive samples: requests/s, mean latency, p50/p95/p99 latency estimated from the
duration histogram the workers keep (the bucket a rank falls in, interpolated linearly
inside it, as Prometheus's histogram_quantile does), and responses/s by status class 4xx
and 5xx. From consecutive worker tables: a timeline of worker starts, retirements
(recycling, a reload's old generation), ends with their cause as /metrics counts them,
and reloads (a new generation).

Owned by the admin listener (admin.AdminServer); only the master's main thread touches it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

from prefork.metrics import BUCKETS, Totals

HISTORY_S = 600  # ten minutes, one point a second
EVENTS = 200  # the timeline keeps the newest this many

EventKind = Literal["start", "retire", "exit", "reload"]
WorkerStateName = Literal["booting", "ready", "retiring"]
# One second of the chart: (wall time, requests/s, mean ms, p50 ms, p95 ms, p99 ms,
# 4xx responses/s, 5xx responses/s).
Row = tuple[float, float, float, float, float, float, float, float]


class Event(TypedDict):
    time: float  # wall clock, seconds
    kind: EventKind
    text: str


class Seen(TypedDict):
    """The fields of a worker row (admin.WorkerState) the timeline follows."""

    number: int
    pid: int
    state: WorkerStateName
    generation: int


@dataclass(frozen=True, slots=True)
class Sample:
    wall: float
    count: int
    seconds: float  # the duration sum
    buckets: tuple[int, ...]
    errors: tuple[int, int]  # 4xx, 5xx responses so far


def quantile(q: float, counts: Sequence[int]) -> float:
    """The q-quantile (seconds) of the durations counted in `counts` (one per BUCKETS
    bound, then +Inf): linear inside the bucket the rank falls in; the largest finite
    bound for the +Inf bucket; 0 with no durations."""
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = q * total
    below = 0
    for i, n in enumerate(counts):
        if n and below + n >= rank:
            if i >= len(BUCKETS):
                return BUCKETS[-1]
            lower = BUCKETS[i - 1] if i else 0.0
            return lower + (BUCKETS[i] - lower) * (rank - below) / n
        below += n
    return BUCKETS[-1]


def class_counts(totals: Totals) -> tuple[int, int]:
    """4xx and 5xx responses so far, as /metrics counts them (requests_total)."""
    fours = sum(n for (_, cls), n in totals["requests"].items() if cls == "4xx")
    fives = sum(n for (_, cls), n in totals["requests"].items() if cls == "5xx")
    return fours, fives


def row(a: Sample, b: Sample) -> Row:
    """The second between two consecutive samples (see Row)."""
    span = max(b.wall - a.wall, 1e-6)
    n = max(0, b.count - a.count)
    counts = [max(0, y - x) for x, y in zip(a.buckets, b.buckets, strict=False)]
    mean = (b.seconds - a.seconds) / n * 1000 if n else 0.0
    p50, p95, p99 = (quantile(q, counts) * 1000 for q in (0.5, 0.95, 0.99))
    return (round(b.wall, 1), n / span, mean, p50, p95, p99,
            max(0, b.errors[0] - a.errors[0]) / span, max(0, b.errors[1] - a.errors[1]) / span)


class History:
    def __init__(self) -> None:
        self.last: Sample | None = None
        self.rows: deque[Row] = deque(maxlen=HISTORY_S)
        self.events: deque[Event] = deque(maxlen=EVENTS)
        self.workers: dict[int, Seen] = {}  # by pid, as last sampled
        self.restarts: dict[str, int] = {}
        self.generation = 0

    def sample(self, wall: float, totals: Totals, workers: Sequence[Seen],
               restarts: dict[str, int]) -> None:
        """Once a second: the counters, and the changes in the worker table since the
        last sample, as events."""
        sample = Sample(wall, totals["count"], totals["sum"], tuple(totals["buckets"]),
                        class_counts(totals))
        if self.last is not None:
            self.rows.append(row(self.last, sample))
        self.last = sample
        self._follow(wall, workers, restarts)

    def _follow(self, wall: float, workers: Sequence[Seen], restarts: dict[str, int]) -> None:
        def event(kind: EventKind, text: str) -> None:
            self.events.append({"time": round(wall, 1), "kind": kind, "text": text})

        newest = max((w["generation"] for w in workers), default=self.generation)
        if newest > self.generation > 0:  # (0: the first sample)
            event("reload", f"reload: generation {newest} starts")
        self.generation = max(newest, self.generation)
        # Ends first, each with a cause that grew in /metrics' restart counts.
        causes = sorted(cause for cause, n in restarts.items()
                        for _ in range(n - self.restarts.get(cause, 0)))
        now = {w["pid"]: w for w in workers}
        for pid, seen in sorted(self.workers.items()):
            if pid not in now:
                cause = causes.pop(0) if causes else "gone"
                event("exit", f"worker {seen['number']} (pid {pid}) ended: {cause}")
        for pid, w in now.items():
            before = self.workers.get(pid)
            if before is None:
                event("start", f"worker {w['number']} started (pid {pid}, generation "
                               f"{w['generation']})")
            if w["state"] == "retiring" and (before is None or before["state"] != "retiring"):
                event("retire", f"worker {w['number']} (pid {pid}) retiring")
        self.workers = {pid: Seen(number=w["number"], pid=pid, state=w["state"],
                                  generation=w["generation"]) for pid, w in now.items()}
        self.restarts = dict(restarts)
