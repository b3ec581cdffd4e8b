"""Live events in one API instance: the event stream read into Pub/Sub, Pub/Sub into sockets.

Live events travel through Redis, which may lose some (a restart, a flushed stream, a dropped
Pub/Sub connection). Each socket finds such a loss by itself on its next event or heartbeat;
when the process knows that a loss happened, it makes every socket look now instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from arq.connections import ArqRedis
from litestar.channels import ChannelsPlugin
from loguru import logger
from redis.asyncio import Redis

from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.pubsub import ResilientPubSubBackend
from presto_deck.infrastructure.messaging.stream import StreamFanout
from presto_deck.settings import Settings

#: How the API's Pub/Sub connection shows in Redis's CLIENT LIST.
PUBSUB_CLIENT_NAME = "presto-deck-pubsub"
_STOP_STEP_SECONDS = 3.0


class CatchingUp(Protocol):
    def catch_up_soon(self) -> None:
        """Read what this socket may have missed from the database, without waiting."""
        ...


class LiveSockets:
    """The sockets this process serves, so that all of them can be told at once to catch up."""

    def __init__(self) -> None:
        self._sockets: set[CatchingUp] = set()

    def add(self, socket: CatchingUp) -> None:
        self._sockets.add(socket)

    def discard(self, socket: CatchingUp) -> None:
        self._sockets.discard(socket)

    def catch_up_all(self) -> int:
        """Tell every socket to catch up; how many there were."""
        for socket in list(self._sockets):
            socket.catch_up_soon()
        return len(self._sockets)


class LiveEvents:
    """The stream's consumer, the Pub/Sub plugin the sockets subscribe through, and the channel
    on which any instance tells all the others that their sockets must catch up."""

    def __init__(self, settings: Settings, redis: ArqRedis) -> None:
        self.sockets = LiveSockets()
        # Pub/Sub holds one connection per process and must not hit the client's read timeout.
        self._pubsub_redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=5,
            health_check_interval=30,
            client_name=PUBSUB_CLIENT_NAME,
        )
        self.channels = ChannelsPlugin(
            backend=ResilientPubSubBackend(
                redis=self._pubsub_redis,
                namespace=keys.channels_prefix(settings.redis_url),
                on_reconnect=self.sockets.catch_up_all,
            ),
            arbitrary_channels_allowed=True,
            # Live events a slow socket may fall behind by before the oldest are dropped; a
            # drop shows up as a version gap, which that socket backfills from PostgreSQL.
            subscriber_max_backlog=settings.ws_send_queue,
            subscriber_backlog_strategy="dropleft",
        )
        self.fanout = StreamFanout(redis, self._broadcast, on_reset=self._tell_all_to_catch_up)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Read the stream and listen for catch-up calls (the plugin itself is started by the
        application it is a plugin of)."""
        self._tasks = [
            asyncio.create_task(self.fanout.run(), name="stream-fanout"),
            asyncio.create_task(self._catch_up_when_told(), name="catch-up-listener"),
        ]

    async def stop(self) -> None:
        """Stop reading and close the Pub/Sub connection; each wait is bounded, as Redis may
        be down."""
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_STOP_STEP_SECONDS):
                await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError, Exception):
            async with asyncio.timeout(_STOP_STEP_SECONDS):
                await self._pubsub_redis.aclose()

    async def _broadcast(self, channel: str, data: bytes) -> None:
        await self.channels.wait_published(data, [channel])

    async def _tell_all_to_catch_up(self) -> None:
        await self.channels.wait_published(b"", [keys.CATCH_UP_CHANNEL])

    async def _catch_up_when_told(self) -> None:
        async with self.channels.start_subscription([keys.CATCH_UP_CHANNEL]) as subscriber:
            async for _ in subscriber.iter_events():
                if told := self.sockets.catch_up_all():
                    logger.info("live events may have been lost; {} socket(s) catch up", told)
