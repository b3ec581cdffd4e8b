"""Edits of a deck that has ended: what a client may ask for, and what became of each request.

Changing a slide by prompt or adding one needs the model, so those are queued for a worker; a
direct change of a slide's text, a deletion and a reorder are applied at once. Either way each
request is remembered under its request id, so that a repeat changes nothing and gets the same
answer.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from uuid import UUID

import msgspec

from presto_deck.domain.content import SlideContent, cleaned
from presto_deck.domain.deck import BadOrder, DeckFull, Failure, SlideNotFound

#: A request id chosen by a client: the same one twice means the same request.
REQUEST_ID_MAX_LENGTH = 64
#: The most slides a deck may have: far beyond any talk, and what one reorder may name.
MAX_SLIDES = 200


class _Edit(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    pass


class RewriteSlide(_Edit, frozen=True, tag="rewrite_slide"):
    """Rewrite a slide as the prompt asks (the model writes it)."""

    slide_id: UUID
    prompt: str


class InsertSlide(_Edit, frozen=True, tag="insert_slide"):
    """Write a new slide about the prompt, after ``after_slide_id`` (first when None)."""

    prompt: str
    after_slide_id: UUID | None = None


class ChangeSlideText(_Edit, frozen=True, tag="change_slide_text"):
    """Replace some of a slide's texts, without the model; None leaves a text as it is.

    The texts are what the user typed: a bullet's "<" is a less-than sign, never markup (a
    writer's bullets may carry inline markup; a user's do not).
    """

    slide_id: UUID
    title: str | None = None
    bullets: list[str] | None = None
    notes: str | None = None

    def applied_to(self, content: SlideContent) -> SlideContent:
        changed = msgspec.structs.replace(
            content,
            title=content.title if self.title is None else self.title,
            bullets=(
                content.bullets
                if self.bullets is None
                else [escape(bullet, quote=False) for bullet in self.bullets]
            ),
            notes=content.notes if self.notes is None else self.notes,
        )
        return cleaned(changed)


class DeleteSlide(_Edit, frozen=True, tag="delete_slide"):
    slide_id: UUID


class ReorderSlides(_Edit, frozen=True, tag="reorder_slides"):
    """The deck's slides, every one of them, in their new order."""

    slide_ids: list[UUID]


class ChangeTheme(_Edit, frozen=True, tag="change_theme"):
    """Draw every slide of the deck in another theme."""

    theme: str


SlideEdit = RewriteSlide | InsertSlide | ChangeSlideText | DeleteSlide | ReorderSlides | ChangeTheme
#: The edits a worker applies: they call the model.
QUEUED_EDITS = (RewriteSlide, InsertSlide)


def needs_model(edit: SlideEdit) -> bool:
    return isinstance(edit, QUEUED_EDITS)


class EditStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    APPLIED = "APPLIED"
    FAILED = "FAILED"


@dataclass(kw_only=True)
class EditRecord:
    """One request to edit a deck, and its outcome once it has one."""

    id: UUID
    deck_id: UUID
    request_id: str
    edit: SlideEdit
    status: EditStatus
    #: The deck's version that the change (or its failure) was committed as.
    version: int | None = None
    failure: Failure | None = None
    #: Model calls spent on the edit so far, by every run that tried it.
    model_calls: int = 0
    created_at: datetime


def find_slide_index(slide_ids: Sequence[UUID], slide_id: UUID) -> int:
    """Where the slide is in the deck; raises ``SlideNotFound``."""
    try:
        return list(slide_ids).index(slide_id)
    except ValueError:
        raise SlideNotFound(f"The deck has no slide {slide_id}.") from None


def check_room(slide_count: int) -> None:
    """Raises ``DeckFull`` when a deck of ``slide_count`` slides may not get another."""
    if slide_count >= MAX_SLIDES:
        raise DeckFull(f"The deck has {slide_count} slides, as many as a deck may have.")


def order_with_insert(slide_ids: Sequence[UUID], new_id: UUID, after: UUID | None) -> list[UUID]:
    """The deck's slide ids with ``new_id`` placed after ``after`` (first when None); raises
    ``SlideNotFound``, or ``DeckFull`` when the deck may not have another slide."""
    check_room(len(slide_ids))
    position = 0 if after is None else find_slide_index(slide_ids, after) + 1
    return [*slide_ids[:position], new_id, *slide_ids[position:]]


def checked_order(current: Sequence[UUID], proposed: Sequence[UUID]) -> list[UUID]:
    """``proposed`` if it names each of the deck's slides exactly once; raises ``BadOrder``."""
    if len(proposed) != len(set(proposed)):
        raise BadOrder("The new order names a slide more than once.")
    unknown = set(proposed) - set(current)
    if unknown:
        raise BadOrder(f"The new order names {len(unknown)} slide(s) the deck does not have.")
    missing = len(set(current) - set(proposed))
    if missing:
        raise BadOrder(f"The new order leaves out {missing} of the deck's slides.")
    return list(proposed)
