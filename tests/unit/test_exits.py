"""What the master makes of a worker's exit: words, labels, back-off, the crash-log limit."""

from __future__ import annotations

import signal

import pytest

from prefork import exits
from prefork.messages import ExitStatus

pytestmark = pytest.mark.timeout(10)


def test_a_boot_loop_is_replaced_at_once_then_backs_off_doubling_to_a_cap() -> None:
    assert [exits.backoff(n) for n in range(1, 6)] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert exits.backoff(40) == exits.BACKOFF_MAX_S


@pytest.mark.parametrize(("code", "retired", "label", "words"), [
    (-signal.SIGKILL, False, "signal_SIGKILL", "killed by signal SIGKILL (likely the kernel's"),
    (-signal.SIGKILL, True, "retired", "killed by signal SIGKILL"),
    (-signal.SIGSEGV, False, "signal_SIGSEGV", "killed by signal SIGSEGV"),
    (ExitStatus.APP_LOAD, False, "app_load", "could not load the app"),
    (1, False, "exit_1", "exited with status 1"),
])
def test_an_exit_is_described_and_labelled(code: int, retired: bool, label: str,
                                           words: str) -> None:
    assert exits.label(code, retired) == label
    assert exits.describe(code, killed_by_us=retired).startswith(words)
    if retired:
        assert "out-of-memory" not in exits.describe(code, killed_by_us=True)


def test_crashes_after_serving_log_the_first_then_one_summary_per_period() -> None:
    report = exits.CrashReport()
    assert report.note(100.0, "worker 1 died") == "worker 1 died"
    assert report.note(101.0, "worker 2 died") is None
    assert report.note(102.0, "worker 1 died again") is None
    assert report.flush(105.0) is None  # the period has not ended
    summary = report.flush(100.0 + exits.CRASH_REPORT_S)
    assert summary is not None and summary.startswith("2 more worker crash(es)")
    assert summary.endswith("worker 1 died again")
    assert report.flush(200.0) is None  # said once
