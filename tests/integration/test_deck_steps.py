"""A run's step from the deck as it last stored it: one statement, no lock taken and no read
first, that writes the deck, its events and its slides only if nothing changed the deck since,
and nothing at all otherwise."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from presto_deck.application.ports import StorageError
from presto_deck.domain.content import DeckPlan, SlideContent, SlideOutline
from presto_deck.domain.deck import Deck, DeckStatus, Lease, Slide
from presto_deck.infrastructure.db.steps import APPLICATION_NAME, PsycopgDeckSteps
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


@pytest.fixture
async def steps(settings: Settings) -> AsyncIterator[PsycopgDeckSteps]:
    built = PsycopgDeckSteps(
        settings.libpq_url,
        connections=2,
        lock_timeout_seconds=5,
        idle_transaction_timeout_seconds=10,
    )
    yield built
    await built.close()


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


async def _step(
    steps: PsycopgDeckSteps, known: Deck, slides: list[Slide], *, last: bool = False
) -> bool:
    ahead = dataclasses.replace(known, pending_events=[])
    for slide in slides:
        ahead.add_generated_slide(slide, NOW)
    if last:
        ahead.complete(len(PLAN.slides), NOW)
    return await steps.save_if_unchanged(ahead, since=known.version, owner=OWNER, slides=slides)


async def _stored(engine: AsyncEngine, deck: Deck) -> tuple[Deck, list[int], list[str]]:
    async with SqlUnitOfWork(engine) as uow:
        stored = await uow.decks.get(deck.id)
        orders = [slide.order for slide in await uow.slides.list(deck.id)]
        events = [event.event_type for event in await uow.events.after(deck.id, 0)]
    assert stored is not None
    return stored, orders, events


async def test_an_unchanged_deck_gets_its_slides_events_and_state_and_keeps_its_renewed_lease(
    engine: AsyncEngine, steps: PsycopgDeckSteps
) -> None:
    known = await _generating(engine)
    renewed = NOW + timedelta(minutes=5)
    async with SqlUnitOfWork(engine) as uow:  # the run's renewal, after the deck it knows
        await uow.decks.renew_lease(known.id, OWNER, renewed)
        await uow.commit()

    assert await _step(steps, known, _slides(known, 1, 2))

    stored, orders, events = await _stored(engine, known)
    assert stored.version == known.version + 2
    assert stored.status is DeckStatus.GENERATING
    assert stored.lease == Lease(owner=OWNER, expires_at=renewed)
    assert orders == [1, 2]
    assert events[-2:] == ["SlideAdded", "SlideAdded"]


async def test_the_step_that_ends_the_deck_gives_up_its_lease(
    engine: AsyncEngine, steps: PsycopgDeckSteps
) -> None:
    known = await _generating(engine)

    assert await _step(steps, known, _slides(known, 1, 2, 3), last=True)

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
    engine: AsyncEngine,
    steps: PsycopgDeckSteps,
    meanwhile: Callable[[AsyncEngine, Deck], Awaitable[None]],
) -> None:
    known = await _generating(engine)
    await meanwhile(engine, known)
    before = await _stored(engine, known)

    assert not await _step(steps, known, _slides(known, 1, 2))

    assert await _stored(engine, known) == before


async def test_a_step_on_a_connection_the_server_ended_fails_as_transient_and_a_new_one_serves(
    engine: AsyncEngine, steps: PsycopgDeckSteps
) -> None:
    known = await _generating(engine)
    assert await _step(steps, known, _slides(known, 1))  # the pool's connection is open
    known, _, _ = await _stored(engine, known)
    async with engine.connect() as conn:
        ended = await conn.scalar(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": APPLICATION_NAME},
        )
    assert ended >= 1

    failed: list[StorageError] = []
    async with asyncio.timeout(10):  # the pool puts new connections in their place
        while True:
            try:
                assert await _step(steps, known, _slides(known, 2))
                break
            except StorageError as exc:
                failed.append(exc)
    # One step fails on each connection the server ended, as a failure worth trying again.
    assert 1 <= len(failed) <= ended
    assert all(exc.transient for exc in failed)
    _, orders, _ = await _stored(engine, known)
    assert orders == [1, 2]


async def test_a_slide_the_database_refuses_fails_the_step_for_good_and_writes_nothing(
    engine: AsyncEngine, steps: PsycopgDeckSteps
) -> None:
    known = await _generating(engine)
    before = await _stored(engine, known)
    refused = dataclasses.replace(_slides(known, 1)[0], html_content="<p>\x00</p>")

    with pytest.raises(StorageError) as failed:
        await _step(steps, known, [refused])

    assert not failed.value.transient
    assert await _stored(engine, known) == before
