"""Generate a deck: plan it, write its slides, finish it.

Once the plan is stored, the model writes several slides at once (a few per deck, a cap per
worker); each is stored as soon as it is written and the slides before it are stored, so the
slides and their events keep their order while the model's time overlaps.

Each step is one transaction on the deck row: the data, the version bump and the events are
committed together and published afterwards. A run's first step locks and reads the deck, so the
job is idempotent and resumable: a duplicate or re-delivered job, or one that takes over from a
dead worker, continues after the last committed slide and never writes a slide or an event twice.
The steps after it go on from the deck as the run stored it, in one statement that writes only if
the deck is still at that version and leased to the run, with no cancellation asked for; if not,
the step locks and reads the deck as the first one does, and decides from what it finds.

A run owns the deck through a lease named for that run. It renews the lease while it works; a
deck whose lease lapses (its worker died or froze) is queued again by the sweep and taken over
by a new run, which writes its own name into the lease. Every step and every model call checks
that name first, so the run it replaced stops at once if it ever wakes up (fencing).

Every way a run can go wrong ends within a bound:
- the writer gives up, or the deck has spent its model calls: the deck ends FAILED with a
  reason a user can read and a reference to the log line that holds the details;
- the database refuses a value: the step is tried a few times, then the deck ends FAILED;
- the database is unavailable, or another run holds the deck: this run stops, and the sweep
  queues the deck again later; since model calls are counted in the database before they are
  made, no number of runs can spend more than the deck's budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Protocol
from uuid import UUID, uuid4

from loguru import logger

from presto_deck.application.ports import (
    CancelFlags,
    CancelRequested,
    Clock,
    DeckSteps,
    DeckWriter,
    GenerationMeter,
    LeaseLost,
    LeaseState,
    ModelCallsExhausted,
    RunStopped,
    SlideRenderer,
    StorageError,
    UnitOfWork,
    UnitOfWorkFactory,
    WriterError,
)
from presto_deck.application.publishing import EventPublishing
from presto_deck.application.runs import CountedCalls, Leases, with_storage_retries, writing
from presto_deck.application.tracing import tracer
from presto_deck.domain.content import DeckPlan, SlideContent, cleaned
from presto_deck.domain.deck import Deck, DeckStatus, Failure, LeaseHeld, Slide

#: A step's change to the locked deck; returns False when there was nothing to do.
_Change = Callable[[Deck, UnitOfWork], Awaitable[bool]]


class DeckGenerator:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        steps: DeckSteps,
        writer: DeckWriter,
        renderer: SlideRenderer,
        publishing: EventPublishing,
        cancel_flags: CancelFlags,
        clock: Clock,
        worker_id: str,
        lease_seconds: float,
        max_model_calls: int,
        meter: GenerationMeter,
        slides_per_deck: int = 1,
        slide_slots: asyncio.Semaphore | None = None,
    ) -> None:
        self._uow = uow
        self._steps = steps
        self._writer = writer
        self._meter = meter
        self._slides_per_deck = slides_per_deck
        #: Slides this worker has written at once, all its decks together.
        self._slide_slots = slide_slots or asyncio.Semaphore(slides_per_deck)
        self._renderer = renderer
        self._publishing = publishing
        self._cancel_flags = cancel_flags
        self._clock = clock
        self._worker_id = worker_id
        self._leases = Leases(uow=uow, clock=clock, lease_seconds=lease_seconds)
        self._max_model_calls = max_model_calls
        self._running: set[UUID] = set()

    async def generate(self, deck_id: UUID) -> DeckStatus | None:
        """Take the deck as far as it goes; its status, or None if this run did not get to say."""
        if deck_id in self._running:
            # A requeued job while this process still runs the deck: a second copy would only
            # wait for the first one's lock.
            logger.info("deck {} is already being generated here", deck_id)
            return None
        owner = f"{self._worker_id}/{uuid4().hex[:8]}"
        self._running.add(deck_id)
        try:
            return await self._run(deck_id, owner)
        except LeaseHeld as exc:
            logger.info("not generating deck {}: {}", deck_id, exc)
        except LeaseLost:
            logger.warning("deck {} was taken over by another run; this one stops", deck_id)
        except (StorageError, RunStopped) as exc:
            logger.warning("generation of deck {} stopped, to be resumed: {}", deck_id, exc)
        finally:
            self._running.discard(deck_id)
        return None

    async def _run(self, deck_id: UUID, owner: str) -> DeckStatus | None:
        start = _Start(owner, self._leases, self._clock)
        deck = await self._step(deck_id, start)
        if deck is None:
            return None
        if not deck.status.is_active:  # it ended before, or was cancelled as it started
            return deck.status
        status = None
        try:
            try:
                async with self._leases.kept(deck_id, owner):
                    status = await self._write_or_fail(deck, owner, start.slides_stored)
            except CancelRequested:  # seen at a renewal or a model call: stop, and cancel now
                status = _status(await self._step(deck_id, _nothing, owner))
            return status
        finally:
            if status is None or status.is_active:  # a step that ends the deck ends its lease
                await self._leases.release(deck_id, owner)

    async def _write_or_fail(self, deck: Deck, owner: str, written: int) -> DeckStatus | None:
        try:
            return await self._write(deck, owner, written)
        except WriterError as exc:
            return await self._fail(deck.id, owner, _Failure(exc.reason, exc.code, exc.detail))
        except ModelCallsExhausted as exc:
            reason = f"The deck used all {self._max_model_calls} model calls it may make."
            return await self._fail(deck.id, owner, _Failure(reason, _EXHAUSTED, str(exc)))
        except StorageError as exc:
            if exc.transient:
                raise
            reason = "The deck's content could not be stored."
            return await self._fail(deck.id, owner, _Failure(reason, _STORAGE, str(exc)))

    async def _write(self, deck: Deck, owner: str, written: int) -> DeckStatus | None:
        """Plan the deck unless it is planned, write its slides from the ``written`` first on,
        and complete it."""
        budget = CountedCalls(
            self._uow,
            partial(_spend_on_deck, deck.id, owner),
            limit=self._max_model_calls,
            deadline=self._leases.deadline,
            what=f"deck {deck.id}",
        )
        plan = deck.plan
        if plan is None:
            with tracer.start_as_current_span("deck.plan"):
                plan = cleaned(await writing(self._writer.plan(deck.brief, budget)))
                updated = await self._step_ahead(deck, _SetPlan(plan, self._clock), owner)
            if updated is None or updated.status is not DeckStatus.GENERATING:
                return _status(updated)
            deck = updated
            plan = deck.plan or plan  # a run before a takeover may have committed its plan first
        total = len(plan.slides)
        drafts = _Drafts(
            partial(self._draft, deck, plan, budget),
            range(written, total),
            ahead=self._slides_per_deck,
            slots=self._slide_slots,
        )
        known = deck  # as this run last stored it
        async with drafts:
            index = written
            while index < total:
                draft = await self._draft_unless_cancelled(deck.id, drafts, index)
                if draft is None:  # flagged in Redis: the step cancels, as PostgreSQL says
                    flagged = await self._step(deck.id, _nothing, owner)
                    if flagged is None or flagged.status is not DeckStatus.GENERATING:
                        return _status(flagged)
                    known = flagged
                    draft = await drafts.take(index)
                # The slides after it that are written already go in the same step: one
                # transaction and one publish for all of them, their order and versions kept.
                batch = [draft, *drafts.take_written(index + 1)]
                stored = {"slide.index": index, "slide.count": len(batch)}
                with tracer.start_as_current_span("deck.slide.commit", attributes=stored):
                    adding = _AddSlides(self._slides(deck.id, index, batch), total, self._clock)
                    updated = await self._step_ahead(known, adding, owner)
                for each in batch:
                    self._meter.slide_generated(time.perf_counter() - each.started)
                if updated is None or updated.status is not DeckStatus.GENERATING:
                    return _status(updated)
                known = updated
                index += len(batch)
                drafts.stored(len(batch))
        return _status(await self._step(deck.id, self._complete(total), owner))

    async def _draft(
        self, deck: Deck, plan: DeckPlan, budget: CountedCalls, index: int
    ) -> tuple[str, SlideContent]:
        """Slide ``index`` written by the model and drawn, not stored yet."""
        with tracer.start_as_current_span("deck.slide", attributes={"slide.index": index}):
            content = cleaned(
                await writing(self._writer.write_slide(deck.brief, plan, index, budget))
            )
            html = await writing(self._drawn(content, deck.brief.theme))
        return html, content

    async def _drawn(self, content: SlideContent, theme: str | None) -> str:
        """The slide's HTML: drawn on the spot when it is short, which costs less than the hop to
        a thread and back; in a thread when it is long, since the sanitizer's parse of much
        markup would hold up every other deck of this worker for tens of milliseconds."""
        if _length(content) <= _DRAWN_AT_ONCE_CHARACTERS:
            return self._renderer.render(content, theme)
        return await asyncio.to_thread(self._renderer.render, content, theme)

    async def _draft_unless_cancelled(
        self, deck_id: UUID, drafts: _Drafts, index: int
    ) -> _Draft | None:
        """Slide ``index`` once it is written; None if the user asked to cancel the deck first
        (looked up in Redis now and then while the model writes, so that a cancellation stops
        the calls in flight within a second; a slide written by its turn goes to its step, which
        sees the cancellation in PostgreSQL)."""
        if drafts.written(index):
            return await drafts.take(index)
        draft = await drafts.wait(index, _FIRST_LOOK_SECONDS)
        while draft is None:
            if await self._cancel_flagged(deck_id):
                return None
            draft = await drafts.wait(index, _CANCEL_LOOK_SECONDS)
        return draft

    async def _cancel_flagged(self, deck_id: UUID) -> bool:
        """The fast check of Redis's flag; PostgreSQL's request is seen by every step anyway."""
        try:
            return await self._cancel_flags.is_requested(deck_id)
        except Exception as exc:
            logger.debug("could not read the cancellation flag of deck {}: {}", deck_id, exc)
            return False

    # -- steps: each runs under the deck's row lock, in one transaction ---------------------------

    async def _step(self, deck_id: UUID, change: _Change, owner: str | None = None) -> Deck | None:
        """Lock the deck, check the lease, honour a cancellation, apply ``change``, commit, publish.

        Without ``owner`` the change itself deals with the lease (taking it, at the start).
        """
        return await with_storage_retries(partial(self._step_once, deck_id, change, owner))

    async def _step_once(self, deck_id: UUID, change: _Change, owner: str | None) -> Deck | None:
        async with self._uow() as uow:
            deck = await uow.decks.lock(deck_id)
            if deck is None:
                logger.warning("deck {} does not exist; nothing to generate", deck_id)
                return None
            if not deck.status.is_active:
                return deck
            if owner is not None and not deck.leased_to(owner):
                raise LeaseLost(f"deck {deck_id} is no longer leased to {owner}")
            if deck.cancel_requested:
                deck.cancel(self._clock())
            elif not await change(deck, uow):
                return deck
            await uow.decks.save(deck)
            await uow.commit()
        await self._committed(deck)
        return deck

    async def _step_ahead(self, known: Deck, step: _Advance, owner: str) -> Deck | None:
        """A step from the deck as this run last stored it (``known``), in one statement with
        no lock taken and no read first: ``step.advance`` changes a copy of it, stored unless the
        deck changed meanwhile (a cancellation asked for, a takeover) or the statement failed;
        then the locked step decides, as every step does."""
        ahead = dataclasses.replace(known, pending_events=[])
        slides = step.advance(ahead)
        stored = False
        if slides is not None:
            try:
                stored = await self._steps.save_if_unchanged(
                    ahead, since=known.version, owner=owner, slides=slides
                )
            except StorageError as exc:  # its commit may have been lost: the lock will tell
                logger.debug(
                    "deck {}: a step from version {} failed: {}", known.id, known.version, exc
                )
                stored = False
        if not stored:
            return await self._step(known.id, step, owner)
        await self._committed(ahead)
        return ahead

    async def _committed(self, deck: Deck) -> None:
        """After a step's commit: count the deck's end if the step ended it; publish its events."""
        if not deck.status.is_active:
            age = (self._clock() - deck.created_at).total_seconds()
            self._meter.deck_finished(deck.status, max(age, 0.0))
        await self._publishing.publish(deck.take_events())

    def _slides(self, deck_id: UUID, first: int, drafts: list[_Draft]) -> list[Slide]:
        """The drafts as the deck's slides from index ``first`` on."""
        now = self._clock()
        return [
            Slide(
                id=uuid4(),
                deck_id=deck_id,
                order=first + offset + 1,
                html_content=html,
                presenter_notes=content.notes or None,
                created_at=now,
                updated_at=now,
                content=content,
            )
            for offset, (html, content) in enumerate(draft.slide for draft in drafts)
        ]

    def _complete(self, total: int) -> _Change:
        async def change(deck: Deck, uow: UnitOfWork) -> bool:
            if deck.status is not DeckStatus.GENERATING or await uow.slides.count(deck.id) < total:
                return False
            deck.complete(total, self._clock())
            return True

        return change

    async def _fail(self, deck_id: UUID, owner: str, failure: _Failure) -> DeckStatus | None:
        """End the deck FAILED: the user reads the reason; the log line behind ``ref`` the rest."""
        ref = uuid4().hex[:12]
        logger.warning(
            "deck {} failed ({}, ref {}): {}", deck_id, failure.code, ref, failure.detail
        )
        try:
            return _status(await self._step(deck_id, _failing(failure, ref, self._clock), owner))
        except StorageError as exc:
            if exc.transient:
                raise
            # Even the reason could not be stored: end the deck with one that surely can be.
            plain = _Failure("The deck could not be stored.", _STORAGE, failure.detail)
            return _status(await self._step(deck_id, _failing(plain, ref, self._clock), owner))


#: How often a run waiting for the model looks whether the user cancelled the deck. The first
#: look comes once a slide has kept it waiting a moment: none for a slide written by its turn.
_CANCEL_LOOK_SECONDS = 0.5
_FIRST_LOOK_SECONDS = 0.05
#: A slide's text up to which it is drawn without a thread: 3 ms at most, with markup all through
#: it (a slide of plain text takes microseconds, whatever its length).
_DRAWN_AT_ONCE_CHARACTERS = 500


def _length(content: SlideContent) -> int:
    """The characters of the slide's text that its HTML is drawn from."""
    return (
        len(content.title)
        + len(content.subtitle)
        + len(content.body)
        + sum(len(bullet) for bullet in content.bullets)
    )


@dataclass(frozen=True)
class _Draft:
    """A slide written and drawn, waiting for its turn to be stored: ``slide`` is its HTML and
    content, ``started`` when its writing began (``time.perf_counter``)."""

    slide: tuple[str, SlideContent]
    started: float


class _Drafts:
    """The slides of one run written ahead of their commit and taken in order: ``ahead`` at
    most between the start of their writing and their commit (fewer while the worker's ``slots``
    are taken by other decks).

    Leaving the block cancels what is still being written: a cancelled, failed or taken-over run
    makes no call past its end.
    """

    def __init__(
        self,
        write: Callable[[int], Awaitable[tuple[str, SlideContent]]],
        indexes: range,
        *,
        ahead: int,
        slots: asyncio.Semaphore,
    ) -> None:
        self._write = write
        self._pending = iter(indexes)
        self._ahead = ahead
        self._slots = slots
        self._tasks: dict[int, asyncio.Task[_Draft]] = {}

    async def __aenter__(self) -> _Drafts:
        for _ in range(self._ahead):
            self._start_next()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks.values():
            task.cancel()
        # Their failures are the run's only through take(); here they are just gone.
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    async def wait(self, index: int, seconds: float) -> _Draft | None:
        """Slide ``index`` if it is written within ``seconds``; None otherwise."""
        done, _ = await asyncio.wait({self._tasks[index]}, timeout=seconds)
        return await self.take(index) if done else None

    def written(self, index: int) -> bool:
        """Whether slide ``index`` is written (or failed: ``take`` says which)."""
        return self._tasks[index].done()

    async def take(self, index: int) -> _Draft:
        """Slide ``index`` once written, or what went wrong writing it."""
        draft = await self._tasks[index]
        del self._tasks[index]
        return draft

    def take_written(self, index: int) -> list[_Draft]:
        """The slides from ``index`` on that are written already, up to the first that is not
        (or that failed: its failure is for ``take``)."""
        written = []
        while (task := self._tasks.get(index)) is not None and task.done():
            if task.cancelled() or task.exception() is not None:
                break
            written.append(task.result())
            del self._tasks[index]
            index += 1
        return written

    def stored(self, count: int = 1) -> None:
        """Slides taken have been stored: as many next ones' writing may start."""
        for _ in range(count):
            self._start_next()

    def _start_next(self) -> None:
        index = next(self._pending, None)
        if index is not None:
            self._tasks[index] = asyncio.create_task(self._drafted(index))

    async def _drafted(self, index: int) -> _Draft:
        async with self._slots:
            started = time.perf_counter()
            return _Draft(await self._write(index), started)


class _Start:
    """The first step of a run: take the lease, start a deck still pending, and count the slides
    an earlier run stored (under the row lock, with the lease taken, no other run adds one)."""

    def __init__(self, owner: str, leases: Leases, clock: Clock) -> None:
        self._owner = owner
        self._leases = leases
        self._clock = clock
        self.slides_stored = 0

    async def __call__(self, deck: Deck, uow: UnitOfWork) -> bool:
        deck.take_lease(self._owner, self._leases.deadline(), self._clock())
        if deck.status is DeckStatus.PENDING:
            deck.start(self._clock())
        elif deck.status is DeckStatus.GENERATING:  # planned: slides may be stored already
            self.slides_stored = await uow.slides.count(deck.id)
        return True  # commit the lease even when an earlier run had started the deck


@dataclass(frozen=True)
class _Failure:
    """Why a deck failed: ``reason`` for the user, ``code`` for programs, ``detail`` for the log."""

    reason: str
    code: str
    detail: str


_EXHAUSTED = "model_calls_exhausted"
_STORAGE = "storage_failed"


class _Advance(Protocol):
    """A step a run can take from the deck as it last stored it (``advance``: the slides it adds,
    or None if it cannot from there) or, when that deck is no longer current, as a change of the
    locked deck (``__call__``)."""

    def advance(self, deck: Deck) -> list[Slide] | None: ...

    async def __call__(self, deck: Deck, uow: UnitOfWork) -> bool: ...


class _SetPlan:
    def __init__(self, plan: DeckPlan, clock: Clock) -> None:
        self._plan = plan
        self._clock = clock

    def advance(self, deck: Deck) -> list[Slide] | None:
        if deck.status is not DeckStatus.PLANNING:  # a run before a takeover planned it
            return None
        deck.set_plan(self._plan, self._clock())
        return []

    async def __call__(self, deck: Deck, uow: UnitOfWork) -> bool:
        return self.advance(deck) is not None


class _AddSlides:
    """Store slides after those stored; the step that stores the deck's last slide completes it
    too, unless a slide was found stored already (then the completion counts them)."""

    def __init__(self, slides: list[Slide], total: int, clock: Clock) -> None:
        self._slides = slides
        self._total = total
        self._clock = clock

    def advance(self, deck: Deck) -> list[Slide] | None:
        if deck.status is not DeckStatus.GENERATING:
            return None
        self._record(deck, self._slides)
        return self._slides

    async def __call__(self, deck: Deck, uow: UnitOfWork) -> bool:
        # Slides are stored in order, by the run that holds the lease: one at this order
        # already is this very slide, stored by a run of this job before a takeover.
        added = await uow.slides.add_unless_taken(self._slides)
        self._record(deck, added)
        return bool(added)

    def _record(self, deck: Deck, added: list[Slide]) -> None:
        now = self._clock()
        for slide in added:
            deck.add_generated_slide(slide, now)
        if len(added) == len(self._slides) and self._slides[-1].order == self._total:
            deck.complete(self._total, now)


def _failing(failure: _Failure, ref: str, clock: Clock) -> _Change:
    async def change(deck: Deck, uow: UnitOfWork) -> bool:
        told = Failure(error=f"{failure.reason} (ref {ref})", code=failure.code, ref=ref)
        deck.fail(told, clock())
        return True

    return change


async def _nothing(deck: Deck, uow: UnitOfWork) -> bool:
    return False


def _status(deck: Deck | None) -> DeckStatus | None:
    return None if deck is None else deck.status


async def _spend_on_deck(deck_id: UUID, owner: str, uow: UnitOfWork, until: datetime) -> LeaseState:
    return await uow.decks.spend_model_call(deck_id, owner, until)
