"""The live events of a process's sockets: one Pub/Sub subscription per deck, whatever the number
of its sockets, on Litestar's channels plugin with its in-memory backend."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any
from uuid import UUID, uuid4

import pytest
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend

from presto_deck.application.replay import Inbox
from presto_deck.infrastructure.messaging.keys import deck_channel
from presto_deck.infrastructure.messaging.live import DeckFeeds


class SlowBackend(MemoryChannelsBackend):
    """Subscribes once ``opened`` is set, and counts its subscribe and unsubscribe calls."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = asyncio.Event()
        self.opened.set()
        self.subscribes = 0
        self.unsubscribes = 0

    async def subscribe(self, channels: Iterable[str]) -> None:
        self.subscribes += 1
        await self.opened.wait()
        await super().subscribe(channels)

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        self.unsubscribes += 1
        await super().unsubscribe(channels)


@pytest.fixture
def backend() -> SlowBackend:
    return SlowBackend()


@pytest.fixture
async def channels(backend: SlowBackend) -> Any:
    async with ChannelsPlugin(backend=backend, arbitrary_channels_allowed=True) as plugin:
        yield plugin


async def publish(channels: ChannelsPlugin, deck_id: UUID, frame: bytes) -> None:
    await channels.wait_published(frame, [deck_channel(deck_id)])
    await asyncio.sleep(0.05)  # through the plugin's and the feed's tasks


def frames(inbox: Inbox) -> list[bytes]:
    out = []
    while (frame := inbox.pop()) is not None:
        out.append(frame)
    return out


async def test_the_sockets_of_a_deck_share_one_subscription_and_each_gets_every_frame(
    channels: ChannelsPlugin, backend: SlowBackend
) -> None:
    feeds = DeckFeeds(channels)
    deck, other = uuid4(), uuid4()
    inboxes = [Inbox(10) for _ in range(3)]
    elsewhere = Inbox(10)

    async with (
        feeds.following(deck, inboxes[0]),
        feeds.following(deck, inboxes[1]),
        feeds.following(deck, inboxes[2]),
        feeds.following(other, elsewhere),
    ):
        await publish(channels, deck, b"one")
        await publish(channels, deck, b"two")
        followers = feeds.followers(deck)

    assert [frames(inbox) for inbox in inboxes] == [[b"one", b"two"]] * 3
    assert frames(elsewhere) == []
    assert followers == frozenset(inboxes)
    assert (backend.subscribes, backend.unsubscribes) == (2, 2)  # one of each a deck


async def test_the_last_socket_to_leave_ends_the_subscription_and_a_later_one_starts_anew(
    channels: ChannelsPlugin, backend: SlowBackend
) -> None:
    feeds = DeckFeeds(channels)
    deck = uuid4()
    first, later = Inbox(10), Inbox(10)

    async with feeds.following(deck, first):
        pass
    await publish(channels, deck, b"while nobody follows")
    unsubscribed = backend.unsubscribes
    async with feeds.following(deck, later):
        await publish(channels, deck, b"later")

    assert unsubscribed == 1
    assert frames(first) == []
    assert frames(later) == [b"later"]
    assert feeds.followers(deck) == frozenset()


async def test_a_socket_follows_only_once_its_deck_is_subscribed_even_when_another_asked_first(
    channels: ChannelsPlugin, backend: SlowBackend
) -> None:
    feeds = DeckFeeds(channels)
    deck = uuid4()
    backend.opened.clear()  # Redis is slow to answer the SUBSCRIBE
    entered: list[str] = []
    leave = asyncio.Event()

    async def follow(name: str) -> None:
        async with feeds.following(deck, Inbox(10)):
            entered.append(name)
            await leave.wait()

    tasks = [asyncio.create_task(follow(name)) for name in ("first", "second")]
    await asyncio.sleep(0.05)
    before = list(entered)
    backend.opened.set()
    await asyncio.sleep(0.05)
    after = sorted(entered)
    leave.set()
    await asyncio.gather(*tasks)

    assert before == []
    assert after == ["first", "second"]
    assert backend.subscribes == 1


async def test_a_socket_that_leaves_while_its_deck_is_being_subscribed_leaves_no_subscription(
    channels: ChannelsPlugin, backend: SlowBackend
) -> None:
    feeds = DeckFeeds(channels)
    deck = uuid4()
    backend.opened.clear()

    async def follow() -> None:
        async with feeds.following(deck, Inbox(10)):
            pass

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.01)
    backend.opened.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)

    assert (backend.subscribes, backend.unsubscribes) == (1, 1)
    assert feeds.followers(deck) == frozenset()


async def test_catching_up_tells_every_socket_of_every_deck(channels: ChannelsPlugin) -> None:
    feeds = DeckFeeds(channels)
    inboxes = [Inbox(10) for _ in range(3)]

    async with (
        feeds.following(uuid4(), inboxes[0]),
        feeds.following(uuid4(), inboxes[1]),
        feeds.following(uuid4(), inboxes[2]),
    ):
        told = feeds.catch_up_all()

    assert told == 3
    assert all(inbox.told_to_catch_up() for inbox in inboxes)


async def test_a_frame_that_comes_while_sockets_are_woken_joins_the_first_for_those_not_yet_woken(
    channels: ChannelsPlugin,
) -> None:
    # A deck's events often come in twos (its last slide and its completion). Woken all at
    # once, a thousand sockets would each send the first alone, and the second only after all
    # of them; woken in turns, the event loop reads the second between turns, and the sockets
    # not woken yet take both in one go.
    feeds = DeckFeeds(channels)
    deck = uuid4()
    inboxes = [Inbox(10) for _ in range(1000)]
    takes: list[list[list[bytes]]] = [[] for _ in inboxes]
    second_sent = asyncio.Event()

    async def socket(index: int) -> None:
        inbox = inboxes[index]
        while sum(map(len, takes[index])) < 2:
            await inbox.wait(asyncio.get_running_loop().time() + 5)
            takes[index].append(frames(inbox))
            if not second_sent.is_set():  # the first socket woken: the second frame comes
                second_sent.set()
                await channels.wait_published(b"two", [deck_channel(deck)])

    async with contextlib.AsyncExitStack() as stack:
        for inbox in inboxes:
            await stack.enter_async_context(feeds.following(deck, inbox))
        async with asyncio.timeout(5):
            sockets = [asyncio.create_task(socket(index)) for index in range(len(inboxes))]
            await channels.wait_published(b"one", [deck_channel(deck)])
            await asyncio.gather(*sockets)

    woken_once = sum(take == [[b"one", b"two"]] for take in takes)
    woken_twice = sum(take == [[b"one"], [b"two"]] for take in takes)
    assert woken_once + woken_twice == len(inboxes)  # each frame once, in order
    assert woken_once > len(inboxes) / 2
    assert woken_twice >= 1
