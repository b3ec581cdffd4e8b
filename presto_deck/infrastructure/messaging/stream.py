"""The durable event bus: workers append to a Redis Stream; every API instance reads it in one
consumer group and fans each event out to all instances over Pub/Sub.

Delivery to sockets does not depend on this path alone: each socket orders events by version
and backfills any gap from PostgreSQL, so a lost or repeated entry costs latency, never data.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import msgspec
from arq.connections import ArqRedis
from loguru import logger
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError, ResponseError

from presto_deck.application.ports import PublishError
from presto_deck.application.tracing import carrier_of_current, deck_span
from presto_deck.domain.events import Event, encode_event, peek_version
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.redis_client import honour_cancellation
from presto_deck.infrastructure.observability.metrics import STREAM_LAG, STREAM_PENDING

_FIELD = b"event"
#: The span that published the entry, as a W3C ``traceparent``; absent when nothing is traced.
_TRACE_FIELD = b"traceparent"

#: Called with (Pub/Sub channel, encoded event) pairs in the stream's order; returns once Redis
#: accepted them all.
Broadcast = Callable[[Sequence[tuple[str, bytes]]], Awaitable[None]]


class RedisStreamPublisher:
    """The worker's side: append committed events to the stream (bounded with MAXLEN ~)."""

    def __init__(self, redis: ArqRedis, maxlen: int) -> None:
        self._redis = redis
        self._maxlen = maxlen

    async def publish(self, events: Sequence[Event]) -> None:
        traced: dict[Any, Any] = {_TRACE_FIELD: tp.encode()} if (tp := _traceparent()) else {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.xadd(
                        keys.EVENT_STREAM,
                        {_FIELD: encode_event(event), **traced},
                        maxlen=self._maxlen,
                        approximate=True,
                    )
                await pipe.execute()
        except RedisError as exc:
            raise PublishError(str(exc)) from exc


class StreamFanout:
    """The API's side: read the stream in the consumer group, broadcast, then acknowledge.

    Entries left pending by an instance that died are claimed after ``claim_idle_ms``; an entry
    delivered ``max_deliveries`` times without success is moved to the dead-letter stream.

    The group is created reading from the stream's first entry, not its end: when Redis restarts
    or the stream is flushed, entries appended before the group exists again are broadcast too
    (sockets drop what they already have). What the lost stream held and no instance had read
    yet is gone from Redis, but not from PostgreSQL: ``on_reset`` is called whenever the group is
    created, so that sockets catch up from there at once instead of at their next heartbeat.
    """

    def __init__(
        self,
        redis: ArqRedis,
        broadcast: Broadcast,
        *,
        on_reset: Callable[[], Awaitable[None]] | None = None,
        consumer: str | None = None,
        block_ms: int = 1000,
        claim_idle_ms: int = 15000,
        max_deliveries: int = 5,
    ) -> None:
        self._redis = redis
        self._broadcast = broadcast
        self._on_reset = on_reset
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._max_deliveries = max_deliveries

    async def run(self) -> None:
        """Consume until cancelled; Redis outages are waited out with backoff."""
        backoff = 0.0  # while the stream answers
        claim_every = max(self._claim_idle_ms / 1000 / 2, 0.5)
        next_claim = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._ensure_group()
                while True:
                    honour_cancellation()
                    if loop.time() >= next_claim:
                        await self.claim_stale()
                        await self._measure()
                        next_claim = loop.time() + claim_every
                    await self._read_new()
                    if backoff:
                        logger.info("the event stream is back")
                    backoff = 0.0
            except RedisError as exc:
                honour_cancellation()
                if not backoff:  # once an outage, not on every try
                    logger.warning("event stream unavailable, retrying until it is back: {}", exc)
                backoff = min(max(backoff * 2, 0.1), 5.0)
                await asyncio.sleep(backoff)

    async def _measure(self) -> None:
        """The group's pending entries and lag, for the metrics."""
        for group in await self._redis.xinfo_groups(keys.EVENT_STREAM):
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) != keys.API_CONSUMER_GROUP:
                continue
            STREAM_PENDING.set(int(group.get("pending") or 0))
            if (lag := group.get("lag")) is not None:
                STREAM_LAG.set(int(lag))

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(
                keys.EVENT_STREAM, keys.API_CONSUMER_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return
        logger.info("created the consumer group of the event stream")
        if self._on_reset is not None:
            await self._on_reset()

    async def _read_new(self) -> None:
        try:
            response = await self._redis.xreadgroup(
                keys.API_CONSUMER_GROUP,
                self.consumer,
                {keys.EVENT_STREAM: ">"},
                count=100,
                block=self._block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted (Redis restarted or flushed)
                await self._ensure_group()
                return
            raise
        for _stream, entries in response or []:
            await self._handle(entries)

    async def claim_stale(self) -> int:
        """Take over entries that another (dead) instance read but never acknowledged."""
        await self._dead_letter_poison()
        claimed = 0
        cursor: Any = "0-0"
        while True:
            cursor, entries, *_ = await self._redis.xautoclaim(
                keys.EVENT_STREAM,
                keys.API_CONSUMER_GROUP,
                self.consumer,
                min_idle_time=self._claim_idle_ms,
                start_id=cursor,
                count=100,
            )
            live = [(entry_id, fields) for entry_id, fields in entries if fields is not None]
            if live:
                claimed += len(live)
                await self._handle(live)
            if cursor in (b"0-0", "0-0"):
                return claimed

    async def _dead_letter_poison(self) -> None:
        pending = await self._redis.xpending_range(
            keys.EVENT_STREAM,
            keys.API_CONSUMER_GROUP,
            min="-",
            max="+",
            count=100,
            idle=self._claim_idle_ms,
        )
        for entry in pending:
            if entry["times_delivered"] < self._max_deliveries:
                continue
            entry_id = entry["message_id"]
            found = await self._redis.xrange(keys.EVENT_STREAM, entry_id, entry_id)
            fields = found[0][1] if found else {}
            await self._dead_letter(entry_id, fields, "too many deliveries")

    async def _handle(self, entries: Sequence[tuple[Any, dict[bytes, bytes]]]) -> None:
        """Broadcast the entries' events in one go, then acknowledge them."""
        events: list[tuple[Any, str, bytes, UUID, int, dict[str, str] | None]] = []
        for entry_id, fields in entries:
            data = fields.get(_FIELD)
            try:
                head = peek_version(data) if data is not None else None
                deck_id = UUID(head.deck_id) if head is not None else None
            except (msgspec.DecodeError, ValueError):
                head = deck_id = None
            if data is None or head is None or deck_id is None:
                await self._dead_letter(entry_id, fields, "not an event")
                continue
            channel = keys.deck_channel(head.deck_id)
            events.append((entry_id, channel, data, deck_id, head.version, _carrier(fields)))
        if not events:
            return
        started = time.time_ns()
        await self._broadcast([(channel, data) for _, channel, data, *_ in events])
        for _, _, _, deck_id, version, carrier in events:  # each in its deck's trace
            attributes = {"deck.version": version, "messaging.batch.message_count": len(events)}
            with deck_span(
                "stream fan-out",
                deck_id,
                carrier=carrier,
                kind=SpanKind.CONSUMER,
                attributes=attributes,
                start_time=started,
            ):
                pass
        done = [entry_id for entry_id, *_ in events]
        await self._redis.xack(keys.EVENT_STREAM, keys.API_CONSUMER_GROUP, *done)

    async def _dead_letter(self, entry_id: Any, fields: dict[bytes, bytes], reason: str) -> None:
        logger.error("dead-lettering stream entry {}: {}", entry_id, reason)
        record: dict[Any, Any] = dict(fields)
        entry = entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()
        record.update({b"reason": reason.encode(), b"entry_id": entry})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                keys.DEAD_LETTER_STREAM,
                record,
                maxlen=10000,
                approximate=True,
            )
            pipe.xack(keys.EVENT_STREAM, keys.API_CONSUMER_GROUP, entry_id)
            await pipe.execute()


def _traceparent() -> str | None:
    return carrier_of_current().get("traceparent")


def _carrier(fields: dict[bytes, bytes]) -> dict[str, str] | None:
    traceparent = fields.get(_TRACE_FIELD)
    return {"traceparent": traceparent.decode(errors="replace")} if traceparent else None
