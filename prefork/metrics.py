"""Per-worker counters and a latency histogram, and their sum across workers.

Pool threads update a worker's `WorkerMetrics` at the end of each request: a handful of
integer additions on plain dicts and lists. Racing threads can, very rarely, lose an
increment (`+=` on a shared int is not atomic); that is the price of no lock on the hot
path, and an error of that size does not change what an operator concludes. Each second
the worker's main thread sends `snapshot()` to the master with its heartbeat; the master
keeps the latest snapshot of each worker and sums them for /metrics.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TypedDict

# Request-duration histogram buckets, in seconds (Prometheus' defaults, plus 25 ms steps
# at the low end where a fast app lives).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
REJECT_REASONS = ("bad_request", "limit", "timeout")


class Snapshot(TypedDict):
    """One worker's counters as it sends them to the master (JSON-friendly)."""

    requests: list[tuple[str, str, int]]  # (method, status class, count)
    buckets: list[int]  # duration histogram, one count per BUCKETS bound and +Inf
    sum: float  # seconds
    count: int
    rejected: dict[str, int]  # by REJECT_REASONS
    bytes_in: int
    bytes_out: int


class Totals(TypedDict):
    """Snapshots summed (what /metrics reports); requests keyed by (method, class)."""

    requests: dict[tuple[str, str], int]
    buckets: list[int]
    sum: float
    count: int
    rejected: dict[str, int]
    bytes_in: int
    bytes_out: int


class WorkerMetrics:
    __slots__ = ("bytes_in", "bytes_out", "duration_buckets", "duration_count",
                 "duration_sum", "rejected", "requests")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}  # (method, status // 100) -> count
        self.duration_buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.duration_sum = 0.0
        self.duration_count = 0
        self.rejected = dict.fromkeys(REJECT_REASONS, 0)
        self.bytes_in = 0
        self.bytes_out = 0

    def observe(self, method: str, status: int, seconds: float, body_in: int,
                body_out: int) -> None:
        key = (method, status // 100)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        self.duration_buckets[bisect_left(BUCKETS, seconds)] += 1
        self.duration_sum += seconds
        self.duration_count += 1
        self.bytes_in += body_in
        self.bytes_out += body_out

    def reject(self, status: int) -> None:
        reason = "timeout" if status == 408 else ("limit" if status in (413, 414, 431)
                                                  else "bad_request")
        self.rejected[reason] += 1

    def snapshot(self) -> Snapshot:
        return {
            "requests": [(m, STATUS_CLASSES[min(max(c, 1), 5) - 1], n)
                         for (m, c), n in list(self.requests.items())],
            "buckets": list(self.duration_buckets),
            "sum": self.duration_sum,
            "count": self.duration_count,
            "rejected": dict(self.rejected),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


def merge_snapshots(snapshots: list[Snapshot]) -> Snapshot:
    """Sum snapshots into one snapshot (the same shape a worker sends)."""
    total = merge(snapshots)
    return {**total, "requests": [(m, c, n) for (m, c), n in total["requests"].items()]}


def merge(snapshots: list[Snapshot]) -> Totals:
    """Sum worker snapshots (and those of workers that have gone, kept by the master).
    A snapshot comes from another process: a missing field counts as zero."""
    total: Totals = {"requests": {}, "buckets": [0] * (len(BUCKETS) + 1), "sum": 0.0,
                     "count": 0, "rejected": dict.fromkeys(REJECT_REASONS, 0),
                     "bytes_in": 0, "bytes_out": 0}
    for snap in snapshots:
        for method, cls, n in snap.get("requests", []):
            total["requests"][(method, cls)] = total["requests"].get((method, cls), 0) + n
        for i, n in enumerate(snap.get("buckets", [])[: len(total["buckets"])]):
            total["buckets"][i] += n
        total["sum"] += snap.get("sum", 0.0)
        total["count"] += snap.get("count", 0)
        for reason, n in snap.get("rejected", {}).items():
            total["rejected"][reason] = total["rejected"].get(reason, 0) + n
        total["bytes_in"] += snap.get("bytes_in", 0)
        total["bytes_out"] += snap.get("bytes_out", 0)
    return total
