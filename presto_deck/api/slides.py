"""Editing a deck over HTTP, for clients without a socket. Each route answers 202 with the
request's id; the change itself arrives as events (on every socket of the deck, and from
``GET /api/v1/decks/{id}/events``), as everything else does."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, delete, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ValidationException
from litestar.params import FromPath, HeaderParameter, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from presto_deck.api.auth import provide_user_id
from presto_deck.api.frames import (
    Bullets,
    InvalidFrame,
    Notes,
    Prompt,
    SlideIds,
    SlideTitle,
    slide_update,
)
from presto_deck.api.schemas import known_theme
from presto_deck.application.editing import EditOutcome, EditService
from presto_deck.domain.edits import (
    REQUEST_ID_MAX_LENGTH,
    ChangeTheme,
    DeleteSlide,
    EditStatus,
    InsertSlide,
    ReorderSlides,
    SlideEdit,
)
from presto_deck.domain.themes import ThemeBook

#: The client's request id: the same one twice changes the deck once and gets the same answer.
_RequestId = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=REQUEST_ID_MAX_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description="Your id for this request; a new one is made if absent.",
    ),
]


class SlideChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Either ``prompt`` (the model rewrites the slide) or new texts, not both."""

    prompt: Prompt | None = None
    title: SlideTitle | None = None
    bullets: Bullets | None = None
    notes: Notes | None = None


class SlideAddition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    prompt: Prompt
    #: The new slide goes after this one; first when null.
    after_slide_id: UUID | None = None


class SlideOrder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Every slide of the deck, each once, in the new order.
    slide_ids: SlideIds


class ThemeChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    theme: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class EditAccepted(msgspec.Struct, kw_only=True, omit_defaults=True):
    request_id: str
    #: APPLIED (its event is committed), QUEUED (a worker asks the model), or FAILED (a repeated
    #: request that had failed: ``error`` and ``code`` say why).
    status: EditStatus
    #: The deck's version that the change was committed as; null while queued.
    version: int | None
    error: str | None = None
    code: str | None = None

    @classmethod
    def of(cls, outcome: EditOutcome) -> EditAccepted:
        failure = outcome.failure
        return cls(
            request_id=outcome.request_id,
            status=outcome.status,
            version=outcome.version,
            error=None if failure is None else failure.error,
            code=None if failure is None else failure.code,
        )


class SlideController(Controller):
    path = "/api/v1/decks/{deck_id:uuid}"
    tags = ["editing"]
    dependencies = {"user_id": Provide(provide_user_id)}

    @patch(
        "/slides/{slide_id:uuid}",
        status_code=HTTP_202_ACCEPTED,
        summary="Rewrite a slide by prompt, or change its texts",
    )
    async def update_slide(
        self,
        deck_id: FromPath[UUID],
        slide_id: FromPath[UUID],
        data: JSONBody[SlideChange],
        user_id: NamedDependency[str],
        edits: NamedDependency[EditService],
        idempotency_key: _RequestId = None,
    ) -> EditAccepted:
        try:
            edit = slide_update(slide_id, data.prompt, data.title, data.bullets, data.notes)
        except InvalidFrame as exc:
            raise ValidationException(str(exc)) from None
        return await _submit(edits, user_id, deck_id, edit, idempotency_key)

    @post("/slides", status_code=HTTP_202_ACCEPTED, summary="Add a slide written from a prompt")
    async def add_slide(
        self,
        deck_id: FromPath[UUID],
        data: JSONBody[SlideAddition],
        user_id: NamedDependency[str],
        edits: NamedDependency[EditService],
        idempotency_key: _RequestId = None,
    ) -> EditAccepted:
        edit = InsertSlide(prompt=data.prompt, after_slide_id=data.after_slide_id)
        return await _submit(edits, user_id, deck_id, edit, idempotency_key)

    @delete("/slides/{slide_id:uuid}", status_code=HTTP_202_ACCEPTED, summary="Delete a slide")
    async def delete_slide(
        self,
        deck_id: FromPath[UUID],
        slide_id: FromPath[UUID],
        user_id: NamedDependency[str],
        edits: NamedDependency[EditService],
        idempotency_key: _RequestId = None,
    ) -> EditAccepted:
        edit = DeleteSlide(slide_id=slide_id)
        return await _submit(edits, user_id, deck_id, edit, idempotency_key)

    @put("/slides/order", status_code=HTTP_202_ACCEPTED, summary="Reorder the deck's slides")
    async def reorder_slides(
        self,
        deck_id: FromPath[UUID],
        data: JSONBody[SlideOrder],
        user_id: NamedDependency[str],
        edits: NamedDependency[EditService],
        idempotency_key: _RequestId = None,
    ) -> EditAccepted:
        edit = ReorderSlides(slide_ids=data.slide_ids)
        return await _submit(edits, user_id, deck_id, edit, idempotency_key)

    @put("/theme", status_code=HTTP_202_ACCEPTED, summary="Draw every slide in another theme")
    async def change_theme(
        self,
        deck_id: FromPath[UUID],
        data: JSONBody[ThemeChange],
        user_id: NamedDependency[str],
        edits: NamedDependency[EditService],
        themes: NamedDependency[ThemeBook],
        idempotency_key: _RequestId = None,
    ) -> EditAccepted:
        edit = ChangeTheme(theme=known_theme(themes, data.theme))
        return await _submit(edits, user_id, deck_id, edit, idempotency_key)


async def _submit(
    edits: EditService, user_id: str, deck_id: UUID, edit: SlideEdit, request_id: str | None
) -> EditAccepted:
    return EditAccepted.of(await edits.submit(user_id, deck_id, edit, request_id))
