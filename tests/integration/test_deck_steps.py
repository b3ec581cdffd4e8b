"""A run's step from the deck as it last stored it: one statement, no lock taken and no read
first, that writes the deck, its events and its slides only if nothing changed the deck since,
and nothing at all otherwise."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from presto_deck.domain.content import DeckPlan, SlideContent, SlideOutline
from presto_deck.domain.deck import Deck, DeckStatus, Lease, Slide
from presto_deck.infrastructure.db.unit_of_work import SqlUnitOfWork, create_engine
from presto_deck.settings import Settings
from tests.unit.fakes import new_deck

OWNER = "worker-1/run"
NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
PLAN = DeckPlan(title="Tides", slides=[SlideOutline(title=f"Slide {n}") for n in range(1, 4)])


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    built = create_engine(settings.sqlalchemy_url)
    yield built
    await built.dispose()


async def _generating(engine: AsyncEngine) -> Deck:
    """A deck started and planned by ``OWNER``'s run, as that run last stored it."""
    deck = new_deck(now=NOW)
    async with SqlUnitOfWork(engine) as uow:
        await uow.decks.add(deck)
        await uow.commit()
    async with SqlUnitOfWork(engine) as uow:
        locked = await uow.decks.lock(deck.id)
        assert locked is not None
        locked.take_lease(OWNER, NOW + timedelta(minutes=1), NOW)
        locked.start(NOW)
        locked.set_plan(PLAN, NOW)
        await uow.decks.save(locked)
        await uow.commit()
    locked.take_events()
    return locked


def _slides(deck: Deck, *orders: int) -> list[Slide]:
    return [
        Slide(
            id=uuid4(),
            deck_id=deck.id,
            order=order,
            html_content=f"<section>{order}</section>",
            presenter_notes=None,
            created_at=NOW,
            updated_at=NOW,
            content=SlideContent(title=f"Slide {order}"),
        )
        for order in orders
    ]


async def _step(engine: AsyncEngine, known: Deck, slides: list[Slide], *, last: bool) -> bool:
    ahead = dataclasses.replace(known, pending_events=[])
    for slide in slides:
        ahead.add_generated_slide(slide, NOW)
    if last:
        ahead.complete(len(PLAN.slides), NOW)
    async with SqlUnitOfWork(engine, one_statement=True) as uow:  # as a run steps
        stored = await uow.decks.save_if_unchanged(
            ahead, since=known.version, owner=OWNER, slides=slides
        )
        await uow.commit()
    return stored


async def _stored(engine: AsyncEngine, deck: Deck) -> tuple[Deck, list[int], list[str]]:
    async with SqlUnitOfWork(engine) as uow:
        stored = await uow.decks.get(deck.id)
        orders = [slide.order for slide in await uow.slides.list(deck.id)]
        events = [event.event_type for event in await uow.events.after(deck.id, 0)]
    assert stored is not None
    return stored, orders, events


async def test_an_unchanged_deck_gets_its_slides_events_and_state_and_keeps_its_renewed_lease(
    engine: AsyncEngine,
) -> None:
    known = await _generating(engine)
    renewed = NOW + timedelta(minutes=5)
    async with SqlUnitOfWork(engine) as uow:  # the run's renewal, after the deck it knows
        await uow.decks.renew_lease(known.id, OWNER, renewed)
        await uow.commit()

    assert await _step(engine, known, _slides(known, 1, 2), last=False)

    stored, orders, events = await _stored(engine, known)
    assert stored.version == known.version + 2
    assert stored.status is DeckStatus.GENERATING
    assert stored.lease == Lease(owner=OWNER, expires_at=renewed)
    assert orders == [1, 2]
    assert events[-2:] == ["SlideAdded", "SlideAdded"]


async def test_the_step_that_ends_the_deck_gives_up_its_lease(engine: AsyncEngine) -> None:
    known = await _generating(engine)

    assert await _step(engine, known, _slides(known, 1, 2, 3), last=True)

    stored, orders, events = await _stored(engine, known)
    assert (stored.status, stored.lease) == (DeckStatus.COMPLETED, None)
    assert orders == [1, 2, 3]
    assert events[-1] == "DeckCompleted"


async def _locked_change(engine: AsyncEngine, deck: Deck, change: Callable[[Deck], None]) -> None:
    """Another transaction changes the deck meanwhile, as the API or another run would."""
    async with SqlUnitOfWork(engine) as uow:
        locked = await uow.decks.lock(deck.id)
        assert locked is not None
        change(locked)
        await uow.decks.save(locked)
        await uow.commit()


async def _another_step(engine: AsyncEngine, deck: Deck) -> None:
    await _locked_change(engine, deck, lambda d: d.add_generated_slide(_slides(d, 1)[0], NOW))


async def _taken_over(engine: AsyncEngine, deck: Deck) -> None:
    lease = Lease(owner="worker-2/run", expires_at=NOW + timedelta(minutes=1))
    await _locked_change(engine, deck, lambda d: setattr(d, "lease", lease))


async def _cancel_asked(engine: AsyncEngine, deck: Deck) -> None:
    await _locked_change(engine, deck, lambda d: d.request_cancel(NOW))


async def _slide_stored(engine: AsyncEngine, deck: Deck) -> None:
    async with SqlUnitOfWork(engine) as uow:  # by a run of this job before a takeover
        await uow.slides.add(_slides(deck, 2)[0])
        await uow.commit()


@pytest.mark.parametrize(
    "meanwhile",
    [_another_step, _taken_over, _cancel_asked, _slide_stored],
    ids=lambda f: f.__name__,
)
async def test_a_deck_changed_since_the_run_stored_it_is_left_as_it_is(
    engine: AsyncEngine, meanwhile: Callable[[AsyncEngine, Deck], Awaitable[None]]
) -> None:
    known = await _generating(engine)
    await meanwhile(engine, known)
    before = await _stored(engine, known)

    assert not await _step(engine, known, _slides(known, 1, 2), last=False)

    assert await _stored(engine, known) == before


async def test_a_connection_used_for_one_statement_goes_back_to_the_pool_transactional(
    settings: Settings,
) -> None:
    """The next unit on the same connection still rolls back what it does not commit."""
    engine = create_engine(settings.sqlalchemy_url, pool_size=1)
    try:
        known = await _generating(engine)
        assert await _step(engine, known, _slides(known, 1), last=False)
        async with SqlUnitOfWork(engine) as uow:  # not committed
            await uow.slides.add(_slides(known, 2)[0])
        _, orders, _ = await _stored(engine, known)
    finally:
        await engine.dispose()

    assert orders == [1]
