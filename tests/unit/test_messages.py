"""The master↔worker messages: what a worker sends is what the master reads back,
through a real SEQPACKET socketpair as the two processes use it."""

from __future__ import annotations

import socket

import pytest

from prefork import messages
from prefork.messages import Heartbeat, Ready, Reload, Retire, Serving
from prefork.metrics import WorkerMetrics

pytestmark = pytest.mark.timeout(10)


def _snapshot() -> object:
    m = WorkerMetrics()
    m.observe("GET", 200, 0.003, 0, 12)
    m.reject(408)
    return m.snapshot()


@pytest.mark.parametrize("msg", [
    Ready(), Serving(), Reload(), Retire("served 1000 requests"), Retire("non-ascii é"),
    Heartbeat(3, 1200, 7, 2), Heartbeat(0, 5, 1, 0, _snapshot()),  # type: ignore[arg-type]
], ids=repr)
def test_what_a_worker_sends_the_master_reads(msg: messages.Message) -> None:
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with master_end, worker_end:
        messages.send(worker_end, msg)
        got = messages.receive(master_end)
    if isinstance(msg, Heartbeat) and msg.metrics is not None:
        assert isinstance(got, Heartbeat)
        # JSON has no tuples: compare the counts, not the container types.
        assert [list(r) for r in got.metrics["requests"]] == [  # type: ignore[index]
            list(r) for r in msg.metrics["requests"]]
        assert got.metrics["rejected"] == msg.metrics["rejected"]  # type: ignore[index]
        assert got.metrics["buckets"] == msg.metrics["buckets"]  # type: ignore[index]
    else:
        assert got == msg


@pytest.mark.parametrize("raw", [b"", b"hb", b"hb {", b"hb {\"busy\": 1}", b"hello",
                                 b"hb [1,2]", b"readyx"])
def test_an_unreadable_message_is_ignored_not_fatal(raw: bytes) -> None:
    assert messages.decode(raw) is None


def test_a_closed_end_reads_as_closed_and_an_empty_one_as_nothing() -> None:
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    master_end.setblocking(False)
    assert messages.receive(master_end) is None
    worker_end.close()
    assert messages.receive(master_end) is messages.CLOSED
    master_end.close()
    messages.send(master_end, Ready())  # a closed channel drops the message quietly
