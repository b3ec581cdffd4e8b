"""What a deck writer produces: a plan for the deck and the structured content of each slide.

A writer (the offline one or an LLM) fills these structures; the server renders a slide to HTML
through a theme, so themes stay switchable and the content stays exportable.
"""

from __future__ import annotations

from typing import Literal

import msgspec

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
