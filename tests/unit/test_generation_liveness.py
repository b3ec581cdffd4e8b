"""Every way a run can go wrong ends the deck, or hands it over, in bounded time and with a
bounded number of model calls: hostile output, storage errors, budgets, takeovers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import pytest

from presto_deck.application.ports import ModelCallBudget, StorageError
from presto_deck.domain.content import (
    MAX_ITEMS,
    MAX_TEXT_LENGTH,
    DeckBrief,
    DeckPlan,
    SlideContent,
    SlideOutline,
    cleaned,
)
from presto_deck.domain.deck import DeckStatus, Lease, Slide
from presto_deck.domain.events import Event
from tests.unit.event_checks import assert_ends_with, assert_failed_with, assert_one_normal_life
from tests.unit.fakes import FakeWriter, Harness, UnlimitedBudget, WorkerKilled

#: How often the tests below run the job again, as the sweep would every period.
SWEEPS = 10

pytestmark = pytest.mark.usefixtures("no_backoff")


@pytest.fixture
def h() -> Harness:
    return Harness()


class HostileWriter(FakeWriter):
    """A model whose every string carries a NUL and a lone surrogate."""

    async def plan(self, brief: DeckBrief, budget: ModelCallBudget) -> DeckPlan:
        plan = await super().plan(brief, budget)
        return DeckPlan(
            title="Tea\x00 time\ud800",
            summary="\x00",
            slides=[
                SlideOutline(title=f"{o.title}\x00", key_points=["a\x00b", "\udfff"])
                for o in plan.slides
            ],
        )

    async def write_slide(
        self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
    ) -> SlideContent:
        await super().write_slide(brief, plan, index, budget)
        return SlideContent(title=f"Slide\x00 {index}", bullets=["x\x00"], notes="say\x00 \ud83d")


def test_cleaning_cuts_texts_and_lists_no_slide_needs() -> None:
    content = SlideContent(title="t" * 2_000_000, bullets=["b"] * 10_000, notes="n")

    kept = cleaned(content)

    assert len(kept.title) == MAX_TEXT_LENGTH
    assert kept.title.endswith("…")
    assert kept.bullets == ["b"] * MAX_ITEMS
    assert kept.notes == "n"


def test_cleaning_drops_nul_and_replaces_lone_surrogates_everywhere() -> None:
    content = SlideContent(title="a\x00b", bullets=["\ud800c", "ok é 😀"], notes="\x00\x00")

    assert cleaned(content) == SlideContent(title="ab", bullets=["\ufffdc", "ok é 😀"], notes="")


async def test_output_postgresql_would_refuse_is_cleaned_and_the_deck_completes(h: Harness) -> None:
    deck = await h.create(slide_count=3)
    h.store.refuse_slide = lambda slide: "\x00" in (slide.presenter_notes or "")

    status = await h.generator(HostileWriter(3)).generate(deck.id)

    assert status is DeckStatus.COMPLETED
    assert_one_normal_life(h, deck.id, 3)
    stored = h.store.deck(deck.id)
    assert stored.plan is not None
    assert stored.title == "Tea time\ufffd"
    assert stored.plan.slides[0].key_points == ["ab", "\ufffd"]
    assert [s.presenter_notes for s in h.store.slides(deck.id)] == ["say \ufffd"] * 3


async def test_a_value_the_database_refuses_fails_the_deck_after_bounded_tries(h: Harness) -> None:
    deck = await h.create(slide_count=3)
    refused: list[int] = []

    def refuse_the_second(slide: Slide) -> bool:
        if slide.order == 2:
            refused.append(2)
            return True
        return False

    h.store.refuse_slide = refuse_the_second
    writer = FakeWriter(3)

    status = await h.generator(writer).generate(deck.id)

    assert status is DeckStatus.FAILED
    failed = assert_ends_with(h, deck.id, "DeckFailed")[-1]
    assert_failed_with(failed, "The deck's content could not be stored.", "storage_failed")
    assert [s.order for s in h.store.slides(deck.id)] == [1]
    assert len(refused) == 1 + 3  # the step from the last version, then the locked step's tries
    assert (writer.plan_calls, writer.slide_calls) == (1, [0, 1])


async def test_a_commit_that_fails_once_is_tried_again_and_the_deck_completes(h: Harness) -> None:
    deck = await h.create(slide_count=2)
    h.store.commit_faults = [StorageError("connection lost", transient=True)]

    assert await h.generator(FakeWriter(2)).generate(deck.id) is DeckStatus.COMPLETED
    assert_one_normal_life(h, deck.id, 2)


async def test_a_model_calls_count_that_fails_to_commit_once_is_tried_again(h: Harness) -> None:
    deck = await h.create(slide_count=2)

    class CountFailsOnce(FakeWriter):
        async def plan(self, brief: DeckBrief, budget: ModelCallBudget) -> DeckPlan:
            h.store.commit_faults.append(StorageError("connection lost", transient=True))
            return await super().plan(brief, budget)  # counts the call first

    writer = CountFailsOnce(2)
    assert await h.generator(writer).generate(deck.id) is DeckStatus.COMPLETED

    assert writer.plan_calls == 1
    assert h.store.deck(deck.id).model_calls == 3  # the plan and two slides, each once
    assert_one_normal_life(h, deck.id, 2)


async def test_a_database_that_stays_down_stops_the_run_and_leaves_the_deck_to_the_sweep(
    h: Harness,
) -> None:
    deck = await h.create(slide_count=2)
    h.store.commit_faults = [StorageError("lock timeout", transient=True)] * 3
    writer = FakeWriter(2)

    assert await h.generator(writer).generate(deck.id) is None

    assert h.store.deck(deck.id).status is DeckStatus.PENDING
    assert (writer.plan_calls, writer.slide_calls) == (0, [])
    assert await h.generator(writer).generate(deck.id) is DeckStatus.COMPLETED


async def test_a_deck_that_spends_its_model_calls_ends_failed_without_one_call_more() -> None:
    h = Harness(max_model_calls=3)
    deck = await h.create(slide_count=5)
    writer = FakeWriter(5)

    status = await h.generator(writer).generate(deck.id)

    assert status is DeckStatus.FAILED
    failed = assert_ends_with(h, deck.id, "DeckFailed")[-1]
    assert_failed_with(
        failed, "The deck used all 3 model calls it may make.", "model_calls_exhausted"
    )
    assert [s.order for s in h.store.slides(deck.id)] == [1, 2]
    # The fourth call was refused before it reached the model.
    assert (writer.plan_calls, writer.slide_calls) == (1, [0, 1])


async def test_a_run_that_dies_on_the_same_slide_every_time_is_bounded_by_the_budget() -> None:
    # A crash the sweep cannot cure (the process dies on one slide's output, every time): each
    # run spends one more call, and the budget ends the deck after a bounded number of them.
    h = Harness(max_model_calls=6)
    deck = await h.create(slide_count=3)
    writer = FakeWriter(3, crash_slide={1: WorkerKilled()})

    for _ in range(SWEEPS):
        try:
            if await h.generator(writer).generate(deck.id) is not None:
                break
        except WorkerKilled:
            h.clock.advance(h.lease_seconds + 1)

    assert h.store.deck(deck.id).status is DeckStatus.FAILED
    assert writer.plan_calls + len(writer.slide_calls) == 6


async def test_a_second_run_of_a_deck_in_the_same_process_does_not_start(h: Harness) -> None:
    deck = await h.create(slide_count=2)
    started = asyncio.Event()
    finish = asyncio.Event()

    async def hold() -> None:
        started.set()
        await finish.wait()

    writer = FakeWriter(2, before_slide={0: hold})
    generator = h.generator(writer)
    first = asyncio.create_task(generator.generate(deck.id))
    await asyncio.wait_for(started.wait(), 5)

    assert await generator.generate(deck.id) is None
    finish.set()
    assert await asyncio.wait_for(first, 5) is DeckStatus.COMPLETED
    assert (writer.plan_calls, writer.slide_calls) == (1, [0, 1])


async def test_a_run_whose_lease_is_taken_stops_at_once_even_inside_a_model_call() -> None:
    h = Harness(lease_seconds=0.05)  # renewed every ~17 ms of real time
    deck = await h.create(slide_count=3)
    in_call = asyncio.Event()

    async def hang() -> None:  # a model call that never returns
        in_call.set()
        await asyncio.Event().wait()

    writer = FakeWriter(3, before_slide={1: hang})
    run = asyncio.create_task(h.generator(writer).generate(deck.id))
    await asyncio.wait_for(in_call.wait(), 5)
    async with h.store.uow() as uow:  # another run takes the deck over
        taken = await uow.decks.lock(deck.id)
        assert taken is not None
        taken.lease = Lease(owner="successor", expires_at=h.clock() + timedelta(hours=1))
        await uow.decks.save(taken)
        await uow.commit()

    assert await asyncio.wait_for(run, 5) is None
    assert [s.order for s in h.store.slides(deck.id)] == [1]
    assert h.store.deck(deck.id).status is DeckStatus.GENERATING
    assert h.store.deck_row(deck.id).lease_owner == "successor"


async def test_a_cancellation_flag_store_that_is_down_does_not_stop_generation(h: Harness) -> None:
    deck = await h.create(slide_count=2)
    h.flags.fail = True

    assert await h.generator(FakeWriter(2)).generate(deck.id) is DeckStatus.COMPLETED


async def test_a_mark_published_that_fails_leaves_the_events_to_the_relay(h: Harness) -> None:
    deck = await h.create(slide_count=1)
    marks_failed = 0

    async def fail_the_mark(events: Sequence[Event]) -> None:
        nonlocal marks_failed
        if marks_failed == 0 and events[0].event_type == "DeckStarted":  # then comes its mark
            marks_failed += 1
            h.store.commit_faults.append(StorageError("connection lost", transient=True))

    h.publisher.on_publish = fail_the_mark

    assert await h.generator(FakeWriter(1)).generate(deck.id) is DeckStatus.COMPLETED
    assert marks_failed == 1
    assert [e.event_type for e in h.store.unpublished(deck.id)] == ["DeckStarted"]
    h.clock.advance(10)
    assert await h.publishing.relay() == 1
    assert h.store.unpublished(deck.id) == []


async def test_a_cancellation_stops_a_model_call_in_flight_and_cancels_the_deck() -> None:
    h = Harness(lease_seconds=0.05)  # renewed every ~17 ms of real time
    deck = await h.create(slide_count=3)
    in_call = asyncio.Event()

    async def hang() -> None:  # a model call that would take minutes
        in_call.set()
        await asyncio.Event().wait()

    run = asyncio.create_task(h.generator(FakeWriter(3, before_slide={1: hang})).generate(deck.id))
    await asyncio.wait_for(in_call.wait(), 5)
    h.flags.fail = True  # only PostgreSQL's request can stop the run
    await h.service.cancel("alice", deck.id)

    assert await asyncio.wait_for(run, 5) is DeckStatus.CANCELLED
    assert_ends_with(h, deck.id, "DeckCancelled")
    assert [s.order for s in h.store.slides(deck.id)] == [1]


class RetryingWriter(FakeWriter):
    """A model writer that asks again after a failed attempt, as the LLM writer does."""

    def __init__(self, slides: int, between_attempts: Callable[[], Awaitable[None]]) -> None:
        super().__init__(slides)
        self._between_attempts = between_attempts
        self.attempts = 0

    async def write_slide(
        self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
    ) -> SlideContent:
        for _ in range(3):
            await budget.spend()
            self.attempts += 1
            if index < 1:
                break
            await self._between_attempts()  # this attempt failed; the writer tries again
        return await super().write_slide(brief, plan, index, UnlimitedBudget())


async def test_after_a_cancellation_even_a_retry_is_refused_before_it_is_made(h: Harness) -> None:
    deck = await h.create(slide_count=3)
    h.flags.fail = True  # the run's own check of the flag sees nothing

    async def cancel() -> None:
        await h.service.cancel("alice", deck.id)

    writer = RetryingWriter(3, between_attempts=cancel)

    assert await h.generator(writer).generate(deck.id) is DeckStatus.CANCELLED
    assert writer.attempts == 2  # slide 1, and the first attempt of slide 2: no retry after
    assert h.store.deck(deck.id).model_calls == 1 + 2
    assert_ends_with(h, deck.id, "DeckCancelled")
