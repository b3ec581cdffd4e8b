"""What the worker guarantees (SPEC §8) on the real PostgreSQL, Redis and arq worker: versions
without a gap, idempotent jobs, nothing lost when a worker dies, no deck left behind."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from html import escape
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy.exc import IntegrityError

from presto_deck.application.ports import ModelCallBudget
from presto_deck.bootstrap import Container, Role, build_container
from presto_deck.domain.content import DeckBrief, DeckPlan, SlideContent
from presto_deck.domain.deck import DeckStatus
from presto_deck.domain.events import utc_now
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.queue import ArqJobQueue
from presto_deck.infrastructure.writers.offline import OfflineWriter
from presto_deck.settings import Settings
from presto_deck.worker import DeckWorker
from tests.support.client import eventually
from tests.support.database import execute, rows
from tests.support.generation import (
    HeldWriter,
    generator_for,
    job_finished,
    kill_mid_deck,
    worker_writing_with,
)
from tests.support.running import api_of, running_worker, worker_of

# -- helpers ---------------------------------------------------------------------------------------


async def deck_row(container: Container, deck_id: UUID) -> Any:
    [row] = await rows(container, "SELECT * FROM decks WHERE id = :id", id=deck_id)
    return row


async def status_of(container: Container, deck_id: UUID) -> str:
    return str((await deck_row(container, deck_id)).status)


async def wait_for_status(
    container: Container, deck_id: UUID, status: DeckStatus, timeout: float = 20
) -> None:
    async def reached() -> bool:
        return await status_of(container, deck_id) == status.value

    await eventually(reached, timeout)


async def new_deck(
    container: Container, slide_count: int, prompt: str = "The history of tea"
) -> UUID:
    deck = await api_of(container).decks.create(
        "alice", DeckBrief(prompt=prompt, slide_count=slide_count)
    )
    return deck.id


async def assert_generated_once(container: Container, deck_id: UUID, slide_count: int) -> None:
    """Events 2, 3, … with no gap or repeat; each slide exactly once; decks.version is the last."""
    events = await rows(
        container,
        "SELECT version, event_type, payload FROM deck_events WHERE deck_id = :id ORDER BY version",
        id=deck_id,
    )
    versions = [event.version for event in events]
    assert versions == list(range(2, 2 + len(events))), versions
    types = [event.event_type for event in events]
    assert types == ["DeckStarted", "PlanUpdated"] + ["SlideAdded"] * slide_count + [
        "DeckCompleted"
    ]
    deck = await deck_row(container, deck_id)
    assert deck.status == "COMPLETED"
    assert deck.version == versions[-1]
    assert deck.lease_owner is None
    slides = await rows(
        container,
        "SELECT id, slide_order FROM slides WHERE deck_id = :id ORDER BY slide_order",
        id=deck_id,
    )
    assert [slide.slide_order for slide in slides] == list(range(1, slide_count + 1))
    added = [event.payload["slide_id"] for event in events if event.event_type == "SlideAdded"]
    assert added == [str(slide.id) for slide in slides]


# -- versions --------------------------------------------------------------------------------------


async def test_versions_run_from_two_without_a_gap_and_the_deck_version_is_the_last_event(
    settings: Settings, container: Container
) -> None:
    sizes = [1, 3, 6]
    async with running_worker(settings):
        deck_ids = [await new_deck(container, size, f"Deck number {size}") for size in sizes]
        for deck_id in deck_ids:
            await wait_for_status(container, deck_id, DeckStatus.COMPLETED)

    for deck_id, size in zip(deck_ids, sizes, strict=True):
        await assert_generated_once(container, deck_id, size)
    totals = await rows(
        container,
        "SELECT d.id, d.version, max(e.version) AS last, count(e.*) AS n, min(e.version) AS first"
        " FROM decks d JOIN deck_events e ON e.deck_id = d.id GROUP BY d.id, d.version",
    )
    assert len(totals) == len(sizes)
    for deck in totals:
        assert deck.first == 2
        assert deck.version == deck.last == deck.n + 1


async def test_the_event_log_refuses_a_second_event_with_the_same_version(
    settings: Settings, container: Container
) -> None:
    deck_id = await new_deck(container, 1)
    assert await worker_of(container).generator.generate(deck_id) is DeckStatus.COMPLETED

    with pytest.raises(IntegrityError, match="uq_deck_events_deck_version"):
        await execute(
            container,
            "INSERT INTO deck_events (deck_id, version, event_type, payload)"
            " VALUES (:id, 2, 'DeckStarted', '{}')",
            id=deck_id,
        )


# -- idempotent jobs -------------------------------------------------------------------------------


async def test_enqueuing_the_same_deck_several_times_makes_one_job(
    settings: Settings, container: Container
) -> None:
    deck_id = await new_deck(container, 3)  # creating it queued the first job
    queue = ArqJobQueue(container.redis)

    await asyncio.gather(*(queue.enqueue_generation(deck_id) for _ in range(5)))
    await queue.enqueue_generation(deck_id)

    assert await container.redis.zrange(keys.QUEUE, 0, -1) == [
        keys.generation_job_id(deck_id).encode()
    ]
    async with running_worker(settings):
        await wait_for_status(container, deck_id, DeckStatus.COMPLETED)
        await eventually(lambda: job_finished(container, deck_id))
    await assert_generated_once(container, deck_id, 3)


async def test_runs_of_one_deck_at_the_same_time_leave_it_to_one_and_write_everything_once(
    container: Container,
) -> None:
    deck_ids = [await new_deck(container, 5, f"Concurrent deck {n}") for n in range(3)]
    # Two workers, each with a slight pause per slide so that their steps interleave; the first
    # gets each deck's job twice, as after a requeue.
    first = generator_for(container, OfflineWriter(slide_delay_ms=5), "worker-one")
    second = generator_for(container, OfflineWriter(slide_delay_ms=5), "worker-two")
    runs = [(deck_id, gen) for deck_id in deck_ids for gen in (first, second, first)]

    statuses = await asyncio.gather(*(gen.generate(deck_id) for deck_id, gen in runs))

    for deck_id in deck_ids:
        mine = [status for (of, _), status in zip(runs, statuses, strict=True) if of == deck_id]
        assert sorted(mine, key=str) == [DeckStatus.COMPLETED, None, None]
        await assert_generated_once(container, deck_id, 5)


async def test_running_a_finished_deck_again_changes_nothing(container: Container) -> None:
    deck_id = await new_deck(container, 4)
    assert await worker_of(container).generator.generate(deck_id) is DeckStatus.COMPLETED
    before = await deck_row(container, deck_id)

    assert await worker_of(container).generator.generate(deck_id) is DeckStatus.COMPLETED
    other = generator_for(container, OfflineWriter(slide_delay_ms=0), "another-worker")
    assert await other.generate(deck_id) is DeckStatus.COMPLETED

    assert await deck_row(container, deck_id) == before
    await assert_generated_once(container, deck_id, 4)


async def test_a_redelivered_job_for_a_completed_deck_does_nothing(
    settings: Settings, container: Container
) -> None:
    deck_id = await new_deck(container, 3)  # its job stays queued: no worker runs yet
    assert await worker_of(container).generator.generate(deck_id) is DeckStatus.COMPLETED
    before = await deck_row(container, deck_id)
    assert not await job_finished(container, deck_id)

    async with running_worker(settings):
        await eventually(lambda: job_finished(container, deck_id))

    assert await deck_row(container, deck_id) == before
    await assert_generated_once(container, deck_id, 3)


async def test_a_run_that_froze_while_planning_never_stores_its_plan_after_a_takeover(
    container: Container,
) -> None:
    deck_id = await new_deck(container, 3)
    # The frozen run asks its model for a plan and freezes past its lease; the run that takes
    # over stores a plan of its own. Two calls to an LLM give two different plans.
    frozen_writer = HeldWriter(hold_plan=True, retitle="Second take: ")
    successor_writer = HeldWriter(hold_slide=0)
    frozen = asyncio.create_task(
        generator_for(container, frozen_writer, "frozen").generate(deck_id)
    )
    await asyncio.wait_for(frozen_writer.held.wait(), 10)
    await execute(
        container,
        "UPDATE decks SET lease_expires_at = now() - interval '1 second' WHERE id = :id",
        id=deck_id,
    )
    successor = asyncio.create_task(
        generator_for(container, successor_writer, "successor").generate(deck_id)
    )
    await asyncio.wait_for(successor_writer.held.wait(), 10)  # its plan is stored

    frozen_writer.release.set()
    assert await asyncio.wait_for(frozen, 10) is None  # fenced: it stopped without writing
    successor_writer.release.set()
    assert await asyncio.wait_for(successor, 10) is DeckStatus.COMPLETED

    await assert_generated_once(container, deck_id, 3)
    deck = await deck_row(container, deck_id)
    assert not any(o["title"].startswith("Second take") for o in deck.deck_plan["slides"])
    slides = await rows(
        container,
        "SELECT html_content FROM slides WHERE deck_id = :id ORDER BY slide_order",
        id=deck_id,
    )
    for outline, slide in zip(deck.deck_plan["slides"], slides, strict=True):
        assert escape(outline["title"], quote=False) in slide.html_content
        assert "Second take" not in slide.html_content


class CrashingWriter(HeldWriter):
    """A writer with a bug: slide ``crash_at`` raises something that is not a WriterError."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self._crash_at = crash_at

    async def write_slide(
        self,
        brief: DeckBrief,
        plan: DeckPlan,
        index: int,
        budget: ModelCallBudget | None = None,
    ) -> SlideContent:
        if index == self._crash_at:
            raise KeyError("layout")
        return await super().write_slide(brief, plan, index, budget)


async def test_a_writer_that_crashes_fails_the_deck_instead_of_leaving_it_to_the_sweep(
    container: Container,
) -> None:
    deck_id = await new_deck(container, 4)

    status = await generator_for(container, CrashingWriter(crash_at=2), "w").generate(deck_id)

    assert status is DeckStatus.FAILED
    events = await rows(
        container,
        "SELECT version, event_type, payload FROM deck_events WHERE deck_id = :id ORDER BY version",
        id=deck_id,
    )
    assert [event.version for event in events] == [2, 3, 4, 5, 6]
    assert [event.event_type for event in events][-1] == "DeckFailed"
    assert events[-1].payload["code"] == "writer_failed"
    assert "KeyError" not in events[-1].payload["error"]  # the detail is in the log
    deck = await deck_row(container, deck_id)
    assert (deck.status, deck.version, deck.lease_owner) == ("FAILED", 6, None)
    assert (await worker_of(container).recovery.sweep()).requeued == 0


# -- a dead worker loses nothing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "writer_kwargs", "slides_before"),
    [
        pytest.param("PLANNING", {"hold_plan": True}, 0, id="while-planning"),
        pytest.param("GENERATING", {"hold_slide": 3}, 3, id="after-slide-3"),
    ],
)
async def test_a_deck_whose_worker_died_mid_deck_is_finished_by_another_worker(
    settings: Settings,
    container: Container,
    stage: str,
    writer_kwargs: dict[str, Any],
    slides_before: int,
) -> None:
    deck_id = await new_deck(container, 6)  # queued as arq job generate:<deck_id>
    await kill_mid_deck(container, deck_id, HeldWriter(**writer_kwargs))
    assert await status_of(container, deck_id) == stage
    kept = await rows(
        container, "SELECT id FROM slides WHERE deck_id = :id ORDER BY slide_order", id=deck_id
    )
    assert len(kept) == slides_before

    started = time.monotonic()
    async with running_worker(settings):
        await wait_for_status(container, deck_id, DeckStatus.COMPLETED, timeout=30)
    took = time.monotonic() - started

    assert took < 15, f"recovery took {took:.1f}s with a 2s lease"
    await assert_generated_once(container, deck_id, 6)
    after = await rows(
        container, "SELECT id FROM slides WHERE deck_id = :id ORDER BY slide_order", id=deck_id
    )
    assert after[:slides_before] == kept  # continued after the committed slides, not rewritten


async def test_a_worker_stopped_mid_deck_leaves_it_for_the_next_worker(
    settings: Settings, container: Container
) -> None:
    deck_id = await new_deck(container, 5)
    stopping = build_container(settings, Role.WORKER)
    writer = HeldWriter(hold_slide=2)
    services = worker_of(stopping)
    services.generator = generator_for(stopping, writer, services.worker_id)
    worker = DeckWorker(stopping, handle_signals=False)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(writer.held.wait(), 10)
        await worker.stop(task, grace=0.1)  # a deploy that would not wait
    finally:
        writer.release.set()
        await stopping.close()
    assert await status_of(container, deck_id) == "GENERATING"

    async with running_worker(settings):
        await wait_for_status(container, deck_id, DeckStatus.COMPLETED, timeout=20)

    await assert_generated_once(container, deck_id, 5)


async def test_a_pending_deck_whose_job_was_lost_is_queued_again_and_completes(
    settings: Settings, container: Container
) -> None:
    deck_id = await new_deck(container, 3)
    await container.redis.flushdb()  # Redis restarted: the queue is gone, PostgreSQL is not

    async with running_worker(settings):
        await wait_for_status(container, deck_id, DeckStatus.COMPLETED, timeout=20)

    await assert_generated_once(container, deck_id, 3)


async def test_a_deck_whose_worker_is_alive_is_not_queued_again(container: Container) -> None:
    deck_id = await new_deck(container, 3)
    await container.redis.flushdb()
    writer = HeldWriter(hold_slide=1)
    alive = asyncio.create_task(generator_for(container, writer, "alive").generate(deck_id))
    try:
        await asyncio.wait_for(writer.held.wait(), 10)
        first_deadline: datetime = (await deck_row(container, deck_id)).lease_expires_at

        async def first_lease_lapsed() -> bool:
            return utc_now() > first_deadline + timedelta(milliseconds=100)

        await eventually(first_lease_lapsed, timeout=10)

        report = await worker_of(container).recovery.sweep()

        assert report.requeued == 0
        assert (await deck_row(container, deck_id)).lease_owner.startswith("alive/")
        assert await container.redis.zcard(keys.QUEUE) == 0
    finally:
        writer.release.set()
    assert await alive is DeckStatus.COMPLETED
    await assert_generated_once(container, deck_id, 3)


async def test_a_job_freed_while_its_worker_still_runs_it_is_not_started_twice_there(
    settings: Settings, container: Container
) -> None:
    # The sweep frees the job of a deck whose lease lapsed (here: on purpose, as after a renewal
    # that failed); the worker that still runs it must not start it a second time.
    deck_id = await new_deck(container, 4)
    writer = HeldWriter(hold_slide=1)
    async with worker_writing_with(settings, writer) as worker:
        await asyncio.wait_for(writer.held.wait(), 10)
        await ArqJobQueue(container.redis).requeue_generation(deck_id)
        later = await new_deck(container, 1, "A deck queued after the freed job")
        # The worker polls jobs oldest first: once it has started the later deck, it has seen
        # the freed job, and passed it by.
        await wait_for_status(container, later, DeckStatus.COMPLETED)
        writer.release.set()
        await wait_for_status(container, deck_id, DeckStatus.COMPLETED)
        await eventually(lambda: job_finished(container, deck_id))
        assert (worker.arq.jobs_complete, worker.arq.jobs_failed) == (2, 0)
    await assert_generated_once(container, deck_id, 4)
