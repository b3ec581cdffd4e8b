"""Events: one encoding for the stream, the log and the socket, read back without loss."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from presto_deck.domain.events import (
    TERMINAL_EVENTS,
    Event,
    decode_event,
    encode_event,
    heartbeat,
    peek_version,
)

_EVENT = Event(
    event_type="SlideAdded",
    deck_id="3f2b0c1e-0000-4000-8000-000000000001",
    version=7,
    timestamp=datetime(2025, 1, 1, 9, 0, 0, 123456, tzinfo=UTC),
    payload={
        "slide_id": "s-1",
        "order": 3,
        "html_content": "<p>안녕하세요 &amp; hello</p>",
        "presenter_notes": None,
    },
)


def test_an_encoded_event_decodes_to_an_equal_event() -> None:
    assert decode_event(encode_event(_EVENT)) == _EVENT


def test_an_event_decodes_from_text_as_from_bytes() -> None:
    assert decode_event(encode_event(_EVENT).decode()) == _EVENT


def test_the_encoding_has_the_contract_fields_and_an_iso_8601_utc_timestamp() -> None:
    data = json.loads(encode_event(_EVENT))

    assert set(data) == {"event_type", "deck_id", "version", "timestamp", "payload"}
    assert data["timestamp"] == "2025-01-01T09:00:00.123456Z"
    assert datetime.fromisoformat(data["timestamp"]).utcoffset() == timedelta(0)


def test_an_event_without_payload_encodes_an_empty_object() -> None:
    event = Event(event_type="DeckCancelled", deck_id="d", version=2, timestamp=_EVENT.timestamp)

    assert json.loads(encode_event(event))["payload"] == {}


def test_decoding_rejects_an_unknown_event_type() -> None:
    data = encode_event(_EVENT).replace(b"SlideAdded", b"SlideExploded")

    with pytest.raises(msgspec.ValidationError):
        decode_event(data)


def test_peek_version_reads_deck_version_and_type_without_the_payload() -> None:
    peeked = peek_version(encode_event(_EVENT))

    assert (peeked.deck_id, peeked.version, peeked.event_type) == (_EVENT.deck_id, 7, "SlideAdded")


def test_peek_version_ignores_a_payload_that_the_event_decoder_would_reject() -> None:
    data = b'{"payload": [1, {"x": null}], "version": 12, "deck_id": "d", "event_type": "Other"}'

    assert peek_version(data).version == 12


def test_peek_version_of_garbage_raises_a_msgspec_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        peek_version(b"not json")


def test_heartbeat_carries_the_delivered_version_an_aware_utc_timestamp_and_no_payload() -> None:
    before = datetime.now(UTC)

    beat = heartbeat("deck-1", 41)

    assert beat.event_type == "Heartbeat"
    assert (beat.deck_id, beat.version, beat.payload) == ("deck-1", 41, {})
    assert beat.timestamp.utcoffset() == timedelta(0)
    assert before <= beat.timestamp <= datetime.now(UTC)
    assert decode_event(encode_event(beat)) == beat


def test_the_terminal_events_are_completed_failed_and_cancelled() -> None:
    assert {"DeckCompleted", "DeckFailed", "DeckCancelled"} == TERMINAL_EVENTS
