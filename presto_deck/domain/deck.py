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

from presto_deck.domain.content import DeckBrief, DeckPlan, SlideContent
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


class LeaseHeld(DeckError):
    """Another run holds a live lease on the deck: a second run must not start."""


class DeckEmpty(DeckError):
    """The deck has no slides: there is nothing to take out of it."""

    code = "deck_empty"


class EditRejected(DeckError):
    """An edit that cannot be made; ``code`` is the documented error code clients read."""

    code = "edit_rejected"


class DeckBusy(EditRejected):
    """The deck is still being generated: it can be edited once it has ended."""

    code = "deck_busy"


class SlideNotFound(EditRejected):
    code = "slide_not_found"


class BadOrder(EditRejected):
    """A reorder that does not name each of the deck's slides exactly once."""

    code = "bad_order"


class DeckFull(EditRejected):
    """The deck has as many slides as a deck may have."""

    code = "too_many_slides"


class IdempotencyConflict(EditRejected):
    """A request id (``Idempotency-Key``) used before for a different request: replaying it
    would not be the same request, and carrying it out would break the key's promise."""

    code = "idempotency_conflict"


class TooManyEdits(EditRejected):
    """The deck already has as many edits waiting for the model as it may."""

    code = "too_many_edits"


@dataclass(frozen=True, kw_only=True)
class Lease:
    """Which generation run owns the deck, until when.

    ``owner`` names one run, not one worker: a run that takes a deck over writes its own name, so
    the run it replaced (a frozen process that wakes up) finds it changed and stops writing.
    """

    owner: str
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        return self.expires_at > now


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """Why a deck failed: ``error`` for the user, ``code`` for programs, ``ref`` to find the
    details in the logs."""

    error: str
    code: str
    ref: str


@dataclass(kw_only=True)
class Slide:
    id: UUID
    deck_id: UUID
    order: int
    html_content: str
    presenter_notes: str | None
    created_at: datetime
    updated_at: datetime
    #: What the HTML was rendered from; None for a slide stored before slides kept it.
    content: SlideContent | None = None

    @property
    def texts(self) -> SlideContent:
        """What the slide was rendered from; an untitled, empty slide when that is not known."""
        return self.content or SlideContent(title="")

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
    lease: Lease | None = None
    #: Model calls spent on the deck so far (every attempt counts).
    model_calls: int = 0
    failure: Failure | None = None
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
        self._end(DeckStatus.COMPLETED)
        self._record("DeckCompleted", {"slide_count": slide_count}, now)

    def fail(self, failure: Failure, now: datetime) -> None:
        self._require(*_ACTIVE)
        self._end(DeckStatus.FAILED)
        self.failure = failure
        self._record("DeckFailed", msgspec.to_builtins(failure), now)

    def take_lease(self, owner: str, until: datetime, now: datetime) -> None:
        """Make ``owner`` the run that generates the deck, unless another run's lease is live."""
        if self.lease is not None and self.lease.owner != owner and self.lease.live(now):
            raise LeaseHeld(f"deck {self.id} is held by the run {self.lease.owner}")
        self.lease = Lease(owner=owner, expires_at=until)

    def leased_to(self, owner: str) -> bool:
        return self.lease is not None and self.lease.owner == owner

    # -- editing, once generation has ended ------------------------------------------------------

    def require_editable(self) -> None:
        if self.status.is_active:
            raise DeckBusy(
                f"The deck is {self.status}: it can be edited once its generation has ended."
            )

    def slide_updated(self, slide: Slide, request_id: str, now: datetime) -> None:
        self.require_editable()
        self._record("SlideUpdated", {**slide.event_payload(), "request_id": request_id}, now)

    def slide_inserted(
        self, slide: Slide, slide_ids: list[UUID], request_id: str, now: datetime
    ) -> None:
        """A slide added by an edit; ``slide_ids`` is the deck's order after it."""
        self.require_editable()
        payload = {**slide.event_payload(), "slide_ids": _ids(slide_ids), "request_id": request_id}
        self._record("SlideAdded", payload, now)

    def slide_deleted(
        self, slide_id: UUID, slide_ids: list[UUID], request_id: str, now: datetime
    ) -> None:
        self.require_editable()
        payload = {"slide_id": str(slide_id), "slide_ids": _ids(slide_ids)}
        self._record("SlideDeleted", {**payload, "request_id": request_id}, now)

    def slides_reordered(self, slide_ids: list[UUID], request_id: str, now: datetime) -> None:
        self.require_editable()
        self._record(
            "SlidesReordered", {"slide_ids": _ids(slide_ids), "request_id": request_id}, now
        )

    def theme_changed(
        self, theme: str, slides: list[Slide], request_id: str, now: datetime
    ) -> None:
        """Every slide redrawn in ``theme``: one event carries each slide's new HTML."""
        self.require_editable()
        self.brief = msgspec.structs.replace(self.brief, theme=theme)
        drawn = [
            {"slide_id": str(slide.id), "html_content": slide.html_content} for slide in slides
        ]
        self._record(
            "DeckThemeChanged", {"theme": theme, "slides": drawn, "request_id": request_id}, now
        )

    def edit_failed(
        self, request_id: str, failure: Failure, slide_id: UUID | None, now: datetime
    ) -> None:
        """An edit that the worker could not make: the deck is as it was, and clients are told."""
        payload = {
            **msgspec.to_builtins(failure),
            "request_id": request_id,
            "slide_id": None if slide_id is None else str(slide_id),
        }
        self._record("EditFailed", payload, now)

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
        self._end(DeckStatus.CANCELLED)
        self._record("DeckCancelled", {}, now)

    def take_events(self) -> list[Event]:
        """The events recorded since the deck was loaded, once: for publishing after the commit."""
        events, self.pending_events = self.pending_events, []
        return events

    # -- internals --------------------------------------------------------------------------------

    def _end(self, status: DeckStatus) -> None:
        """The generation is over: its run's lease ends with it, in the same transaction, so an
        edit that follows at once finds the deck free."""
        self.status = status
        self.lease = None

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


def _ids(slide_ids: list[UUID]) -> list[str]:
    return [str(slide_id) for slide_id in slide_ids]
