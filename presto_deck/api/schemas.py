"""Request and response bodies of the HTTP API (msgspec; Litestar derives the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar.exceptions import ValidationException

from presto_deck.application.decks import DeckPage, DeckView
from presto_deck.domain.content import DEFAULT_THEME, SlideContent
from presto_deck.domain.deck import Deck, DeckStatus, Failure, Slide
from presto_deck.domain.themes import Theme, ThemeBook

#: Text PostgreSQL can store (no NUL) with at least one visible character.
_VISIBLE_TEXT = r"^[^\x00]*[^\x00\s][^\x00]*$"
#: Text PostgreSQL can store.
_STORABLE_TEXT = r"^[^\x00]*$"
_Title = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=_VISIBLE_TEXT)]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=_STORABLE_TEXT)]
_Language = Annotated[str, msgspec.Meta(min_length=1, max_length=35, pattern=_STORABLE_TEXT)]


class DeckCreationRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    prompt: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=4000,
            pattern=_VISIBLE_TEXT,
            description="What the deck is about.",
        ),
    ]
    slide_count: Annotated[int, msgspec.Meta(ge=1, le=30)] = 8
    title: _Title | None = None
    template: _Name | None = None
    theme: _Name | None = None
    language: _Language | None = None


class DeckCreated(msgspec.Struct, kw_only=True):
    deck_id: UUID
    status: DeckStatus


class SlideResponse(msgspec.Struct, kw_only=True):
    id: UUID
    order: int
    html_content: str
    presenter_notes: str | None
    created_at: datetime
    updated_at: datetime
    #: What the HTML was rendered from: layout, title, subtitle, bullets, body, notes; the texts
    #: an edit of the slide changes.
    content: SlideContent | None = None

    @classmethod
    def of(cls, slide: Slide) -> SlideResponse:
        return cls(
            id=slide.id,
            order=slide.order,
            html_content=slide.html_content,
            presenter_notes=slide.presenter_notes,
            created_at=slide.created_at,
            updated_at=slide.updated_at,
            content=slide.content,
        )


class DeckSummary(msgspec.Struct, kw_only=True):
    id: UUID
    title: str
    status: DeckStatus
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, deck: Deck) -> DeckSummary:
        return cls(**_summary_fields(deck))


class DeckResponse(DeckSummary, kw_only=True):
    deck_plan: dict[str, Any] | None
    slides: list[SlideResponse]
    #: Why a FAILED deck failed (as its DeckFailed event said); null otherwise.
    failure: Failure | None
    #: The theme the slides are drawn in.
    theme: str

    @classmethod
    def of_view(cls, view: DeckView) -> DeckResponse:
        deck = view.deck
        return cls(
            **_summary_fields(deck),
            deck_plan=None if deck.plan is None else msgspec.to_builtins(deck.plan),
            slides=[SlideResponse.of(slide) for slide in view.slides],
            failure=deck.failure,
            theme=deck.brief.theme or DEFAULT_THEME,
        )


def _summary_fields(deck: Deck) -> dict[str, Any]:
    return {
        "id": deck.id,
        "title": deck.title,
        "status": deck.status,
        "version": deck.version,
        "created_at": deck.created_at,
        "updated_at": deck.updated_at,
    }


class DeckList(msgspec.Struct, kw_only=True):
    items: list[DeckSummary]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, page: DeckPage, limit: int, offset: int) -> DeckList:
        return cls(
            items=[DeckSummary.of(deck) for deck in page.decks],
            total=page.total,
            limit=limit,
            offset=offset,
        )


class Message(msgspec.Struct, kw_only=True):
    message: str


def known_theme(themes: ThemeBook, theme: str) -> str:
    """``theme`` by the name it is offered under (case and spaces aside); a 400 that lists
    the themes if it is not one of them."""
    name = themes.named(theme)
    if name is None:
        raise ValidationException(
            f"theme: {theme!r} is not a theme; the themes are {', '.join(themes)}."
        )
    return name


class ThemeSummary(msgspec.Struct, kw_only=True):
    name: str
    label: str
    description: str

    @classmethod
    def of(cls, theme: Theme) -> ThemeSummary:
        return cls(name=theme.name, label=theme.label, description=theme.description)


class ThemeList(msgspec.Struct, kw_only=True):
    #: The default theme first.
    items: list[ThemeSummary]
