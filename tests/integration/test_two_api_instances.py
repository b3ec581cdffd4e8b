"""Two API instances on one Redis and one PostgreSQL: each reads its share of the event stream in
the consumer group and fans it out over Pub/Sub to every instance's sockets. Sockets must get
every event however the stream entries are split between instances, and when an instance dies
holding entries it read but never acknowledged (SPEC §1, §6)."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import pytest
import websockets

from presto_deck.infrastructure.messaging import keys
from presto_deck.settings import Settings
from tests.support.client import assert_contiguous, is_terminal, receive_events
from tests.support.deck_http import client_of
from tests.support.running import RunningApi, running_api, running_worker
from tests.support.sockets import events_until_heartbeat, wait_until_live


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Heartbeats every 0.2 s: the backfill safety net, and the tests wait for them."""
    return msgspec.structs.replace(settings, ws_heartbeat_seconds=0.2)


async def test_sockets_on_both_instances_each_receive_every_event_in_order(
    settings: Settings,
) -> None:
    # No heartbeat catch-up during the test: only the live fan-out can deliver the events.
    quiet = msgspec.structs.replace(settings, ws_heartbeat_seconds=60)
    async with (
        running_api(quiet) as first,
        running_api(quiet) as second,
        client_of(first, settings, "alice") as on_first,
        client_of(second, settings, "alice") as on_second,
    ):
        deck_id = await on_first.create("Two doors", slide_count=8)  # no worker yet: PENDING
        async with contextlib.AsyncExitStack() as stack:
            sockets = [
                await stack.enter_async_context(client.socket(deck_id, last_version=1))
                for client in (on_first, on_first, on_second, on_second)
            ]
            for ws in sockets:
                await wait_until_live(ws)
            async with running_worker(settings):
                results = await asyncio.gather(*(receive_events(ws, is_terminal) for ws in sockets))

        final = (await on_second.deck(deck_id))["version"]
        assert final == 12
        for events in results:
            assert_contiguous(events, first=2)
            assert events[-1]["version"] == final
        assert results[0] == results[2]  # the same bytes reach both instances
        groups = await first.container.redis.xinfo_groups(keys.EVENT_STREAM)
        assert [g["name"] for g in groups] == [keys.API_CONSUMER_GROUP.encode()]
        assert groups[0]["consumers"] == 2


async def test_when_one_instance_stops_mid_deck_the_other_still_delivers_everything(
    settings: Settings,
) -> None:
    slow = msgspec.structs.replace(settings, offline_slide_delay_ms=100)
    async with (
        running_api(settings) as survivor,
        client_of(survivor, settings, "alice") as alice,
        running_worker(slow),
    ):
        deck_id = await alice.create("Lose a server", slide_count=12)
        async with alice.socket(deck_id, last_version=1) as watcher:
            async with running_api(settings) as doomed:
                dying = await websockets.connect(
                    f"{doomed.ws_url}/ws/decks/{deck_id}?token={alice.token}&last_version=1"
                )
                seen_on_doomed = await receive_events(
                    dying, lambda e: e["version"] >= 4 or is_terminal(e)
                )
            # Stopped with its socket open and its stream consumer possibly holding entries
            # it read but never acknowledged; the worker goes on writing slides.
            version_at_stop = (await alice.deck(deck_id))["version"]
            await dying.close()
            watcher_events = await receive_events(watcher, is_terminal)
        final = (await alice.deck(deck_id))["version"]

        assert version_at_stop < final == 16, "the deck finished before the instance stopped"
        assert_contiguous(seen_on_doomed, first=2)
        assert_contiguous(watcher_events, first=2)
        assert watcher_events[-1]["version"] == final
        resume_from = seen_on_doomed[-1]["version"]
        async with alice.socket(deck_id, last_version=resume_from) as resumed:
            resumed_events, _ = await events_until_heartbeat(resumed)
        assert [e["version"] for e in resumed_events] == list(range(resume_from + 1, final + 1))
        async with alice.socket(deck_id) as fresh:
            fresh_events, _ = await events_until_heartbeat(fresh)
            assert fresh_events == []


async def test_entries_read_by_an_instance_that_never_acknowledges_still_reach_every_socket(
    settings: Settings,
) -> None:
    # A consumer in the API group that takes entries and then does nothing: an instance that
    # died right after XREADGROUP. Its entries stay pending; no one broadcasts them.
    slow = msgspec.structs.replace(settings, offline_slide_delay_ms=30)
    stolen: list[bytes] = []

    async def dead_instance(api: RunningApi, done: asyncio.Event) -> None:
        redis = api.container.redis
        while not done.is_set():
            response = await redis.xreadgroup(
                keys.API_CONSUMER_GROUP,
                "dead-instance",
                {keys.EVENT_STREAM: ">"},
                count=1,
                block=50,
            )
            for _stream, entries in response or []:
                stolen.extend(fields[b"event"] for _id, fields in entries)

    async with (
        running_api(settings) as live,
        client_of(live, settings, "alice") as alice,
    ):
        deck_id = await alice.create("Half the stream is gone", slide_count=12)
        done = asyncio.Event()
        thief = asyncio.create_task(dead_instance(live, done))
        try:
            async with alice.socket(deck_id, last_version=1) as ws, running_worker(slow):
                events = await receive_events(ws, is_terminal)
        finally:
            done.set()
            await thief

        final = (await alice.deck(deck_id))["version"]
        assert stolen, "the dead instance took no entry, so nothing was tested"
        assert_contiguous(events, first=2)
        assert events[-1]["version"] == final == 16
        pending = await live.container.redis.xpending(keys.EVENT_STREAM, keys.API_CONSUMER_GROUP)
        assert pending["pending"] >= len(stolen)  # still unacknowledged: delivery did not need it
        async with alice.socket(deck_id, last_version=9) as resumed:
            resumed_events, _ = await events_until_heartbeat(resumed)
            assert [e["version"] for e in resumed_events] == list(range(10, final + 1))
