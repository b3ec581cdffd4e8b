"""Client → server WebSocket frames: a tagged union decoded by one typed decoder."""

from __future__ import annotations

from typing import Annotated

import msgspec

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Prompt = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class _Frame(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    pass


class UpdateSlideData(msgspec.Struct, forbid_unknown_fields=True):
    slide_id: _Id
    prompt: _Prompt


class AddSlideData(msgspec.Struct, forbid_unknown_fields=True):
    prompt: _Prompt
    after_slide_id: _Id | None = None


class DeleteSlideData(msgspec.Struct, forbid_unknown_fields=True):
    slide_id: _Id


class ReorderSlidesData(msgspec.Struct, forbid_unknown_fields=True):
    slide_ids: Annotated[list[_Id], msgspec.Meta(min_length=1, max_length=200)]


class UpdateSlide(_Frame, tag="UpdateSlide"):
    data: UpdateSlideData


class AddSlide(_Frame, tag="AddSlide"):
    data: AddSlideData


class DeleteSlide(_Frame, tag="DeleteSlide"):
    data: DeleteSlideData


class ReorderSlides(_Frame, tag="ReorderSlides"):
    data: ReorderSlidesData


ClientFrame = UpdateSlide | AddSlide | DeleteSlide | ReorderSlides


class ErrorFrame(msgspec.Struct, kw_only=True, tag="error", tag_field="type"):
    code: str
    message: str


frame_decoder = msgspec.json.Decoder(ClientFrame)
_error_encoder = msgspec.json.Encoder()


def error_frame(code: str, message: str) -> bytes:
    return _error_encoder.encode(ErrorFrame(code=code, message=message))
