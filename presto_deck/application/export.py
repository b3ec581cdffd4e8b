"""Take a deck out of the product as a file: one use case, whichever the format.

Drawing a file is CPU work (a 30-slide PDF takes a few hundred milliseconds), done in a thread;
so that exports cannot starve the process's sockets, each user has a rate and each process
draws a bounded number of files at once (the others wait their turn)."""

from __future__ import annotations

import asyncio
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from presto_deck.application.limits import (
    ExportRateExceeded,
    ExportsBusy,
    LimitExceeded,
    count_action,
)
from presto_deck.application.ports import DeckExporter, RateLimiter, UnitOfWorkFactory
from presto_deck.domain.deck import DeckBusy, DeckEmpty, DeckNotFound

_MAX_NAME_LENGTH = 80
#: The longest an export waits for its turn to be drawn before it is refused (429): the wait
#: of one user's exports cannot grow without bound behind another's.
_QUEUE_SECONDS = 10.0


@dataclass(frozen=True, kw_only=True)
class ExportedDeck:
    filename: str
    media_type: str
    content: bytes


class ExportService:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        exporters: Mapping[str, DeckExporter],
        rate: RateLimiter,
        concurrency: int,
    ) -> None:
        self._uow = uow
        self._exporters = exporters
        self._rate = rate
        self._drawing = asyncio.Semaphore(concurrency)

    @property
    def formats(self) -> list[str]:
        return sorted(self._exporters)

    async def export(
        self, user_id: str, deck_id: UUID, format_name: str, *, partial: bool = False
    ) -> ExportedDeck:
        """The deck as a file; raises ``DeckNotFound``, ``DeckBusy`` while it is being
        generated unless ``partial`` (then the slides written so far), ``DeckEmpty`` when it has
        no slides (yet), and ``ExportRateExceeded`` past the user's rate."""
        exporter = self._exporters[format_name]
        async with self._uow() as uow:
            deck = await uow.decks.get(deck_id, user_id)
            if deck is None:
                raise DeckNotFound(str(deck_id))
            if deck.status.is_active and not partial:
                raise DeckBusy(
                    f"The deck is {deck.status}: export it once it has ended, or ask for the "
                    "slides written so far with partial=true."
                )
            slides = await uow.slides.list(deck_id)
        if not slides:
            raise DeckEmpty("The deck has no slides to export.")
        # Counted once there is something to draw: asking about a deck still being written
        # (a 409) costs the user nothing.
        await count_action(self._rate, user_id, _too_many_exports, "export")
        try:
            async with asyncio.timeout(_QUEUE_SECONDS):
                await self._drawing.acquire()
        except TimeoutError:
            raise ExportsBusy(
                "The server is drawing other exports; try again in a few seconds.",
                retry_after=_QUEUE_SECONDS,
            ) from None
        try:
            content = await asyncio.to_thread(exporter.export, deck, slides)
        finally:
            self._drawing.release()
        return ExportedDeck(
            filename=f"{file_stem(deck.title)}.{exporter.extension}",
            media_type=exporter.media_type,
            content=content,
        )


def _too_many_exports(wait: float) -> LimitExceeded:
    return ExportRateExceeded(
        f"Too many exports in the last minute; try again in {math.ceil(wait)} s.", retry_after=wait
    )


def file_stem(title: str) -> str:
    """A file name from a deck's title: its words, in any script, joined by hyphens."""
    normal = unicodedata.normalize("NFKC", title)
    words = re.findall(r"\w+", normal)
    stem = "-".join(words)[:_MAX_NAME_LENGTH].strip("-_")
    return stem or "deck"
