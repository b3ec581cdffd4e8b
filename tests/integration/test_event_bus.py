"""The event bus on the real Redis and PostgreSQL: the outbox relay delivers what was committed but
never published, the API's consumer group takes over what a dead instance left unacknowledged,
poison entries are dead-lettered, and the stream stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from presto_deck.application.ports import PublishError
from presto_deck.bootstrap import Container, build_container
from presto_deck.domain.content import DeckBrief
from presto_deck.domain.deck import DeckStatus
from presto_deck.domain.events import Event, decode_event, encode_event, utc_now
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.stream import RedisStreamPublisher, StreamFanout
from presto_deck.infrastructure.writers.offline import OfflineWriter
from presto_deck.settings import Settings
from tests.support.client import eventually
from tests.support.database import execute, rows
from tests.support.generation import generator_for
from tests.support.running import RunningApi, api_of, running_worker, worker_of

STREAM = keys.EVENT_STREAM
GROUP = keys.API_CONSUMER_GROUP

# -- helpers ---------------------------------------------------------------------------------------


class UnreachablePublisher:
    """A stream that refuses every event, as Redis does while it is down."""

    async def publish(self, events: Sequence[Event]) -> None:
        raise PublishError("redis is down")


class Broadcasts:
    """Records what a StreamFanout broadcasts: (channel, encoded event)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def __call__(self, messages: Sequence[tuple[str, bytes]]) -> None:
        self.sent.extend(messages)

    @property
    def versions(self) -> list[int]:
        return [decode_event(data).version for _, data in self.sent]


def events_of(deck_id: UUID, *versions: int) -> list[Event]:
    return [
        Event(
            event_type="SlideDeleted",
            deck_id=str(deck_id),
            version=version,
            timestamp=utc_now(),
            payload={"slide_id": str(uuid4())},
        )
        for version in versions
    ]


async def pending_count(container: Container) -> int:
    summary = await container.redis.xpending(STREAM, GROUP)
    return int(summary["pending"])


async def dead_letters(container: Container) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await container.redis.xrange(keys.DEAD_LETTER_STREAM)]


async def taken_and_abandoned(
    container: Container, settings: Settings, deck_id: UUID, first: str, *others: str
) -> bytes:
    """Publish version 2 of the deck; consumer ``first`` reads its entry and each of ``others``
    in turn claims it, all without acknowledging it. The entry's id."""
    await RedisStreamPublisher(container.redis, settings.stream_maxlen).publish(
        events_of(deck_id, 2)
    )
    [[_, [(entry_id, _fields)]]] = await container.redis.xreadgroup(GROUP, first, {STREAM: ">"})
    for consumer in others:
        await container.redis.xclaim(STREAM, GROUP, consumer, 0, [entry_id])
    return bytes(entry_id)


@contextlib.asynccontextmanager
async def consuming(fanout: StreamFanout) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(fanout.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def container(container: Container) -> Container:
    """The shared container, with the API's consumer group on the event stream."""
    await container.redis.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    return container


# -- the outbox ------------------------------------------------------------------------------------


async def test_events_committed_while_the_stream_was_down_are_relayed_by_the_worker_sweep(
    settings: Settings, container: Container
) -> None:
    deck = await api_of(container).decks.create("alice", DeckBrief(prompt="Outbox", slide_count=2))

    cut_off = generator_for(
        container, OfflineWriter(slide_delay_ms=0), "cut-off", publisher=UnreachablePublisher()
    )
    assert await cut_off.generate(deck.id) is DeckStatus.COMPLETED
    unpublished = "SELECT version FROM deck_events WHERE deck_id = :id AND published_at IS NULL"
    assert len(await rows(container, unpublished, id=deck.id)) == 5
    assert await container.redis.xlen(STREAM) == 0

    async def relayed() -> bool:
        return not await rows(container, unpublished, id=deck.id)

    async with running_worker(settings):
        await eventually(relayed, timeout=15)

    on_stream = [
        decode_event(fields[b"event"]) for _, fields in await container.redis.xrange(STREAM)
    ]
    assert [(event.deck_id, event.version) for event in on_stream] == [
        (str(deck.id), version) for version in range(2, 7)
    ]
    assert [event.event_type for event in on_stream] == (
        ["DeckStarted", "PlanUpdated", "SlideAdded", "SlideAdded", "DeckCompleted"]
    )


async def test_an_event_marked_unpublished_is_published_again_by_the_sweep(
    container: Container,
) -> None:
    deck = await api_of(container).decks.create(
        "alice", DeckBrief(prompt="Lost entry", slide_count=1)
    )
    assert await worker_of(container).generator.generate(deck.id) is DeckStatus.COMPLETED
    await worker_of(container).publishing.flush()  # its events marked published, in a batch
    await container.redis.delete(STREAM)  # the entry was lost with Redis
    await execute(
        container,
        "UPDATE deck_events SET published_at = NULL,"
        " created_at = now() - interval '1 minute' WHERE deck_id = :id AND version = 4",
        id=deck.id,
    )

    report = await worker_of(container).recovery.sweep()

    assert report.relayed == 1
    [(_, fields)] = await container.redis.xrange(STREAM)
    assert decode_event(fields[b"event"]).version == 4
    assert not await rows(
        container,
        "SELECT 1 FROM deck_events WHERE published_at IS NULL AND deck_id = :id",
        id=deck.id,
    )


# -- the consumer group ----------------------------------------------------------------------------


async def test_entries_a_dead_instance_read_but_never_acknowledged_are_claimed_and_broadcast(
    settings: Settings, container: Container
) -> None:
    deck_id = uuid4()
    await RedisStreamPublisher(container.redis, settings.stream_maxlen).publish(
        events_of(deck_id, 2, 3, 4)
    )
    # An instance reads the entries, then dies while broadcasting the first one.
    never = asyncio.Event()

    async def stuck(messages: Sequence[tuple[str, bytes]]) -> None:
        await never.wait()

    dying = StreamFanout(container.redis, stuck, consumer="dying", block_ms=50)
    async with consuming(dying):

        async def all_read() -> bool:
            return await pending_count(container) == 3

        await eventually(all_read, timeout=10)

    survivor_saw = Broadcasts()
    survivor = StreamFanout(
        container.redis, survivor_saw, consumer="survivor", block_ms=50, claim_idle_ms=200
    )
    async with consuming(survivor):

        async def all_claimed() -> bool:
            return len(survivor_saw.sent) == 3 and await pending_count(container) == 0

        await eventually(all_claimed, timeout=10)

    assert survivor_saw.versions == [2, 3, 4]
    assert {channel for channel, _ in survivor_saw.sent} == {keys.deck_channel(deck_id)}
    assert await dead_letters(container) == []


async def test_an_entry_whose_broadcast_failed_is_delivered_once_pubsub_is_back(
    settings: Settings, container: Container
) -> None:
    deck_id = uuid4()
    saw = Broadcasts()
    failures = 0

    async def flaky(messages: Sequence[tuple[str, bytes]]) -> None:
        nonlocal failures
        if failures < 2:  # Pub/Sub is down for the first two attempts
            failures += 1
            raise RedisConnectionError("pub/sub connection lost")
        await saw(messages)

    fanout = StreamFanout(container.redis, flaky, block_ms=50, claim_idle_ms=100)
    async with consuming(fanout) as task:
        await RedisStreamPublisher(container.redis, settings.stream_maxlen).publish(
            events_of(deck_id, 2, 3)
        )

        async def delivered() -> bool:
            return len(saw.sent) == 2 and await pending_count(container) == 0

        await eventually(delivered, timeout=10)
        assert not task.done()

    assert failures == 2
    assert saw.versions == [2, 3]
    assert await dead_letters(container) == []


async def test_an_entry_that_is_not_an_event_is_dead_lettered_and_acknowledged(
    container: Container,
) -> None:
    deck_id = uuid4()
    poison: list[dict[Any, Any]] = [
        {b"event": b"not json at all"},
        {b"event": b'{"hello": "world"}'},
        {b"event": b'{"deck_id": 7, "version": "two", "event_type": "SlideAdded"}'},
        {b"something": b"else"},
    ]
    poison_ids = [await container.redis.xadd(STREAM, fields) for fields in poison]
    [event] = events_of(deck_id, 2)
    await container.redis.xadd(STREAM, {b"event": encode_event(event)})
    saw = Broadcasts()

    async with consuming(StreamFanout(container.redis, saw, block_ms=50)):

        async def handled() -> bool:
            return len(saw.sent) == 1 and len(await dead_letters(container)) == len(poison)

        await eventually(handled, timeout=10)

    assert saw.versions == [2]
    letters = await dead_letters(container)
    assert [letter[b"reason"] for letter in letters] == [b"not an event"] * len(poison)
    assert [letter[b"entry_id"] for letter in letters] == poison_ids
    kept = [
        {k: v for k, v in letter.items() if k not in (b"reason", b"entry_id")} for letter in letters
    ]
    assert kept == poison
    assert await pending_count(container) == 0


async def test_an_entry_delivered_max_deliveries_times_is_dead_lettered_not_broadcast(
    settings: Settings, container: Container
) -> None:
    deck_id = uuid4()
    # Three instances in turn took the entry and died before acknowledging it.
    entry_id = await taken_and_abandoned(container, settings, deck_id, "dead-1", "dead-2", "dead-3")
    [pending] = await container.redis.xpending_range(STREAM, GROUP, "-", "+", 10)
    assert pending["times_delivered"] == 3
    saw = Broadcasts()
    fanout = StreamFanout(container.redis, saw, claim_idle_ms=50, max_deliveries=3)

    async def dead_lettered() -> bool:
        await fanout.claim_stale()
        return len(await dead_letters(container)) == 1

    await eventually(dead_lettered, timeout=10)

    assert saw.sent == []
    [letter] = await dead_letters(container)
    assert letter[b"reason"] == b"too many deliveries"
    assert letter[b"entry_id"] == entry_id
    assert decode_event(letter[b"event"]).version == 2
    assert await pending_count(container) == 0


async def test_an_entry_delivered_fewer_times_than_the_limit_is_still_claimed(
    settings: Settings, container: Container
) -> None:
    deck_id = uuid4()
    await taken_and_abandoned(container, settings, deck_id, "dead-1", "dead-2")
    saw = Broadcasts()
    fanout = StreamFanout(container.redis, saw, claim_idle_ms=50, max_deliveries=3)

    async def claimed() -> bool:
        return await fanout.claim_stale() == 1

    await eventually(claimed, timeout=10)

    assert saw.versions == [2]
    assert await dead_letters(container) == []
    assert await pending_count(container) == 0


async def test_the_stream_stays_bounded_by_the_configured_maxlen(settings: Settings) -> None:
    bounded = msgspec.structs.replace(settings, stream_maxlen=10)
    container = build_container(bounded)
    try:
        config = await container.redis.config_get("stream-node-max-entries")
        node = int(config["stream-node-max-entries"])
        published = bounded.stream_maxlen + 2 * node + 50
        deck = await api_of(container).decks.create(
            "alice", DeckBrief(prompt="Bounded", slide_count=1)
        )
        # A backlog of committed events, all relayed at once through the wired publisher.
        await execute(
            container,
            "INSERT INTO deck_events (deck_id, version, event_type, payload, created_at)"
            " SELECT :id, v, 'SlidesReordered', '{\"slide_ids\": []}',"
            " now() - interval '1 minute' FROM generate_series(2, :last) AS v",
            id=deck.id,
            last=published + 1,
        )

        assert (await worker_of(container).recovery.sweep()).relayed == published

        # MAXLEN ~ trims whole radix-tree nodes, so the stream may exceed maxlen by one node.
        assert await container.redis.xlen(STREAM) <= bounded.stream_maxlen + node
        [(_, newest)] = await container.redis.xrevrange(STREAM, count=1)
        assert decode_event(newest[b"event"]).version == published + 1
    finally:
        await container.close()


async def test_the_pubsub_channels_are_those_of_the_redis_db_so_deployments_do_not_mix(
    api: RunningApi, settings: Settings
) -> None:
    db = urlsplit(settings.redis_url).path.strip("/")
    raw = Redis.from_url(settings.redis_url)
    try:
        ours = f"presto:channels:db{db}:presto:catch-up".encode()
        async with asyncio.timeout(5):
            while ours not in (channels := await raw.pubsub_channels("presto:*")):
                await asyncio.sleep(0.05)
    finally:
        await raw.aclose()

    # Other deployments may be on this server (other dbs): each under its own db's name.
    names = [channel.decode() for channel in channels]
    assert f"presto:channels:db{db}:presto:catch-up" in names, names
    assert all(re.match(r"presto:channels:db\d+:", name) for name in names), names


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("redis://127.0.0.1:6379/8", "presto:channels:db8"),
        ("redis://cache", "presto:channels:db0"),
        ("rediss://user:pw@cache:6380/3", "presto:channels:db3"),
        ("unix:///run/redis.sock?db=4", "presto:channels:db4"),
    ],
)
def test_each_redis_db_has_its_own_channels(url: str, prefix: str) -> None:
    assert keys.channels_prefix(url) == prefix
