"""How the master judges a worker's death: what the worker said last counts, even when it
died before the master's loop came round to read it."""

from __future__ import annotations

import multiprocessing
import os
import selectors
import socket
import time

import pytest

from prefork import messages
from prefork.config import Config
from prefork.handle import WorkerHandle
from prefork.master import Master
from prefork.messages import Serving

pytestmark = pytest.mark.timeout(20)


def _say_then_die(channel: socket.socket, said: tuple[messages.Message, ...]) -> None:
    for msg in said:
        messages.send(channel, msg)
    os._exit(70)  # as a route that crashes its worker does


def _dead_worker(said: tuple[messages.Message, ...]) -> tuple[Master, WorkerHandle]:
    master = Master(Config())
    master.sel = selectors.DefaultSelector()
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent_end.setblocking(False)
    process = multiprocessing.get_context("fork").Process(target=_say_then_die,
                                                          args=(child_end, said))
    process.start()
    child_end.close()
    deadline = time.monotonic() + 10
    while process.is_alive():  # dead before the master's loop has read a word of it
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    now = time.monotonic()
    assert process.pid is not None
    handle = WorkerHandle(1, process.pid, process, parent_end, generation=1, started=now,
                          last_seen=now, ready=True)
    master.workers[1] = handle
    master.ever_ready = True
    master.sel.register(parent_end, selectors.EVENT_READ, handle)
    return master, handle


def test_a_worker_that_said_serving_and_died_at_once_is_no_boot_loop() -> None:
    master, _ = _dead_worker((messages.Ready(), Serving()))
    master._reap()
    assert master.workers == {}
    assert master.failures == 0, "its last words said it served: replaced at once"
    assert master.next_spawn == 0.0
    assert master.restarts == {"exit_70": 1}


def test_a_worker_that_died_before_serving_counts_towards_back_off() -> None:
    master, _ = _dead_worker((messages.Ready(),))
    master._reap()
    assert master.failures == 1, "it never served: a boot loop in the making"
    assert master.restarts == {"exit_70": 1}
