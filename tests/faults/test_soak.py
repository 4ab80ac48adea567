"""The chaos soak (tests/soak.py) for 60 seconds: mixed load under HUP, TTIN/TTOU, USR2,
SIGKILL, memory and max_requests recycling and request_timeout; every answer verified."""

from __future__ import annotations

import pytest

from tests.soak import Soak


@pytest.mark.timeout(240)
def test_chaos_soak_loses_nothing_it_may_not() -> None:
    soak = Soak(seconds=60, clients=6)
    report = soak.run()
    print("\n" + report.text(60))
    print(f"  recycled by max_requests: {soak.log.count('; recycling')}, "
          f"by memory: {soak.log.count('over max_worker_memory')}")
    assert report.verified > 10_000, "the load ran"
    # Every kind of chaos ran (the driver tries each once early on, then at random). Not a
    # total count: one action can take 30 s on a loaded machine (leaking into every worker).
    for action in ("hup", "ttin", "ttou", "usr2", "kill", "leak", "hang"):
        assert report.chaos[action] >= 1, (action, report.chaos)
    # On a breach, the server's own account too: what it warned of, killed or gave up.
    noteworthy = [line for line in soak.log.splitlines()
                  if any(word in line for word in ("WARNING", "ERROR", "kill", "timeout"))]
    assert report.unexplained == [], report.text(60) + "\n" + "\n".join(noteworthy[:80])
    assert report.timeouts_answered >= 1, "a hung request was answered 504"
    assert "recycling" in soak.log, "max_requests recycled a worker"
    assert "max_worker_memory" in soak.log, "the leak was recycled"
