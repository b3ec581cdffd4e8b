"""The head versions of the decks a process has sockets on: one read for all of them, at most
once per period, and a plain fallback when the read fails."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping
from uuid import UUID, uuid4

import pytest

from presto_deck.application.heads import DeckHeads
from presto_deck.application.ports import StorageError


class Reads:
    """The database's side: the decks' versions, and every read asked of it."""

    def __init__(self) -> None:
        self.versions: dict[UUID, int] = {}
        self.asked: list[set[UUID]] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def __call__(self, deck_ids: Collection[UUID]) -> Mapping[UUID, int]:
        self.asked.append(set(deck_ids))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise StorageError("connection refused", transient=True)
        return {d: self.versions[d] for d in deck_ids if d in self.versions}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def reads() -> Reads:
    return Reads()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def heads(reads: Reads, clock: Clock) -> DeckHeads:
    return DeckHeads(reads, max_age_seconds=1.0, clock=clock)


async def test_many_sockets_in_a_period_cost_one_read_of_every_watched_deck(
    heads: DeckHeads, reads: Reads, clock: Clock
) -> None:
    decks = [uuid4() for _ in range(50)]
    reads.versions = {deck: n + 2 for n, deck in enumerate(decks)}
    with contextlib.ExitStack() as sockets:
        for deck in decks:
            sockets.enter_context(heads.watching(deck))
        await _reads_once_per_period(heads, reads, clock, decks)


async def _reads_once_per_period(
    heads: DeckHeads, reads: Reads, clock: Clock, decks: list[UUID]
) -> None:
    answers = await asyncio.gather(*(heads.version(deck) for deck in decks * 4))

    assert answers == [n + 2 for n in range(50)] * 4
    assert reads.asked == [set(decks)]
    clock.now += 0.9
    await heads.version(decks[0])
    assert len(reads.asked) == 1
    clock.now += 0.2  # past the age: read again, once
    reads.versions[decks[0]] = 9
    assert await asyncio.gather(heads.version(decks[0]), heads.version(decks[1])) == [9, 3]
    assert len(reads.asked) == 2


async def test_a_deck_no_socket_watches_is_not_read_and_its_head_is_unknown(
    heads: DeckHeads, reads: Reads
) -> None:
    watched, closed = uuid4(), uuid4()
    reads.versions = {watched: 4, closed: 7}
    with heads.watching(watched), heads.watching(watched):
        with heads.watching(closed):
            pass
        assert await heads.version(closed) is None
    assert reads.asked == [{watched}]


async def test_a_failed_read_leaves_every_socket_to_look_for_itself(
    heads: DeckHeads, reads: Reads, clock: Clock
) -> None:
    deck = uuid4()
    reads.versions = {deck: 3}
    reads.fail = True
    with heads.watching(deck):
        assert await heads.version(deck) is None
        reads.fail = False
        clock.now += 1.1
        assert await heads.version(deck) == 3


async def test_a_socket_that_closes_while_waiting_does_not_cancel_the_others_read(
    heads: DeckHeads, reads: Reads
) -> None:
    deck = uuid4()
    reads.versions = {deck: 5}
    reads.gate = asyncio.Event()
    with heads.watching(deck):
        leaving = asyncio.create_task(heads.version(deck))
        staying = asyncio.create_task(heads.version(deck))
        await asyncio.sleep(0)
        leaving.cancel()
        await asyncio.sleep(0)
        reads.gate.set()
        assert await staying == 5
    assert leaving.cancelled()
    assert len(reads.asked) == 1


async def test_a_read_that_hangs_ends_at_its_timeout_and_leaves_no_socket_waiting(
    reads: Reads, clock: Clock
) -> None:
    """A connection that hangs (half-open, a frozen server) must not stop every socket's beat."""
    heads = DeckHeads(reads, max_age_seconds=1.0, timeout_seconds=0.1, clock=clock)
    deck = uuid4()
    reads.versions = {deck: 6}
    reads.gate = asyncio.Event()  # never set: the read hangs
    with heads.watching(deck):
        answers = await asyncio.wait_for(
            asyncio.gather(*(heads.version(deck) for _ in range(20))), 1
        )
        assert answers == [None] * 20
        reads.gate.set()
        clock.now += 1.1
        assert await heads.version(deck) == 6
