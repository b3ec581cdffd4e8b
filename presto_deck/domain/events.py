"""The events of a deck's life: one shape on the stream, in ``deck_events`` and on the socket."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

EventType = Literal[
    "DeckStarted",
    "PlanUpdated",
    "SlideAdded",
    "SlideUpdated",
    "SlideDeleted",
    "SlidesReordered",
    "DeckCompleted",
    "DeckFailed",
    "DeckCancelled",
    "EditFailed",
    "DeckThemeChanged",
    "Heartbeat",
]

#: Events after which the generation of a deck is over.
TERMINAL_EVENTS: Final = frozenset({"DeckCompleted", "DeckFailed", "DeckCancelled"})


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One versioned change of a deck (or a Heartbeat, which is never persisted)."""

    event_type: EventType
    deck_id: str
    version: int
    timestamp: datetime
    payload: dict[str, Any] = msgspec.field(default_factory=dict)


class EventVersion(msgspec.Struct):
    """Just enough of an encoded event to order it, decoded without touching the payload."""

    deck_id: str
    version: int
    event_type: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)
_version_decoder = msgspec.json.Decoder(EventVersion)


def encode_event(event: Event) -> bytes:
    """Encode an event once; the bytes are reused for the stream and every socket."""
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> Event:
    return _decoder.decode(data)


def peek_version(data: bytes | str) -> EventVersion:
    """Read the deck id, version and type of an encoded event without decoding its payload."""
    return _version_decoder.decode(data)


def utc_now() -> datetime:
    return datetime.now(UTC)


def heartbeat(deck_id: str, version: int) -> Event:
    """A liveness frame; carries the version the socket has delivered so far."""
    return Event(event_type="Heartbeat", deck_id=deck_id, version=version, timestamp=utc_now())
