"""The Pub/Sub side of the fan-out: Litestar's Redis channels backend, made to outlive Redis.

Litestar's ``RedisChannelsPubSubBackend`` reads Pub/Sub in one generator; the first error of its
connection ends that generator, and with it the plugin's listener task, for good: every socket
of the process would then hear nothing live until the process restarts. Here the listener waits
out the outage with backoff, reconnects (redis-py subscribes the connection again to every
channel it had), and reports the reconnection: whatever was published while it was away is
lost, so the sockets must catch up from the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import Any

from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from presto_deck.infrastructure.messaging.redis_client import honour_cancellation

_FIRST_BACKOFF_SECONDS = 0.1
_MAX_BACKOFF_SECONDS = 5.0


class ResilientPubSubBackend(RedisChannelsPubSubBackend):
    def __init__(self, *, redis: Redis, namespace: str, on_reconnect: Callable[[], object]) -> None:
        """``on_reconnect`` runs each time the listener is back after losing its connection.
        Every channel's name on the server starts with ``namespace`` (Pub/Sub is one space
        for the whole server, whatever db a deployment uses)."""
        super().__init__(redis=redis, key_prefix=namespace)
        self._namespace = f"{namespace}:"
        self._on_reconnect = on_reconnect

    def _named(self, channels: Iterable[str]) -> list[str]:
        return [self._namespace + channel for channel in channels]

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        await super().publish(data, self._named(channels))

    async def publish_each(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish each (channel, data) pair, in order, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel, data in messages:
                pipe.publish(self._namespace + channel, data)
            await pipe.execute()

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        await super().unsubscribe(self._named(channels))

    async def subscribe(self, channels: Iterable[str]) -> None:
        """Subscribe; while Redis is away, note the channels for the listener's reconnection to
        subscribe to (an API instance started during an outage serves once Redis is back)."""
        names = self._named(channels)
        try:
            await super().subscribe(names)
        except (RedisError, OSError) as exc:
            honour_cancellation()
            logger.warning("Pub/Sub unavailable, subscribing once Redis is back: {}", exc)
            noted: dict[Any, Any] = dict.fromkeys(names)
            self._pub_sub.channels.update(self._pub_sub._normalize_keys(noted))
            self._has_subscribed.set()  # the listener starts, and waits out the outage

    async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        while True:
            await self._has_subscribed.wait()
            if self._pub_sub.connection is not None:
                try:
                    async for channel, data in super().stream_events():
                        yield channel.removeprefix(self._namespace), data
                except (RedisError, OSError) as exc:
                    honour_cancellation()
                    logger.warning("Pub/Sub connection lost, reconnecting: {}", exc)
            # else: subscribed during an outage, never connected yet
            await self._reconnect()

    async def _reconnect(self) -> None:
        backoff = _FIRST_BACKOFF_SECONDS
        while not await self._reconnected():
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
        logger.info("Pub/Sub connection is back")
        self._on_reconnect()

    async def _reconnected(self) -> bool:
        pub_sub = self._pub_sub
        first = pub_sub.connection is None  # subscribed during an outage
        try:
            # A connection made before resubscribes to its channels as it connects again; the
            # first one subscribes to the channels noted while Redis was away.
            await pub_sub.connect()  # type: ignore[no-untyped-call]
            if first:
                await pub_sub.subscribe(*pub_sub.channels)
        except (RedisError, OSError):
            return False
        return True
