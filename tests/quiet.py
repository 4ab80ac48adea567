"""For the tests that count memory, descriptors or references across the whole process:
they measure only the code under test when no other thread runs. `alone` waits for any
thread an earlier test left (a load's clients finishing) and fails naming them otherwise,
so a leftover reads as what it is, not as a leak in the code under test."""

from __future__ import annotations

import threading

from tests.server import wait_for


def alone(timeout: float = 30.0) -> None:
    def others() -> list[str]:
        return [t.name for t in threading.enumerate() if t is not threading.current_thread()]

    try:
        wait_for(lambda: not others(), timeout=timeout, interval=0.05,
                 what="the other threads of this process to end")
    except AssertionError as exc:
        raise AssertionError(f"threads an earlier test left running: {others()}; "
                             "this test counts the whole process's memory") from exc
