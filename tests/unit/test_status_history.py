"""The status page's figures per second (prefork/status_history.py): latency quantiles
estimated from the histogram as Prometheus's histogram_quantile does, rates by status
class, and the timeline read from consecutive worker tables."""

from __future__ import annotations

import pytest

from prefork.metrics import BUCKETS, WorkerMetrics, merge
from prefork.status_history import History, Seen, WorkerStateName, quantile


def totals_of(durations: list[float], statuses: list[int]) -> WorkerMetrics:
    m = WorkerMetrics()
    for seconds, status in zip(durations, statuses, strict=True):
        m.observe("GET", status, seconds, 0, 0)
    return m


def test_quantiles_interpolate_inside_the_bucket_the_rank_falls_in() -> None:
    counts = [0] * (len(BUCKETS) + 1)
    counts[BUCKETS.index(0.01)] = 100  # all 100 durations in (0.005, 0.01]
    assert quantile(0.5, counts) == pytest.approx(0.0075)
    assert quantile(0.99, counts) == pytest.approx(0.005 + 0.005 * 0.99)
    counts[0] = 100  # and 100 more in (0, 0.001]
    assert quantile(0.25, counts) == pytest.approx(0.0005)
    assert quantile(0.75, counts) == pytest.approx(0.0075)
    assert quantile(0.5, [0] * (len(BUCKETS) + 1)) == 0.0
    overflow = [0] * len(BUCKETS) + [3]  # only beyond the last bound: that bound
    assert quantile(0.99, overflow) == BUCKETS[-1]


def test_rows_are_the_second_between_two_samples() -> None:
    history = History()
    first = totals_of([0.002] * 10, [200] * 10)
    history.sample(1000.0, merge([first.snapshot()]), [], {})
    assert list(history.rows) == []
    second = totals_of([0.002] * 10 + [0.02] * 90, [200] * 10 + [404] * 80 + [500] * 10)
    history.sample(1002.0, merge([second.snapshot()]), [], {})
    (t, rps, mean, p50, p95, p99, fours, fives), = history.rows
    assert t == 1002.0
    assert rps == pytest.approx(45.0)  # 90 more requests over 2 s
    assert mean == pytest.approx(20.0)
    assert 10.0 < p50 <= 25.0 and p50 <= p95 <= p99 <= 25.0
    assert (fours, fives) == (pytest.approx(40.0), pytest.approx(5.0))


def worker(number: int, pid: int, state: WorkerStateName = "ready",
           generation: int = 1) -> Seen:
    return Seen(number=number, pid=pid, state=state, generation=generation)


def test_the_timeline_follows_starts_retirements_ends_and_reloads() -> None:
    history = History()
    empty = merge([])
    history.sample(1.0, empty, [worker(1, 101), worker(2, 102)], {})
    history.sample(2.0, empty, [worker(1, 101, "retiring"), worker(2, 102, "retiring"),
                                worker(3, 201, "booting", 2), worker(4, 202, "booting", 2)],
                   {})
    history.sample(3.0, empty, [worker(3, 201, generation=2), worker(4, 202, generation=2)],
                   {"retired": 2})
    history.sample(4.0, empty, [worker(3, 201, generation=2), worker(4, 203, generation=2)],
                   {"retired": 2, "signal_SIGKILL": 1})
    seen = [(e["time"], e["kind"], e["text"]) for e in history.events]
    assert seen == [
        (1.0, "start", "worker 1 started (pid 101, generation 1)"),
        (1.0, "start", "worker 2 started (pid 102, generation 1)"),
        (2.0, "reload", "reload: generation 2 starts"),
        (2.0, "retire", "worker 1 (pid 101) retiring"),
        (2.0, "retire", "worker 2 (pid 102) retiring"),
        (2.0, "start", "worker 3 started (pid 201, generation 2)"),
        (2.0, "start", "worker 4 started (pid 202, generation 2)"),
        (3.0, "exit", "worker 1 (pid 101) ended: retired"),
        (3.0, "exit", "worker 2 (pid 102) ended: retired"),
        (4.0, "exit", "worker 4 (pid 202) ended: signal_SIGKILL"),
        (4.0, "start", "worker 4 started (pid 203, generation 2)"),
    ]
