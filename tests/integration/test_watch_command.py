"""``presto-deck watch`` follows a deck from a terminal."""

from __future__ import annotations

import json

import pytest

from presto_deck.watch import WatchError, watch
from tests.support.client import DeckClient, assert_contiguous
from tests.support.running import RunningApi


async def test_watch_prints_every_event_as_a_json_line_until_the_deck_ends(
    api: RunningApi, alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Field guide to moths", slide_count=3)
    lines: list[str] = []

    last = await watch(api.url, deck_id, alice.token, 1, follow=False, emit=lines.append)

    events = [json.loads(line) for line in lines]
    assert [e["event_type"] for e in events][-1] == "DeckCompleted"
    assert_contiguous(events, first=2)
    assert last == events[-1]["version"] == 7


async def test_watch_resumes_from_a_version_and_prints_nothing_before_it(
    api: RunningApi, alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Field guide to moths", slide_count=2)
    await alice.wait_for_status(deck_id, "COMPLETED")
    lines: list[str] = []

    await watch(api.url, deck_id, alice.token, 4, follow=False, emit=lines.append)

    assert [json.loads(line)["version"] for line in lines] == [5, 6]


async def test_watch_stops_with_the_close_reason_when_the_server_refuses(
    api: RunningApi, alice: DeckClient, bob: DeckClient
) -> None:
    deck_id = await alice.create("Private deck")

    with pytest.raises(WatchError, match="4404"):
        await watch(api.url, deck_id, bob.token, 1, follow=False, emit=print)
    with pytest.raises(WatchError, match="4401"):
        await watch(api.url, deck_id, "not-a-token", 1, follow=False, emit=print)
