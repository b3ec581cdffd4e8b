"""The latest version of each deck a process has sockets on, read for all of them at once.

A socket's heartbeat is also its safety net for a live event whose Pub/Sub message was lost: it
must find out whether its deck has moved past what it sent. Asking the database for each socket
every period costs a query per socket per period when, mostly, nothing changed; here one query
reads the head of every watched deck, at most once per ``max_age_seconds`` whichever socket asks,
and a socket reads its deck's events only when its head is past what it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from uuid import UUID

from loguru import logger

from presto_deck.application.ports import StorageError

#: The current version of each of these decks (a deck that no longer exists is left out).
ReadVersions = Callable[[Collection[UUID]], Awaitable[Mapping[UUID, int]]]


class DeckHeads:
    def __init__(
        self,
        read: ReadVersions,
        *,
        max_age_seconds: float = 1.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age = max_age_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._watched: Counter[UUID] = Counter()
        self._versions: Mapping[UUID, int] = {}
        self._read_at = -float("inf")
        self._reading: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def watching(self, deck_id: UUID) -> Iterator[None]:
        """Keep the deck's head among those read while the block runs (a socket is open)."""
        self._watched[deck_id] += 1
        try:
            yield
        finally:
            self._watched[deck_id] -= 1
            if self._watched[deck_id] <= 0:
                del self._watched[deck_id]

    async def version(self, deck_id: UUID) -> int | None:
        """The deck's version as read at most ``max_age_seconds`` ago; None when it is not known
        (not watched at the last read, or the read failed): then ask the database itself."""
        if self._clock() - self._read_at > self._max_age:
            if self._reading is None or self._reading.done():
                self._reading = asyncio.create_task(self._read_all(), name="deck-heads")
            # Shielded: a socket that closes while waiting must not cancel the others' read.
            await asyncio.shield(self._reading)
        return self._versions.get(deck_id)

    async def _read_all(self) -> None:
        started = self._clock()
        watched = list(self._watched)
        try:
            # Bounded: every socket of the process waits for this one read, and a connection
            # that hangs (a half-open socket, a frozen server) must not stop all their beats.
            async with asyncio.timeout(self._timeout):
                self._versions = await self._read(watched)
        except (StorageError, TimeoutError) as exc:  # each socket falls back on its own look
            logger.warning("could not read the versions of the watched decks: {!r}", exc)
            self._versions = {}
        self._read_at = started
