"""Take a deck out of the product as a file: one use case, whichever the format."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from presto_deck.application.ports import DeckExporter, UnitOfWorkFactory
from presto_deck.domain.deck import DeckBusy, DeckNotFound

_MAX_NAME_LENGTH = 80


@dataclass(frozen=True, kw_only=True)
class ExportedDeck:
    filename: str
    media_type: str
    content: bytes


class ExportService:
    def __init__(self, *, uow: UnitOfWorkFactory, exporters: Mapping[str, DeckExporter]) -> None:
        self._uow = uow
        self._exporters = exporters

    @property
    def formats(self) -> list[str]:
        return sorted(self._exporters)

    async def export(
        self, user_id: str, deck_id: UUID, format_name: str, *, partial: bool = False
    ) -> ExportedDeck:
        """The deck as a file; raises ``DeckNotFound``, or ``DeckBusy`` while it is being
        generated unless ``partial`` (then the slides written so far)."""
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
        content = await asyncio.to_thread(exporter.export, deck, slides)
        return ExportedDeck(
            filename=f"{file_stem(deck.title)}.{exporter.extension}",
            media_type=exporter.media_type,
            content=content,
        )


def file_stem(title: str) -> str:
    """A file name from a deck's title: its words, in any script, joined by hyphens."""
    normal = unicodedata.normalize("NFKC", title)
    words = re.findall(r"\w+", normal)
    stem = "-".join(words)[:_MAX_NAME_LENGTH].strip("-_")
    return stem or "deck"
