"""After the commit: append events to the stream, then mark them published (the outbox).

Marking costs a transaction. A worker writing many slides marks what it published in batches,
``mark_after_seconds`` after the first unmarked publish, in one transaction for all its decks:
an event published but not marked yet (the process stopped before its batch) is published
again by the relay, which sockets ignore; an event committed but not published never is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

from loguru import logger

from presto_deck.application.ports import (
    Clock,
    EventPublisher,
    PublishError,
    StorageError,
    UnitOfWorkFactory,
)
from presto_deck.domain.events import Event


class EventPublishing:
    """Publishes committed events; whatever fails here is left for the relay, never lost."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        publisher: EventPublisher,
        clock: Clock,
        *,
        mark_after_seconds: float = 0.0,
    ) -> None:
        """``mark_after_seconds``: 0 marks each publish at once, in a transaction of its own."""
        self._uow = uow
        self._publisher = publisher
        self._clock = clock
        self._mark_after = mark_after_seconds
        self._unmarked: list[Event] = []
        self._marking: asyncio.Task[None] | None = None

    async def publish(self, events: Sequence[Event]) -> bool:
        """Publish events that were just committed; False if they were left to the relay."""
        if not events:
            return True
        try:
            await self._publisher.publish(events)
        except PublishError as exc:
            logger.warning("publish failed, the outbox relay will retry: {}", exc)
            return False
        self._unmarked.extend(events)
        if not self._mark_after:
            await self.mark()
        elif self._marking is None or self._marking.done():
            self._marking = asyncio.create_task(self._mark_soon(), name="outbox-marks")
        return True

    async def mark(self) -> None:
        """Mark what was published and not marked yet, in one transaction."""
        events, self._unmarked = self._unmarked, []
        if not events:
            return
        try:
            async with self._uow() as uow:
                await uow.events.mark_published(events)
                await uow.commit()
        except StorageError as exc:
            # Published but not marked: the relay publishes them again, which sockets ignore.
            logger.warning("could not mark events published: {}", exc)

    async def flush(self) -> None:
        """Mark what waits for its batch now (the process is stopping), leaving no task behind."""
        if self._marking is not None:
            self._marking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._marking
            self._marking = None
        await self.mark()

    async def _mark_soon(self) -> None:
        await asyncio.sleep(self._mark_after)
        await self.mark()

    async def relay(self, older_than_seconds: float = 2.0, batch: int = 500) -> int:
        """Publish events committed more than ``older_than_seconds`` ago but never published."""
        await self.mark()  # first what is published already, so as not to publish it again
        cutoff = self._clock() - timedelta(seconds=older_than_seconds)
        async with self._uow() as uow:
            events = await uow.events.unpublished(cutoff, batch)
        if events and await self._publish_and_mark(events):
            logger.info("outbox relay published {} event(s)", len(events))
            return len(events)
        return 0

    async def _publish_and_mark(self, events: Sequence[Event]) -> bool:
        """Publish and mark at once, whatever the batching: the relay's work is done here."""
        if not await self.publish(events):
            return False
        await self.mark()
        return True
