"""Nothing stays stuck: find decks and edits whose worker died and queue them again; relay the
outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from loguru import logger

from presto_deck.application.ports import Clock, JobQueue, UnitOfWorkFactory
from presto_deck.application.publishing import EventPublishing


@dataclass(frozen=True)
class SweepReport:
    requeued: int
    relayed: int
    requeued_edits: int = 0


@dataclass(frozen=True)
class Census:
    """Decks still being generated or waiting to be, and the age of the oldest of them."""

    active: int
    oldest_seconds: float


class Recovery:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        queue: JobQueue,
        publishing: EventPublishing,
        clock: Clock,
        lease_seconds: float,
    ) -> None:
        self._uow = uow
        self._queue = queue
        self._publishing = publishing
        self._clock = clock
        self._lease_seconds = lease_seconds

    async def sweep(self, batch: int = 100) -> SweepReport:
        """Requeue active decks with no live worker, then publish events left unpublished."""
        async with self._uow() as uow:
            stalled = await uow.decks.stalled(self._clock(), self._lease_seconds, batch)
        requeued = 0
        for deck_id in stalled:
            with logger.contextualize(deck_id=str(deck_id)):
                logger.info("requeueing deck {}: no live worker holds it", deck_id)
                try:
                    await self._queue.requeue_generation(deck_id)
                    requeued += 1
                except Exception as exc:  # one failure must not hold up the others or the relay
                    logger.warning("could not requeue deck {}: {}", deck_id, exc)
        requeued_edits = await self._requeue_edits(batch)
        relayed = await self._publishing.relay()
        return SweepReport(requeued=requeued, relayed=relayed, requeued_edits=requeued_edits)

    async def census(self) -> Census:
        """How many decks are active now, and the oldest's age (for the operator's metrics)."""
        async with self._uow() as uow:
            active, oldest = await uow.decks.active()
        return Census(active=active, oldest_seconds=_seconds_since(oldest, self._clock()))

    async def _requeue_edits(self, batch: int) -> int:
        """Queue again the edits whose worker died, or whose job Redis lost."""
        async with self._uow() as uow:
            stalled = await uow.edits.stalled(self._clock(), self._lease_seconds, batch)
        requeued = 0
        for deck_id, edit_id in stalled:
            with logger.contextualize(deck_id=str(deck_id)):
                logger.info("requeueing edit {}: no live worker holds it", edit_id)
                try:
                    await self._queue.requeue_edit(deck_id, edit_id)
                    requeued += 1
                except Exception as exc:
                    logger.warning("could not requeue edit {}: {}", edit_id, exc)
        return requeued


def _seconds_since(then: datetime | None, now: datetime) -> float:
    return 0.0 if then is None else max((now - then).total_seconds(), 0.0)
