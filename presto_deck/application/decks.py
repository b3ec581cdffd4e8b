"""Use cases of the HTTP API: create, read, list and cancel decks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID, uuid4

from loguru import logger

from presto_deck.application.ports import (
    CancelFlags,
    Clock,
    JobQueue,
    UnitOfWork,
    UnitOfWorkFactory,
)
from presto_deck.application.publishing import EventPublishing
from presto_deck.domain.content import DeckBrief
from presto_deck.domain.deck import TITLE_MAX_LENGTH, Deck, DeckNotFound, DeckStatus, Slide
from presto_deck.domain.events import Event

_PLACEHOLDER_TITLE_LENGTH = 80


@dataclass(frozen=True, kw_only=True)
class DeckView:
    deck: Deck
    slides: list[Slide]


@dataclass(frozen=True, kw_only=True)
class DeckPage:
    decks: list[Deck]
    total: int


class DeckService:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        queue: JobQueue,
        cancel_flags: CancelFlags,
        publishing: EventPublishing,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._queue = queue
        self._cancel_flags = cancel_flags
        self._publishing = publishing
        self._clock = clock

    async def create(
        self, user_id: str, brief: DeckBrief, idempotency_key: str | None = None
    ) -> Deck:
        """Store a PENDING deck and queue its generation; a repeated key returns the first deck."""
        now = self._clock()
        new = Deck(
            id=uuid4(),
            user_id=user_id,
            title=(brief.title or _placeholder_title(brief.prompt))[:TITLE_MAX_LENGTH],
            status=DeckStatus.PENDING,
            version=1,
            brief=brief,
            created_at=now,
            updated_at=now,
        )
        async with self._uow() as uow:
            deck = await uow.decks.add(new, idempotency_key)
            await uow.commit()
        if deck.id == new.id:
            await self._enqueue(deck.id)
        return deck

    async def get(self, user_id: str, deck_id: UUID) -> DeckView:
        async with self._uow() as uow:
            deck = await _owned(uow, user_id, deck_id)
            return DeckView(deck=deck, slides=await uow.slides.list(deck_id))

    async def list(self, user_id: str, limit: int, offset: int) -> DeckPage:
        async with self._uow() as uow:
            decks, total = await uow.decks.list_for_user(user_id, limit, offset)
        return DeckPage(decks=decks, total=total)

    async def current_version(self, user_id: str, deck_id: UUID) -> int:
        """The deck's version, checking that it is the user's."""
        async with self._uow() as uow:
            return (await _owned(uow, user_id, deck_id)).version

    async def events_after(
        self, user_id: str, deck_id: UUID, version: int, limit: int | None = None
    ) -> Sequence[Event]:
        async with self._uow() as uow:
            await _owned(uow, user_id, deck_id)
            return await uow.events.after(deck_id, version, limit)

    async def history(self, deck_id: UUID, version: int, limit: int) -> Sequence[Event]:
        """Events after ``version`` for a caller that has already checked ownership (a socket)."""
        async with self._uow() as uow:
            return await uow.events.after(deck_id, version, limit)

    async def cancel(self, user_id: str, deck_id: UUID) -> None:
        """Cancel a deck that is still being generated; raises DeckAlreadyFinished otherwise."""
        async with self._uow() as uow:
            deck = await uow.decks.lock(deck_id)
            if deck is None or deck.user_id != user_id:
                raise DeckNotFound(str(deck_id))
            deck.request_cancel(self._clock())
            await uow.decks.save(deck)
            await uow.commit()
        await self._publishing.publish(deck.take_events())
        if deck.cancel_requested:
            # The worker checks this flag before each slide; PostgreSQL holds the durable request.
            try:
                await self._cancel_flags.request(deck_id)
            except Exception as exc:  # the worker still sees the request when it next commits
                logger.warning("could not set the cancellation flag: {}", exc)

    async def _enqueue(self, deck_id: UUID) -> None:
        try:
            await self._queue.enqueue_generation(deck_id)
        except Exception as exc:
            # The deck is safe in PostgreSQL; the worker's sweep queues PENDING decks it finds.
            logger.warning("could not queue deck {}, the sweep will: {}", deck_id, exc)


async def _owned(uow: UnitOfWork, user_id: str, deck_id: UUID) -> Deck:
    """The user's deck; another user's deck is as missing as one that does not exist."""
    deck = await uow.decks.get(deck_id, user_id)
    if deck is None:
        raise DeckNotFound(str(deck_id))
    return deck


def _placeholder_title(prompt: str) -> str:
    line = " ".join(prompt.split())
    if len(line) <= _PLACEHOLDER_TITLE_LENGTH:
        return line
    return line[: _PLACEHOLDER_TITLE_LENGTH - 1].rstrip() + "…"
