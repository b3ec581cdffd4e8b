"""Checks of a deck's event log in the fake store, shared by the generation tests."""

from __future__ import annotations

from uuid import UUID

from presto_deck.domain.deck import DeckStatus
from presto_deck.domain.events import TERMINAL_EVENTS, Event
from tests.unit.fakes import Harness


def types_of(events: list[Event]) -> list[str]:
    return [event.event_type for event in events]


def assert_contiguous_from_2(events: list[Event]) -> None:
    assert [e.version for e in events] == list(range(2, len(events) + 2))


def assert_one_normal_life(h: Harness, deck_id: UUID, slides: int) -> None:
    """DeckStarted, PlanUpdated, SlideAdded n times, DeckCompleted: versions 2..n+4, slides 1..n."""
    events = h.store.events(deck_id)
    assert types_of(events) == [
        "DeckStarted",
        "PlanUpdated",
        *["SlideAdded"] * slides,
        "DeckCompleted",
    ]
    assert_contiguous_from_2(events)
    stored = h.store.slides(deck_id)
    assert [s.order for s in stored] == list(range(1, slides + 1))
    assert len({s.id for s in stored}) == slides
    added = [e.payload for e in events if e.event_type == "SlideAdded"]
    assert added == [s.event_payload() for s in stored]
    assert events[-1].payload == {"slide_count": slides}
    deck = h.store.deck(deck_id)
    assert (deck.status, deck.version) == (DeckStatus.COMPLETED, slides + 4)


def assert_ends_with(h: Harness, deck_id: UUID, event_type: str) -> list[Event]:
    """The deck's last event is ``event_type`` and the only terminal one."""
    events = h.store.events(deck_id)
    assert_contiguous_from_2(events)
    assert events[-1].event_type == event_type
    assert [e.event_type for e in events if e.event_type in TERMINAL_EVENTS] == [event_type]
    assert h.store.deck(deck_id).version == events[-1].version
    return events


def assert_failed_with(event: Event, reason: str, code: str) -> None:
    """A DeckFailed that tells the user ``reason`` and points at the log line behind it."""
    assert event.event_type == "DeckFailed"
    ref = event.payload["ref"]
    assert len(ref) == 12
    assert event.payload == {"error": f"{reason} (ref {ref})", "code": code, "ref": ref}
