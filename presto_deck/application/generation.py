"""Generate a deck: plan it, write its slides one by one, finish it.

Each step is one transaction on the locked deck row: the data, the version bump and the event
are committed together and published afterwards. A step first re-reads the deck, so the job is
idempotent and resumable: a duplicate or re-delivered job, or one that takes over from a dead
worker, continues after the last committed slide and never writes a slide or an event twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar
from uuid import UUID, uuid4

from loguru import logger

from presto_deck.application.ports import (
    CancelFlags,
    Clock,
    DeckWriter,
    SlideRenderer,
    UnitOfWork,
    UnitOfWorkFactory,
    WriterError,
)
from presto_deck.application.publishing import EventPublishing
from presto_deck.domain.content import DeckPlan, SlideContent
from presto_deck.domain.deck import Deck, DeckStatus, Slide

_T = TypeVar("_T")

#: A step's change to the locked deck; returns False when there was nothing to do.
_Change = Callable[[Deck, UnitOfWork], Awaitable[bool]]


class DeckGenerator:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        writer: DeckWriter,
        renderer: SlideRenderer,
        publishing: EventPublishing,
        cancel_flags: CancelFlags,
        clock: Clock,
        worker_id: str,
        lease_seconds: float,
    ) -> None:
        self._uow = uow
        self._writer = writer
        self._renderer = renderer
        self._publishing = publishing
        self._cancel_flags = cancel_flags
        self._clock = clock
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds

    async def generate(self, deck_id: UUID) -> DeckStatus | None:
        """Take the deck as far as it goes; returns its status, or None if there is no such deck."""
        async with self._lease(deck_id):
            try:
                return await self._run(deck_id)
            except WriterError as exc:
                logger.warning("writer gave up on deck {}: {}", deck_id, exc)
                return await self._fail(deck_id, str(exc) or type(exc).__name__)

    async def _run(self, deck_id: UUID) -> DeckStatus | None:
        deck = await self._step(deck_id, self._start)
        if deck is None or not deck.status.is_active:
            return _status(deck)
        plan = deck.plan
        if plan is None:
            plan = await self._writing(self._writer.plan(deck.brief))
            deck = await self._step(deck_id, _set_plan(plan, self._clock))
            if deck is None or deck.status is not DeckStatus.GENERATING or deck.plan is None:
                return _status(deck)
            plan = deck.plan  # a concurrent run may have committed its plan first: follow that one
        async with self._uow() as uow:
            written = await uow.slides.count(deck_id)
        total = len(plan.slides)
        for index in range(written, total):
            if await self._cancel_flags.is_requested(deck_id):
                deck = await self._step(deck_id, _nothing)  # cancels, as PostgreSQL says
                if deck is None or deck.status is not DeckStatus.GENERATING:
                    return _status(deck)
            content = await self._writing(self._writer.write_slide(deck.brief, plan, index))
            html = await self._writing(
                asyncio.to_thread(self._renderer.render, content, deck.brief.theme, index, total)
            )
            deck = await self._step(deck_id, self._add_slide(index, html, content))
            if deck is None or deck.status is not DeckStatus.GENERATING:
                return _status(deck)
        return _status(await self._step(deck_id, self._complete(total)))

    @staticmethod
    async def _writing(call: Awaitable[_T]) -> _T:
        """Await the writer or renderer; whatever goes wrong there fails the deck, never stalls it.

        Retrying belongs to the writer, which knows what is transient: an error reaching this
        point would only repeat, so the deck ends as FAILED instead of being swept forever.
        """
        try:
            return await call
        except WriterError:
            raise
        except Exception as exc:
            logger.opt(exception=exc).error("writer error")
            raise WriterError(f"the writer failed: {type(exc).__name__}: {exc}") from exc

    # -- steps: each runs under the deck's row lock, in one transaction ---------------------------

    async def _step(self, deck_id: UUID, change: _Change) -> Deck | None:
        """Lock the deck, honour a cancellation request, apply ``change``, commit, publish."""
        async with self._uow() as uow:
            deck = await uow.decks.lock(deck_id)
            if deck is None:
                logger.warning("deck {} does not exist; nothing to generate", deck_id)
                return None
            if not deck.status.is_active:
                return deck
            if deck.cancel_requested:
                deck.cancel(self._clock())
            elif not await change(deck, uow):
                return deck
            await uow.decks.save(deck)
            await uow.commit()
        await self._publishing.publish(deck.take_events())
        return deck

    async def _start(self, deck: Deck, uow: UnitOfWork) -> bool:
        await uow.decks.claim(deck.id, self._worker_id, self._lease_deadline())
        if deck.status is DeckStatus.PENDING:
            deck.start(self._clock())
        return True  # commit the claim even when another worker had started the deck

    def _add_slide(self, index: int, html: str, content: SlideContent) -> _Change:
        async def change(deck: Deck, uow: UnitOfWork) -> bool:
            if await uow.slides.count(deck.id) != index:
                return False  # another run of this job committed the slide first
            now = self._clock()
            slide = Slide(
                id=uuid4(),
                deck_id=deck.id,
                order=index + 1,
                html_content=html,
                presenter_notes=content.notes or None,
                created_at=now,
                updated_at=now,
            )
            await uow.slides.add(slide)
            deck.add_generated_slide(slide, now)
            return True

        return change

    def _complete(self, total: int) -> _Change:
        async def change(deck: Deck, uow: UnitOfWork) -> bool:
            if deck.status is not DeckStatus.GENERATING or await uow.slides.count(deck.id) < total:
                return False
            deck.complete(total, self._clock())
            return True

        return change

    async def _fail(self, deck_id: UUID, error: str) -> DeckStatus | None:
        async def change(deck: Deck, uow: UnitOfWork) -> bool:
            deck.fail(error, self._clock())
            return True

        return _status(await self._step(deck_id, change))

    # -- the lease: tells the sweep that a live worker owns this deck -----------------------------

    def _lease_deadline(self) -> datetime:
        return self._clock() + timedelta(seconds=self._lease_seconds)

    @contextlib.asynccontextmanager
    async def _lease(self, deck_id: UUID) -> AsyncIterator[None]:
        renewal = asyncio.create_task(self._renew_lease(deck_id))
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            with contextlib.suppress(Exception):
                async with self._uow() as uow:
                    await uow.decks.release(deck_id, self._worker_id)
                    await uow.commit()

    async def _renew_lease(self, deck_id: UUID) -> None:
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                async with self._uow() as uow:
                    await uow.decks.claim(deck_id, self._worker_id, self._lease_deadline())
                    await uow.commit()
            except Exception as exc:  # a missed renewal only risks a harmless duplicate run
                logger.warning("could not renew the lease on deck {}: {}", deck_id, exc)


def _set_plan(plan: DeckPlan, clock: Clock) -> _Change:
    async def change(deck: Deck, uow: UnitOfWork) -> bool:
        if deck.status is not DeckStatus.PLANNING:
            return False
        deck.set_plan(plan, clock())
        return True

    return change


async def _nothing(deck: Deck, uow: UnitOfWork) -> bool:
    return False


def _status(deck: Deck | None) -> DeckStatus | None:
    return None if deck is None else deck.status
