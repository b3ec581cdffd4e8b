"""Cancelling a deck at each stage of its life, through the real API and arq worker (SPEC §5, §8):
202 while it is generated and DeckCancelled as its last event, 409 once it has ended."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import msgspec
import sqlalchemy as sa
from arq import Worker
from arq.constants import in_progress_key_prefix, retry_key_prefix

from presto_deck.application.generation import DeckGenerator
from presto_deck.application.publishing import EventPublishing
from presto_deck.bootstrap import Container, build_container
from presto_deck.domain.content import DeckBrief, DeckPlan, SlideContent
from presto_deck.domain.events import utc_now
from presto_deck.infrastructure.db.unit_of_work import SqlUnitOfWork
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.queue import RedisCancelFlags
from presto_deck.infrastructure.messaging.stream import RedisStreamPublisher
from presto_deck.infrastructure.writers.offline import OfflineWriter
from presto_deck.infrastructure.writers.rendering import ThemeRenderer
from presto_deck.settings import Settings
from presto_deck.worker import build_worker, stop_gracefully
from tests.support.client import (
    DeckClient,
    Frame,
    assert_contiguous,
    eventually,
    is_terminal,
    receive_events,
)
from tests.support.running import RunningApi, running_worker

# -- helpers ---------------------------------------------------------------------------------------


class HeldWriter:
    """The offline writer, held while planning or before slide ``hold_slide`` until released."""

    name = "held-offline"

    def __init__(self, *, hold_plan: bool = False, hold_slide: int | None = None) -> None:
        self._offline = OfflineWriter(slide_delay_ms=0)
        self._hold_plan = hold_plan
        self._hold_slide = hold_slide
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def plan(self, brief: DeckBrief) -> DeckPlan:
        if self._hold_plan:
            await self._hold()
        return await self._offline.plan(brief)

    async def write_slide(self, brief: DeckBrief, plan: DeckPlan, index: int) -> SlideContent:
        if index == self._hold_slide:
            await self._hold()
        return await self._offline.write_slide(brief, plan, index)

    async def _hold(self) -> None:
        self.held.set()
        await self.release.wait()


def generator_for(container: Container, writer: Any, worker_id: str) -> DeckGenerator:
    """A generator wired as bootstrap wires it, with our own writer and worker id."""

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(container.engine)

    publisher = RedisStreamPublisher(container.redis, container.settings.stream_maxlen)
    return DeckGenerator(
        uow=uow,
        writer=writer,
        renderer=ThemeRenderer(),
        publishing=EventPublishing(uow, publisher, utc_now),
        cancel_flags=RedisCancelFlags(container.redis),
        clock=utc_now,
        worker_id=worker_id,
        lease_seconds=container.settings.worker_lease_seconds,
    )


@contextlib.asynccontextmanager
async def worker_writing_with(settings: Settings, writer: HeldWriter) -> AsyncIterator[Worker]:
    """The real arq worker, whose generator writes with ``writer``."""
    container = build_container(settings)
    container.generator = generator_for(container, writer, container.worker_id)
    worker = build_worker(container, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        writer.release.set()
        await stop_gracefully(worker, task)
        await container.close()


async def cancel(client: DeckClient, deck_id: str) -> int:
    response = await client.http.post(f"/api/v1/decks/{deck_id}/cancel")
    if response.status_code == 202:
        assert response.json() == {"message": "Cancellation request received."}
    else:
        assert "detail" in response.json()
    return response.status_code


async def events(client: DeckClient, deck_id: str) -> list[Frame]:
    response = await client.http.get(f"/api/v1/decks/{deck_id}/events", params={"after_version": 0})
    assert response.status_code == 200, response.text
    return list(response.json())


async def job_finished(api: RunningApi, deck_id: str) -> bool:
    """Whether arq has no job of the deck queued or running."""
    job_id = keys.generation_job_id(UUID(deck_id))
    queued = await api.container.redis.zscore(keys.QUEUE, job_id)
    running = await api.container.redis.exists(in_progress_key_prefix + job_id)
    return queued is None and not running


def assert_cancelled_after_slides(history: list[Frame], deck: Frame) -> None:
    """DeckCancelled ends a contiguous history, and every SlideAdded before it is kept."""
    assert_contiguous(history, first=2)
    types = [event["event_type"] for event in history]
    assert types[-1] == "DeckCancelled"
    assert types.count("DeckCancelled") == 1
    assert "DeckCompleted" not in types
    assert deck["status"] == "CANCELLED"
    assert deck["version"] == history[-1]["version"]
    added = [
        event["payload"]["slide_id"] for event in history if event["event_type"] == "SlideAdded"
    ]
    assert [slide["id"] for slide in deck["slides"]] == added
    assert [slide["order"] for slide in deck["slides"]] == list(range(1, len(added) + 1))


# -- each stage ------------------------------------------------------------------------------------


async def test_cancelling_a_pending_deck_cancels_it_at_once_and_its_job_then_does_nothing(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    deck_id = await alice.create(slide_count=3)  # no worker runs yet

    assert await cancel(alice, deck_id) == 202

    deck = await alice.deck(deck_id)
    assert deck["status"] == "CANCELLED"
    history = await events(alice, deck_id)
    assert [(e["event_type"], e["version"], e["payload"]) for e in history] == [
        ("DeckCancelled", 2, {})
    ]
    assert await cancel(alice, deck_id) == 409
    async with running_worker(settings):
        await eventually(lambda: job_finished(api, deck_id))
    assert await events(alice, deck_id) == history
    assert (await alice.deck(deck_id))["slides"] == []


async def test_cancelling_during_planning_stops_before_the_plan_is_stored(
    alice: DeckClient, settings: Settings
) -> None:
    writer = HeldWriter(hold_plan=True)
    async with worker_writing_with(settings, writer):
        deck_id = await alice.create(slide_count=4)
        await asyncio.wait_for(writer.held.wait(), 10)
        assert (await alice.deck(deck_id))["status"] == "PLANNING"
        async with alice.socket(deck_id, last_version=1) as ws:
            assert await cancel(alice, deck_id) == 202
            assert await cancel(alice, deck_id) == 202  # still planning: asking again is fine
            writer.release.set()
            streamed = await receive_events(ws, is_terminal)

        deck = await alice.wait_for_status(deck_id, "CANCELLED")

    history = await events(alice, deck_id)
    assert [event["event_type"] for event in history] == ["DeckStarted", "DeckCancelled"]
    assert [event["version"] for event in streamed] == [2, 3]
    assert_cancelled_after_slides(history, deck)
    assert deck["deck_plan"] is None
    assert await cancel(alice, deck_id) == 409


async def test_cancelling_during_generation_keeps_the_slides_written_so_far(
    alice: DeckClient, settings: Settings
) -> None:
    slow = msgspec.structs.replace(settings, offline_slide_delay_ms=200)
    async with running_worker(slow):
        deck_id = await alice.create(slide_count=10)
        async with alice.socket(deck_id, last_version=1) as ws:
            await receive_events(ws, lambda event: event["event_type"] == "SlideAdded")

            assert await cancel(alice, deck_id) == 202

            streamed = await receive_events(ws, is_terminal)
        deck = await alice.wait_for_status(deck_id, "CANCELLED")

    history = await events(alice, deck_id)
    assert_cancelled_after_slides(history, deck)
    assert streamed[-1] == history[-1]
    assert 1 <= len(deck["slides"]) < 10
    assert await cancel(alice, deck_id) == 409


async def test_a_cancel_whose_redis_flag_was_lost_is_honoured_at_the_next_commit(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    writer = HeldWriter(hold_slide=2)
    async with worker_writing_with(settings, writer):
        deck_id = await alice.create(slide_count=5)
        await asyncio.wait_for(writer.held.wait(), 10)  # two slides written, the third in hand

        assert await cancel(alice, deck_id) == 202
        assert await api.container.redis.delete(keys.cancel_flag(deck_id)) == 1
        writer.release.set()

        deck = await alice.wait_for_status(deck_id, "CANCELLED")

    history = await events(alice, deck_id)
    assert_cancelled_after_slides(history, deck)
    assert len(deck["slides"]) == 2


async def test_cancelling_a_completed_deck_is_a_conflict_and_changes_nothing(
    alice: DeckClient, settings: Settings
) -> None:
    async with running_worker(settings):
        deck_id = await alice.create(slide_count=2)
        before = await alice.wait_for_status(deck_id, "COMPLETED")

    assert await cancel(alice, deck_id) == 409

    assert await alice.deck(deck_id) == before
    assert [event["event_type"] for event in await events(alice, deck_id)][-1] == "DeckCompleted"


async def test_cancelling_someone_elses_deck_answers_not_found_and_changes_nothing(
    alice: DeckClient, bob: DeckClient
) -> None:
    deck_id = await alice.create(slide_count=2)

    assert await cancel(bob, deck_id) == 404

    assert (await alice.deck(deck_id))["status"] == "PENDING"
    assert await events(alice, deck_id) == []


async def test_a_cancel_for_a_deck_whose_worker_died_is_honoured_by_the_worker_taking_over(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    container = api.container
    deck_id = await alice.create(slide_count=5)
    writer = HeldWriter(hold_slide=2)
    doomed = asyncio.create_task(generator_for(container, writer, "doomed").generate(UUID(deck_id)))
    await asyncio.wait_for(writer.held.wait(), 10)
    doomed.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await doomed
    # What kill -9 leaves behind: a lapsing lease and an arq job stuck "in progress".
    async with container.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE decks SET lease_owner = 'doomed',"
                " lease_expires_at = now() + interval '1 second' WHERE id = :id"
            ),
            {"id": UUID(deck_id)},
        )
    job_id = keys.generation_job_id(UUID(deck_id))
    await container.redis.set(in_progress_key_prefix + job_id, b"1", px=3610_000)
    await container.redis.incr(retry_key_prefix + job_id)

    assert await cancel(alice, deck_id) == 202
    assert (await alice.deck(deck_id))["status"] == "GENERATING"  # only its worker may end it

    async with running_worker(settings):
        deck = await alice.wait_for_status(deck_id, "CANCELLED", timeout=20)

    history = await events(alice, deck_id)
    assert_cancelled_after_slides(history, deck)
    assert len(deck["slides"]) == 2
