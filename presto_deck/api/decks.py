"""The deck routes of the HTTP API (v1). Each decodes, calls one use case and encodes."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import quote
from uuid import UUID

import msgspec
from litestar import Controller, MediaType, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ValidationException
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from presto_deck.api.auth import provide_user_id
from presto_deck.api.schemas import (
    DeckCreated,
    DeckCreationRequest,
    DeckList,
    DeckResponse,
    Message,
    known_theme,
)
from presto_deck.application.decks import DeckService
from presto_deck.application.export import ExportService
from presto_deck.domain.content import DeckBrief
from presto_deck.domain.events import Event
from presto_deck.domain.themes import ThemeBook


def attachment(filename: str) -> str:
    """A Content-Disposition that downloads as ``filename``, whatever its script (RFC 6266)."""
    stem, _, extension = filename.rpartition(".")
    ascii_stem = "-".join(re.findall(r"[A-Za-z0-9]+", stem)) or "deck"
    return f"attachment; filename=\"{ascii_stem}.{extension}\"; filename*=UTF-8''{quote(filename)}"


class DeckController(Controller):
    path = "/api/v1/decks"
    tags = ["decks"]
    dependencies = {"user_id": Provide(provide_user_id)}

    @post("/", status_code=HTTP_202_ACCEPTED, summary="Start generating a deck")
    async def create(
        self,
        data: JSONBody[DeckCreationRequest],
        user_id: NamedDependency[str],
        decks: NamedDependency[DeckService],
        themes: NamedDependency[ThemeBook],
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", min_length=1, max_length=255)
        ] = None,
    ) -> DeckCreated:
        theme = None if data.theme is None else known_theme(themes, data.theme)
        # The same fields, now validated; the theme by the name it is offered under.
        brief = DeckBrief(**{**msgspec.structs.asdict(data), "theme": theme})
        deck = await decks.create(user_id, brief, idempotency_key)
        return DeckCreated(deck_id=deck.id, status=deck.status)

    @get("/", summary="The caller's decks, newest first")
    async def list_decks(
        self,
        user_id: NamedDependency[str],
        decks: NamedDependency[DeckService],
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
    ) -> DeckList:
        return DeckList.of(await decks.list(user_id, limit, offset), limit, offset)

    @get("/{deck_id:uuid}", summary="A deck with its slides")
    async def get_deck(
        self,
        deck_id: FromPath[UUID],
        user_id: NamedDependency[str],
        decks: NamedDependency[DeckService],
    ) -> DeckResponse:
        return DeckResponse.of_view(await decks.get(user_id, deck_id))

    @get("/{deck_id:uuid}/events", summary="Persisted events after a version, in order")
    async def list_events(
        self,
        deck_id: FromPath[UUID],
        user_id: NamedDependency[str],
        decks: NamedDependency[DeckService],
        after_version: Annotated[int, QueryParameter(ge=0, le=2**31 - 1)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 1000,
    ) -> list[Event]:
        return list(await decks.events_after(user_id, deck_id, after_version, limit))

    @get(
        "/{deck_id:uuid}/export",
        summary="The deck as one file: editable PPTX, PDF, or self-contained HTML",
        media_type=MediaType.TEXT,  # the actual type is the format's, set on the response
    )
    async def export(
        self,
        deck_id: FromPath[UUID],
        user_id: NamedDependency[str],
        exports: NamedDependency[ExportService],
        format: Annotated[str, QueryParameter(description="pptx, pdf or html", max_length=20)],
        partial: Annotated[
            bool, QueryParameter(description="Export a deck still being generated, as it is.")
        ] = False,
    ) -> Response[bytes]:
        if format not in exports.formats:
            raise ValidationException(
                f"format: {format!r} is not a format; the formats are {', '.join(exports.formats)}."
            )
        exported = await exports.export(user_id, deck_id, format, partial=partial)
        return Response(
            exported.content,
            media_type=exported.media_type,
            headers={
                "Content-Disposition": attachment(exported.filename),
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "private, no-store",
            },
        )

    @post("/{deck_id:uuid}/cancel", status_code=HTTP_202_ACCEPTED, summary="Cancel generation")
    async def cancel(
        self,
        deck_id: FromPath[UUID],
        user_id: NamedDependency[str],
        decks: NamedDependency[DeckService],
    ) -> Message:
        await decks.cancel(user_id, deck_id)
        return Message(message="Cancellation request received.")
