"""Cancelling a deck at each stage of its life, through the real API and arq worker (SPEC §5, §8):
202 while it is generated and DeckCancelled as its last event, 409 once it has ended."""

from __future__ import annotations

import asyncio
from uuid import UUID

import msgspec

from presto_deck.infrastructure.messaging import keys
from presto_deck.settings import Settings
from tests.support.client import (
    DeckClient,
    Frame,
    assert_contiguous,
    eventually,
    is_terminal,
    receive_events,
)
from tests.support.deck_http import events_via_http
from tests.support.generation import HeldWriter, job_finished, kill_mid_deck, worker_writing_with
from tests.support.running import RunningApi, running_worker

# -- helpers ---------------------------------------------------------------------------------------


async def cancel(client: DeckClient, deck_id: str) -> int:
    response = await client.http.post(f"/api/v1/decks/{deck_id}/cancel")
    if response.status_code == 202:
        assert response.json() == {"message": "Cancellation request received."}
    else:
        assert "detail" in response.json()
    return response.status_code


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
    history = await events_via_http(alice, deck_id)
    assert [(e["event_type"], e["version"], e["payload"]) for e in history] == [
        ("DeckCancelled", 2, {})
    ]
    assert await cancel(alice, deck_id) == 409
    async with running_worker(settings):
        await eventually(lambda: job_finished(api.container, UUID(deck_id)))
    assert await events_via_http(alice, deck_id) == history
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

    history = await events_via_http(alice, deck_id)
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

    history = await events_via_http(alice, deck_id)
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

    history = await events_via_http(alice, deck_id)
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
    history = await events_via_http(alice, deck_id)
    assert [event["event_type"] for event in history][-1] == "DeckCompleted"


async def test_cancelling_someone_elses_deck_answers_not_found_and_changes_nothing(
    alice: DeckClient, bob: DeckClient
) -> None:
    deck_id = await alice.create(slide_count=2)

    assert await cancel(bob, deck_id) == 404

    assert (await alice.deck(deck_id))["status"] == "PENDING"
    assert await events_via_http(alice, deck_id) == []


async def test_a_cancel_for_a_deck_whose_worker_died_is_honoured_by_the_worker_taking_over(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    deck_id = await alice.create(slide_count=5)
    await kill_mid_deck(api.container, UUID(deck_id), HeldWriter(hold_slide=2))

    assert await cancel(alice, deck_id) == 202
    assert (await alice.deck(deck_id))["status"] == "GENERATING"  # only its worker may end it

    async with running_worker(settings):
        deck = await alice.wait_for_status(deck_id, "CANCELLED", timeout=20)

    history = await events_via_http(alice, deck_id)
    assert_cancelled_after_slides(history, deck)
    assert len(deck["slides"]) == 2
