"""After the commit: append events to the stream, then mark them published (the outbox)."""

from __future__ import annotations

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

    def __init__(self, uow: UnitOfWorkFactory, publisher: EventPublisher, clock: Clock) -> None:
        self._uow = uow
        self._publisher = publisher
        self._clock = clock

    async def publish(self, events: Sequence[Event]) -> bool:
        """Publish events that were just committed; False if they were left to the relay."""
        if not events:
            return True
        try:
            await self._publisher.publish(events)
        except PublishError as exc:
            logger.warning("publish failed, the outbox relay will retry: {}", exc)
            return False
        try:
            async with self._uow() as uow:
                await uow.events.mark_published(events)
                await uow.commit()
        except StorageError as exc:
            # Published but not marked: the relay publishes them again, which sockets ignore.
            logger.warning("could not mark events published: {}", exc)
        return True

    async def relay(self, older_than_seconds: float = 2.0, batch: int = 500) -> int:
        """Publish events committed more than ``older_than_seconds`` ago but never published."""
        cutoff = self._clock() - timedelta(seconds=older_than_seconds)
        async with self._uow() as uow:
            events = await uow.events.unpublished(cutoff, batch)
        if events and await self.publish(events):
            logger.info("outbox relay published {} event(s)", len(events))
            return len(events)
        return 0
