"""The ports: what the use cases need from the outside world, and nothing about how it is done.

``bootstrap.py`` picks the adapters; unit tests swap in fakes.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self
from uuid import UUID

from presto_deck.domain.content import DeckBrief, DeckPlan, SlideContent, SlideRequest
from presto_deck.domain.deck import Deck, DeckStatus, Failure, Slide
from presto_deck.domain.edits import EditRecord, EditStatus
from presto_deck.domain.events import Event


@dataclass(frozen=True)
class LeaseState:
    """What a run learns when it renews its lease or counts a model call."""

    #: The lease is still the run's.
    held: bool
    #: The user asked to cancel the deck: the run should stop and cancel it.
    cancel_requested: bool = False
    #: The model calls the deck has spent (counted only while the lease is held).
    calls: int = 0


class DeckRepository(Protocol):
    async def add(self, deck: Deck, idempotency_key: str | None = None) -> Deck:
        """Insert a new deck; with a key the user already used, return that earlier deck instead."""
        ...

    async def get(self, deck_id: UUID, user_id: str | None = None) -> Deck | None:
        """The deck, if it exists and (when ``user_id`` is given) belongs to that user."""
        ...

    async def lock(self, deck_id: UUID) -> Deck | None:
        """The deck, locked until the transaction ends, so its version bumps are serialized."""
        ...

    async def save(self, deck: Deck) -> None:
        """Write the deck's new state and append its pending events to the event log."""
        ...

    async def list_for_user(self, user_id: str, limit: int, offset: int) -> tuple[list[Deck], int]:
        """The user's decks, newest first, and how many there are in all."""
        ...

    async def renew_lease(self, deck_id: UUID, owner: str, until: datetime) -> LeaseState:
        """Extend ``owner``'s lease on the deck, and say whether a cancellation was asked for."""
        ...

    async def spend_model_call(self, deck_id: UUID, owner: str, until: datetime) -> LeaseState:
        """Count one model call against the deck and extend ``owner``'s lease, in one statement.

        No call is counted when the lease is lost or a cancellation was asked for; ``calls`` is
        the deck's model calls so far.
        """
        ...

    async def release_lease(self, deck_id: UUID, owner: str) -> None:
        """Give up ``owner``'s lease (nothing happens if another run has taken the deck over)."""
        ...

    async def stalled(self, now: datetime, grace_seconds: float, limit: int) -> list[UUID]:
        """Active decks with no live worker: the lease lapsed, or none was taken within grace."""
        ...

    async def active(self) -> tuple[int, datetime | None]:
        """How many decks are still being generated (or wait to be), and when the oldest of
        them was created."""
        ...

    async def lock_user(self, user_id: str) -> None:
        """Serialize the user's deck creations until the transaction ends."""
        ...

    async def count_active(self, user_id: str) -> int:
        """How many of the user's decks are still being generated."""
        ...

    async def find_by_idempotency_key(self, user_id: str, idempotency_key: str) -> Deck | None:
        """The deck the user created with that key, if any."""
        ...

    async def versions(self, deck_ids: Collection[UUID]) -> dict[UUID, int]:
        """The current version of each of these decks that exists."""
        ...


class SlideRepository(Protocol):
    async def add(self, slide: Slide) -> None: ...

    async def add_unless_taken(self, slides: Sequence[Slide]) -> list[Slide]:
        """Add each slide unless its deck has one at its order already; those added."""
        ...

    async def update(self, slide: Slide) -> None:
        """Write the slide's new HTML, notes and content."""
        ...

    async def delete(self, deck_id: UUID, slide_id: UUID) -> None: ...

    async def arrange(self, deck_id: UUID, slide_ids: Sequence[UUID]) -> None:
        """Number the deck's slides 1, 2, 3, ... in the order of ``slide_ids`` (all of them)."""
        ...

    async def list(self, deck_id: UUID) -> list[Slide]:
        """The deck's slides by order."""
        ...

    async def count(self, deck_id: UUID) -> int: ...


class EventLog(Protocol):
    async def after(self, deck_id: UUID, version: int, limit: int | None = None) -> list[Event]:
        """Persisted events of the deck with a version above ``version``, in order."""
        ...

    async def mark_published(self, events: Sequence[Event]) -> None: ...

    async def unpublished(self, older_than: datetime, limit: int) -> list[Event]:
        """Events committed but never appended to the stream (the outbox)."""
        ...


class EditRepository(Protocol):
    async def add(self, edit: EditRecord) -> None: ...

    async def get(self, deck_id: UUID, request_id: str) -> EditRecord | None:
        """The deck's edit with that request id, if any."""
        ...

    async def count_queued(self, deck_id: UUID) -> int: ...

    async def next_queued(self, deck_id: UUID) -> EditRecord | None:
        """The deck's oldest edit still waiting for the model."""
        ...

    async def finish(
        self, edit_id: UUID, status: EditStatus, version: int, failure: Failure | None = None
    ) -> None: ...

    async def spend_model_call(
        self, edit_id: UUID, deck_id: UUID, owner: str, until: datetime
    ) -> LeaseState:
        """Count one model call against the edit and extend ``owner``'s lease on its deck, in
        one statement; nothing is counted when the lease is lost."""
        ...

    async def stalled(
        self, now: datetime, grace_seconds: float, limit: int
    ) -> list[tuple[UUID, UUID]]:
        """(deck id, edit id) of queued edits older than ``grace_seconds`` whose deck no live
        run holds: their worker died, or their job was lost."""
        ...


class UnitOfWork(Protocol):
    """One transaction: ``async with uow: ...; await uow.commit()``; no commit means rollback."""

    @property
    def decks(self) -> DeckRepository: ...

    @property
    def slides(self) -> SlideRepository: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def edits(self) -> EditRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Roll back what was not committed; database errors leave as ``StorageError``."""
        ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork:
        """A new unit of work."""
        ...


class DeckSteps(Protocol):
    """A generation run's steps from the deck as it last stored it: each one statement, its own
    transaction, with no lock taken and nothing read first."""

    async def save_if_unchanged(
        self, deck: Deck, *, since: int, owner: str, slides: Sequence[Slide] = ()
    ) -> bool:
        """Write what ``DeckRepository.save`` writes and add ``slides`` if the stored deck is
        still at version ``since``, leased to ``owner``, with no cancellation asked for and none
        of the slides' places taken; else write nothing and say False. The lease's expiry stays
        as stored (renewals write it), unless the deck ended. A ``StorageError`` if the
        database failed: the step may have been committed or not."""
        ...


class StorageError(Exception):
    """The database failed a transaction.

    ``transient`` errors (a lost connection, a lock not granted in time) may pass if tried again;
    the others (a value the database refuses) will fail the same way every time.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class PublishError(Exception):
    """The event stream could not take the events; the outbox relay will try again."""


class WriterError(Exception):
    """The writer gave up (after its retries): the deck ends as FAILED.

    ``reason`` is what the user is told and must say nothing about the provider's internals;
    ``detail`` (the provider's own error) goes to the logs only.
    """

    def __init__(self, reason: str, *, code: str = "writer_failed", detail: str = "") -> None:
        reason = reason or "The writer failed."
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.detail = detail or reason


class RunStopped(Exception):
    """The generation run must stop writing at once.

    A ``ModelCallBudget`` raises it instead of allowing a call, and writers let it through
    unchanged: it is no failure of the model, and retrying the call would be wrong.
    """


class LeaseLost(RunStopped):
    """Another run has taken the deck over; this one must neither write nor call the model."""


class ModelCallsExhausted(RunStopped):
    """The deck has spent every model call it may make."""


class CancelRequested(RunStopped):
    """The user asked to cancel the deck: no more model calls; the run cancels it."""


class EventPublisher(Protocol):
    async def publish(self, events: Sequence[Event]) -> None:
        """Append committed events to the event stream; repeating a publish is harmless."""
        ...


class JobQueue(Protocol):
    async def enqueue_generation(self, deck_id: UUID) -> None:
        """Queue the deck's generation; a job already queued for the deck absorbs this one."""
        ...

    async def requeue_generation(self, deck_id: UUID) -> None:
        """Queue the deck again after its worker died, even if that worker's job looks alive."""
        ...

    async def enqueue_edit(self, deck_id: UUID, edit_id: UUID) -> None:
        """Queue a job that applies the deck's queued edits, this one among them."""
        ...

    async def requeue_edit(self, deck_id: UUID, edit_id: UUID) -> None:
        """Queue the edit's job again after its worker died, even if that job looks alive."""
        ...


class CancelFlags(Protocol):
    """Fast, short-lived cancellation flags; PostgreSQL keeps the durable request."""

    async def request(self, deck_id: UUID) -> None: ...

    async def is_requested(self, deck_id: UUID) -> bool: ...


class ModelCallBudget(Protocol):
    """Guards every model call a writer makes for one deck, retries included."""

    async def spend(self) -> None:
        """Account for one call before it is made; raises ``RunStopped`` if it must not be."""
        ...


class DeckWriter(Protocol):
    """Plans a deck and writes its slides: an LLM, or the offline template writer.

    A writer that calls a model calls ``budget.spend()`` before each request and lets the
    ``RunStopped`` it may raise through.
    """

    name: str

    async def plan(self, brief: DeckBrief, budget: ModelCallBudget) -> DeckPlan: ...

    async def write_slide(
        self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
    ) -> SlideContent:
        """Write slide ``index`` (0-based) of the plan."""
        ...

    async def edit_slide(self, request: SlideRequest, budget: ModelCallBudget) -> SlideContent:
        """Rewrite a slide as the user's prompt asks, or write a new one (``current`` None)."""
        ...


class SlideRenderer(Protocol):
    def render(self, content: SlideContent, theme: str | None) -> str:
        """Sanitized HTML of one slide, through a theme template."""
        ...


class GenerationMeter(Protocol):
    """What generation measures for the operator."""

    def slide_generated(self, seconds: float) -> None:
        """A slide was written, drawn, stored and published in ``seconds``."""
        ...

    def deck_finished(self, status: DeckStatus, seconds: float) -> None:
        """A run ended the deck in ``status``, ``seconds`` after the deck was created."""
        ...


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class LimitUnavailable(Exception):
    """The store that counts a limit did not answer (in time); the limit is not checked."""


class RateLimiter(Protocol):
    """Admits a bounded number of one user's actions per window, counted across API instances."""

    async def acquire(self, user_id: str) -> float:
        """Count one action: 0 if it is admitted, else the seconds until one would be.

        A refused action is not counted. Raises ``LimitUnavailable``.
        """
        ...


class SocketCount(enum.Enum):
    """Which count a socket would push over its limit."""

    USER = "user"
    TOTAL = "total"


class SocketQuota(Protocol):
    """Open WebSockets per user and in all, counted across API instances.

    A socket holds a seat that expires unless refreshed, so the seats of an instance that died
    without releasing them free themselves. Every method raises ``LimitUnavailable``.
    """

    async def claim(self, socket_id: str, user_id: str) -> SocketCount | None:
        """Take a seat for the socket: None if granted, else the count that is full."""
        ...

    async def refresh(self, socket_id: str, user_id: str) -> None:
        """Keep the socket's seat (taking it again if it lapsed meanwhile)."""
        ...

    async def release(self, socket_id: str, user_id: str) -> None: ...


class DeckExporter(Protocol):
    """Renders a deck as one file of a format (HTML, PPTX, ...)."""

    media_type: str
    extension: str

    def export(self, deck: Deck, slides: Sequence[Slide]) -> bytes:
        """The file's bytes; may take a while (run it off the event loop)."""
        ...
