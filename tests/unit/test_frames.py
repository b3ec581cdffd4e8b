"""Client → server WebSocket frames: each one decodes; anything else is a msgspec error."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import msgspec
import pytest

from presto_deck.api.frames import (
    AddSlide,
    AddSlideData,
    DeleteSlide,
    DeleteSlideData,
    InvalidFrame,
    ReorderSlides,
    ReorderSlidesData,
    UpdateSlide,
    UpdateSlideData,
    ack_frame,
    edit_of,
    error_frame,
    frame_decoder,
    request_id_of,
)
from presto_deck.domain import edits

S1 = "7a1e3c1e-0000-4000-8000-000000000001"
S2 = "7a1e3c1e-0000-4000-8000-000000000002"


def _decode(frame: Any) -> object:
    return frame_decoder.decode(json.dumps(frame).encode())


def test_update_slide_decodes() -> None:
    frame = _decode({"type": "UpdateSlide", "data": {"slide_id": S1, "prompt": "shorter"}})

    assert frame == UpdateSlide(data=UpdateSlideData(slide_id=UUID(S1), prompt="shorter"))


def test_a_frame_carries_the_clients_request_id() -> None:
    frame = _decode({"type": "DeleteSlide", "request_id": "r-1", "data": {"slide_id": S1}})

    assert frame == DeleteSlide(request_id="r-1", data=DeleteSlideData(slide_id=UUID(S1)))


def test_add_slide_decodes_with_an_after_slide_id() -> None:
    frame = _decode({"type": "AddSlide", "data": {"after_slide_id": S1, "prompt": "a chart"}})

    assert frame == AddSlide(data=AddSlideData(after_slide_id=UUID(S1), prompt="a chart"))


@pytest.mark.parametrize("data", [{"after_slide_id": None, "prompt": "p"}, {"prompt": "p"}])
def test_add_slide_decodes_with_a_null_or_missing_after_slide_id(data: dict[str, Any]) -> None:
    assert _decode({"type": "AddSlide", "data": data}) == AddSlide(data=AddSlideData(prompt="p"))


def test_reorder_slides_decodes() -> None:
    frame = _decode({"type": "ReorderSlides", "data": {"slide_ids": [S2, S1]}})

    assert frame == ReorderSlides(data=ReorderSlidesData(slide_ids=[UUID(S2), UUID(S1)]))


@pytest.mark.parametrize(
    ("frame", "edit"),
    [
        (
            {"type": "UpdateSlide", "data": {"slide_id": S1, "prompt": "shorter"}},
            edits.RewriteSlide(slide_id=UUID(S1), prompt="shorter"),
        ),
        (
            {"type": "UpdateSlide", "data": {"slide_id": S1, "title": "T", "bullets": ["a"]}},
            edits.ChangeSlideText(slide_id=UUID(S1), title="T", bullets=["a"]),
        ),
        (
            {"type": "AddSlide", "data": {"prompt": "a chart", "after_slide_id": S2}},
            edits.InsertSlide(prompt="a chart", after_slide_id=UUID(S2)),
        ),
        (
            {"type": "DeleteSlide", "data": {"slide_id": S1}},
            edits.DeleteSlide(slide_id=UUID(S1)),
        ),
        (
            {"type": "ReorderSlides", "data": {"slide_ids": [S2, S1]}},
            edits.ReorderSlides(slide_ids=[UUID(S2), UUID(S1)]),
        ),
    ],
)
def test_each_frame_asks_for_one_edit(frame: dict[str, Any], edit: edits.SlideEdit) -> None:
    decoded = _decode(frame)
    assert isinstance(decoded, UpdateSlide | AddSlide | DeleteSlide | ReorderSlides)

    assert edit_of(decoded) == edit


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"slide_id": S1}, id="neither a prompt nor texts"),
        pytest.param({"slide_id": S1, "prompt": "p", "title": "T"}, id="both"),
    ],
)
def test_an_update_needs_a_prompt_or_texts_but_not_both(data: dict[str, Any]) -> None:
    decoded = _decode({"type": "UpdateSlide", "data": data})
    assert isinstance(decoded, UpdateSlide)

    with pytest.raises(InvalidFrame):
        edit_of(decoded)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param({"type": "DropTable", "data": {}}, id="unknown type"),
        pytest.param({"type": "error", "code": "x", "message": "y"}, id="server frame type"),
        pytest.param({"data": {"slide_id": S1}}, id="no type"),
        pytest.param({"type": "DeleteSlide"}, id="no data"),
        pytest.param({"type": "AddSlide", "data": {}}, id="missing prompt on add"),
        pytest.param({"type": "DeleteSlide", "data": {"slide_id": S1}, "x": 1}, id="extra top"),
        pytest.param(
            {"type": "DeleteSlide", "data": {"slide_id": S1, "force": True}}, id="extra in data"
        ),
        pytest.param({"type": "DeleteSlide", "data": {"slide_id": 1}}, id="int id"),
        pytest.param({"type": "DeleteSlide", "data": {"slide_id": None}}, id="null id"),
        pytest.param({"type": "DeleteSlide", "data": {"slide_id": "s1"}}, id="not a uuid"),
        pytest.param({"type": "DeleteSlide", "data": ["s1"]}, id="data not an object"),
        pytest.param({"type": "UpdateSlide", "data": {"slide_id": S1, "prompt": ""}}, id="empty"),
        pytest.param(
            {"type": "UpdateSlide", "data": {"slide_id": S1, "prompt": "   "}}, id="blank prompt"
        ),
        pytest.param(
            {"type": "UpdateSlide", "data": {"slide_id": S1, "prompt": "a\u0000b"}}, id="NUL"
        ),
        pytest.param(
            {"type": "UpdateSlide", "data": {"slide_id": S1, "prompt": "x" * 4001}},
            id="oversized prompt",
        ),
        pytest.param(
            {"type": "UpdateSlide", "data": {"slide_id": S1, "bullets": ["b"] * 21}},
            id="too many bullets",
        ),
        pytest.param(
            {"type": "AddSlide", "data": {"prompt": "x" * 4001}}, id="oversized prompt on add"
        ),
        pytest.param(
            {"type": "DeleteSlide", "request_id": "", "data": {"slide_id": S1}}, id="empty rid"
        ),
        pytest.param(
            {"type": "DeleteSlide", "request_id": "r" * 65, "data": {"slide_id": S1}},
            id="long rid",
        ),
        pytest.param(
            {"type": "DeleteSlide", "request_id": "a b", "data": {"slide_id": S1}}, id="rid space"
        ),
        pytest.param({"type": "ReorderSlides", "data": {"slide_ids": S1}}, id="ids a string"),
        pytest.param(
            {"type": "ReorderSlides", "data": {"slide_ids": [S1] * 201}}, id="too many ids"
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
    frame = _decode({"type": "UpdateSlide", "data": {"slide_id": S1, "prompt": "x" * 4000}})

    assert isinstance(frame, UpdateSlide)


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b'{"type": "DeleteSlide",}'])
def test_malformed_json_is_a_msgspec_decode_error(raw: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        frame_decoder.decode(raw)


def test_an_error_frame_has_type_code_and_message_and_the_request_id_when_known() -> None:
    assert json.loads(error_frame("bad_frame", "unknown type")) == {
        "type": "error",
        "code": "bad_frame",
        "message": "unknown type",
    }
    assert json.loads(error_frame("slide_not_found", "gone", "r-1"))["request_id"] == "r-1"


def test_an_ack_names_the_request_and_the_version() -> None:
    assert json.loads(ack_frame("r-1", 12)) == {"type": "ack", "request_id": "r-1", "version": 12}


@pytest.mark.parametrize(
    ("raw", "request_id"),
    [
        ('{"type": "Nope", "request_id": "r-9"}', "r-9"),
        ('{"request_id": 5}', None),
        ("not json", None),
    ],
)
def test_the_request_id_of_a_bad_frame_is_read_when_it_can_be(
    raw: str, request_id: str | None
) -> None:
    assert request_id_of(raw) == request_id
