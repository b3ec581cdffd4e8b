"""Nothing stays stuck: the sweep requeues decks whose worker died and relays the outbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID

import pytest

from presto_deck.application.publishing import EventPublishing
from presto_deck.domain.deck import DeckStatus, Lease
from tests.unit.fakes import FakeWriter, Harness, WorkerKilled


@pytest.fixture
def h() -> Harness:
    return Harness(lease_seconds=20)


async def _die_holding_the_lease(h: Harness, deck_id: UUID, at_slide: int = 1) -> None:
    """A worker is killed at slide ``at_slide`` and, as after ``kill -9``, keeps its lease."""
    with pytest.raises(WorkerKilled):
        await h.generator(FakeWriter(3, crash_slide={at_slide: WorkerKilled()}), "dead").generate(
            deck_id
        )
    async with h.store.uow() as uow:  # the release in `finally` never ran on the real kill
        deck = await uow.decks.lock(deck_id)
        assert deck is not None
        deck.lease = Lease(owner="dead", expires_at=h.clock() + timedelta(seconds=h.lease_seconds))
        await uow.decks.save(deck)
        await uow.commit()


# -- requeueing -----------------------------------------------------------------------------------


async def test_a_pending_deck_nobody_took_within_the_grace_period_is_requeued(h: Harness) -> None:
    deck = await h.create()
    h.clock.advance(h.lease_seconds + 1)

    report = await h.recovery.sweep()

    assert report.requeued == 1
    assert h.queue.requeued == [deck.id]


async def test_a_fresh_pending_deck_is_left_to_its_queued_job(h: Harness) -> None:
    await h.create()
    h.clock.advance(h.lease_seconds - 1)

    report = await h.recovery.sweep()

    assert report.requeued == 0
    assert h.queue.requeued == []


async def test_a_deck_whose_worker_died_is_requeued_once_its_lease_lapses(h: Harness) -> None:
    deck = await h.create()
    await _die_holding_the_lease(h, deck.id)

    h.clock.advance(h.lease_seconds - 1)
    assert (await h.recovery.sweep()).requeued == 0
    h.clock.advance(2)
    assert (await h.recovery.sweep()).requeued == 1

    assert h.queue.requeued == [deck.id]


async def test_a_requeued_deck_is_finished_by_another_worker_with_contiguous_events(
    h: Harness,
) -> None:
    deck = await h.create()
    await _die_holding_the_lease(h, deck.id, at_slide=1)
    h.clock.advance(h.lease_seconds + 1)
    await h.recovery.sweep()
    [requeued] = h.queue.requeued
    successor = FakeWriter(3)

    status = await h.generator(successor, "alive").generate(requeued)

    assert status is DeckStatus.COMPLETED
    assert successor.slide_calls == [1, 2]
    events = h.store.events(deck.id)
    assert [e.version for e in events] == list(range(2, 8))
    assert [e.event_type for e in events].count("SlideAdded") == 3


@pytest.mark.parametrize("ending", ["completed", "failed", "cancelled"])
async def test_a_finished_deck_is_never_requeued(h: Harness, ending: str) -> None:
    deck = await h.create()
    match ending:
        case "completed":
            await h.generator(FakeWriter(1)).generate(deck.id)
        case "failed":
            await h.generator(FakeWriter(fail_plan="down")).generate(deck.id)
        case "cancelled":
            await h.service.cancel("alice", deck.id)
    h.clock.advance(10 * h.lease_seconds)

    assert (await h.recovery.sweep()).requeued == 0
    assert h.queue.requeued == []


async def test_the_sweep_requeues_at_most_a_batch_oldest_first() -> None:
    h = Harness(lease_seconds=20)
    decks = []
    for _ in range(4):
        decks.append(await h.create())
        h.clock.advance(1)
    h.clock.advance(h.lease_seconds + 1)

    report = await h.recovery.sweep(batch=3)

    assert report.requeued == 3
    assert h.queue.requeued == [d.id for d in decks[:3]]


# -- the outbox relay -----------------------------------------------------------------------------


async def test_the_sweep_relays_events_that_were_committed_but_never_published(
    h: Harness,
) -> None:
    deck = await h.create()
    h.publisher.fail = True
    await h.generator(FakeWriter(2)).generate(deck.id)
    committed = h.store.events(deck.id)
    assert h.store.unpublished(deck.id) == committed
    h.publisher.fail = False
    h.clock.advance(5)

    report = await h.recovery.sweep()

    assert report.relayed == len(committed)
    assert h.publisher.published == committed
    assert h.store.unpublished(deck.id) == []


async def test_a_second_relay_publishes_nothing_again(h: Harness) -> None:
    await h.cancelled_while_the_stream_is_down()
    h.publisher.fail = False
    h.clock.advance(5)

    assert await h.publishing.relay() == 1
    assert await h.publishing.relay() == 0
    assert len(h.publisher.published) == 1


async def test_the_relay_leaves_events_younger_than_its_cutoff_to_the_live_path(
    h: Harness,
) -> None:
    await h.cancelled_while_the_stream_is_down()
    h.publisher.fail = False
    h.clock.advance(1)

    assert await h.publishing.relay(older_than_seconds=2) == 0
    h.clock.advance(2)
    assert await h.publishing.relay(older_than_seconds=2) == 1


async def test_a_relay_that_cannot_publish_keeps_the_events_for_the_next_sweep(
    h: Harness,
) -> None:
    deck = await h.cancelled_while_the_stream_is_down()
    h.clock.advance(5)

    assert (await h.recovery.sweep()).relayed == 0
    assert len(h.store.unpublished(deck.id)) == 1

    h.publisher.fail = False
    assert (await h.recovery.sweep()).relayed == 1
    assert h.store.unpublished(deck.id) == []


async def test_the_relay_publishes_each_decks_events_in_version_order_within_a_batch(
    h: Harness,
) -> None:
    first, second = await h.create(), await h.create()
    h.publisher.fail = True
    await h.generator(FakeWriter(2)).generate(first.id)
    await h.generator(FakeWriter(1)).generate(second.id)
    h.publisher.fail = False
    h.clock.advance(5)

    assert await h.publishing.relay(batch=3) == 3
    while await h.publishing.relay(batch=3):
        pass

    for deck in (first, second):
        versions = [e.version for e in h.publisher.published_for(deck.id)]
        assert versions == sorted(versions)
        assert versions == [e.version for e in h.store.events(deck.id)]


# -- publishing after a commit --------------------------------------------------------------------


async def test_publishing_nothing_succeeds_without_touching_the_stream(h: Harness) -> None:
    assert await h.publishing.publish([]) is True
    assert h.publisher.attempts == 0


async def test_a_failed_publish_reports_false_and_leaves_the_event_unpublished(
    h: Harness,
) -> None:
    deck = await h.cancelled_while_the_stream_is_down()
    [event] = h.store.unpublished(deck.id)

    assert await h.publishing.publish([event]) is False
    assert h.store.unpublished(deck.id) == [event]

    h.publisher.fail = False
    assert await h.publishing.publish([event]) is True
    assert h.store.unpublished(deck.id) == []


async def test_a_workers_publishes_are_marked_together_in_one_transaction_soon_after() -> None:
    h = Harness()
    decks = [await h.cancelled_while_the_stream_is_down() for _ in range(2)]
    h.publisher.fail = False  # one committed, unpublished event each
    publishing = EventPublishing(h.store.uow, h.publisher, h.clock, mark_after_seconds=0.05)
    events = [event for deck in decks for event in h.store.unpublished(deck.id)]
    commits = h.store.commits

    for event in events:
        assert await publishing.publish([event])
    assert h.store.commits == commits  # nothing marked yet: one batch, a moment later
    await asyncio.sleep(0.1)

    assert h.store.commits == commits + 1
    assert all(h.store.unpublished(deck.id) == [] for deck in decks)


async def test_the_relay_marks_what_is_published_before_it_looks_for_what_is_not() -> None:
    h = Harness()
    deck = await h.cancelled_while_the_stream_is_down()
    h.publisher.fail = False
    publishing = EventPublishing(h.store.uow, h.publisher, h.clock, mark_after_seconds=60)
    (event,) = h.store.unpublished(deck.id)
    assert await publishing.publish([event])
    h.clock.advance(10)

    assert await publishing.relay() == 0  # marked, not published a second time
    assert h.store.unpublished(deck.id) == []
    assert h.publisher.published.count(event) == 1
