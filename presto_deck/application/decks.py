"""Use cases of the HTTP API: create, read, list and cancel decks."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from uuid import UUID, uuid4

from loguru import logger

from presto_deck.application.limits import (
    ActiveDecksExceeded,
    CreationRateExceeded,
    LimitExceeded,
    count_action,
)
from presto_deck.application.ports import (
    CancelFlags,
    Clock,
    JobQueue,
    RateLimiter,
    UnitOfWork,
    UnitOfWorkFactory,
)
from presto_deck.application.publishing import EventPublishing
from presto_deck.application.tracing import deck_root_span, deck_span
from presto_deck.domain.content import DeckBrief
from presto_deck.domain.deck import (
    TITLE_MAX_LENGTH,
    Deck,
    DeckNotFound,
    DeckStatus,
    IdempotencyConflict,
    Slide,
)
from presto_deck.domain.events import Event

_PLACEHOLDER_TITLE_LENGTH = 80
#: The longest a request waits for Redis to queue a deck or flag a cancellation: PostgreSQL
#: already holds both, and the worker's sweep finds what Redis did not take.
_QUEUE_SECONDS = 2.0
#: When a user at the limit of active decks may try again: a deck takes longer than this, but
#: the client should not wait longer than it must once one ends or is cancelled.
_ACTIVE_DECKS_RETRY_SECONDS = 5


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
        creations: RateLimiter,
        max_active_decks: int,
    ) -> None:
        self._uow = uow
        self._queue = queue
        self._cancel_flags = cancel_flags
        self._publishing = publishing
        self._clock = clock
        self._creations = creations
        self._max_active_decks = max_active_decks

    async def create(
        self, user_id: str, brief: DeckBrief, idempotency_key: str | None = None
    ) -> Deck:
        """Store a PENDING deck and queue its generation; a repeated key returns the first deck.

        A repeat is neither counted nor refused. A new deck must pass the limit of active decks
        (``ActiveDecksExceeded``), then the user's creation rate (``CreationRateExceeded``): a
        creation refused for either is not counted against the rate.
        """
        if idempotency_key is not None:
            async with self._uow() as uow:
                earlier = await uow.decks.find_by_idempotency_key(user_id, idempotency_key)
            if earlier is not None:
                return _same_request(earlier, brief, idempotency_key)
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
        with deck_root_span("deck.create", new.id, {"deck.slide_count": brief.slide_count}):
            async with self._uow() as uow:
                deck = await self._add_within_limits(uow, new, idempotency_key)
                await uow.commit()
            if deck.id == new.id:
                await self._enqueue(deck.id)  # the job carries the trace on
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

    async def versions(self, deck_ids: Collection[UUID]) -> dict[UUID, int]:
        """The current version of each of these decks (for sockets, which checked ownership)."""
        if not deck_ids:
            return {}
        async with self._uow() as uow:
            return await uow.decks.versions(deck_ids)

    async def history(self, deck_id: UUID, version: int, limit: int) -> Sequence[Event]:
        """Events after ``version`` for a caller that has already checked ownership (a socket)."""
        async with self._uow() as uow:
            return await uow.events.after(deck_id, version, limit)

    async def cancel(self, user_id: str, deck_id: UUID) -> None:
        """Cancel a deck that is still being generated; raises DeckAlreadyFinished otherwise."""
        with contextlib.ExitStack() as span:
            async with self._uow() as uow:
                deck = await uow.decks.lock(deck_id)
                if deck is None or deck.user_id != user_id:
                    raise DeckNotFound(str(deck_id))
                span.enter_context(deck_span("deck.cancel", deck_id))  # its owner's, only
                deck.request_cancel(self._clock())
                await uow.decks.save(deck)
                await uow.commit()
            await self._publishing.publish(deck.take_events())
            if deck.cancel_requested:
                # The worker checks this flag while it writes; PostgreSQL holds the request.
                try:
                    async with asyncio.timeout(_QUEUE_SECONDS):
                        await self._cancel_flags.request(deck_id)
                except Exception as exc:  # the worker still sees the request when it commits
                    logger.warning("could not set the cancellation flag: {}", exc)

    async def _count_creation(self, user_id: str) -> None:
        def refusal(wait: float) -> LimitExceeded:
            return CreationRateExceeded(
                f"Too many decks created in the last minute; try again in {math.ceil(wait)} s.",
                retry_after=wait,
            )

        await count_action(self._creations, user_id, refusal, "deck creation")

    async def _add_within_limits(
        self, uow: UnitOfWork, new: Deck, idempotency_key: str | None
    ) -> Deck:
        # Under the user's lock, two concurrent creations cannot both count one deck too few.
        await uow.decks.lock_user(new.user_id)
        if idempotency_key is not None:  # the same key sent twice at once: the first one won
            earlier = await uow.decks.find_by_idempotency_key(new.user_id, idempotency_key)
            if earlier is not None:
                return _same_request(earlier, new.brief, idempotency_key)
        if await uow.decks.count_active(new.user_id) >= self._max_active_decks:
            raise ActiveDecksExceeded(
                f"Too many decks being generated at once (at most {self._max_active_decks}). "
                "Wait for one to finish, or cancel one, then try again.",
                retry_after=_ACTIVE_DECKS_RETRY_SECONDS,
            )
        await self._count_creation(new.user_id)  # last: only a creation that happens counts
        return await uow.decks.add(new, idempotency_key)

    async def _enqueue(self, deck_id: UUID) -> None:
        try:
            async with asyncio.timeout(_QUEUE_SECONDS):
                await self._queue.enqueue_generation(deck_id)
        except Exception as exc:
            # The deck is safe in PostgreSQL; the worker's sweep queues PENDING decks it finds.
            with logger.contextualize(deck_id=str(deck_id)):
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


def _same_request(earlier: Deck, brief: DeckBrief, key: str) -> Deck:
    """The deck a key created, if the request is the one that created it."""
    if earlier.brief != brief:
        raise IdempotencyConflict(
            f"The Idempotency-Key {key!r} was used for another request (deck {earlier.id}); "
            "use a new key for a new deck."
        )
    return earlier
