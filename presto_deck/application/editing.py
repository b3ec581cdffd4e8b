"""Edit a deck once its generation has ended: rewrite or add a slide by prompt, change a slide's
text, delete a slide, reorder the deck.

Each request is remembered under its request id with its outcome, in the transaction that makes
the change, so the same request sent twice (a retry after a dropped socket, a double click)
changes the deck once and gets the same answer. Every change is one transaction on the locked
deck row: the slides, the version bump, the event and the request's outcome, then published
through the outbox, as generation does.

Changes that need no model are applied at once, here. Rewriting and adding by prompt are queued:
a worker takes the deck's lease (the one generation uses), asks the writer, and commits the
result, or an EditFailed event that says why: the slide is then as it was, never half-written.
A worker that dies mid-edit lets its lease lapse; the sweep queues the edit again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from uuid import UUID, uuid4

from loguru import logger

from presto_deck.application.limits import LimitExceeded, ThemeChangeRateExceeded, count_action
from presto_deck.application.ports import (
    Clock,
    DeckWriter,
    JobQueue,
    LeaseLost,
    LeaseState,
    ModelCallsExhausted,
    RateLimiter,
    RunStopped,
    SlideRenderer,
    StorageError,
    UnitOfWork,
    UnitOfWorkFactory,
    WriterError,
)
from presto_deck.application.publishing import EventPublishing
from presto_deck.application.runs import CountedCalls, Leases, with_storage_retries, writing
from presto_deck.application.tracing import deck_span
from presto_deck.domain.content import DEFAULT_THEME, SlideContent, SlideRequest, cleaned
from presto_deck.domain.deck import (
    Deck,
    DeckFull,
    DeckNotFound,
    Failure,
    IdempotencyConflict,
    LeaseHeld,
    Slide,
    SlideNotFound,
    TooManyEdits,
)
from presto_deck.domain.edits import (
    ChangeSlideText,
    ChangeTheme,
    DeleteSlide,
    EditRecord,
    EditStatus,
    InsertSlide,
    ReorderSlides,
    RewriteSlide,
    SlideEdit,
    check_room,
    checked_order,
    find_slide_index,
    needs_model,
    order_with_insert,
)

#: How long a request waits for Redis to queue an edit: PostgreSQL already holds it, and the
#: worker's sweep finds what Redis did not take.
_QUEUE_SECONDS = 2.0


@dataclass(frozen=True, kw_only=True)
class EditOutcome:
    """What became of a request, as far as it is known when the caller is answered."""

    request_id: str
    status: EditStatus
    #: The deck's version the change (or its failure) was committed as; None while queued.
    version: int | None = None
    failure: Failure | None = None

    @classmethod
    def of(cls, record: EditRecord) -> EditOutcome:
        return cls(
            request_id=record.request_id,
            status=record.status,
            version=record.version,
            failure=record.failure,
        )


class EditService:
    """The edits a client asks for, over the socket or HTTP."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        queue: JobQueue,
        publishing: EventPublishing,
        renderer: SlideRenderer,
        clock: Clock,
        max_queued_edits: int,
        theme_changes: RateLimiter | None = None,
    ) -> None:
        """``theme_changes`` bounds each user's theme changes (each redraws a whole deck and
        sends every slide again to every open page); None, unbounded."""
        self._theme_changes = theme_changes
        self._uow = uow
        self._queue = queue
        self._publishing = publishing
        self._renderer = renderer
        self._clock = clock
        self._max_queued_edits = max_queued_edits

    async def submit(
        self, user_id: str, deck_id: UUID, edit: SlideEdit, request_id: str | None = None
    ) -> EditOutcome:
        """Apply the edit, or queue it for a worker when it needs the model.

        Raises ``DeckNotFound``, or an ``EditRejected``: ``DeckBusy`` while the deck is being
        generated, ``SlideNotFound``, ``BadOrder``, ``TooManyEdits``. A request id seen before
        returns that request's outcome and changes nothing (``IdempotencyConflict`` if it was
        for another edit).
        """
        with contextlib.ExitStack() as span:
            return await self._submit(user_id, deck_id, edit, request_id or uuid4().hex, span)

    async def _submit(
        self,
        user_id: str,
        deck_id: UUID,
        edit: SlideEdit,
        request_id: str,
        span: contextlib.ExitStack,
    ) -> EditOutcome:
        if isinstance(edit, ChangeTheme) and self._theme_changes is not None:
            await count_action(self._theme_changes, user_id, _too_many_theme_changes, "theme")
        async with self._uow() as uow:
            deck = await uow.decks.lock(deck_id)
            if deck is None or deck.user_id != user_id:
                raise DeckNotFound(str(deck_id))
            # A span of the deck's trace from here on: only its owner's edits are in it.
            kind = {"edit.kind": type(edit).__name__}
            span.enter_context(deck_span("deck.edit", deck_id, attributes=kind))
            earlier = await uow.edits.get(deck_id, request_id)
            if earlier is not None:
                if earlier.edit != edit:
                    raise IdempotencyConflict(
                        f"The request id {request_id!r} was used for another edit of this deck; "
                        "use a new one for a new edit."
                    )
                return EditOutcome.of(earlier)
            deck.require_editable()
            slides = await uow.slides.list(deck_id)
            now = self._clock()
            record = EditRecord(
                id=uuid4(),
                deck_id=deck_id,
                request_id=request_id,
                edit=edit,
                status=EditStatus.QUEUED,
                created_at=now,
            )
            if needs_model(edit):
                _target_of(edit, slides)  # refused now rather than after the model was paid
                if isinstance(edit, InsertSlide):
                    check_room(len(slides))
                if await uow.edits.count_queued(deck_id) >= self._max_queued_edits:
                    raise TooManyEdits(
                        f"The deck already has {self._max_queued_edits} edits waiting for the "
                        "model; wait for one to be applied, then try again."
                    )
            else:
                await self._apply(deck, slides, edit, request_id, uow, now)
                record.status, record.version = EditStatus.APPLIED, deck.version
                await uow.decks.save(deck)
            await uow.edits.add(record)
            await uow.commit()
        if record.status is EditStatus.QUEUED:
            await self._enqueue(deck_id, record.id)
        else:
            await self._publishing.publish(deck.take_events())
        return EditOutcome.of(record)

    async def _apply(
        self,
        deck: Deck,
        slides: list[Slide],
        edit: SlideEdit,
        request_id: str,
        uow: UnitOfWork,
        now: datetime,
    ) -> None:
        ids = [slide.id for slide in slides]
        match edit:
            case ChangeSlideText():
                slide = slides[find_slide_index(ids, edit.slide_id)]
                content = edit.applied_to(slide.texts)
                html = self._renderer.render(content, deck.brief.theme)
                await _replace(deck, slide, content, html, request_id, uow, now)
            case DeleteSlide():
                find_slide_index(ids, edit.slide_id)
                remaining = [slide_id for slide_id in ids if slide_id != edit.slide_id]
                await uow.slides.delete(deck.id, edit.slide_id)
                await uow.slides.arrange(deck.id, remaining)
                deck.slide_deleted(edit.slide_id, remaining, request_id, now)
            case ReorderSlides():
                order = checked_order(ids, edit.slide_ids)
                await uow.slides.arrange(deck.id, order)
                deck.slides_reordered(order, request_id, now)
            case ChangeTheme(theme=theme) if theme == (deck.brief.theme or DEFAULT_THEME):
                pass  # drawn in it already: nothing changes, and no event says otherwise
            case ChangeTheme(theme=theme):
                for slide in slides:
                    slide.html_content = self._renderer.render(slide.texts, theme)
                    slide.updated_at = now
                    await uow.slides.update(slide)
                deck.theme_changed(theme, slides, request_id, now)
            case RewriteSlide() | InsertSlide():  # pragma: no cover - queued, never applied here
                raise AssertionError(f"{type(edit).__name__} is applied by a worker")

    async def _enqueue(self, deck_id: UUID, edit_id: UUID) -> None:
        try:
            async with asyncio.timeout(_QUEUE_SECONDS):
                await self._queue.enqueue_edit(deck_id, edit_id)
        except Exception as exc:
            logger.warning("could not queue edit {}, the sweep will: {}", edit_id, exc)


class SlideEditor:
    """The worker's side: applies a deck's queued edits, oldest first, one run per deck."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        writer: DeckWriter,
        renderer: SlideRenderer,
        publishing: EventPublishing,
        clock: Clock,
        worker_id: str,
        lease_seconds: float,
        max_model_calls: int,
    ) -> None:
        self._uow = uow
        self._writer = writer
        self._renderer = renderer
        self._publishing = publishing
        self._clock = clock
        self._worker_id = worker_id
        self._leases = Leases(uow=uow, clock=clock, lease_seconds=lease_seconds)
        self._max_model_calls = max_model_calls

    async def run(self, deck_id: UUID) -> int:
        """Apply the deck's queued edits until none is left; how many this run handled.

        If another live run holds the deck, this one leaves the edits to it: that run looks for
        queued edits, under the deck's lock, before it lets the deck go.
        """
        owner = f"{self._worker_id}/{uuid4().hex[:8]}"
        handled = 0
        try:
            if not await with_storage_retries(partial(self._take, deck_id, owner)):
                return 0
            async with self._leases.kept(deck_id, owner, honour_cancel=False):
                while edit := await with_storage_retries(partial(self._next, deck_id, owner)):
                    with logger.contextualize(request_id=edit.request_id):
                        await self._handle(edit, owner)
                    handled += 1
        except LeaseHeld as exc:
            logger.info("edits of deck {} left to the run that holds it: {}", deck_id, exc)
        except LeaseLost:
            logger.warning("deck {} was taken over by another run; this one stops", deck_id)
        except (StorageError, RunStopped) as exc:
            logger.warning("edits of deck {} stopped, to be resumed: {}", deck_id, exc)
        finally:
            await self._leases.release(deck_id, owner)
        return handled

    async def _take(self, deck_id: UUID, owner: str) -> bool:
        async with self._uow() as uow:
            deck = await uow.decks.lock(deck_id)
            if deck is None or deck.status.is_active:
                return False  # deleted, or (impossible for a queued edit) being generated
            deck.take_lease(owner, self._leases.deadline(), self._clock())  # or LeaseHeld
            await uow.decks.save(deck)
            await uow.commit()
        return True

    async def _next(self, deck_id: UUID, owner: str) -> EditRecord | None:
        """The oldest queued edit; when there is none, the lease is given up in the same
        transaction, so an edit queued meanwhile finds the deck free for its own job."""
        async with self._uow() as uow:
            deck = await _leased(uow, deck_id, owner)
            edit = await uow.edits.next_queued(deck_id)
            if edit is None:
                deck.lease = None
                await uow.decks.save(deck)
                await uow.commit()
            return edit

    async def _handle(self, edit: EditRecord, owner: str) -> None:
        async with self._uow() as uow:
            deck = await _leased(uow, edit.deck_id, owner)
            slides = await uow.slides.list(edit.deck_id)
        budget = CountedCalls(
            self._uow,
            partial(_spend_on_edit, edit.id, edit.deck_id, owner),
            limit=self._max_model_calls,
            deadline=self._leases.deadline,
            what=f"edit {edit.request_id} of deck {edit.deck_id}",
            honour_cancel=False,
        )
        try:
            request = _slide_request(deck, slides, edit.edit)
            content = cleaned(await writing(self._writer.edit_slide(request, budget)))
            await with_storage_retries(partial(self._commit, edit, owner, content))
        except (SlideNotFound, DeckFull) as exc:  # the deck changed while the edit waited
            await self._fail(edit, owner, str(exc), exc.code, str(exc))
        except WriterError as exc:
            await self._fail(edit, owner, exc.reason, exc.code, exc.detail)
        except ModelCallsExhausted as exc:
            reason = f"The edit used all {self._max_model_calls} model calls it may make."
            await self._fail(edit, owner, reason, "model_calls_exhausted", str(exc))
        except StorageError as exc:
            if exc.transient:
                raise
            reason = "The edited slide could not be stored."
            await self._fail(edit, owner, reason, "storage_failed", str(exc))

    async def _commit(self, edit: EditRecord, owner: str, content: SlideContent) -> None:
        async with self._uow() as uow:
            deck = await _leased(uow, edit.deck_id, owner)
            if not await _still_queued(uow, edit):
                return
            # Drawn in the theme the deck has now: it may have changed while the model wrote.
            html = self._renderer.render(content, deck.brief.theme)
            slides = await uow.slides.list(deck.id)
            ids = [slide.id for slide in slides]
            now = self._clock()
            match edit.edit:
                case RewriteSlide(slide_id=slide_id):
                    slide = slides[find_slide_index(ids, slide_id)]
                    await _replace(deck, slide, content, html, edit.request_id, uow, now)
                case InsertSlide(after_slide_id=after):
                    slide = Slide(
                        id=uuid4(),
                        deck_id=deck.id,
                        order=len(ids) + 1,
                        html_content=html,
                        presenter_notes=content.notes or None,
                        created_at=now,
                        updated_at=now,
                        content=content,
                    )
                    order = order_with_insert(ids, slide.id, after)
                    await uow.slides.add(slide)
                    await uow.slides.arrange(deck.id, order)
                    placed = dataclasses.replace(slide, order=order.index(slide.id) + 1)
                    deck.slide_inserted(placed, order, edit.request_id, now)
                case _:  # pragma: no cover - applied by the API, never queued
                    raise AssertionError(f"{type(edit.edit).__name__} is not queued")
            await uow.edits.finish(edit.id, EditStatus.APPLIED, deck.version)
            await uow.decks.save(deck)
            await uow.commit()
        await self._publishing.publish(deck.take_events())

    async def _fail(
        self, edit: EditRecord, owner: str, reason: str, code: str, detail: str
    ) -> None:
        """Tell every client the edit failed; the deck stays as it was."""
        ref = uuid4().hex[:12]
        logger.warning(
            "edit {} of deck {} failed ({}, ref {}): {}", edit.id, edit.deck_id, code, ref, detail
        )
        failure = Failure(error=f"{reason} (ref {ref})", code=code, ref=ref)
        target = getattr(edit.edit, "slide_id", None)

        async def step() -> None:
            async with self._uow() as uow:
                deck = await _leased(uow, edit.deck_id, owner)
                if not await _still_queued(uow, edit):
                    return
                deck.edit_failed(edit.request_id, failure, target, self._clock())
                await uow.edits.finish(edit.id, EditStatus.FAILED, deck.version, failure)
                await uow.decks.save(deck)
                await uow.commit()
            await self._publishing.publish(deck.take_events())

        await with_storage_retries(step)


def _target_of(edit: SlideEdit, slides: list[Slide]) -> Slide | None:
    """The slide a queued edit rewrites, or follows; raises ``SlideNotFound``."""
    ids = [slide.id for slide in slides]
    match edit:
        case RewriteSlide(slide_id=slide_id):
            return slides[find_slide_index(ids, slide_id)]
        case InsertSlide(after_slide_id=after) if after is not None:
            return slides[find_slide_index(ids, after)]
    return None


def _slide_request(deck: Deck, slides: list[Slide], edit: SlideEdit) -> SlideRequest:
    """What the writer is told: the deck, the slide (if any), its neighbours, the prompt."""
    contents = [slide.content for slide in slides]
    target = _target_of(edit, slides)
    current: SlideContent | None
    match edit:
        case RewriteSlide(prompt=prompt):
            assert target is not None
            index = slides.index(target)
            current = target.texts
            previous = contents[index - 1] if index > 0 else None
            following = contents[index + 1] if index + 1 < len(slides) else None
            position, total = index + 1, len(slides)
        case InsertSlide(prompt=prompt):
            index = -1 if target is None else slides.index(target)
            current = None
            previous = contents[index] if index >= 0 else None
            following = contents[index + 1] if index + 1 < len(slides) else None
            position, total = index + 2, len(slides) + 1
        case _:  # pragma: no cover - only queued edits reach the writer
            raise AssertionError(f"{type(edit).__name__} needs no writer")
    return SlideRequest(
        brief=deck.brief,
        plan=deck.plan,
        prompt=prompt,
        current=current,
        previous=previous,
        following=following,
        position=position,
        total=total,
    )


async def _replace(
    deck: Deck,
    slide: Slide,
    content: SlideContent,
    html: str,
    request_id: str,
    uow: UnitOfWork,
    now: datetime,
) -> None:
    slide.content, slide.html_content = content, html
    slide.presenter_notes, slide.updated_at = content.notes or None, now
    await uow.slides.update(slide)
    deck.slide_updated(slide, request_id, now)


async def _leased(uow: UnitOfWork, deck_id: UUID, owner: str) -> Deck:
    """The deck, locked, if this run still holds it; raises LeaseLost otherwise."""
    deck = await uow.decks.lock(deck_id)
    if deck is None or not deck.leased_to(owner):
        raise LeaseLost(f"deck {deck_id} is no longer leased to {owner}")
    return deck


async def _still_queued(uow: UnitOfWork, edit: EditRecord) -> bool:
    """False when an earlier run already applied (or failed) the edit."""
    current = await uow.edits.get(edit.deck_id, edit.request_id)
    return current is not None and current.status is EditStatus.QUEUED


async def _spend_on_edit(
    edit_id: UUID, deck_id: UUID, owner: str, uow: UnitOfWork, until: datetime
) -> LeaseState:
    return await uow.edits.spend_model_call(edit_id, deck_id, owner, until)


def _too_many_theme_changes(wait: float) -> LimitExceeded:
    return ThemeChangeRateExceeded(
        f"Too many theme changes in the last minute; try again in {math.ceil(wait)} s.",
        retry_after=wait,
    )
