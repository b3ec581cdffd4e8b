"""The contract every deck must meet once the faults are over, checked from outside."""

from __future__ import annotations

import asyncio
import random

from tests.faults.conftest import FaultRun
from tests.support.client import DeckClient, Frame, assert_contiguous
from tests.support.deck_http import events_via_http
from tests.support.sockets import replayed_after

_TERMINAL = {"DeckCompleted", "DeckFailed", "DeckCancelled"}
_ENDED = {"COMPLETED", "FAILED", "CANCELLED"}


async def wait_until_ended(client: DeckClient, deck_ids: list[str], timeout: float) -> None:
    """Every deck reaches a terminal state within ``timeout`` seconds, or the test fails."""
    pending = set(deck_ids)
    try:
        async with asyncio.timeout(timeout):
            while pending:
                for deck_id in list(pending):
                    if (await client.deck(deck_id))["status"] in {
                        "COMPLETED",
                        "FAILED",
                        "CANCELLED",
                    }:
                        pending.discard(deck_id)
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"decks still not ended after {timeout}s: {sorted(pending)}") from None


async def assert_contract(
    client: DeckClient, deck_id: str, run: FaultRun, *, status: str, slides: int | None = None
) -> list[Frame]:
    """The deck ended as ``status``: events 2..version with one terminal event last, each
    slide exactly once, and the same events replayed over a socket from several versions."""
    deck = await client.deck(deck_id)
    assert deck["status"] == status, deck["status"]
    history = await events_via_http(client, deck_id)
    assert_contiguous(history, first=2)
    assert history[-1]["version"] == deck["version"]
    types = [event["event_type"] for event in history]
    assert [t for t in types if t in _TERMINAL] == [types[-1]], types
    added = [event["payload"] for event in history if event["event_type"] == "SlideAdded"]
    assert [p["order"] for p in added] == list(range(1, len(added) + 1)), "a slide twice or lost"
    assert [p["slide_id"] for p in added] == [s["id"] for s in deck["slides"]]
    if status == "COMPLETED":
        count = len(deck["slides"]) if slides is None else slides
        assert types == ["DeckStarted", "PlanUpdated", *["SlideAdded"] * count, "DeckCompleted"]
        assert history[-1]["payload"] == {"slide_count": count}
    for version in _replay_points(deck["version"]):
        assert await replayed_after(client, deck_id, version) == history[version - 1 :]
        run.replays += 1
    run.decks += 1
    run.events += len(history)
    return history


def _replay_points(final: int) -> list[int]:
    """The start, the end, and two versions in between."""
    middle = random.sample(range(2, final), min(2, max(final - 2, 0))) if final > 2 else []
    return sorted({1, *middle, final})
