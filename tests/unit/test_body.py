"""The request body as the app reads it (prefork/http/request.py: Body), against io.BytesIO
over the same bytes: whatever the pieces it arrives in and however it is read (read of a
size or all, readline, iteration), the same bytes come back; and a body that arrives in
one piece and is read whole is that piece itself (no copy)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefork.http.request import Body

pytestmark = pytest.mark.timeout(120)

reads = st.lists(st.one_of(
    st.tuples(st.just("read"), st.integers(-1, 40)),
    st.tuples(st.just("readline"), st.integers(-1, 40)),
    st.tuples(st.just("readlines"), st.just(-1)),
), max_size=12)


def fed_by(pieces: list[bytes]) -> Body:
    """A body that pulls its pieces one by one when a read needs more, as a connection's
    fill does."""
    body = Body()
    queue = list(pieces)

    def fill() -> None:
        if queue:
            body.feed(queue.pop(0))
        else:
            body.finish()
    body.fill = fill
    return body


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=30).map(lambda b: b.replace(b"\0", b"\n")),
                max_size=6), reads, st.integers(0, 6))
def test_reads_give_what_a_file_gives(pieces: list[bytes], calls: list[tuple[str, int]],
                                      early: int) -> None:
    body = fed_by(pieces[early:])
    for piece in pieces[:early]:  # some arrive before the app reads (with the head)
        body.feed(piece)
    model = io.BytesIO(b"".join(pieces))
    for name, size in calls:
        got = getattr(body, name)(size) if name != "readlines" else body.readlines()
        want = getattr(model, name)(size) if name != "readlines" else model.readlines()
        assert got == want, (name, size)
        assert type(got) is type(want)
    assert body.read() == model.read()
    assert body.received == len(b"".join(pieces))


def test_one_piece_read_whole_is_not_copied() -> None:
    piece = b"x" * 16384
    body = Body()
    body.feed(piece)
    body.finish()
    assert body.read() is piece
    assert body.read() == b""


def test_pieces_after_a_partial_read_join_what_is_unread() -> None:
    body = Body()
    body.feed(b"abcdef")
    assert body.read(2) == b"ab"
    body.feed(b"gh")
    body.feed(b"ij")
    body.finish()
    assert body.read(3) == b"cde"
    assert body.readline() == b"fghij"


def test_drain_discards_within_its_bound() -> None:
    body = fed_by([b"a" * 10, b"b" * 10])
    body.feed(b"c" * 5)
    assert body.drain(100) and body.read() == b""
    body = fed_by([b"a" * 10, b"b" * 10])
    assert not body.drain(5)
