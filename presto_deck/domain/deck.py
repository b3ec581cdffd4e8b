"""The deck aggregate: its status, its version and the events that change them.

Every change goes through a method here, which bumps ``version`` by exactly one and records the
matching event in ``pending_events``; the repository writes the new state and those events in one
transaction, so a deck's versions run 2, 3, 4, ... with no gap.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from presto_deck.domain.content import DeckBrief, DeckPlan
from presto_deck.domain.events import Event, EventType

TITLE_MAX_LENGTH = 255


class DeckStatus(enum.StrEnum):
    PENDING = "PENDING"
    PLANNING = "PLANNING"
    GENERATING = "GENERATING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_active(self) -> bool:
        """Whether the deck is still being generated (and can be cancelled)."""
        return self in _ACTIVE


_ACTIVE = frozenset({DeckStatus.PENDING, DeckStatus.PLANNING, DeckStatus.GENERATING})


class DeckError(Exception):
    """Base of the errors a use case reports to its caller."""


class DeckNotFound(DeckError):
    """No such deck, or not the caller's: the two are indistinguishable on purpose."""


class DeckAlreadyFinished(DeckError):
    """The deck's generation has ended; it can no longer be cancelled."""


class InvalidTransition(DeckError):
    """A change that the deck's current status does not allow (a bug or a stale job)."""


@dataclass(kw_only=True)
class Slide:
    id: UUID
    deck_id: UUID
    order: int
    html_content: str
    presenter_notes: str | None
    created_at: datetime
    updated_at: datetime

    def event_payload(self) -> dict[str, Any]:
        return {
            "slide_id": str(self.id),
            "order": self.order,
            "html_content": self.html_content,
            "presenter_notes": self.presenter_notes,
        }


@dataclass(kw_only=True)
class Deck:
    id: UUID
    user_id: str
    title: str
    status: DeckStatus
    version: int
    brief: DeckBrief
    plan: DeckPlan | None = None
    cancel_requested: bool = False
    created_at: datetime
    updated_at: datetime
    pending_events: list[Event] = field(default_factory=list, repr=False)

    # -- generation -------------------------------------------------------------------------------

    def start(self, now: datetime) -> None:
        self._require(DeckStatus.PENDING)
        self.status = DeckStatus.PLANNING
        self._record("DeckStarted", {"status": DeckStatus.PLANNING.value}, now)

    def set_plan(self, plan: DeckPlan, now: datetime) -> None:
        self._require(DeckStatus.PLANNING)
        self.plan = plan
        if self.brief.title is None and plan.title.strip():
            self.title = plan.title.strip()[:TITLE_MAX_LENGTH]
        self.status = DeckStatus.GENERATING
        self._record("PlanUpdated", {"plan": msgspec.to_builtins(plan)}, now)

    def add_generated_slide(self, slide: Slide, now: datetime) -> None:
        self._require(DeckStatus.GENERATING)
        self._record("SlideAdded", slide.event_payload(), now)

    def complete(self, slide_count: int, now: datetime) -> None:
        self._require(DeckStatus.GENERATING)
        self.status = DeckStatus.COMPLETED
        self._record("DeckCompleted", {"slide_count": slide_count}, now)

    def fail(self, error: str, now: datetime) -> None:
        self._require(*_ACTIVE)
        self.status = DeckStatus.FAILED
        self._record("DeckFailed", {"error": error}, now)

    # -- cancellation -----------------------------------------------------------------------------

    def request_cancel(self, now: datetime) -> None:
        """Cancel at once if no worker has started; otherwise ask the worker to stop."""
        if not self.status.is_active:
            raise DeckAlreadyFinished(str(self.id))
        if self.status is DeckStatus.PENDING:
            self.cancel(now)
        else:
            self.cancel_requested = True

    def cancel(self, now: datetime) -> None:
        self._require(*_ACTIVE)
        self.status = DeckStatus.CANCELLED
        self._record("DeckCancelled", {}, now)

    def take_events(self) -> list[Event]:
        """The events recorded since the deck was loaded, once: for publishing after the commit."""
        events, self.pending_events = self.pending_events, []
        return events

    # -- internals --------------------------------------------------------------------------------

    def _require(self, *allowed: DeckStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(f"deck {self.id} is {self.status}, expected one of {allowed}")

    def _record(self, event_type: EventType, payload: dict[str, Any], now: datetime) -> None:
        self.version += 1
        self.updated_at = now
        self.pending_events.append(
            Event(
                event_type=event_type,
                deck_id=str(self.id),
                version=self.version,
                timestamp=now,
                payload=payload,
            )
        )
