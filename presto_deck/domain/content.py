"""What a deck writer produces: a plan for the deck and the structured content of each slide.

A writer (the offline one or an LLM) fills these structures; the server renders a slide to HTML
through a theme, so themes stay switchable and the content stays exportable.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

import msgspec

#: The theme of a deck that names none.
DEFAULT_THEME = "default"

Layout = Literal["title", "bullets", "text", "two_column", "quote", "closing"]
LAYOUTS: tuple[Layout, ...] = ("title", "bullets", "text", "two_column", "quote", "closing")


class SlideOutline(msgspec.Struct, frozen=True, kw_only=True):
    """One planned slide: what it is about, before it is written."""

    title: str
    layout: Layout = "bullets"
    key_points: list[str] = msgspec.field(default_factory=list)


class DeckPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The whole deck's flow: its title, the story it tells, and one outline per slide."""

    title: str
    summary: str = ""
    slides: list[SlideOutline]


class SlideContent(msgspec.Struct, frozen=True, kw_only=True):
    """A written slide, before rendering. ``body`` and ``bullets`` may carry inline markup."""

    layout: Layout = "bullets"
    title: str
    subtitle: str = ""
    bullets: list[str] = msgspec.field(default_factory=list)
    body: str = ""
    notes: str = ""


class DeckBrief(msgspec.Struct, frozen=True, kw_only=True):
    """What the user asked for: everything a writer needs to know about the deck."""

    prompt: str
    slide_count: int
    title: str | None = None
    template: str | None = None
    theme: str | None = None
    language: str | None = None


class SlideRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A user's request to rewrite one slide of a written deck, or to add one, with the context a
    writer needs to keep it in the deck's voice and flow."""

    brief: DeckBrief
    plan: DeckPlan | None
    prompt: str
    #: The slide as it is; None when a new slide is asked for.
    current: SlideContent | None
    #: The slides before and after where the slide stands (or will stand).
    previous: SlideContent | None = None
    following: SlideContent | None = None
    #: Where the slide stands (1-based) in the deck of ``total`` slides, itself included.
    position: int
    total: int


_Struct = TypeVar("_Struct", bound=msgspec.Struct)
#: What PostgreSQL cannot store in text or JSONB: NUL, and UTF-16 surrogates, which have no UTF-8
#: form (a model's JSON may still carry one, as the escape "\ud800").
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` without what PostgreSQL refuses: NUL dropped, a lone surrogate made U+FFFD."""
    return _UNSTORABLE.sub(lambda found: "" if found.group() == "\x00" else "\ufffd", text)


#: The most characters of one text, and items of one list, kept from a writer: far more than a
#: slide shows, far less than what would make each event a megabyte.
MAX_TEXT_LENGTH = 10_000
MAX_ITEMS = 50


def cleaned(value: _Struct) -> _Struct:
    """A copy of what a writer returned in which every string can be stored, and nothing is huge.

    A model's output is untrusted data: one NUL in a title would make every attempt to store the
    slide fail, for ever, however often the deck is retried; a 2 MB bullet would be sent to every
    socket of the deck, and replayed to each new one.
    """
    return msgspec.convert(_clean(msgspec.to_builtins(value)), type(value))


def _clean(node: Any) -> Any:
    if isinstance(node, str):
        text = storable(node)
        return text if len(text) <= MAX_TEXT_LENGTH else text[: MAX_TEXT_LENGTH - 1] + "…"
    if isinstance(node, list):
        return [_clean(item) for item in node[:MAX_ITEMS]]
    if isinstance(node, dict):
        return {key: _clean(value) for key, value in node.items()}
    return node
