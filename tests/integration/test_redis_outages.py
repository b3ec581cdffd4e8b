"""Redis restarts, flushes and dropped connections, on the real servers: no deck is left behind,
no event is lost, and live delivery resumes within seconds, not at the next heartbeat.

The restarts use a Redis server of the test's own; the flushes and dropped connections use the
test Redis db, touching only what belongs to this test run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from uuid import UUID, uuid4

import msgspec
import pytest

from presto_deck.bootstrap import build_container
from presto_deck.domain.content import DeckBrief
from presto_deck.domain.events import TERMINAL_EVENTS, Event
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.live import PUBSUB_CLIENT_NAME
from presto_deck.infrastructure.messaging.stream import RedisStreamPublisher, StreamFanout
from presto_deck.infrastructure.writers.offline import OfflineWriter
from presto_deck.settings import Settings
from tests.support.client import assert_contiguous, eventually, is_terminal, receive_events
from tests.support.deck_http import client_of
from tests.support.generation import generator_for
from tests.support.redis_server import DisposableRedis, disposable_redis
from tests.support.running import api_of, running_api, running_worker
from tests.support.sockets import take, wait_until_live

#: Far longer than any test here waits: a delivery within the bound cannot be a heartbeat's.
QUIET_HEARTBEAT_SECONDS = 60
#: How long live delivery may take to resume after Redis is back.
RESUME_SECONDS = 10


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[DisposableRedis]:
    with disposable_redis(tmp_path / "redis") as server:
        yield server


def on(settings: Settings, server: DisposableRedis, **overrides: object) -> Settings:
    return msgspec.structs.replace(
        settings,
        redis_url=server.url(),
        ws_heartbeat_seconds=QUIET_HEARTBEAT_SECONDS,
        **overrides,
    )


async def test_a_worker_rides_out_a_redis_restart_and_every_deck_completes(
    settings: Settings, own_redis: DisposableRedis
) -> None:
    local = on(settings, own_redis, offline_slide_delay_ms=100)
    container = build_container(local)
    try:
        async with running_worker(local) as worker:
            brief = DeckBrief(prompt="Tea through the ages", slide_count=8)
            before = [(await api_of(container).decks.create("alice", brief)).id for _ in range(2)]

            async def started() -> bool:
                view = await api_of(container).decks.get("alice", before[0])
                return len(view.slides) >= 1

            await eventually(started, timeout=10)
            await asyncio.to_thread(own_redis.restart, 1.0)
            after = (await api_of(container).decks.create("alice", brief)).id

            async def all_completed() -> bool:
                views = [await api_of(container).decks.get("alice", d) for d in (*before, after)]
                return all(v.deck.status == "COMPLETED" for v in views)

            await eventually(all_completed, timeout=30)
            assert worker.arq.main_task is not None
            assert not worker.arq.main_task.done()  # the worker never exited
        for deck_id in (*before, after):
            view = await api_of(container).decks.get("alice", deck_id)
            assert [s.order for s in view.slides] == list(range(1, 9))
            events = await api_of(container).decks.events_after("alice", deck_id, 0)
            assert [e.version for e in events] == list(range(2, 13))
    finally:
        await container.close()


async def test_live_delivery_resumes_within_seconds_after_a_redis_restart(
    settings: Settings, own_redis: DisposableRedis
) -> None:
    local = on(settings, own_redis, offline_slide_delay_ms=150)
    async with running_api(local) as api, client_of(api, local, "alice") as alice:
        deck_id = await alice.create("Live through a restart", slide_count=12)
        async with alice.socket(deck_id, last_version=1) as ws:
            await wait_until_live(ws)
            async with running_worker(local):
                first = await take(ws, 3)
                await asyncio.to_thread(own_redis.restart, 1.0)
                rest = await receive_events(ws, is_terminal, timeout=RESUME_SECONDS + 5)
        final = (await alice.deck(deck_id))["version"]

    events = first + rest
    assert_contiguous(events, first=2)
    assert events[-1]["version"] == final == 16
    assert events[-1]["event_type"] == "DeckCompleted"


async def test_a_dropped_pubsub_connection_is_restored_and_sockets_hear_live_events_again(
    settings: Settings,
) -> None:
    quiet = msgspec.structs.replace(settings, ws_heartbeat_seconds=QUIET_HEARTBEAT_SECONDS)
    async with running_api(quiet) as api, client_of(api, quiet, "alice") as alice:
        deck_id = await alice.create("Dropped connection", slide_count=4)
        async with alice.socket(deck_id, last_version=1) as ws:
            await wait_until_live(ws)
            killed = await _kill_pubsub_connections(api.container.redis, quiet)
            assert killed >= 1
            async with running_worker(quiet):
                events = await receive_events(ws, is_terminal, timeout=RESUME_SECONDS)

    assert_contiguous(events, first=2)
    assert events[-1]["event_type"] == "DeckCompleted"


async def test_an_event_lost_with_a_flushed_stream_reaches_sockets_at_once(
    settings: Settings,
) -> None:
    # The stream is gone between the worker's append and the API's read: the event is marked
    # published in PostgreSQL, so no relay will send it again. Only the catch-up can deliver it.
    quiet = msgspec.structs.replace(settings, ws_heartbeat_seconds=QUIET_HEARTBEAT_SECONDS)
    async with running_api(quiet) as api, client_of(api, quiet, "alice") as alice:
        deck_id = await alice.create("Flushed", slide_count=2)
        async with alice.socket(deck_id, last_version=1) as ws:
            await wait_until_live(ws)
            container = api.container
            flushing = _StreamLostAfterTheEnd(container.redis, quiet.stream_maxlen)
            generator = generator_for(
                container, OfflineWriter(slide_delay_ms=0), "w", publisher=flushing
            )
            await generator.generate(UUID(deck_id))
            events = await receive_events(ws, is_terminal, timeout=RESUME_SECONDS)

    assert flushing.lost == ["DeckCompleted"]
    assert_contiguous(events, first=2)
    assert events[-1]["event_type"] == "DeckCompleted"


async def test_entries_appended_after_the_stream_vanished_are_still_broadcast(
    settings: Settings,
) -> None:
    container = build_container(settings)
    seen: list[int] = []
    resets = 0

    async def broadcast(messages: Sequence[tuple[str, bytes]]) -> None:
        seen.extend(msgspec.json.decode(data)["version"] for _, data in messages)

    async def count_reset() -> None:
        nonlocal resets
        resets += 1

    fanout = StreamFanout(container.redis, broadcast, on_reset=count_reset, block_ms=100)
    running = asyncio.create_task(fanout.run())
    try:
        await eventually(lambda: _has_group(container.redis), timeout=5)
        entry = msgspec.json.encode(
            {"event_type": "DeckStarted", "deck_id": str(uuid4()), "version": 7, "timestamp": "t"}
        )
        async with container.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.EVENT_STREAM)  # a flush: the stream and its group are gone ...
            pipe.xadd(keys.EVENT_STREAM, {b"event": entry})  # ... and a worker appends at once
            await pipe.execute()

        async def broadcast_seen() -> bool:
            return seen == [7]

        await eventually(broadcast_seen, timeout=5)
        assert resets == 2  # the first start, and the stream that vanished
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await container.close()


# -- helpers ---------------------------------------------------------------------------------------


class _StreamLostAfterTheEnd(RedisStreamPublisher):
    """Appends as the worker does; a terminal event's stream is deleted in the same transaction,
    so that no API instance can have read it."""

    def __init__(self, redis: object, maxlen: int) -> None:
        super().__init__(redis, maxlen)  # type: ignore[arg-type]
        self._raw = redis
        self.lost: list[str] = []

    async def publish(self, events: Sequence[Event]) -> None:
        terminal = [e for e in events if e.event_type in TERMINAL_EVENTS]
        if not terminal:
            await super().publish(events)
            return
        async with self._raw.pipeline(transaction=True) as pipe:  # type: ignore[attr-defined]
            for event in events:
                pipe.xadd(keys.EVENT_STREAM, {b"event": msgspec.json.encode(event)})
            pipe.delete(keys.EVENT_STREAM)
            await pipe.execute()
        self.lost.extend(e.event_type for e in terminal)


async def _has_group(redis: object) -> bool:
    try:
        groups = await redis.xinfo_groups(keys.EVENT_STREAM)  # type: ignore[attr-defined]
    except Exception:
        return False
    return bool(groups)


async def _kill_pubsub_connections(redis: object, settings: Settings) -> int:
    """Drop the API's Pub/Sub connection (only this test run's: its name and db)."""
    db = settings.redis_url.rsplit("/", 1)[-1]
    clients = await redis.client_list()  # type: ignore[attr-defined]
    ours = [c for c in clients if c.get("name") == PUBSUB_CLIENT_NAME and str(c.get("db")) == db]
    for client in ours:
        await redis.client_kill_filter(_id=client["id"])  # type: ignore[attr-defined]
    return len(ours)


async def test_an_api_started_while_redis_is_down_serves_live_events_once_it_is_back(
    settings: Settings, own_redis: DisposableRedis
) -> None:
    local = on(settings, own_redis, offline_slide_delay_ms=50)
    own_redis.stop()
    async with running_api(local) as api, client_of(api, local, "alice") as alice:
        down = await alice.http.get("/health/ready")
        await asyncio.to_thread(own_redis.start)

        async def ready() -> bool:
            return (await alice.http.get("/health/ready")).status_code == 200

        await eventually(ready, timeout=RESUME_SECONDS)
        deck_id = await alice.create("Started in an outage", slide_count=3)
        async with alice.socket(deck_id, last_version=1) as ws:
            await wait_until_live(ws)
            async with running_worker(local):
                events = await receive_events(ws, is_terminal, timeout=RESUME_SECONDS + 5)

    assert down.status_code == 503
    assert down.json()["redis"].startswith("no Redis answers at")
    assert_contiguous(events, first=2)
    assert events[-1]["event_type"] == "DeckCompleted"
