"""A prompt becomes a deck that streams live, through the real API, worker, PostgreSQL and Redis."""

from __future__ import annotations

from tests.support.client import DeckClient, assert_contiguous
from tests.support.sockets import watch_from_start


async def test_deck_streams_started_plan_each_slide_and_completed(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Why tea matters", slide_count=4)
    events = await watch_from_start(alice, deck_id)

    types = [event["event_type"] for event in events]
    assert types == ["DeckStarted", "PlanUpdated"] + ["SlideAdded"] * 4 + ["DeckCompleted"]
    assert_contiguous(events, first=2)
    assert all(event["deck_id"] == deck_id for event in events)
    deck = await alice.deck(deck_id)
    assert deck["status"] == "COMPLETED"
    assert deck["version"] == 8
    assert [slide["order"] for slide in deck["slides"]] == [1, 2, 3, 4]
    assert events[-1]["payload"] == {"slide_count": 4}
    assert len(deck["deck_plan"]["slides"]) == 4
