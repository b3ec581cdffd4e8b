"""DeckService: create, read, list and cancel decks, on fakes of the ports."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from loguru import logger

from presto_deck.application.limits import ActiveDecksExceeded, CreationRateExceeded
from presto_deck.domain.content import DeckBrief
from presto_deck.domain.deck import DeckAlreadyFinished, DeckNotFound, DeckStatus
from tests.unit.fakes import (
    FakeClock,
    FakeIntegrityError,
    FakeWriter,
    Harness,
    UnlimitedBudget,
    new_deck,
)


@pytest.fixture
def h() -> Harness:
    return Harness()


async def _generating(h: Harness, user_id: str = "alice") -> UUID:
    """Create a deck and take it to GENERATING as a worker would (started, planned)."""
    deck = await h.create(user_id)
    async with h.store.uow() as uow:
        locked = await uow.decks.lock(deck.id)
        assert locked is not None
        locked.start(h.clock())
        plan = await FakeWriter(3).plan(locked.brief, UnlimitedBudget())
        locked.set_plan(plan, h.clock())
        await uow.decks.save(locked)
        await uow.commit()
    return deck.id


# -- create ---------------------------------------------------------------------------------------


async def test_create_stores_a_pending_deck_at_version_1_and_enqueues_it_once(h: Harness) -> None:
    deck = await h.service.create("alice", DeckBrief(prompt="solar energy", slide_count=5))

    stored = h.store.deck(deck.id)
    assert (stored.status, stored.version, stored.user_id) == (DeckStatus.PENDING, 1, "alice")
    assert stored.brief == DeckBrief(prompt="solar energy", slide_count=5)
    assert h.store.events(deck.id) == []
    assert h.publisher.published == []
    assert h.queue.enqueued == [deck.id]


async def test_create_uses_the_given_title(h: Harness) -> None:
    deck = await h.create(title="Energy 2030")

    assert h.store.deck(deck.id).title == "Energy 2030"


async def test_create_without_a_title_uses_the_prompt_on_one_line_as_placeholder(
    h: Harness,
) -> None:
    deck = await h.create(prompt="  solar\n and   wind  ")

    assert h.store.deck(deck.id).title == "solar and wind"


async def test_a_long_prompt_gives_a_placeholder_title_cut_with_an_ellipsis(h: Harness) -> None:
    deck = await h.create(prompt="word " * 400)

    title = h.store.deck(deck.id).title
    assert title.endswith("…")
    assert len(title) <= 80


async def test_the_same_idempotency_key_returns_the_same_deck_and_enqueues_nothing_new(
    h: Harness,
) -> None:
    brief = DeckBrief(prompt="solar energy", slide_count=3)

    first = await h.service.create("alice", brief, idempotency_key="key-1")
    again = await h.service.create("alice", brief, idempotency_key="key-1")

    assert again.id == first.id
    assert h.queue.enqueued == [first.id]
    assert [d.id for d in (await h.service.list("alice", 10, 0)).decks] == [first.id]


async def test_the_same_idempotency_key_from_another_user_is_another_deck(h: Harness) -> None:
    brief = DeckBrief(prompt="solar energy", slide_count=3)

    alice = await h.service.create("alice", brief, idempotency_key="key-1")
    bob = await h.service.create("bob", brief, idempotency_key="key-1")

    assert alice.id != bob.id
    assert h.queue.enqueued == [alice.id, bob.id]


async def test_different_idempotency_keys_make_different_decks(h: Harness) -> None:
    brief = DeckBrief(prompt="solar energy", slide_count=3)

    first = await h.service.create("alice", brief, idempotency_key="key-1")
    second = await h.service.create("alice", brief, idempotency_key="key-2")

    assert first.id != second.id
    assert h.queue.enqueued == [first.id, second.id]


async def test_a_failed_enqueue_still_returns_the_stored_deck_and_the_sweep_queues_it(
    h: Harness,
) -> None:
    h.queue.fail = True

    deck = await h.create()

    assert h.store.deck(deck.id).status is DeckStatus.PENDING
    h.queue.fail = False
    h.clock.advance(h.lease_seconds + 1)  # no worker took the deck within the grace period
    report = await h.recovery.sweep()
    assert report.requeued == 1
    assert h.queue.requeued == [deck.id]


# -- creation limits ------------------------------------------------------------------------------


async def test_creations_past_the_rate_are_refused_with_the_wait_until_the_oldest_leaves() -> None:
    h = Harness(creations_per_minute=3)
    for _ in range(3):
        await h.create()
        h.clock.advance(10)

    with pytest.raises(CreationRateExceeded) as refused:
        await h.create()

    assert refused.value.retry_after == 30  # the first creation leaves the minute 30 s from now
    assert "try again in 30 s" in str(refused.value)
    assert len(h.queue.enqueued) == 3
    assert (await h.service.list("alice", 10, 0)).total == 3
    h.clock.advance(30)
    await h.create()  # the window slid past the first creation


async def test_a_refused_creation_is_not_counted_against_the_rate() -> None:
    h = Harness(creations_per_minute=1)
    await h.create()
    h.clock.advance(30)
    with pytest.raises(CreationRateExceeded):
        await h.create()

    h.clock.advance(30)

    await h.create()


async def test_a_creation_refused_for_too_many_active_decks_is_not_counted_against_the_rate() -> (
    None
):
    h = Harness(creations_per_minute=2, max_active_decks=1)
    first = await h.create()
    for _ in range(3):  # a client that retries as told
        with pytest.raises(ActiveDecksExceeded):
            await h.create()
    await h.service.cancel("alice", first.id)

    await h.create()  # the second creation of the minute: the refusals did not count


async def test_the_creation_rate_is_counted_per_user() -> None:
    h = Harness(creations_per_minute=1)
    await h.create("alice")

    await h.create("bob")

    with pytest.raises(CreationRateExceeded):
        await h.create("alice")


async def test_a_replayed_idempotency_key_is_neither_counted_nor_refused() -> None:
    h = Harness(creations_per_minute=2, max_active_decks=3)
    brief = DeckBrief(prompt="solar energy", slide_count=3)
    first = await h.service.create("alice", brief, idempotency_key="key-1")
    replays = [await h.service.create("alice", brief, idempotency_key="key-1") for _ in range(5)]
    second = await h.create()  # the second creation of the minute: within both limits

    with pytest.raises(CreationRateExceeded):
        await h.create()
    again = await h.service.create("alice", brief, idempotency_key="key-1")

    assert {deck.id for deck in [*replays, again]} == {first.id}
    assert h.creations.checks == 3  # first, second and the refused one; no replay
    assert h.queue.enqueued == [first.id, second.id]


async def test_a_user_with_the_most_active_decks_is_refused_until_one_ends() -> None:
    h = Harness(max_active_decks=2)
    first = await h.create()
    await h.create()

    with pytest.raises(ActiveDecksExceeded) as refused:
        await h.create()
    await h.service.cancel("alice", first.id)
    third = await h.create()

    assert refused.value.retry_after == 5
    assert "cancel one" in str(refused.value)
    assert h.store.deck(third.id).status is DeckStatus.PENDING
    assert len(h.queue.enqueued) == 3


async def test_finished_decks_and_other_users_decks_do_not_count_as_active() -> None:
    h = Harness(max_active_decks=1)
    done = await h.create("alice")
    await h.generator(FakeWriter(1)).generate(done.id)
    await h.create("bob")

    await h.create("alice")

    assert (await h.service.list("alice", 10, 0)).total == 2


async def test_concurrent_creations_cannot_both_take_the_last_active_slot() -> None:
    h = Harness(max_active_decks=3)

    outcomes = await asyncio.gather(*(h.create() for _ in range(10)), return_exceptions=True)

    assert sum(not isinstance(o, BaseException) for o in outcomes) == 3
    assert all(isinstance(o, ActiveDecksExceeded) for o in outcomes if isinstance(o, Exception))
    assert (await h.service.list("alice", 100, 0)).total == 3


async def test_an_unavailable_rate_count_lets_the_creation_through() -> None:
    h = Harness(creations_per_minute=1)
    await h.create()
    h.creations.fail = True
    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="WARNING")
    try:
        deck = await h.create()
    finally:
        logger.remove(sink)

    assert h.store.deck(deck.id).status is DeckStatus.PENDING
    assert h.queue.enqueued[-1] == deck.id
    assert any("rate not checked" in line for line in logged), logged


# -- get, list, events ----------------------------------------------------------------------------


async def test_get_returns_the_deck_with_its_slides_in_order(h: Harness) -> None:
    deck = await h.create(slide_count=3)
    await h.generator(FakeWriter(3)).generate(deck.id)

    view = await h.service.get("alice", deck.id)

    assert view.deck.status is DeckStatus.COMPLETED
    assert [s.order for s in view.slides] == [1, 2, 3]


async def test_current_version_is_the_stored_version(h: Harness) -> None:
    deck = await h.create()
    await h.generator(FakeWriter(2)).generate(deck.id)

    assert await h.service.current_version("alice", deck.id) == 6


async def test_events_after_returns_the_persisted_events_after_a_version_in_order(
    h: Harness,
) -> None:
    deck = await h.create()
    await h.generator(FakeWriter(2)).generate(deck.id)

    events = await h.service.events_after("alice", deck.id, 3)

    assert [(e.version, e.event_type) for e in events] == [
        (4, "SlideAdded"),
        (5, "SlideAdded"),
        (6, "DeckCompleted"),
    ]
    assert [e.version for e in await h.service.events_after("alice", deck.id, 1, limit=2)] == [2, 3]


async def test_history_reads_events_without_an_owner_check(h: Harness) -> None:
    deck = await h.create()
    await h.generator(FakeWriter(1)).generate(deck.id)

    assert [e.version for e in await h.service.history(deck.id, 2, 100)] == [3, 4, 5]


@pytest.mark.parametrize("use_case", ["get", "current_version", "events_after", "cancel"])
async def test_another_users_deck_is_not_found_exactly_like_a_missing_one(
    h: Harness, use_case: str
) -> None:
    deck = await h.create("alice")

    async def call(user_id: str, deck_id: UUID) -> object:
        match use_case:
            case "get":
                return await h.service.get(user_id, deck_id)
            case "current_version":
                return await h.service.current_version(user_id, deck_id)
            case "events_after":
                return await h.service.events_after(user_id, deck_id, 0)
            case _:
                await h.service.cancel(user_id, deck_id)
                return None

    with pytest.raises(DeckNotFound) as foreign:
        await call("bob", deck.id)
    missing_id = uuid4()
    with pytest.raises(DeckNotFound) as missing:
        await call("bob", missing_id)

    assert type(foreign.value) is type(missing.value)
    assert str(foreign.value) == str(deck.id)
    assert str(missing.value) == str(missing_id)
    assert h.store.deck(deck.id).status is DeckStatus.PENDING
    assert h.store.deck(deck.id).cancel_requested is False


async def test_list_shows_only_the_callers_decks(h: Harness) -> None:
    mine = await h.create("alice")
    await h.create("bob")

    page = await h.service.list("alice", 10, 0)

    assert [d.id for d in page.decks] == [mine.id]
    assert page.total == 1


async def test_list_is_newest_first_and_paginated() -> None:
    h = Harness(clock=FakeClock(step=timedelta(seconds=1)))
    created = [await h.create(prompt=f"deck {i}") for i in range(5)]
    newest_first = [d.id for d in reversed(created)]

    pages = [await h.service.list("alice", 2, offset) for offset in (0, 2, 4, 6)]

    assert [[d.id for d in p.decks] for p in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:5],
        [],
    ]
    assert {p.total for p in pages} == {5}


# -- cancel ---------------------------------------------------------------------------------------


async def test_cancelling_a_pending_deck_cancels_it_and_publishes_deck_cancelled(
    h: Harness,
) -> None:
    deck = await h.create()

    await h.service.cancel("alice", deck.id)

    stored = h.store.deck(deck.id)
    assert (stored.status, stored.version) == (DeckStatus.CANCELLED, 2)
    [event] = h.store.events(deck.id)
    assert (event.event_type, event.version, event.payload) == ("DeckCancelled", 2, {})
    assert h.publisher.published == [event]
    assert h.store.unpublished(deck.id) == []
    assert h.flags.requested == set()


async def test_cancelling_a_generating_deck_sets_the_request_and_flag_without_an_event(
    h: Harness,
) -> None:
    deck = h.store.deck(await _generating(h))
    events_before = h.store.events(deck.id)

    await h.service.cancel("alice", deck.id)

    stored = h.store.deck(deck.id)
    assert stored.status is DeckStatus.GENERATING
    assert stored.cancel_requested is True
    assert stored.version == deck.version
    assert h.store.events(deck.id) == events_before
    assert h.flags.requested == {deck.id}


async def test_cancelling_twice_while_generating_is_accepted_both_times(h: Harness) -> None:
    deck_id = await _generating(h)

    await h.service.cancel("alice", deck_id)
    await h.service.cancel("alice", deck_id)

    assert h.store.deck(deck_id).cancel_requested is True


async def test_the_durable_cancel_request_survives_a_failed_flag(h: Harness) -> None:
    deck_id = await _generating(h)
    h.flags.fail = True

    await h.service.cancel("alice", deck_id)

    assert h.store.deck(deck_id).cancel_requested is True


@pytest.mark.parametrize(
    "ending", [DeckStatus.COMPLETED, DeckStatus.FAILED, DeckStatus.CANCELLED], ids=str
)
async def test_cancelling_a_finished_deck_raises_deck_already_finished(
    h: Harness, ending: DeckStatus
) -> None:
    deck = await h.create()
    match ending:
        case DeckStatus.COMPLETED:
            await h.generator(FakeWriter(1)).generate(deck.id)
        case DeckStatus.FAILED:
            await h.generator(FakeWriter(fail_plan="no model")).generate(deck.id)
        case DeckStatus.CANCELLED:
            await h.service.cancel("alice", deck.id)
    before = h.store.deck(deck.id)
    published = list(h.publisher.published)

    with pytest.raises(DeckAlreadyFinished):
        await h.service.cancel("alice", deck.id)

    after = h.store.deck(deck.id)
    assert (after.status, after.version, after.cancel_requested) == (ending, before.version, False)
    assert h.publisher.published == published


async def test_a_cancelled_pending_deck_whose_publish_fails_is_left_for_the_relay(
    h: Harness,
) -> None:
    deck = await h.cancelled_while_the_stream_is_down()

    assert h.store.deck(deck.id).status is DeckStatus.CANCELLED
    assert [e.event_type for e in h.store.unpublished(deck.id)] == ["DeckCancelled"]


# -- the fake unit of work the tests above rely on ------------------------------------------------


async def test_the_fake_unit_of_work_discards_what_was_not_committed(h: Harness) -> None:
    deck = new_deck()

    async with h.store.uow() as uow:
        await uow.decks.add(deck)
        assert await uow.decks.get(deck.id) is not None  # a transaction sees its own writes
        async with h.store.uow() as other:
            assert await other.decks.get(deck.id) is None  # nobody else does before the commit

    async with h.store.uow() as uow:
        assert await uow.decks.get(deck.id) is None


async def test_the_fake_unit_of_work_refuses_a_duplicate_event_version(h: Harness) -> None:
    deck = new_deck()
    h.store.put(deck)
    stale = h.store.deck(deck.id)
    async with h.store.uow() as uow:
        locked = await uow.decks.lock(deck.id)
        assert locked is not None
        locked.start(h.clock())
        await uow.decks.save(locked)
        await uow.commit()

    stale.start(h.clock())  # a writer that skipped the lock: version 2 again
    async with h.store.uow() as uow:
        with pytest.raises(FakeIntegrityError):
            await uow.decks.save(stale)


async def test_the_fake_lock_serializes_transactions_on_a_deck(h: Harness) -> None:
    deck = new_deck()
    h.store.put(deck)
    order: list[str] = []
    first_locked = asyncio.Event()

    async def first() -> None:
        async with h.store.uow() as uow:
            await uow.decks.lock(deck.id)
            first_locked.set()
            await asyncio.sleep(0)
            order.append("first commits")
            await uow.commit()

    async def second() -> None:
        await first_locked.wait()
        async with h.store.uow() as uow:
            await uow.decks.lock(deck.id)
            order.append("second locked")

    await asyncio.gather(first(), second())

    assert order == ["first commits", "second locked"]


async def test_a_queue_that_hangs_delays_a_creation_by_a_bounded_time(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("presto_deck.application.decks._QUEUE_SECONDS", 0.05)
    h.queue.hang = True

    deck = await asyncio.wait_for(h.create(), timeout=5)

    assert h.store.deck(deck.id).status is DeckStatus.PENDING  # the sweep will queue it
