"""In-memory fakes of the ports in ``presto_deck.application.ports``, for unit tests.

In the cosmicpython style: the repositories of a ``FakeUnitOfWork`` share one ``FakeStore``;
``commit`` makes a transaction's changes visible and leaving without it throws them away.

A transaction does not copy the whole store on enter and swap it back on commit: two overlapping
transactions (``asyncio.gather`` of two jobs) would then overwrite each other's commits, which
PostgreSQL never does. Instead it keeps a journal of its writes, reads the committed state with
its own journal replayed on top (PostgreSQL's READ COMMITTED), and applies the journal to the
store on commit. ``lock`` holds a per-deck ``asyncio.Lock`` until the transaction ends, as
``SELECT ... FOR UPDATE`` does, and the store enforces the unique keys the schema has, so a race
that would duplicate a slide or an event fails loudly here as it would on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Self
from uuid import UUID, uuid4

import msgspec

from presto_deck.application.editing import SlideEditor
from presto_deck.application.generation import DeckGenerator
from presto_deck.application.ports import (
    LeaseState,
    LimitUnavailable,
    ModelCallBudget,
    PublishError,
    SocketCount,
    StorageError,
    WriterError,
)
from presto_deck.application.publishing import EventPublishing
from presto_deck.bootstrap import Ports, WorkerServices, api_services, worker_services
from presto_deck.domain.content import (
    DeckBrief,
    DeckPlan,
    SlideContent,
    SlideOutline,
    SlideRequest,
)
from presto_deck.domain.deck import Deck, DeckStatus, Failure, Lease, Slide
from presto_deck.domain.edits import EditRecord, EditStatus
from presto_deck.domain.events import Event
from presto_deck.settings import Settings

#: Far longer than any unit test needs a deck lock; a test that waits this long has deadlocked.
_LOCK_TIMEOUT_SECONDS = 5.0

_ACTIVE = (DeckStatus.PENDING, DeckStatus.PLANNING, DeckStatus.GENERATING)


class FakeIntegrityError(Exception):
    """A write broke a unique key of the schema (what PostgreSQL reports as a unique violation)."""


class FakeDeadlock(Exception):
    """A deck lock was not granted in time: the code under test waits for itself."""


class WorkerKilled(BaseException):
    """The worker died mid-call (``kill -9``, a cancelled job): nothing in the code catches it."""


class QueueUnavailable(Exception):
    """What the fake queue and cancellation flags raise when told to fail (Redis is down)."""


# -- the store ------------------------------------------------------------------------------------


@dataclass
class DeckRow:
    deck: Deck
    idempotency_key: str | None = None

    @property
    def lease_owner(self) -> str | None:
        return None if self.deck.lease is None else self.deck.lease.owner

    @property
    def lease_expires_at(self) -> datetime | None:
        return None if self.deck.lease is None else self.deck.lease.expires_at

    def copy(self) -> DeckRow:
        return dataclasses.replace(self, deck=_copy_deck(self.deck))


@dataclass
class EventRow:
    event: Event
    published: bool = False


@dataclass
class _State:
    decks: dict[UUID, DeckRow] = field(default_factory=dict)
    slides: dict[UUID, list[Slide]] = field(default_factory=dict)
    events: dict[UUID, list[EventRow]] = field(default_factory=dict)
    edits: dict[UUID, list[EditRecord]] = field(default_factory=dict)

    def copy(self) -> _State:
        return _State(
            edits={key: [dataclasses.replace(r) for r in rows] for key, rows in self.edits.items()},
            decks={key: row.copy() for key, row in self.decks.items()},
            slides={
                key: [dataclasses.replace(s) for s in rows] for key, rows in self.slides.items()
            },
            events={
                key: [dataclasses.replace(r) for r in rows] for key, rows in self.events.items()
            },
        )


_Write = Callable[[_State], None]


def _copy_deck(deck: Deck) -> Deck:
    # Every other field of a Deck is immutable (UUID, str, enum, frozen structs, datetime).
    return dataclasses.replace(deck, pending_events=[])


class FakeStore:
    """The committed state of the fake database, and the deck locks."""

    def __init__(self) -> None:
        self._state = _State()
        self._locks: dict[UUID, asyncio.Lock] = {}
        self._user_locks: dict[str, asyncio.Lock] = {}
        self.commits = 0
        #: Decks locked by a transaction, all of them together (a step that reads the deck first).
        self.locks_taken = 0
        #: Slides the database refuses to store (a value it cannot take, as a NUL in text).
        self.refuse_slide: Callable[[Slide], bool] = lambda slide: False
        #: Errors the next commits raise, one each (a lost connection, a lock not granted).
        self.commit_faults: list[StorageError] = []

    def uow(self) -> FakeUnitOfWork:
        """A new transaction: pass ``store.uow`` where a ``UnitOfWorkFactory`` is wanted."""
        return FakeUnitOfWork(self)

    async def save_if_unchanged(
        self, deck: Deck, *, since: int, owner: str, slides: Sequence[Slide] = ()
    ) -> bool:
        """The ``DeckSteps``: pass ``store`` where one is wanted (each step its own transaction)."""
        async with self.uow() as uow:
            stored = await uow.decks.save_if_unchanged(
                deck, since=since, owner=owner, slides=slides
            )
            if stored:
                await uow.commit()
        return stored

    # -- seen from the tests ----------------------------------------------------------------------

    def deck(self, deck_id: UUID) -> Deck:
        return _copy_deck(self._state.decks[deck_id].deck)

    def deck_row(self, deck_id: UUID) -> DeckRow:
        return self._state.decks[deck_id].copy()

    def slides(self, deck_id: UUID) -> list[Slide]:
        return sorted(self._state.slides.get(deck_id, []), key=lambda s: s.order)

    def events(self, deck_id: UUID) -> list[Event]:
        return [row.event for row in self._state.events.get(deck_id, [])]

    def edits(self, deck_id: UUID) -> list[EditRecord]:
        return [dataclasses.replace(record) for record in self._state.edits.get(deck_id, [])]

    def unpublished(self, deck_id: UUID) -> list[Event]:
        return [row.event for row in self._state.events.get(deck_id, []) if not row.published]

    def put(self, deck: Deck, slides: Sequence[Slide] = (), events: Sequence[Event] = ()) -> None:
        """Seed a committed deck with its slides and (published) events, as a test's history."""
        self.apply([_insert_deck(_copy_deck(deck), None)])
        self.apply([_insert_slide(dataclasses.replace(slide)) for slide in slides])
        self.apply([_insert_events(list(events), published=True)])

    # -- used by the unit of work -----------------------------------------------------------------

    def view(self, journal: Sequence[_Write]) -> _State:
        state = self._state.copy()
        for write in journal:
            write(state)
        return state

    def apply(self, journal: Sequence[_Write]) -> None:
        # All or nothing, as a transaction: a unique violation leaves the store as it was.
        self._state = self.view(journal)
        self.commits += 1

    def lock_for(self, deck_id: UUID) -> asyncio.Lock:
        return self._locks.setdefault(deck_id, asyncio.Lock())

    def user_lock_for(self, user_id: str) -> asyncio.Lock:
        return self._user_locks.setdefault(user_id, asyncio.Lock())


# -- the writes a transaction journals ------------------------------------------------------------


def _insert_deck(deck: Deck, idempotency_key: str | None) -> _Write:
    def write(state: _State) -> None:
        if deck.id in state.decks:
            raise FakeIntegrityError(f"duplicate deck id {deck.id}")
        if idempotency_key is not None and any(
            row.deck.user_id == deck.user_id and row.idempotency_key == idempotency_key
            for row in state.decks.values()
        ):
            raise FakeIntegrityError("duplicate (user_id, idempotency_key)")
        state.decks[deck.id] = DeckRow(deck=_copy_deck(deck), idempotency_key=idempotency_key)

    return write


def _update_deck(deck: Deck) -> _Write:
    def write(state: _State) -> None:
        if (row := state.decks.get(deck.id)) is not None:  # UPDATE of a missing row: no-op
            state.decks[deck.id] = dataclasses.replace(row, deck=_copy_deck(deck))

    return write


def _insert_events(events: list[Event], *, published: bool = False) -> _Write:
    def write(state: _State) -> None:
        for event in events:
            rows = state.events.setdefault(UUID(event.deck_id), [])
            if any(row.event.version == event.version for row in rows):
                raise FakeIntegrityError(
                    f"duplicate (deck_id, version) = ({event.deck_id}, {event.version})"
                )
            rows.append(EventRow(event=event, published=published))
            rows.sort(key=lambda row: row.event.version)

    return write


def _insert_slide(slide: Slide) -> _Write:
    slide = dataclasses.replace(slide)  # as it was when inserted, whatever the caller does next

    def write(state: _State) -> None:
        rows = state.slides.setdefault(slide.deck_id, [])
        if any(row.order == slide.order for row in rows):
            raise FakeIntegrityError(
                f"duplicate (deck_id, slide_order) = ({slide.deck_id}, {slide.order})"
            )
        rows.append(dataclasses.replace(slide))

    return write


def _replace_slide(slide: Slide) -> _Write:
    slide = dataclasses.replace(slide)

    def write(state: _State) -> None:
        rows = state.slides.get(slide.deck_id, [])
        state.slides[slide.deck_id] = [
            dataclasses.replace(slide) if row.id == slide.id else row for row in rows
        ]

    return write


def _delete_slide(deck_id: UUID, slide_id: UUID) -> _Write:
    def write(state: _State) -> None:
        state.slides[deck_id] = [row for row in state.slides.get(deck_id, []) if row.id != slide_id]

    return write


def _arrange(deck_id: UUID, slide_ids: Sequence[UUID]) -> _Write:
    def write(state: _State) -> None:
        place = {slide_id: position for position, slide_id in enumerate(slide_ids, start=1)}
        rows = state.slides.get(deck_id, [])
        for row in rows:
            row.order = place.get(row.id, -row.order)
        orders = [row.order for row in rows]
        if len(orders) != len(set(orders)):
            raise FakeIntegrityError(f"duplicate (deck_id, slide_order) in deck {deck_id}")

    return write


def _insert_edit(edit: EditRecord) -> _Write:
    def write(state: _State) -> None:
        rows = state.edits.setdefault(edit.deck_id, [])
        if any(row.request_id == edit.request_id for row in rows):
            raise FakeIntegrityError(f"duplicate (deck_id, request_id) = {edit.request_id}")
        rows.append(dataclasses.replace(edit))

    return write


def _change_edit(edit_id: UUID, change: Callable[[EditRecord], None]) -> _Write:
    def write(state: _State) -> None:
        for rows in state.edits.values():
            for row in rows:
                if row.id == edit_id:
                    change(row)

    return write


def _lease_change(deck_id: UUID, owner: str, change: Callable[[Deck], None]) -> _Write:
    """A conditional UPDATE of the deck ``owner`` holds the lease of (no row changes otherwise)."""

    def write(state: _State) -> None:
        row = state.decks.get(deck_id)
        if row is not None and row.deck.leased_to(owner):
            change(row.deck)

    return write


def _mark_published(keys: set[tuple[str, int]]) -> _Write:
    def write(state: _State) -> None:
        for rows in state.events.values():
            for row in rows:
                if (row.event.deck_id, row.event.version) in keys:
                    row.published = True

    return write


# -- the unit of work and its repositories --------------------------------------------------------


class FakeUnitOfWork:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self._journal: list[_Write] = []
        self._held: dict[UUID | str, asyncio.Lock] = {}
        self._decks = FakeDeckRepository(self)
        self._slides = FakeSlideRepository(self)
        self._events = FakeEventLog(self)
        self._edits = FakeEditRepository(self)
        self.committed = False

    @property
    def decks(self) -> FakeDeckRepository:
        return self._decks

    @property
    def slides(self) -> FakeSlideRepository:
        return self._slides

    @property
    def events(self) -> FakeEventLog:
        return self._events

    @property
    def edits(self) -> FakeEditRepository:
        return self._edits

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._journal.clear()  # whatever was not committed is rolled back
        for lock in self._held.values():
            lock.release()
        self._held.clear()

    async def commit(self) -> None:
        if self.store.commit_faults:
            raise self.store.commit_faults.pop(0)
        self.store.apply(self._journal)
        self._journal.clear()
        self.committed = True

    # -- shared by the repositories ---------------------------------------------------------------

    def read(self) -> _State:
        """The committed state with this transaction's own writes on top."""
        return self.store.view(self._journal)

    def write(self, change: _Write) -> None:
        change(self.read())  # fail at the statement, as PostgreSQL does, not only at commit
        self._journal.append(change)

    async def acquire(self, deck_id: UUID) -> None:
        await self._hold(deck_id, self.store.lock_for(deck_id))

    async def acquire_user(self, user_id: str) -> None:
        """The user's advisory lock, held until the transaction ends."""
        await self._hold(user_id, self.store.user_lock_for(user_id))

    async def _hold(self, name: UUID | str, lock: asyncio.Lock) -> None:
        if name in self._held:
            return
        try:
            async with asyncio.timeout(_LOCK_TIMEOUT_SECONDS):
                await lock.acquire()
        except TimeoutError:
            raise FakeDeadlock(f"{name} stayed locked") from None
        self._held[name] = lock


class FakeDeckRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def add(self, deck: Deck, idempotency_key: str | None = None) -> Deck:
        if idempotency_key is not None:
            for row in self._uow.read().decks.values():
                if row.deck.user_id == deck.user_id and row.idempotency_key == idempotency_key:
                    return _copy_deck(row.deck)
        self._uow.write(_insert_deck(deck, idempotency_key))
        return deck

    async def get(self, deck_id: UUID, user_id: str | None = None) -> Deck | None:
        row = self._uow.read().decks.get(deck_id)
        if row is None or (user_id is not None and row.deck.user_id != user_id):
            return None
        return _copy_deck(row.deck)

    async def lock(self, deck_id: UUID) -> Deck | None:
        if deck_id not in self._uow.read().decks:
            return None
        await self._uow.acquire(deck_id)
        self._uow.store.locks_taken += 1
        return await self.get(deck_id)  # read after the lock: what the last holder committed

    async def save(self, deck: Deck) -> None:
        self._uow.write(_update_deck(deck))
        if deck.pending_events:
            self._uow.write(_insert_events(list(deck.pending_events)))

    async def save_if_unchanged(
        self, deck: Deck, *, since: int, owner: str, slides: Sequence[Slide] = ()
    ) -> bool:
        if deck.id not in self._uow.read().decks:
            return False
        await self._uow.acquire(deck.id)  # the UPDATE's row lock, until the transaction ends
        state = self._uow.read()
        stored = state.decks[deck.id].deck
        taken = {slide.order for slide in state.slides.get(deck.id, [])}
        if (
            stored.version != since
            or not stored.leased_to(owner)
            or stored.cancel_requested
            or any(slide.order in taken for slide in slides)
        ):
            return False
        # What the statement leaves as stored: the lease (unless the deck ended), the calls
        # counted, the brief.
        if any(self._uow.store.refuse_slide(slide) for slide in slides):
            raise StorageError("invalid byte sequence for encoding", transient=False)
        lease = None if deck.lease is None else stored.lease
        kept = dataclasses.replace(
            deck, lease=lease, model_calls=stored.model_calls, brief=stored.brief
        )
        await self.save(kept)
        for slide in slides:
            self._uow.write(_insert_slide(slide))
        return True

    async def list_for_user(self, user_id: str, limit: int, offset: int) -> tuple[list[Deck], int]:
        mine = [row.deck for row in self._uow.read().decks.values() if row.deck.user_id == user_id]
        mine.sort(key=lambda deck: (deck.created_at, deck.id), reverse=True)
        return [_copy_deck(deck) for deck in mine[offset : offset + limit]], len(mine)

    async def renew_lease(self, deck_id: UUID, owner: str, until: datetime) -> LeaseState:
        if not self._leased(deck_id, owner):
            return LeaseState(held=False)
        self._uow.write(_lease_change(deck_id, owner, _expiring(owner, until)))
        return self._lease_state(deck_id)

    async def spend_model_call(self, deck_id: UUID, owner: str, until: datetime) -> LeaseState:
        if not self._leased(deck_id, owner):
            return LeaseState(held=False)

        def spend(deck: Deck) -> None:
            deck.model_calls += 0 if deck.cancel_requested else 1
            deck.lease = Lease(owner=owner, expires_at=until)

        self._uow.write(_lease_change(deck_id, owner, spend))
        return self._lease_state(deck_id)

    def _lease_state(self, deck_id: UUID) -> LeaseState:
        deck = self._uow.read().decks[deck_id].deck
        return LeaseState(held=True, cancel_requested=deck.cancel_requested, calls=deck.model_calls)

    async def release_lease(self, deck_id: UUID, owner: str) -> None:
        def release(deck: Deck) -> None:
            deck.lease = None

        self._uow.write(_lease_change(deck_id, owner, release))

    def _leased(self, deck_id: UUID, owner: str) -> bool:
        row = self._uow.read().decks.get(deck_id)
        return row is not None and row.deck.leased_to(owner)

    async def stalled(self, now: datetime, grace_seconds: float, limit: int) -> list[UUID]:
        grace = timedelta(seconds=grace_seconds)
        rows = [
            row
            for row in self._uow.read().decks.values()
            if row.deck.status in _ACTIVE
            and (row.lease_expires_at or row.deck.updated_at + grace) < now
        ]
        rows.sort(key=lambda row: row.deck.updated_at)
        return [row.deck.id for row in rows[:limit]]

    async def active(self) -> tuple[int, datetime | None]:
        created = [
            row.deck.created_at
            for row in self._uow.read().decks.values()
            if row.deck.status in _ACTIVE
        ]
        return len(created), min(created, default=None)

    async def lock_user(self, user_id: str) -> None:
        await self._uow.acquire_user(user_id)

    async def count_active(self, user_id: str) -> int:
        decks = self._uow.read().decks.values()
        count = sum(row.deck.user_id == user_id and row.deck.status in _ACTIVE for row in decks)
        await asyncio.sleep(0)  # the answer's way back, while concurrent creations go on
        return count

    async def find_by_idempotency_key(self, user_id: str, idempotency_key: str) -> Deck | None:
        for row in self._uow.read().decks.values():
            if row.deck.user_id == user_id and row.idempotency_key == idempotency_key:
                return _copy_deck(row.deck)
        return None

    async def versions(self, deck_ids: Collection[UUID]) -> dict[UUID, int]:
        decks = self._uow.read().decks
        return {deck_id: decks[deck_id].deck.version for deck_id in deck_ids if deck_id in decks}


def _expiring(owner: str, until: datetime) -> Callable[[Deck], None]:
    def renew(deck: Deck) -> None:
        deck.lease = Lease(owner=owner, expires_at=until)

    return renew


class FakeSlideRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def add(self, slide: Slide) -> None:
        if self._uow.store.refuse_slide(slide):
            raise StorageError("invalid byte sequence for encoding", transient=False)
        self._uow.write(_insert_slide(slide))

    async def add_unless_taken(self, slides: Sequence[Slide]) -> list[Slide]:
        added = []
        for slide in slides:
            stored = self._uow.read().slides.get(slide.deck_id, [])
            if all(s.order != slide.order for s in stored):
                await self.add(slide)
                added.append(slide)
        return added

    async def list(self, deck_id: UUID) -> list[Slide]:
        return sorted(self._uow.read().slides.get(deck_id, []), key=lambda slide: slide.order)

    async def count(self, deck_id: UUID) -> int:
        return len(self._uow.read().slides.get(deck_id, []))

    async def update(self, slide: Slide) -> None:
        if self._uow.store.refuse_slide(slide):
            raise StorageError("invalid byte sequence for encoding", transient=False)
        self._uow.write(_replace_slide(slide))

    async def delete(self, deck_id: UUID, slide_id: UUID) -> None:
        self._uow.write(_delete_slide(deck_id, slide_id))

    async def arrange(self, deck_id: UUID, slide_ids: Sequence[UUID]) -> None:
        self._uow.write(_arrange(deck_id, slide_ids))


class FakeEditRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def add(self, edit: EditRecord) -> None:
        self._uow.write(_insert_edit(edit))

    async def get(self, deck_id: UUID, request_id: str) -> EditRecord | None:
        for row in self._uow.read().edits.get(deck_id, []):
            if row.request_id == request_id:
                return dataclasses.replace(row)
        return None

    async def count_queued(self, deck_id: UUID) -> int:
        rows = self._uow.read().edits.get(deck_id, [])
        return sum(row.status is EditStatus.QUEUED for row in rows)

    async def next_queued(self, deck_id: UUID) -> EditRecord | None:
        queued = [
            r for r in self._uow.read().edits.get(deck_id, []) if r.status is EditStatus.QUEUED
        ]
        return dataclasses.replace(queued[0]) if queued else None

    async def finish(
        self, edit_id: UUID, status: EditStatus, version: int, failure: Failure | None = None
    ) -> None:
        def finish(row: EditRecord) -> None:
            row.status, row.version, row.failure = status, version, failure

        self._uow.write(_change_edit(edit_id, finish))

    async def spend_model_call(
        self, edit_id: UUID, deck_id: UUID, owner: str, until: datetime
    ) -> LeaseState:
        row = self._uow.read().decks.get(deck_id)
        if row is None or not row.deck.leased_to(owner):
            return LeaseState(held=False)

        def spend(edit: EditRecord) -> None:
            edit.model_calls += 1

        self._uow.write(_lease_change(deck_id, owner, _expiring(owner, until)))
        self._uow.write(_change_edit(edit_id, spend))
        calls = next(r.model_calls for r in self._uow.read().edits[deck_id] if r.id == edit_id)
        return LeaseState(held=True, calls=calls)

    async def stalled(
        self, now: datetime, grace_seconds: float, limit: int
    ) -> list[tuple[UUID, UUID]]:
        state = self._uow.read()
        stalled = [
            (row.deck_id, row.id)
            for rows in state.edits.values()
            for row in rows
            if row.status is EditStatus.QUEUED
            and row.created_at < now - timedelta(seconds=grace_seconds)
            and not _held(state.decks[row.deck_id].deck, now)
        ]
        return stalled[:limit]


def _held(deck: Deck, now: datetime) -> bool:
    return deck.lease is not None and deck.lease.live(now)


class FakeEventLog:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def after(self, deck_id: UUID, version: int, limit: int | None = None) -> list[Event]:
        rows = self._uow.read().events.get(deck_id, [])
        events = [row.event for row in rows if row.event.version > version]
        return events if limit is None else events[:limit]

    async def mark_published(self, events: Sequence[Event]) -> None:
        self._uow.write(_mark_published({(event.deck_id, event.version) for event in events}))

    async def unpublished(self, older_than: datetime, limit: int) -> list[Event]:
        rows = [
            row.event
            for rows in self._uow.read().events.values()
            for row in rows
            if not row.published and row.event.timestamp < older_than
        ]
        rows.sort(key=lambda event: (event.deck_id, event.version))
        return rows[:limit]


# -- the other ports ------------------------------------------------------------------------------


class FakeClock:
    """A clock that stands still unless told to move, or moves ``step`` on every reading."""

    def __init__(
        self,
        start: datetime = datetime(2025, 1, 1, 9, 0, tzinfo=UTC),
        step: timedelta = timedelta(0),
    ) -> None:
        self.now = start
        self._step = step

    def __call__(self) -> datetime:
        now = self.now
        self.now += self._step
        return now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


_PublishHook = Callable[[Sequence[Event]], Awaitable[None]]


class FakeEventPublisher:
    """Records what was published; ``fail = True`` makes every publish raise PublishError."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.attempts = 0
        self.fail = False
        self.on_publish: _PublishHook | None = None

    async def publish(self, events: Sequence[Event]) -> None:
        self.attempts += 1
        if self.fail:
            raise PublishError("the stream is unavailable")
        self.published.extend(events)
        if self.on_publish is not None:
            await self.on_publish(events)

    def published_for(self, deck_id: UUID) -> list[Event]:
        return [event for event in self.published if event.deck_id == str(deck_id)]


class FakeJobQueue:
    def __init__(self) -> None:
        self.enqueued: list[UUID] = []
        self.requeued: list[UUID] = []
        self.edits: list[tuple[UUID, UUID]] = []
        self.requeued_edits: list[tuple[UUID, UUID]] = []
        self.fail = False
        #: Calls never return, as with a Redis that accepts connections and answers nothing.
        self.hang = False

    async def enqueue_generation(self, deck_id: UUID) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.fail:
            raise QueueUnavailable("the queue is unavailable")
        self.enqueued.append(deck_id)

    async def requeue_generation(self, deck_id: UUID) -> None:
        if self.fail:
            raise QueueUnavailable("the queue is unavailable")
        self.requeued.append(deck_id)

    async def enqueue_edit(self, deck_id: UUID, edit_id: UUID) -> None:
        if self.fail:
            raise QueueUnavailable("the queue is unavailable")
        self.edits.append((deck_id, edit_id))

    async def requeue_edit(self, deck_id: UUID, edit_id: UUID) -> None:
        if self.fail:
            raise QueueUnavailable("the queue is unavailable")
        self.requeued_edits.append((deck_id, edit_id))


class FakeCancelFlags:
    def __init__(self) -> None:
        self.requested: set[UUID] = set()
        self.fail = False
        #: How often a run looked at a flag.
        self.looks = 0

    async def request(self, deck_id: UUID) -> None:
        if self.fail:
            raise QueueUnavailable("the flags are unavailable")
        self.requested.add(deck_id)

    async def is_requested(self, deck_id: UUID) -> bool:
        self.looks += 1
        if self.fail:
            raise QueueUnavailable("the flags are unavailable")
        return deck_id in self.requested


class FakeRateLimiter:
    """A sliding window of ``limit`` actions per user in ``window_seconds`` of the clock.

    ``fail = True`` makes it raise LimitUnavailable (Redis is down); ``checks`` counts calls.
    """

    def __init__(self, clock: FakeClock, limit: int = 1000, window_seconds: float = 60.0) -> None:
        self._clock = clock
        self.limit = limit
        self._window = timedelta(seconds=window_seconds)
        self.admitted: dict[str, list[datetime]] = {}
        self.checks = 0
        self.fail = False

    async def acquire(self, user_id: str) -> float:
        self.checks += 1
        if self.fail:
            raise LimitUnavailable("the counts are unavailable")
        now = self._clock()
        log = [at for at in self.admitted.get(user_id, []) if at > now - self._window]
        self.admitted[user_id] = log
        if len(log) < self.limit:
            log.append(now)
            return 0.0
        return (log[0] + self._window - now).total_seconds()


class FakeSocketQuota:
    """Seats per user and in all, without expiry; ``fail = True`` raises LimitUnavailable."""

    def __init__(self, per_user: int = 1000, total: int = 1000) -> None:
        self.per_user = per_user
        self.total = total
        self.seats: dict[str, set[str]] = {}
        self.refreshes = 0
        self.fail = False

    async def claim(self, socket_id: str, user_id: str) -> SocketCount | None:
        self._check()
        mine = self.seats.setdefault(user_id, set())
        if len(mine) >= self.per_user:
            return SocketCount.USER
        if sum(len(seats) for seats in self.seats.values()) >= self.total:
            return SocketCount.TOTAL
        mine.add(socket_id)
        return None

    async def refresh(self, socket_id: str, user_id: str) -> None:
        self._check()
        self.refreshes += 1
        self.seats.setdefault(user_id, set()).add(socket_id)

    async def release(self, socket_id: str, user_id: str) -> None:
        self._check()
        self.seats.get(user_id, set()).discard(socket_id)

    def taken(self, user_id: str) -> int:
        return len(self.seats.get(user_id, set()))

    def _check(self) -> None:
        if self.fail:
            raise LimitUnavailable("the counts are unavailable")


_Hook = Callable[[], Awaitable[None]]


class FakeWriter:
    """A scripted writer: a plan of ``slides`` slides (or ``plan_sizes[i]`` on the i-th call).

    ``fail_plan`` / ``fail_slide`` make it raise WriterError with that message; ``crash_slide``
    raises any exception (``WorkerKilled``: the worker dies mid-deck). ``before_plan`` and
    ``before_slide[k]`` run first: that is how a test cancels a deck "during" planning or
    slide ``k`` (0-based).
    Every call yields to the event loop once, so concurrent jobs really interleave.
    """

    name = "fake"

    def __init__(
        self,
        slides: int = 3,
        *,
        plan_sizes: Sequence[int] = (),
        fail_plan: str | None = None,
        fail_slide: dict[int, str] | None = None,
        crash_slide: dict[int, BaseException] | None = None,
        before_plan: _Hook | None = None,
        before_slide: dict[int, _Hook] | None = None,
    ) -> None:
        self._slides = slides
        self._plan_sizes = list(plan_sizes)
        self._fail_plan = fail_plan
        self._fail_slide = fail_slide or {}
        self._crash_slide = crash_slide or {}
        self.before_plan = before_plan
        self.before_slide = before_slide or {}
        self.plan_calls = 0
        self.slide_calls: list[int] = []
        self.edit_calls: list[SlideRequest] = []
        #: Make every edit fail with this reason, or run this first (a worker dying mid-edit).
        self.fail_edit: str | None = None
        self.before_edit: _Hook | None = None

    async def plan(self, brief: DeckBrief, budget: ModelCallBudget) -> DeckPlan:
        await budget.spend()  # a call the budget refuses is never made, so never counted here
        call = self.plan_calls
        self.plan_calls += 1
        await asyncio.sleep(0)
        if self.before_plan is not None:
            await self.before_plan()
        if self._fail_plan is not None:
            raise WriterError(self._fail_plan)
        count = self._plan_sizes[call] if call < len(self._plan_sizes) else self._slides
        return DeckPlan(
            title=f"A deck about {brief.prompt}",
            summary=f"plan #{call + 1}",
            slides=[
                SlideOutline(title=f"Slide {i + 1} of {count}", key_points=[f"point {i + 1}"])
                for i in range(count)
            ],
        )

    async def write_slide(
        self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
    ) -> SlideContent:
        await budget.spend()
        self.slide_calls.append(index)
        await asyncio.sleep(0)
        if (hook := self.before_slide.get(index)) is not None:
            await hook()
        if index in self._crash_slide:
            raise self._crash_slide[index]
        if index in self._fail_slide:
            raise WriterError(self._fail_slide[index])
        outline = plan.slides[index]
        return SlideContent(
            title=outline.title, bullets=list(outline.key_points), notes=f"notes {index + 1}"
        )

    async def edit_slide(self, request: SlideRequest, budget: ModelCallBudget) -> SlideContent:
        await budget.spend()
        self.edit_calls.append(request)
        await asyncio.sleep(0)
        if self.before_edit is not None:
            await self.before_edit()
        if self.fail_edit is not None:
            raise WriterError(self.fail_edit, code="llm_unavailable", detail="upstream said no")
        verb = "Added" if request.current is None else "Rewritten"
        return SlideContent(
            title=f"{verb}: {request.prompt}",
            bullets=["new point"],
            notes=f"as asked at {request.position}",
        )


class UnlimitedBudget:
    """A model-call budget that allows every call: for calling a writer outside a run."""

    async def spend(self) -> None:
        return None


class FakeMeter:
    """Remembers what generation measured."""

    def __init__(self) -> None:
        self.slides: list[float] = []
        self.decks: list[tuple[DeckStatus, float]] = []

    def slide_generated(self, seconds: float) -> None:
        self.slides.append(seconds)

    def deck_finished(self, status: DeckStatus, seconds: float) -> None:
        self.decks.append((status, seconds))


class FakeRenderer:
    """Renders a slide as a tiny, deterministic piece of HTML."""

    def render(self, content: SlideContent, theme: str | None) -> str:
        drawn_in = "" if theme is None else f' data-theme="{theme}"'
        return f"<section{drawn_in}><h1>{content.title}</h1></section>"


# -- everything wired together, as bootstrap.py does with the real adapters -----------------------


class Harness:
    """The use cases on fakes: one store, clock, publisher, queue and set of flags, wired by
    the same functions that wire the real adapters."""

    def __init__(
        self,
        *,
        clock: FakeClock | None = None,
        lease_seconds: float = 60.0,
        max_model_calls: int = 100,
        creations_per_minute: int = 1000,
        max_active_decks: int = 1000,
        max_queued_edits: int = 20,
        theme_changes_per_minute: int = 1000,
        slides_per_deck: int = 1,
    ) -> None:
        """``slides_per_deck`` is 1 unless a test says otherwise: one slide written at a time
        makes the order of the writer's calls that of the slides."""
        self.store = FakeStore()
        self.clock = clock or FakeClock()
        self.publisher = FakeEventPublisher()
        self.queue = FakeJobQueue()
        self.flags = FakeCancelFlags()
        self.creations = FakeRateLimiter(self.clock, limit=creations_per_minute)
        self.renderer = FakeRenderer()
        self.meter = FakeMeter()
        self.lease_seconds = lease_seconds
        self.settings = Settings(
            database_url="postgresql://fake/fake",
            redis_url="redis://fake/0",
            worker_lease_seconds=lease_seconds,
            llm_max_calls_per_deck=max_model_calls,
            limit_active_decks_per_user=max_active_decks,
            limit_queued_edits_per_deck=max_queued_edits,
            llm_concurrent_slides_per_deck=slides_per_deck,
        )
        self.ports = Ports(
            uow=self.store.uow,
            steps=self.store,
            publisher=self.publisher,
            queue=self.queue,
            cancel_flags=self.flags,
            renderer=self.renderer,
            clock=self.clock,
            creations=self.creations,
            theme_changes=FakeRateLimiter(self.clock, limit=theme_changes_per_minute),
            export_rate=FakeRateLimiter(self.clock, limit=1000),
            exporters={},
            socket_quota=FakeSocketQuota(),
            meter=self.meter,
        )
        api = api_services(self.settings, self.ports)
        self.service = api.decks
        self.edits = api.edits
        self.recovery = self.worker().recovery
        #: The outbox relay, as the sweep runs it.
        self.publishing = EventPublishing(self.store.uow, self.publisher, self.clock)

    def worker(
        self, writer: FakeWriter | None = None, worker_id: str = "w1", llm_max_attempts: int = 2
    ) -> WorkerServices:
        settings = msgspec.structs.replace(self.settings, llm_max_attempts=llm_max_attempts)
        # Each publish marked at once: the tests read the outbox right after a run.
        return worker_services(
            settings, self.ports, writer or FakeWriter(), worker_id, mark_after_seconds=0.0
        )

    def generator(self, writer: FakeWriter | None = None, worker_id: str = "w1") -> DeckGenerator:
        return self.worker(writer, worker_id).generator

    def editor(
        self, writer: FakeWriter | None = None, worker_id: str = "w1", llm_max_attempts: int = 2
    ) -> SlideEditor:
        """An editor that may call the writer twice ``llm_max_attempts`` times."""
        return self.worker(writer, worker_id, llm_max_attempts).editor

    async def create(
        self,
        user_id: str = "alice",
        prompt: str = "solar energy",
        slide_count: int = 3,
        **brief: str,
    ) -> Deck:
        return await self.service.create(
            user_id, DeckBrief(prompt=prompt, slide_count=slide_count, **brief)
        )

    async def cancelled_while_the_stream_is_down(self) -> Deck:
        """A pending deck of alice's, cancelled while every publish fails: its DeckCancelled is
        committed but unpublished, and the publisher still fails afterwards."""
        deck = await self.create()
        self.publisher.fail = True
        await self.service.cancel("alice", deck.id)
        return deck


def new_deck(
    *,
    user_id: str = "alice",
    status: DeckStatus = DeckStatus.PENDING,
    version: int = 1,
    title: str | None = None,
    now: datetime | None = None,
    **brief: str,
) -> Deck:
    """A deck as DeckService.create would store it, for aggregate tests and seeding."""
    now = now or datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    return Deck(
        id=uuid4(),
        user_id=user_id,
        title=title or "placeholder title",
        status=status,
        version=version,
        brief=DeckBrief(prompt="solar energy", slide_count=3, title=title, **brief),
        created_at=now,
        updated_at=now,
    )


if TYPE_CHECKING:  # `mypy --strict tests/unit/fakes.py` proves that the fakes fit the ports

    def _fakes_fit_the_ports(store: FakeStore) -> None:
        from presto_deck.application import ports

        _factory: ports.UnitOfWorkFactory = store.uow
        _uow: ports.UnitOfWork = store.uow()
        _decks: ports.DeckRepository = store.uow().decks
        _slides: ports.SlideRepository = store.uow().slides
        _events: ports.EventLog = store.uow().events
        _edits: ports.EditRepository = store.uow().edits
        _publisher: ports.EventPublisher = FakeEventPublisher()
        _queue: ports.JobQueue = FakeJobQueue()
        _flags: ports.CancelFlags = FakeCancelFlags()
        _writer: ports.DeckWriter = FakeWriter()
        _renderer: ports.SlideRenderer = FakeRenderer()
        _clock: ports.Clock = FakeClock()
        _limiter: ports.RateLimiter = FakeRateLimiter(FakeClock())
        _quota: ports.SocketQuota = FakeSocketQuota()
