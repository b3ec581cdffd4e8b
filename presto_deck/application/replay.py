"""Deliver a deck's events to one socket: each version once, in order, with no gap.

The socket subscribes to live events *before* it reads history, so nothing committed in between
is missed; live events then overlap the history and may arrive late, twice or not at all (a lost
Pub/Sub message, a dropped backlog). The cursor below decides for each live event whether to
send it, skip it, or first backfill the gap from PostgreSQL, which never loses an event. The deck
version is the offset, as the stream position is in Centrifuge's recovery.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence

from presto_deck.domain.events import Event, encode_event, peek_version


class Verdict(enum.Enum):
    SEND = "send"  # the next version: deliver it
    SKIP = "skip"  # already delivered (replayed from history, or a repeat)
    BACKFILL = "backfill"  # versions are missing before it: read them from the database


class DeliveryCursor:
    """The last version a socket delivered."""

    def __init__(self, delivered: int) -> None:
        self.delivered = delivered

    def judge(self, version: int) -> Verdict:
        if version <= self.delivered:
            return Verdict.SKIP
        if version == self.delivered + 1:
            return Verdict.SEND
        return Verdict.BACKFILL

    def advance(self, version: int) -> None:
        if version != self.delivered + 1:
            raise ValueError(f"version {version} does not follow {self.delivered}")
        self.delivered = version


#: Reads persisted events after a version, at most ``limit`` of them, in order.
History = Callable[[int, int], Awaitable[Sequence[Event]]]
#: Sends one encoded event to the client.
Send = Callable[[bytes], Awaitable[None]]


class EventDelivery:
    """Runs the cursor against a socket: live frames in, ordered frames out.

    A live frame past a gap is either backfilled from the database at once, or, offered with
    ``hold``, kept back while the gap is open (``gap``): the API instances each fan out the
    stream entries they read, so two consecutive events may arrive in the wrong order, and the
    missing one then comes a moment later. Whoever holds frames closes the gap with
    ``catch_up`` if it does not.
    """

    def __init__(self, cursor: DeliveryCursor, history: History, send: Send, page: int = 500):
        self.cursor = cursor
        self._history = history
        self._send = send
        self._page = page
        self._held: dict[int, bytes] = {}  # version -> frame, all past a gap

    @property
    def gap(self) -> bool:
        """Whether frames are held back behind a version that has not come yet."""
        return bool(self._held)

    async def catch_up(self) -> int:
        """Send every persisted event after the cursor; returns how many were sent."""
        sent = 0
        while True:
            events = await self._history(self.cursor.delivered, self._page)
            for event in events:
                if self.cursor.judge(event.version) is not Verdict.SEND:
                    # The log has a hole (it never should): stop rather than skip a version.
                    return sent + await self._send_held()
                await self._send(encode_event(event))
                self.cursor.advance(event.version)
                sent += 1
            if len(events) < self._page:
                return sent + await self._send_held()

    async def offer(self, data: bytes, *, hold: bool = False) -> None:
        """Handle one live frame from the fan-out; with ``hold``, one past a gap is kept back
        (at most a page of them) instead of backfilling the gap now."""
        version = peek_version(data).version
        match self.cursor.judge(version):
            case Verdict.SKIP:
                return
            case Verdict.SEND:
                await self._send(data)
                self.cursor.advance(version)
                await self._send_held()
            case Verdict.BACKFILL if hold and len(self._held) < self._page:
                self._held[version] = data
            case Verdict.BACKFILL:
                await self.catch_up()

    async def _send_held(self) -> int:
        """The held frames that now follow the cursor; those it passed are dropped."""
        sent = 0
        while (data := self._held.pop(self.cursor.delivered + 1, None)) is not None:
            await self._send(data)
            self.cursor.advance(self.cursor.delivered + 1)
            sent += 1
        for version in [v for v in self._held if v <= self.cursor.delivered]:
            del self._held[version]
        return sent


class Inbox:
    """Live frames that reached one socket and wait to be offered to its delivery, and whether
    it was told to catch up. At most ``limit`` frames wait: past that the oldest is dropped,
    and the gap it leaves is backfilled from the database like any lost live event.

    Thousands of sockets each hold one, mostly empty: it is a list and one future at a time,
    not an asyncio queue (three deques and an event, several KiB each).
    """

    __slots__ = ("_catch_up", "_frames", "_limit", "_waiter")

    def __init__(self, limit: int) -> None:
        self._limit = max(limit, 1)
        self._frames: list[bytes] = []
        self._catch_up = False
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: bytes, *, wake: bool = True) -> None:
        """Add a frame; without ``wake``, whoever waits for it is woken by a later ``wake``
        (or finds it when it next looks)."""
        self._frames.append(frame)
        if len(self._frames) > self._limit:
            del self._frames[0]
        if wake:
            self.wake()

    def catch_up_soon(self) -> None:
        """Live events may have been lost: read the database at once, not at the next beat."""
        self._catch_up = True
        self.wake()

    def pop(self) -> bytes | None:
        """The oldest waiting frame, if any."""
        return self._frames.pop(0) if self._frames else None

    def told_to_catch_up(self) -> bool:
        """Whether it was told to catch up since the last time this was asked."""
        told, self._catch_up = self._catch_up, False
        return told

    async def wait(self, deadline: float) -> None:
        """Until a frame or a catch-up waits, or the event loop's clock reaches ``deadline``."""
        if self._frames or self._catch_up:
            return
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_at(deadline, self.wake)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def wake(self) -> None:
        """Wake whoever waits, if anyone does."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
