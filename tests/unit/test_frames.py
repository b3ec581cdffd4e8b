"""Client → server WebSocket frames: each one decodes; anything else is a msgspec error."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from presto_deck.api.frames import (
    AddSlide,
    AddSlideData,
    DeleteSlide,
    DeleteSlideData,
    ReorderSlides,
    ReorderSlidesData,
    UpdateSlide,
    UpdateSlideData,
    error_frame,
    frame_decoder,
)


def _decode(frame: Any) -> object:
    return frame_decoder.decode(json.dumps(frame).encode())


def test_update_slide_decodes() -> None:
    frame = _decode({"type": "UpdateSlide", "data": {"slide_id": "s1", "prompt": "shorter"}})

    assert frame == UpdateSlide(data=UpdateSlideData(slide_id="s1", prompt="shorter"))


def test_add_slide_decodes_with_an_after_slide_id() -> None:
    frame = _decode({"type": "AddSlide", "data": {"after_slide_id": "s1", "prompt": "a chart"}})

    assert frame == AddSlide(data=AddSlideData(after_slide_id="s1", prompt="a chart"))


@pytest.mark.parametrize("data", [{"after_slide_id": None, "prompt": "p"}, {"prompt": "p"}])
def test_add_slide_decodes_with_a_null_or_missing_after_slide_id(data: dict[str, Any]) -> None:
    assert _decode({"type": "AddSlide", "data": data}) == AddSlide(data=AddSlideData(prompt="p"))


def test_delete_slide_decodes() -> None:
    frame = _decode({"type": "DeleteSlide", "data": {"slide_id": "s1"}})

    assert frame == DeleteSlide(data=DeleteSlideData(slide_id="s1"))


def test_reorder_slides_decodes() -> None:
    frame = _decode({"type": "ReorderSlides", "data": {"slide_ids": ["s2", "s1"]}})

    assert frame == ReorderSlides(data=ReorderSlidesData(slide_ids=["s2", "s1"]))


def test_the_decoded_frames_dispatch_with_match() -> None:
    frame = _decode({"type": "DeleteSlide", "data": {"slide_id": "s9"}})

    match frame:
        case DeleteSlide(data=DeleteSlideData(slide_id=slide_id)):
            assert slide_id == "s9"
        case _:
            pytest.fail(f"not a DeleteSlide: {frame!r}")


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param({"type": "DropTable", "data": {}}, id="unknown type"),
        pytest.param({"type": "error", "code": "x", "message": "y"}, id="server frame type"),
        pytest.param({"data": {"slide_id": "s1"}}, id="no type"),
        pytest.param({"type": "DeleteSlide"}, id="no data"),
        pytest.param({"type": "UpdateSlide", "data": {"slide_id": "s1"}}, id="missing prompt"),
        pytest.param({"type": "AddSlide", "data": {}}, id="missing prompt on add"),
        pytest.param({"type": "DeleteSlide", "data": {"slide_id": "s1"}, "x": 1}, id="extra top"),
        pytest.param(
            {"type": "DeleteSlide", "data": {"slide_id": "s1", "force": True}}, id="extra in data"
        ),
        pytest.param({"type": "DeleteSlide", "data": {"slide_id": 1}}, id="int id"),
        pytest.param({"type": "DeleteSlide", "data": {"slide_id": None}}, id="null id"),
        pytest.param({"type": "DeleteSlide", "data": {"slide_id": ""}}, id="empty id"),
        pytest.param({"type": "DeleteSlide", "data": {"slide_id": "s" * 65}}, id="long id"),
        pytest.param({"type": "DeleteSlide", "data": ["s1"]}, id="data not an object"),
        pytest.param({"type": "UpdateSlide", "data": {"slide_id": "s", "prompt": ""}}, id="empty"),
        pytest.param(
            {"type": "UpdateSlide", "data": {"slide_id": "s", "prompt": "x" * 4001}},
            id="oversized prompt",
        ),
        pytest.param(
            {"type": "AddSlide", "data": {"prompt": "x" * 4001}}, id="oversized prompt on add"
        ),
        pytest.param({"type": "ReorderSlides", "data": {"slide_ids": []}}, id="no slide ids"),
        pytest.param({"type": "ReorderSlides", "data": {"slide_ids": "s1"}}, id="ids a string"),
        pytest.param(
            {"type": "ReorderSlides", "data": {"slide_ids": ["s"] * 201}}, id="too many ids"
        ),
        pytest.param(["UpdateSlide"], id="array"),
        pytest.param("UpdateSlide", id="string"),
        pytest.param(None, id="null"),
    ],
)
def test_an_invalid_frame_is_a_msgspec_validation_error(frame: Any) -> None:
    with pytest.raises(msgspec.ValidationError):
        _decode(frame)


def test_a_prompt_of_exactly_4000_characters_is_accepted() -> None:
    frame = _decode({"type": "UpdateSlide", "data": {"slide_id": "s", "prompt": "x" * 4000}})

    assert isinstance(frame, UpdateSlide)


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b'{"type": "DeleteSlide",}'])
def test_malformed_json_is_a_msgspec_decode_error(raw: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        frame_decoder.decode(raw)


def test_an_error_frame_has_type_code_and_message() -> None:
    assert json.loads(error_frame("bad_frame", "unknown type")) == {
        "type": "error",
        "code": "bad_frame",
        "message": "unknown type",
    }
