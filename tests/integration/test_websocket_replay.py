"""``/ws/decks/{id}``: replay, live events, resumption and lost publishes, through the real API,
worker, PostgreSQL and Redis. Each connection must see each persisted version once, in order,
with no gap (SPEC §6)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from uuid import UUID

import msgspec
import pytest
import sqlalchemy as sa

from presto_deck.application.publishing import EventPublishing
from presto_deck.domain.deck import Deck
from presto_deck.domain.events import Event, peek_version, utc_now
from presto_deck.infrastructure.db.unit_of_work import SqlUnitOfWork
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.stream import RedisStreamPublisher
from presto_deck.settings import Settings
from tests.support.client import (
    DeckClient,
    Frame,
    assert_contiguous,
    eventually,
    is_terminal,
    receive_events,
)
from tests.support.deck_http import client_of, events_via_http
from tests.support.running import RunningApi, running_api, running_worker
from tests.support.sockets import (
    events_until_heartbeat,
    is_heartbeat,
    next_frame,
    reply_to,
    take,
    wait_until_live,
    watch_from_start,
)

EVENT_KEYS = {"event_type", "deck_id", "version", "timestamp", "payload"}
_S1 = "5e1de5e1-0000-4000-8000-000000000001"
_S2 = "5e1de5e1-0000-4000-8000-000000000002"
EDIT_FRAMES = [
    {"type": "UpdateSlide", "data": {"slide_id": _S1, "prompt": "Shorter, please"}},
    {"type": "UpdateSlide", "data": {"slide_id": _S1, "title": "A better title"}},
    {"type": "AddSlide", "data": {"after_slide_id": None, "prompt": "A title slide"}},
    {"type": "AddSlide", "data": {"after_slide_id": _S1, "prompt": "A closing slide"}},
    {"type": "DeleteSlide", "data": {"slide_id": _S1}},
    {"type": "ReorderSlides", "data": {"slide_ids": [_S2, _S1]}},
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings with heartbeats every 0.2 s: tests wait for them, so keep them quick."""
    return msgspec.structs.replace(settings, ws_heartbeat_seconds=0.2)


# -- helpers ---------------------------------------------------------------------------------------


async def wait_for_version(client: DeckClient, deck_id: str, at_least: int) -> int:
    version = 0

    async def reached() -> bool:
        nonlocal version
        version = (await client.deck(deck_id))["version"]
        return bool(version >= at_least)

    await eventually(reached)
    return version


async def commit_without_publishing(
    api: RunningApi, deck_id: str, change: Callable[[Deck, datetime], None]
) -> list[Event]:
    """Commit a change of the deck, its version bump and its event, and publish nothing: as a
    worker that crashed between the commit and the XADD."""
    async with SqlUnitOfWork(api.container.engine) as uow:
        deck = await uow.decks.lock(UUID(deck_id))
        assert deck is not None
        change(deck, utc_now())
        await uow.decks.save(deck)
        await uow.commit()
    return deck.pending_events


async def publish(api: RunningApi, events: list[Event]) -> None:
    """Publish committed events the way the service layer does (stream, then outbox mark)."""
    engine = api.container.engine
    publishing = EventPublishing(
        lambda: SqlUnitOfWork(engine),
        RedisStreamPublisher(api.container.redis, api.container.settings.stream_maxlen),
        utc_now,
    )
    assert await publishing.publish(events)


async def stream_versions(api: RunningApi, deck_id: str) -> list[int]:
    """The versions of the deck that were ever appended to the event stream."""
    entries = await api.container.redis.xrange(keys.EVENT_STREAM)
    heads = [peek_version(fields[b"event"]) for _, fields in entries]
    return [head.version for head in heads if head.deck_id == deck_id]


@asynccontextmanager
async def slow_worker(settings: Settings, slide_delay_ms: int) -> AsyncIterator[None]:
    async with running_worker(
        msgspec.structs.replace(settings, offline_slide_delay_ms=slide_delay_ms)
    ):
        yield


# -- replay of a finished deck ---------------------------------------------------------------------


async def test_replay_from_every_version_sends_exactly_the_later_events_in_order(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Replay me", slide_count=4)
    final = (await alice.wait_for_status(deck_id, "COMPLETED"))["version"]
    assert final == 8
    persisted = await events_via_http(alice, deck_id)

    async def replay(last_version: int) -> tuple[list[Frame], Frame]:
        async with alice.socket(deck_id, last_version=last_version) as ws:
            return await events_until_heartbeat(ws)

    versions = range(1, final + 1)
    results = await asyncio.gather(*(replay(k) for k in versions))

    for k, (events, heartbeat) in zip(versions, results, strict=True):
        assert [e["version"] for e in events] == list(range(k + 1, final + 1)), k
        assert events == persisted[k - 1 :], k
        # Nothing came between the replay and the heartbeat, which reports what was delivered.
        assert heartbeat["version"] == final, k


async def test_replay_from_version_0_sends_every_event(alice: DeckClient, worker: None) -> None:
    # Version 1 (a new deck) has no event, so 0 and 1 must replay the same: everything.
    deck_id = await alice.create("From the very start", slide_count=2)
    await alice.wait_for_status(deck_id, "COMPLETED")

    async with alice.socket(deck_id, last_version=0) as ws:
        events, heartbeat = await events_until_heartbeat(ws)

    assert [e["version"] for e in events] == [2, 3, 4, 5, 6]
    assert heartbeat["version"] == 6


async def test_replay_from_the_final_version_or_beyond_sends_no_event(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Nothing new", slide_count=2)
    final = (await alice.wait_for_status(deck_id, "COMPLETED"))["version"]

    async def replay(last_version: int) -> list[Frame]:
        async with alice.socket(deck_id, last_version=last_version) as ws:
            events, _ = await events_until_heartbeat(ws)
            return events

    results = await asyncio.gather(*(replay(final + n) for n in (0, 1, 1000, 999_999_990)))

    assert results == [[], [], [], []]


# -- without last_version --------------------------------------------------------------------------


async def test_without_last_version_a_finished_deck_sends_only_heartbeats(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Seen it all", slide_count=2)
    final = (await alice.wait_for_status(deck_id, "COMPLETED"))["version"]

    async with alice.socket(deck_id) as ws:
        events, heartbeat = await events_until_heartbeat(ws)

    assert events == []
    assert heartbeat["version"] == final


async def test_without_last_version_an_event_committed_after_connecting_arrives_live(
    alice: DeckClient,
) -> None:
    deck_id = await alice.create("Cancel me later")  # no worker: stays PENDING at version 1

    async with alice.socket(deck_id) as ws:
        await wait_until_live(ws)
        response = await alice.http.post(f"/api/v1/decks/{deck_id}/cancel")
        assert response.status_code == 202
        events = await receive_events(ws, is_terminal, timeout=10)

    assert [(e["event_type"], e["version"]) for e in events] == [("DeckCancelled", 2)]


async def test_without_last_version_mid_generation_only_later_events_arrive_contiguous(
    alice: DeckClient, settings: Settings
) -> None:
    async with slow_worker(settings, slide_delay_ms=80):
        deck_id = await alice.create("Join halfway", slide_count=12)
        await wait_for_version(alice, deck_id, 4)
        before = (await alice.deck(deck_id))["version"]
        assert before < 16, "the deck finished before the test could join it halfway"

        async with alice.socket(deck_id) as ws:
            events = await receive_events(ws, is_terminal)

    final = (await alice.deck(deck_id))["version"]
    assert events[0]["version"] > before
    assert_contiguous(events, first=events[0]["version"])
    assert events[-1]["version"] == final == 16
    assert events[-1]["event_type"] == "DeckCompleted"


# -- resumption and concurrent commits -------------------------------------------------------------


async def test_resuming_with_the_last_seen_version_at_many_cut_points_loses_and_repeats_nothing(
    alice: DeckClient, settings: Settings
) -> None:
    async def follow_in_chunks(deck_id: str, chunk: int) -> tuple[list[Frame], int]:
        """Read ``chunk`` events per connection, reconnecting with the last version seen."""
        seen: list[Frame] = []
        last, connections = 1, 0
        while not (seen and is_terminal(seen[-1])):
            async with alice.socket(deck_id, last_version=last) as ws:
                connections += 1
                seen += await take(ws, chunk)
            last = seen[-1]["version"]
        return seen, connections

    async with slow_worker(settings, slide_delay_ms=50):
        deck_id = await alice.create("Flaky network", slide_count=10)
        results = await asyncio.gather(*(follow_in_chunks(deck_id, n) for n in (1, 2, 3, 5)))

    final = (await alice.deck(deck_id))["version"]
    persisted = await events_via_http(alice, deck_id)
    for chunk, (events, connections) in zip((1, 2, 3, 5), results, strict=True):
        assert [e["version"] for e in events] == list(range(2, final + 1)), chunk
        assert [e["event_type"] for e in events] == [e["event_type"] for e in persisted]
        assert connections == -(-len(events) // chunk), chunk


async def test_events_committed_while_a_replay_runs_arrive_contiguous(
    alice: DeckClient, settings: Settings
) -> None:
    async with slow_worker(settings, slide_delay_ms=40):
        deck_id = await alice.create("Busy deck", slide_count=14)
        watchers = [asyncio.create_task(watch_from_start(alice, deck_id))]
        # Join at several points while slides are still being committed.
        for at_least in (3, 5, 7, 9, 11, 13):
            await wait_for_version(alice, deck_id, at_least)
            watchers.append(asyncio.create_task(watch_from_start(alice, deck_id)))
        results = await asyncio.gather(*watchers)

    final = (await alice.deck(deck_id))["version"]
    assert final == 18
    for events in results:
        assert_contiguous(events, first=2)
        assert events[-1]["version"] == final


# -- publishes lost on the way to Redis ------------------------------------------------------------


async def test_an_unpublished_event_is_backfilled_when_a_later_event_arrives(
    settings: Settings,
) -> None:
    # Heartbeats far apart, so that only the gap backfill can deliver the lost event.
    quiet = msgspec.structs.replace(settings, ws_heartbeat_seconds=60)
    async with running_api(quiet) as api:
        async with client_of(api, settings, "alice") as client:
            deck_id = await client.create("Lost in transit")
            async with client.socket(deck_id, last_version=1) as ws:
                await wait_until_live(ws)
                lost = await commit_without_publishing(api, deck_id, Deck.start)
                later = await commit_without_publishing(api, deck_id, Deck.cancel)
                await publish(api, later)
                events = await receive_events(ws, is_terminal, timeout=10)

        assert [(e["event_type"], e["version"]) for e in events] == [
            ("DeckStarted", 2),
            ("DeckCancelled", 3),
        ]
        assert [e.version for e in lost] == [2]
        assert await stream_versions(api, deck_id) == [3]


async def test_an_unpublished_last_event_arrives_with_the_next_heartbeat(
    api: RunningApi, alice: DeckClient
) -> None:
    deck_id = await alice.create("The last word")

    async with alice.socket(deck_id, last_version=1) as ws:
        await wait_until_live(ws)
        await commit_without_publishing(api, deck_id, Deck.cancel)
        events = await receive_events(ws, is_terminal, timeout=5)
        after, heartbeat = await events_until_heartbeat(ws)

    assert [(e["event_type"], e["version"]) for e in events] == [("DeckCancelled", 2)]
    assert after == []
    assert heartbeat["version"] == 2
    assert await stream_versions(api, deck_id) == []  # it can only have come from PostgreSQL


# -- heartbeats and the open connection ------------------------------------------------------------


async def test_a_last_version_past_the_decks_own_resumes_from_the_decks_own(
    api: RunningApi, alice: DeckClient
) -> None:
    """A client that claims versions the deck never had misses nothing that comes after."""
    deck_id = await alice.create("From the future")

    async with alice.socket(deck_id, last_version=999) as ws:
        _, heartbeat = await events_until_heartbeat(ws)
        cancelled = await alice.http.post(f"/api/v1/decks/{deck_id}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        events = await receive_events(ws, is_terminal, timeout=5)

    assert heartbeat["version"] == 1
    assert [(e["event_type"], e["version"]) for e in events] == [("DeckCancelled", 2)]


async def test_heartbeats_name_the_deck_and_are_never_persisted(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Pulse", slide_count=2)
    await alice.wait_for_status(deck_id, "COMPLETED")

    async with alice.socket(deck_id, last_version=1) as ws:
        _, first = await events_until_heartbeat(ws)
        _, second = await events_until_heartbeat(ws)

    for heartbeat in (first, second):
        assert set(heartbeat) == EVENT_KEYS
        assert heartbeat["deck_id"] == deck_id
        assert heartbeat["version"] == 6
        assert heartbeat["payload"] == {}
        datetime.fromisoformat(heartbeat["timestamp"])
    assert first["timestamp"] != second["timestamp"]
    persisted = await events_via_http(alice, deck_id)
    assert "Heartbeat" not in {e["event_type"] for e in persisted}
    assert [e["version"] for e in persisted] == [2, 3, 4, 5, 6]


async def test_heartbeats_of_many_sockets_read_the_decks_heads_at_once_not_each_its_events(
    api: RunningApi, alice: DeckClient, request: pytest.FixtureRequest
) -> None:
    """When nothing changed, a period of heartbeats costs one read of the heads of every deck
    the process has sockets on, not a look at its events per socket; the one that changed is
    looked at by its sockets alone."""
    looks: list[str] = []  # the statements that read a deck's events
    head_reads: list[str] = []  # those that read decks' versions

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "FROM deck_events" in statement:
            looks.append(statement)
        elif statement.startswith("SELECT decks.id, decks.version"):
            head_reads.append(statement)

    engine = api.container.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    request.addfinalizer(lambda: sa.event.remove(engine, "before_cursor_execute", seen))
    quiet, moving = await alice.create("Quiet"), await alice.create("Moving")
    async with contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(alice.socket(deck_id, last_version=1))
            for deck_id in [quiet] * 8 + [moving] * 2
        ]
        for ws in sockets:
            await wait_until_live(ws)
        looks.clear()
        head_reads.clear()
        await asyncio.sleep(1.2)  # six periods: 60 heartbeats
        assert looks == []
        assert 1 <= len(head_reads) <= 12

        await commit_without_publishing(api, moving, Deck.cancel)  # only a heartbeat finds it
        for ws in sockets[8:]:
            events = await receive_events(ws, is_terminal, timeout=5)
            assert [e["version"] for e in events] == [2]
    assert 2 <= len(looks) <= 4  # the two sockets of the deck that moved, once or twice each


async def test_the_connection_stays_open_after_the_deck_completes(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Keep listening", slide_count=2)

    async with alice.socket(deck_id, last_version=1) as ws:
        events = await receive_events(ws, is_terminal)
        assert events[-1]["event_type"] == "DeckCompleted"
        after = await next_frame(ws, timeout=5)
        assert is_heartbeat(after), after
        answer = await reply_to(ws, json.dumps({**EDIT_FRAMES[0], "request_id": "r-1"}))
        assert answer == {
            "type": "error",
            "code": "slide_not_found",
            "message": answer["message"],
            "request_id": "r-1",
        }
        _, heartbeat = await events_until_heartbeat(ws)

    assert heartbeat["version"] == events[-1]["version"]


async def test_live_events_carry_the_same_fields_as_the_persisted_ones(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Same shape everywhere", slide_count=3)
    live = await watch_from_start(alice, deck_id)

    persisted = await events_via_http(alice, deck_id)
    assert len(live) == len(persisted)
    for streamed, stored in zip(live, persisted, strict=True):
        assert set(streamed) == set(stored) == EVENT_KEYS
        assert streamed["payload"] == stored["payload"]
        assert streamed["version"] == stored["version"]
        assert datetime.fromisoformat(streamed["timestamp"]) == datetime.fromisoformat(
            stored["timestamp"]
        )


# -- client frames ---------------------------------------------------------------------------------


async def test_each_edit_of_a_deck_being_generated_is_answered_deck_busy_and_the_socket_stays_open(
    alice: DeckClient,
) -> None:
    deck_id = await alice.create("Edit me")  # no worker runs: it stays PENDING

    async with alice.socket(deck_id, last_version=1) as ws:
        answers = [
            await reply_to(ws, json.dumps({**frame, "request_id": f"r-{n}"}))
            for n, frame in enumerate(EDIT_FRAMES)
        ]
        _, heartbeat = await events_until_heartbeat(ws)

    for n, answer in enumerate(answers):
        assert set(answer) == {"type", "code", "message", "request_id"}, answer
        assert answer["type"] == "error"
        assert answer["code"] == "deck_busy", answer
        assert answer["request_id"] == f"r-{n}"
        assert "PENDING" in answer["message"]
    assert heartbeat["deck_id"] == deck_id
    assert (await alice.deck(deck_id))["version"] == 1


INVALID_FRAMES: dict[str, str | bytes] = {
    "malformed JSON": '{"type": "UpdateSlide", ',
    "not JSON at all": "hello",
    "empty text": "",
    "JSON array": "[]",
    "JSON string": '"UpdateSlide"',
    "JSON number": "42",
    "JSON null": "null",
    "no type": json.dumps({"data": {"slide_id": "s-1", "prompt": "x"}}),
    "unknown type": json.dumps({"type": "DeleteDeck", "data": {}}),
    "type of the wrong case": json.dumps({"type": "deleteslide", "data": {"slide_id": "s"}}),
    "missing data": json.dumps({"type": "UpdateSlide"}),
    "missing field": json.dumps({"type": "UpdateSlide", "data": {"slide_id": "s-1"}}),
    "empty prompt": json.dumps({"type": "AddSlide", "data": {"prompt": ""}}),
    "wrong field type": json.dumps({"type": "DeleteSlide", "data": {"slide_id": 7}}),
    "unknown field": json.dumps(
        {"type": "DeleteSlide", "data": {"slide_id": "s-1", "cascade": True}}
    ),
    "reorder past the most slides": json.dumps(
        {"type": "ReorderSlides", "data": {"slide_ids": [_S1] * 201}}
    ),
    "binary garbage": b"\x00\xff\xfe binary",
    "binary empty": b"",
    "binary JSON with a string that is not UTF-8": (
        b'{"type": "UpdateSlide", "data": {"slide_id": "s-1", "notes": "\xed\xa0\x80"}}'
    ),
}


async def test_invalid_frames_are_answered_invalid_frame_and_the_socket_stays_open(
    alice: DeckClient,
) -> None:
    deck_id = await alice.create("Garbage in")

    async with alice.socket(deck_id, last_version=1) as ws:
        answers = {name: await reply_to(ws, raw) for name, raw in INVALID_FRAMES.items()}
        still_supported = await reply_to(ws, json.dumps(EDIT_FRAMES[0]))
        _, heartbeat = await events_until_heartbeat(ws)

    for name, answer in answers.items():
        assert set(answer) == {"type", "code", "message"}, (name, answer)
        assert (answer["type"], answer["code"]) == ("error", "invalid_frame"), (name, answer)
        assert answer["message"], name
    assert still_supported["code"] == "deck_busy"
    assert heartbeat["deck_id"] == deck_id
