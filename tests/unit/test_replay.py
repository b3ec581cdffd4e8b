"""Replay merged with live events: each version once, in order, with no gap (SPEC §6).

The property test plays a socket against a "database" that keeps committing events while live
frames arrive dropped, repeated and out of order, as Pub/Sub and the stream may deliver them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presto_deck.application.replay import DeliveryCursor, EventDelivery, Inbox, Verdict
from presto_deck.domain.events import Event, decode_event, encode_event, peek_version

_DECK = "7d1c9d1e-0000-4000-8000-000000000042"


def _event(version: int) -> Event:
    return Event(
        event_type="SlideAdded",
        deck_id=_DECK,
        version=version,
        timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        payload={"order": version - 3},
    )


class _Database:
    """Events 2..``committed`` of one deck; ``commit`` appends the next one."""

    def __init__(self, committed: int) -> None:
        self.committed = committed
        self.reads = 0

    def commit(self) -> None:
        self.committed += 1

    async def history(self, after: int, limit: int) -> Sequence[Event]:
        self.reads += 1
        return [_event(v) for v in range(max(after + 1, 2), self.committed + 1)][:limit]


class _Socket:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def send(self, data: bytes) -> None:
        self.frames.append(data)

    @property
    def versions(self) -> list[int]:
        return [peek_version(frame).version for frame in self.frames]


def _delivery(delivered: int, db: _Database, page: int = 500) -> tuple[EventDelivery, _Socket]:
    socket = _Socket()
    return EventDelivery(DeliveryCursor(delivered), db.history, socket.send, page=page), socket


# -- the cursor -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "verdict"),
    [
        (1, Verdict.SKIP),
        (4, Verdict.SKIP),
        (5, Verdict.SKIP),
        (6, Verdict.SEND),
        (7, Verdict.BACKFILL),
        (60, Verdict.BACKFILL),
    ],
)
def test_the_cursor_skips_what_was_delivered_sends_the_next_and_backfills_a_gap(
    version: int, verdict: Verdict
) -> None:
    assert DeliveryCursor(5).judge(version) is verdict


def test_the_cursor_advances_only_to_the_next_version() -> None:
    cursor = DeliveryCursor(5)

    cursor.advance(6)

    assert cursor.delivered == 6
    for wrong in (6, 5, 8):
        with pytest.raises(ValueError, match="does not follow"):
            cursor.advance(wrong)
    assert cursor.delivered == 6


# -- delivery, example by example -----------------------------------------------------------------


async def test_catch_up_sends_every_persisted_event_after_the_cursor_in_order() -> None:
    delivery, socket = _delivery(3, _Database(committed=7))

    assert await delivery.catch_up() == 4

    assert socket.versions == [4, 5, 6, 7]
    assert [decode_event(f) for f in socket.frames] == [_event(v) for v in (4, 5, 6, 7)]
    assert delivery.cursor.delivered == 7


async def test_catch_up_reads_the_history_page_by_page() -> None:
    db = _Database(committed=9)
    delivery, socket = _delivery(1, db, page=3)

    assert await delivery.catch_up() == 8

    assert socket.versions == list(range(2, 10))
    assert db.reads == 3  # 2-4, 5-7, 8-9 (a short page ends it)


async def test_catch_up_with_nothing_new_sends_nothing() -> None:
    delivery, socket = _delivery(5, _Database(committed=5))

    assert await delivery.catch_up() == 0
    assert socket.frames == []


async def test_catch_up_stops_at_a_hole_in_the_log_rather_than_skip_a_version() -> None:
    async def holey(after: int, limit: int) -> Sequence[Event]:
        return [_event(v) for v in (3, 4, 6, 7) if v > after][:limit]

    socket = _Socket()
    delivery = EventDelivery(DeliveryCursor(2), holey, socket.send)

    assert await delivery.catch_up() == 2
    assert socket.versions == [3, 4]


async def test_a_live_frame_already_delivered_is_skipped() -> None:
    delivery, socket = _delivery(5, _Database(committed=5))

    await delivery.offer(encode_event(_event(4)))
    await delivery.offer(encode_event(_event(5)))

    assert socket.frames == []
    assert delivery.cursor.delivered == 5


async def test_the_next_live_frame_is_sent_as_the_very_same_bytes() -> None:
    db = _Database(committed=5)
    delivery, socket = _delivery(5, db)
    db.commit()
    frame = encode_event(_event(6))

    await delivery.offer(frame)

    assert socket.frames == [frame]
    assert socket.frames[0] is frame  # encoded once, reused for every socket
    assert db.reads == 0


async def test_a_live_frame_after_a_gap_backfills_the_gap_and_itself_from_the_database() -> None:
    db = _Database(committed=5)
    delivery, socket = _delivery(5, db)
    for _ in range(3):
        db.commit()  # 6 and 7 were lost on the way; 8 arrives

    await delivery.offer(encode_event(_event(8)))

    assert socket.versions == [6, 7, 8]
    assert delivery.cursor.delivered == 8
    await delivery.offer(encode_event(_event(7)))  # a late duplicate
    assert socket.versions == [6, 7, 8]


async def test_a_held_frame_waits_for_the_one_before_it_and_both_go_out_without_a_read() -> None:
    db = _Database(committed=5)
    delivery, socket = _delivery(5, db)
    db.commit()
    db.commit()  # 6 and 7, fanned out by two instances: 7 comes first

    await delivery.offer(encode_event(_event(7)), hold=True)
    held = (socket.versions[:], delivery.gap)
    await delivery.offer(encode_event(_event(6)), hold=True)

    assert held == ([], True)
    assert socket.versions == [6, 7]
    assert (delivery.gap, db.reads) == (False, 0)


async def test_a_gap_that_stays_open_is_read_from_the_database_and_held_frames_dropped() -> None:
    db = _Database(committed=5)
    delivery, socket = _delivery(5, db)
    for _ in range(3):
        db.commit()  # 6 was lost; 7 and 8 arrive

    await delivery.offer(encode_event(_event(8)), hold=True)
    await delivery.offer(encode_event(_event(7)), hold=True)
    await delivery.catch_up()
    await delivery.offer(encode_event(_event(6)), hold=True)  # late after all

    assert socket.versions == [6, 7, 8]
    assert not delivery.gap


# -- delivery, as a property ----------------------------------------------------------------------

_Op = tuple[str, int]
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.integers(min_value=1, max_value=3)),
        # A frame of one of the latest versions (the live path), or of any committed version
        # (a late repeat from the stream backlog or the outbox relay).
        st.tuples(st.just("offer_recent"), st.integers(min_value=0, max_value=3)),
        st.tuples(st.just("offer_any"), st.integers(min_value=0, max_value=10_000)),
        st.tuples(st.just("catch_up"), st.just(0)),
        # A frame held back behind a gap, as a socket does for a moment before it reads.
        st.tuples(st.just("hold_recent"), st.integers(min_value=0, max_value=3)),
    ),
    max_size=80,
)


@st.composite
def _scenarios(draw: st.DrawFn) -> tuple[int, int, int, int, list[_Op], list[int]]:
    final = draw(st.integers(min_value=1, max_value=40), label="final version N")
    last_version = draw(st.integers(min_value=1, max_value=final), label="last_version")
    at_connect = draw(st.integers(min_value=last_version, max_value=final), label="committed")
    page = draw(st.integers(min_value=1, max_value=6), label="page size")
    ops = draw(_ops, label="operations")
    commits_during_reads = draw(
        st.lists(st.integers(min_value=0, max_value=2), max_size=20), label="commits per read"
    )
    return final, last_version, at_connect, page, ops, commits_during_reads


def _check_prefix(sent: list[int], last_version: int) -> None:
    assert sent == list(range(last_version + 1, last_version + 1 + len(sent))), sent


async def _play(
    final: int,
    last_version: int,
    at_connect: int,
    page: int,
    ops: list[_Op],
    commits_during_reads: list[int],
) -> list[int]:
    db = _Database(committed=at_connect)
    pending_commits = iter(commits_during_reads)

    async def history(after: int, limit: int) -> Sequence[Event]:
        # Other transactions commit while the socket reads the log.
        for _ in range(next(pending_commits, 0)):
            if db.committed < final:
                db.commit()
        return await db.history(after, limit)

    socket = _Socket()
    delivery = EventDelivery(DeliveryCursor(last_version), history, socket.send, page=page)

    async def checked(step: Awaitable[object]) -> None:
        await step
        _check_prefix(socket.versions, last_version)

    async def offer(version: int) -> None:
        await checked(delivery.offer(encode_event(_event(version))))
        # A live frame never waits for the next heartbeat: once offered, it has been delivered.
        assert max([last_version, *socket.versions]) >= version

    # The socket subscribes first, then replays; live frames overlap the replay.
    await checked(delivery.catch_up())
    for op, arg in ops:
        # Publish follows commit: only committed versions are ever on the wire, and any of them
        # may come now, again, late, or never (drops, repeats, reorders).
        match op:
            case "commit":
                for _ in range(arg):
                    if db.committed < final:
                        db.commit()
            case "offer_recent" if db.committed - arg >= 2:
                await offer(db.committed - arg)
            case "offer_any" if db.committed >= 2:
                await offer(2 + arg % (db.committed - 1))
            case "catch_up":
                await checked(delivery.catch_up())
            case "hold_recent" if db.committed - arg >= 2:
                frame = encode_event(_event(db.committed - arg))
                await checked(delivery.offer(frame, hold=True))
    while db.committed < final:
        db.commit()
    await checked(delivery.catch_up())  # the next heartbeat
    return socket.versions


@settings(max_examples=400, deadline=None)
@given(_scenarios())
def test_each_version_is_sent_once_in_order_without_gap_whatever_the_live_path_does(
    scenario: tuple[int, int, int, int, list[_Op], list[int]],
) -> None:
    final, last_version, *_ = scenario

    sent = asyncio.run(_play(*scenario))

    assert sent == list(range(last_version + 1, final + 1))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=30),
    st.data(),
)
def test_live_frames_alone_deliver_everything_once_when_the_last_one_arrives(
    final: int, data: st.DataObject
) -> None:
    # No heartbeat at all: every frame of the history, shuffled with repeats, then the last one.
    versions = list(range(2, final + 1))
    frames = data.draw(
        st.lists(st.sampled_from(versions), max_size=60) if versions else st.just([])
    )

    async def play() -> list[int]:
        db = _Database(committed=final)
        delivery, socket = _delivery(1, db)
        for version in [*frames, *versions[-1:]]:
            await delivery.offer(encode_event(_event(version)))
            _check_prefix(socket.versions, 1)
        return socket.versions

    assert asyncio.run(play()) == versions


# -- a socket's inbox -----------------------------------------------------------------------------


async def test_an_inbox_hands_on_its_frames_oldest_first_and_drops_the_oldest_past_its_limit() -> (
    None
):
    inbox = Inbox(limit=3)
    for version in range(2, 7):
        inbox.put(encode_event(_event(version)))

    taken = []
    while (frame := inbox.pop()) is not None:
        taken.append(peek_version(frame).version)

    assert taken == [4, 5, 6]  # 2 and 3 dropped: a gap the delivery backfills
    assert len(inbox) == 0


async def test_an_inbox_wakes_its_reader_at_a_frame_a_catch_up_or_the_deadline() -> None:
    inbox = Inbox(limit=10)
    clock = asyncio.get_running_loop().time

    started = clock()
    await inbox.wait(clock() + 0.05)
    slept = clock() - started

    waiting = asyncio.create_task(inbox.wait(clock() + 30))
    await asyncio.sleep(0.01)
    inbox.put(b'{"version": 2}')
    await asyncio.wait_for(waiting, 1)

    inbox.pop()
    waiting = asyncio.create_task(inbox.wait(clock() + 30))
    await asyncio.sleep(0.01)
    inbox.catch_up_soon()
    await asyncio.wait_for(waiting, 1)

    assert 0.04 <= slept < 1
    assert inbox.told_to_catch_up()
    assert not inbox.told_to_catch_up()  # told once, asked once
