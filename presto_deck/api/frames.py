"""WebSocket frames: client → server requests (a tagged union decoded by one typed decoder), and
the acknowledgements and errors the server answers them with."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec

from presto_deck.domain import edits
from presto_deck.domain.edits import MAX_SLIDES, REQUEST_ID_MAX_LENGTH, SlideEdit

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: Text PostgreSQL can store (no NUL) with at least one visible character.
_VISIBLE = r"^[^\x00]*[^\x00\s][^\x00]*$"
_STORABLE = r"^[^\x00]*$"
Prompt = Annotated[str, msgspec.Meta(min_length=1, max_length=4000, pattern=_VISIBLE)]
SlideTitle = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=_VISIBLE)]
Bullet = Annotated[str, msgspec.Meta(max_length=1000, pattern=_STORABLE)]
Bullets = Annotated[list[Bullet], msgspec.Meta(max_length=20)]
Notes = Annotated[str, msgspec.Meta(max_length=10_000, pattern=_STORABLE)]
RequestId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=REQUEST_ID_MAX_LENGTH, pattern=r"^[\x21-\x7e]+$")
]
SlideIds = Annotated[list[UUID], msgspec.Meta(max_length=MAX_SLIDES)]


class InvalidFrame(Exception):
    """A frame that decodes but asks for nothing sensible (the message says why)."""


class _Frame(msgspec.Struct, kw_only=True, tag_field="type", forbid_unknown_fields=True):
    #: The client's name for the request, echoed in the answer; the server picks one if absent.
    request_id: RequestId | None = None


class UpdateSlideData(msgspec.Struct, forbid_unknown_fields=True):
    """Either ``prompt`` (the model rewrites the slide) or new texts, not both."""

    slide_id: UUID
    prompt: Prompt | None = None
    title: SlideTitle | None = None
    bullets: Bullets | None = None
    notes: Notes | None = None


class AddSlideData(msgspec.Struct, forbid_unknown_fields=True):
    prompt: Prompt
    after_slide_id: UUID | None = None


class DeleteSlideData(msgspec.Struct, forbid_unknown_fields=True):
    slide_id: UUID


class ReorderSlidesData(msgspec.Struct, forbid_unknown_fields=True):
    slide_ids: SlideIds


class UpdateSlide(_Frame, tag="UpdateSlide"):
    data: UpdateSlideData


class AddSlide(_Frame, tag="AddSlide"):
    data: AddSlideData


class DeleteSlide(_Frame, tag="DeleteSlide"):
    data: DeleteSlideData


class ReorderSlides(_Frame, tag="ReorderSlides"):
    data: ReorderSlidesData


ClientFrame = UpdateSlide | AddSlide | DeleteSlide | ReorderSlides


def slide_update(
    slide_id: UUID,
    prompt: str | None,
    title: str | None,
    bullets: list[str] | None,
    notes: str | None,
) -> SlideEdit:
    """A rewrite by prompt, or a change of texts; raises ``InvalidFrame`` for neither or both."""
    texts = (title, bullets, notes)
    if prompt is not None:
        if any(text is not None for text in texts):
            raise InvalidFrame(
                "Send either a prompt or new texts (title, bullets, notes), not both."
            )
        return edits.RewriteSlide(slide_id=slide_id, prompt=prompt)
    if all(text is None for text in texts):
        raise InvalidFrame("Send a prompt, or at least one of title, bullets and notes.")
    return edits.ChangeSlideText(slide_id=slide_id, title=title, bullets=bullets, notes=notes)


def edit_of(frame: ClientFrame) -> SlideEdit:
    """The edit a frame asks for; raises ``InvalidFrame``."""
    match frame:
        case UpdateSlide(data=data):
            return slide_update(data.slide_id, data.prompt, data.title, data.bullets, data.notes)
        case AddSlide(data=data):
            return edits.InsertSlide(prompt=data.prompt, after_slide_id=data.after_slide_id)
        case DeleteSlide(data=data):
            return edits.DeleteSlide(slide_id=data.slide_id)
        case ReorderSlides(data=data):
            return edits.ReorderSlides(slide_ids=data.slide_ids)


class AckFrame(msgspec.Struct, kw_only=True, tag="ack", tag_field="type"):
    request_id: str
    version: int


class ErrorFrame(msgspec.Struct, kw_only=True, tag="error", tag_field="type", omit_defaults=True):
    code: str
    message: str
    request_id: str | None = None


frame_decoder = msgspec.json.Decoder(ClientFrame)
_encoder = msgspec.json.Encoder()


def error_frame(code: str, message: str, request_id: str | None = None) -> bytes:
    return _encoder.encode(ErrorFrame(code=code, message=message, request_id=request_id))


def ack_frame(request_id: str, version: int) -> bytes:
    return _encoder.encode(AckFrame(request_id=request_id, version=version))


class _RequestIdOnly(msgspec.Struct):
    request_id: RequestId | None = None


_request_id_decoder = msgspec.json.Decoder(_RequestIdOnly)


def request_id_of(raw: str | bytes) -> str | None:
    """The request id of a frame that could not be decoded, if that much of it can be read."""
    try:
        return _request_id_decoder.decode(raw).request_id
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
