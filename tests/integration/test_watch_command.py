"""``presto-deck watch`` follows a deck from a terminal."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import pytest

from presto_deck.watch import WatchError, server_url, watch
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

    with pytest.raises(WatchError, match="404"):
        await watch(api.url, deck_id, bob.token, 1, follow=False, emit=print)
    with pytest.raises(WatchError, match="401"):
        await watch(api.url, deck_id, "not-a-token", 1, follow=False, emit=print)
    with pytest.raises(WatchError, match="4404"):
        await watch(api.url, deck_id, bob.token, 1, follow=True, emit=print)
    with pytest.raises(WatchError, match="4401"):
        await watch(api.url, deck_id, "not-a-token", 1, follow=True, emit=print)


async def test_watch_prints_the_edits_of_an_ended_deck_up_to_its_version_then_stops(
    api: RunningApi, alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Field guide to moths", slide_count=2)
    deck = await alice.wait_for_status(deck_id, "COMPLETED")
    first = deck["slides"][0]["id"]
    edited = await alice.http.patch(f"/api/v1/decks/{deck_id}/slides/{first}", json={"notes": "n"})
    version = edited.json()["version"]
    lines: list[str] = []

    last = await watch(api.url, deck_id, alice.token, 1, follow=False, emit=lines.append)
    caught_up = await watch(api.url, deck_id, alice.token, version, follow=False, emit=print)

    events = [json.loads(line) for line in lines]
    assert [e["event_type"] for e in events][-2:] == ["DeckCompleted", "SlideUpdated"]
    assert last == version == events[-1]["version"]
    assert caught_up == version


async def test_watch_says_once_that_the_server_cannot_be_reached_and_keeps_trying() -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    warnings: list[str] = []

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2.5):
            await watch(
                f"http://127.0.0.1:{port}",
                str(uuid.uuid4()),
                "token",
                1,
                follow=False,
                emit=print,
                warn=warnings.append,
            )

    assert len(warnings) == 1
    assert warnings[0].startswith(f"cannot reach http://127.0.0.1:{port}: ")


async def test_watch_gives_up_after_its_tries_naming_where_it_tried() -> None:
    port = _free_port()
    warnings: list[str] = []

    with pytest.raises(WatchError) as gave_up:
        async with asyncio.timeout(10):
            await watch(
                f"127.0.0.1:{port}",
                str(uuid.uuid4()),
                "t",
                1,
                follow=False,
                emit=print,
                warn=warnings.append,
                tries=3,
            )

    assert str(gave_up.value).startswith(f"cannot reach http://127.0.0.1:{port} after 3 tries: ")
    assert len(warnings) == 1


async def test_watch_takes_a_server_without_a_scheme_and_says_when_nothing_is_left(
    api: RunningApi, alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Field guide to moths", slide_count=2)
    deck = await alice.wait_for_status(deck_id, "COMPLETED")
    lines: list[str] = []
    warnings: list[str] = []
    address = api.url.removeprefix("http://")

    last = await watch(
        address,
        deck_id,
        alice.token,
        deck["version"],
        follow=False,
        emit=lines.append,
        warn=warnings.append,
    )

    assert last == deck["version"]
    assert lines == []
    assert warnings == [
        f"the deck has ended at version {deck['version']}: no event after version {last}"
    ]


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("decks.example.com", "http://decks.example.com"),
        ("https://decks.example.com/", "https://decks.example.com"),
        ("wss://decks.example.com", "https://decks.example.com"),
        ("HTTP://h:1", "http://h:1"),
    ],
)
def test_the_server_may_be_given_with_or_without_a_scheme(given: str, url: str) -> None:
    assert server_url(given) == url


def test_a_server_of_another_scheme_is_refused() -> None:
    with pytest.raises(WatchError, match="expected host:port or an http"):
        server_url("ftp://h")


def _free_port() -> int:
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
