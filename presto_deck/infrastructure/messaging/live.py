"""Live events in one API instance: the event stream read into Pub/Sub, Pub/Sub into sockets.

Live events travel through Redis, which may lose some (a restart, a flushed stream, a dropped
Pub/Sub connection). Each socket finds such a loss by itself on its next event or heartbeat;
when the process knows that a loss happened, it makes every socket look now instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Protocol
from uuid import UUID

from arq.connections import ArqRedis
from litestar.channels import ChannelsPlugin
from litestar.channels.subscriber import Subscriber
from loguru import logger
from redis.asyncio import Redis

from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.pubsub import ResilientPubSubBackend
from presto_deck.infrastructure.messaging.stream import StreamFanout
from presto_deck.settings import Settings

#: How the API's Pub/Sub connection shows in Redis's CLIENT LIST.
PUBSUB_CLIENT_NAME = "presto-deck-pubsub"
_STOP_STEP_SECONDS = 3.0
#: How many of a deck's sockets are woken for a frame in one turn of the event loop.
_WAKE_AT_ONCE = 50


class Follower(Protocol):
    """Where one socket's live events go (``application.replay.Inbox``)."""

    def __len__(self) -> int:
        """How many frames wait in it."""
        ...

    def put(self, frame: bytes, *, wake: bool = True) -> None: ...

    def wake(self) -> None:
        """Wake the socket if it waits for a frame."""
        ...

    def catch_up_soon(self) -> None:
        """Read what this socket may have missed from the database, without waiting."""
        ...


class _Feed:
    """One deck's Pub/Sub subscription, handed to each of its followers.

    A frame reaches every follower's inbox at once, and the followers are woken for it in turns
    of ``_WAKE_AT_ONCE``, the event loop looking at its connections between turns: one turn is
    the sending of a frame to that many sockets. Woken all at once, thousands of sockets would
    send in one pass of the loop, and a frame that came meanwhile (a deck's events often come
    in twos: its start and plan, its last slide and completion) would be read only after the
    pass, then sent in a second one; now it joins the first frame in the inboxes of the
    followers not yet woken, who send both, and only those woken before it are woken again.
    """

    def __init__(self, channels: ChannelsPlugin, channel: str) -> None:
        self.followers: set[Follower] = set()
        self._channels = channels
        self._subscribed = asyncio.ensure_future(channels.subscribe([channel]))
        self._tasks: list[asyncio.Task[None]] = []
        self._to_wake: deque[Follower] = deque()
        self._waking: set[Follower] = set()  # those in _to_wake
        self._woken = asyncio.Event()

    async def subscribed(self) -> None:
        """Once the subscription is in place: from then on the deck's events reach the
        followers. Shielded: a socket that closes meanwhile must not cancel it for the others."""
        subscriber = await asyncio.shield(self._subscribed)
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._hand_on(subscriber), name="deck-feed"),
                asyncio.create_task(self._wake_in_turns(), name="deck-feed-wake"),
            ]

    async def _hand_on(self, subscriber: Subscriber) -> None:
        async for frame in subscriber.iter_events():
            for follower in self.followers:
                follower.put(frame, wake=False)
                if follower not in self._waking:
                    self._waking.add(follower)
                    self._to_wake.append(follower)
            self._woken.set()

    async def _wake_in_turns(self) -> None:
        while True:
            await self._woken.wait()
            self._woken.clear()
            while self._to_wake:
                for _ in range(min(_WAKE_AT_ONCE, len(self._to_wake))):
                    follower = self._to_wake.popleft()
                    self._waking.discard(follower)
                    follower.wake()
                await asyncio.sleep(0)  # their turn, and the connections'

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:  # a subscription still on its way is let finish, then undone
            subscriber = await asyncio.shield(self._subscribed)
        except Exception:  # it failed: nothing to undo
            return
        await self._channels.unsubscribe(subscriber)


class DeckFeeds:
    """The live events of each deck this process has sockets on: one subscription per deck,
    whatever the number of its sockets, handed to each socket's inbox; and every socket told
    at once to catch up when live events may have been lost."""

    def __init__(self, channels: ChannelsPlugin) -> None:
        self._channels = channels
        self._feeds: dict[str, _Feed] = {}

    @contextlib.asynccontextmanager
    async def following(self, deck_id: UUID, follower: Follower) -> AsyncIterator[None]:
        """The deck's live events reach ``follower`` from the moment the block starts until it
        ends."""
        channel = keys.deck_channel(deck_id)
        feed = self._feeds.get(channel)
        if feed is None:
            feed = self._feeds[channel] = _Feed(self._channels, channel)
        feed.followers.add(follower)
        try:
            await feed.subscribed()
            yield
        finally:
            feed.followers.discard(follower)
            if not feed.followers and self._feeds.get(channel) is feed:
                del self._feeds[channel]
                await feed.close()

    def followers(self, deck_id: UUID) -> frozenset[Follower]:
        feed = self._feeds.get(keys.deck_channel(deck_id))
        return frozenset() if feed is None else frozenset(feed.followers)

    def catch_up_all(self) -> int:
        """Tell every follower to catch up; how many there were."""
        told = 0
        for feed in list(self._feeds.values()):
            for follower in list(feed.followers):
                follower.catch_up_soon()
                told += 1
        return told


class LiveEvents:
    """The stream's consumer, the Pub/Sub plugin the sockets subscribe through, and the channel
    on which any instance tells all the others that their sockets must catch up."""

    def __init__(self, settings: Settings, redis: ArqRedis) -> None:
        # Pub/Sub holds one connection per process and must not hit the client's read timeout.
        self._pubsub_redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=5,
            health_check_interval=30,
            client_name=PUBSUB_CLIENT_NAME,
        )
        self._pubsub = ResilientPubSubBackend(
            redis=self._pubsub_redis,
            namespace=keys.channels_prefix(settings.redis_url),
            on_reconnect=self._catch_up_all,
        )
        self.channels = ChannelsPlugin(
            backend=self._pubsub,
            arbitrary_channels_allowed=True,
            # Live events a deck's feed may fall behind by before the oldest are dropped (it
            # hands each on to its sockets' inboxes at once; each inbox has the same bound); a
            # drop shows up as a version gap, which the sockets backfill from PostgreSQL.
            subscriber_max_backlog=settings.ws_send_queue,
            subscriber_backlog_strategy="dropleft",
        )
        self.feeds = DeckFeeds(self.channels)
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

    def _catch_up_all(self) -> None:
        self.feeds.catch_up_all()

    async def _broadcast(self, messages: Sequence[tuple[str, bytes]]) -> None:
        await self._pubsub.publish_each(messages)

    async def _tell_all_to_catch_up(self) -> None:
        await self.channels.wait_published(b"", [keys.CATCH_UP_CHANNEL])

    async def _catch_up_when_told(self) -> None:
        async with self.channels.start_subscription([keys.CATCH_UP_CHANNEL]) as subscriber:
            async for _ in subscriber.iter_events():
                if told := self.feeds.catch_up_all():
                    logger.info("live events may have been lost; {} socket(s) catch up", told)
