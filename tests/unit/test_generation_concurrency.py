"""After the plan, the model writes several slides of a deck at once; they are stored and
published in order all the same, each once, and a failure, a cancellation or a dying worker
stops every call still in flight."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import msgspec
import pytest

from presto_deck.application.ports import ModelCallBudget
from presto_deck.domain.content import DeckBrief, DeckPlan, SlideContent
from presto_deck.domain.deck import DeckStatus
from presto_deck.domain.events import Event
from tests.unit.event_checks import assert_ends_with, assert_one_normal_life, types_of
from tests.unit.fakes import FakeRenderer, FakeWriter, Harness, WorkerKilled

AHEAD = 4


class SlowWriter(FakeWriter):
    """A fake writer whose slides take ``seconds`` each, in any order: slide 0 is the slowest,
    so that later slides are ready before it. Counts the calls in flight at once."""

    def __init__(
        self, slides: int, seconds: float = 0.02, *, slow_from: int | None = None, **kwargs: object
    ) -> None:
        super().__init__(slides, **kwargs)  # type: ignore[arg-type]
        self._seconds = seconds
        #: Slides from this index on take a minute: still in flight when the test wants them.
        self._slow_from = slow_from
        self.in_flight = 0
        self.peak = 0
        self.cancelled: list[int] = []

    async def write_slide(
        self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
    ) -> SlideContent:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self._slow_from is not None and index >= self._slow_from:
                await asyncio.sleep(60)
            await asyncio.sleep(self._seconds * (3 if index == 0 else 1))
            return await super().write_slide(brief, plan, index, budget)
        except asyncio.CancelledError:
            self.cancelled.append(index)
            raise
        finally:
            self.in_flight -= 1


class FirstLastWriter(SlowWriter):
    """A ``SlowWriter`` whose slide 0 returns only once ``first_after`` later slides have,
    however loaded the machine."""

    def __init__(self, slides: int, first_after: int) -> None:
        super().__init__(slides, seconds=0)
        self._first_after = first_after
        self._later_written = 0
        self._first_may_return = asyncio.Event()

    async def write_slide(
        self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
    ) -> SlideContent:
        if index == 0:
            await self._first_may_return.wait()
        content = await super().write_slide(brief, plan, index, budget)
        if index > 0:
            self._later_written += 1
            if self._later_written == self._first_after:
                self._first_may_return.set()
        return content


@pytest.fixture
def h() -> Harness:
    return Harness(slides_per_deck=AHEAD)


async def test_slides_are_written_four_at_a_time_and_stored_in_order_each_once(
    h: Harness,
) -> None:
    deck = await h.create(slide_count=10)
    writer = SlowWriter(10)

    assert await h.generator(writer).generate(deck.id) is DeckStatus.COMPLETED

    assert writer.peak == AHEAD
    assert sorted(writer.slide_calls) == list(range(10))
    assert_one_normal_life(h, deck.id, 10)  # contiguous versions, slides 1..10 in order
    assert len(h.meter.slides) == 10


async def test_slides_written_while_an_earlier_one_is_awaited_are_stored_in_its_step(
    h: Harness,
) -> None:
    """Slide 0 is the slowest: 1, 2 and 3 are written by the time it is, and the four go into
    the deck in one transaction and one publish, in order, their versions contiguous."""
    deck = await h.create(slide_count=8)
    batches: list[list[int]] = []

    async def record(events: Sequence[Event]) -> None:
        added = [e.payload["order"] for e in events if e.event_type == "SlideAdded"]
        if added:
            batches.append(added)

    h.publisher.on_publish = record

    writer = FirstLastWriter(8, first_after=AHEAD - 1)
    assert await h.generator(writer).generate(deck.id) is DeckStatus.COMPLETED

    assert batches[0] == [1, 2, 3, 4]
    assert [order for batch in batches for order in batch] == list(range(1, 9))
    assert len(batches) < 8
    assert_one_normal_life(h, deck.id, 8)
    assert len(h.meter.slides) == 8


async def test_the_workers_cap_holds_across_its_decks(h: Harness) -> None:
    slots = asyncio.Semaphore(3)
    decks = [await h.create(slide_count=6), await h.create(slide_count=6)]
    writer = SlowWriter(6)
    generator = h.generator(writer)
    generator._slide_slots = slots  # as bootstrap shares one among a worker's decks

    statuses = await asyncio.gather(*(generator.generate(deck.id) for deck in decks))

    assert statuses == [DeckStatus.COMPLETED, DeckStatus.COMPLETED]
    assert writer.peak == 3
    for deck in decks:
        assert_one_normal_life(h, deck.id, 6)


async def test_a_slide_that_fails_fails_the_deck_and_cancels_the_slides_in_flight(
    h: Harness,
) -> None:
    deck = await h.create(slide_count=10)
    writer = SlowWriter(10, fail_slide={2: "the model refused"}, slow_from=3)

    assert await h.generator(writer).generate(deck.id) is DeckStatus.FAILED

    assert [s.order for s in h.store.slides(deck.id)] == [1, 2]  # those before it, in order
    assert writer.cancelled  # the calls in flight when it failed were stopped ...
    assert max(writer.slide_calls) < 2 + AHEAD  # ... and none started after
    assert writer.in_flight == 0
    events = assert_ends_with(h, deck.id, "DeckFailed")
    assert types_of(events).count("SlideAdded") == 2


async def test_a_cancel_stops_the_calls_in_flight_within_a_second(h: Harness) -> None:
    deck = await h.create(slide_count=10)
    writer = SlowWriter(10, seconds=30)  # calls that would run for half a minute

    async def cancel_soon() -> None:
        while writer.in_flight < AHEAD:
            await asyncio.sleep(0.01)
        await h.service.cancel("alice", deck.id)

    async with asyncio.timeout(2):
        status, _ = await asyncio.gather(h.generator(writer).generate(deck.id), cancel_soon())

    assert status is DeckStatus.CANCELLED
    assert sorted(writer.cancelled) == list(range(AHEAD))
    assert writer.in_flight == 0
    assert h.store.slides(deck.id) == []
    assert_ends_with(h, deck.id, "DeckCancelled")


async def test_a_worker_dying_with_slides_in_flight_is_followed_by_a_run_that_writes_each_once(
    h: Harness,
) -> None:
    deck = await h.create(slide_count=8)
    dying = SlowWriter(8, crash_slide={3: WorkerKilled()})
    with pytest.raises(WorkerKilled):
        await h.generator(dying, worker_id="w1").generate(deck.id)
    kept = [s.order for s in h.store.slides(deck.id)]
    assert kept == [1, 2, 3]
    assert dying.in_flight == 0  # nothing of the dead run keeps calling the model
    successor = SlowWriter(8)

    assert await h.generator(successor, worker_id="w2").generate(deck.id) is DeckStatus.COMPLETED

    assert sorted(successor.slide_calls) == [3, 4, 5, 6, 7]
    assert_one_normal_life(h, deck.id, 8)


async def test_the_calls_stay_within_the_decks_budget_when_written_ahead() -> None:
    h = Harness(slides_per_deck=AHEAD, max_model_calls=5)  # the plan and four slides
    deck = await h.create(slide_count=10)
    writer = SlowWriter(10)

    assert await h.generator(writer).generate(deck.id) is DeckStatus.FAILED

    assert writer.plan_calls + len(writer.slide_calls) == 5  # calls made; the sixth refused
    failed: Sequence[Event] = assert_ends_with(h, deck.id, "DeckFailed")
    assert failed[-1].payload["code"] == "model_calls_exhausted"


async def test_slides_the_model_has_written_by_their_turn_cost_no_look_at_the_cancel_flag(
    h: Harness,
) -> None:
    deck = await h.create(slide_count=10)

    assert await h.generator(SlowWriter(10, seconds=0)).generate(deck.id) is DeckStatus.COMPLETED

    assert h.flags.looks == 0
    assert_one_normal_life(h, deck.id, 10)


async def test_a_slow_slide_has_the_run_look_at_the_cancel_flag_while_it_waits(h: Harness) -> None:
    deck = await h.create(slide_count=2)

    assert await h.generator(SlowWriter(2, seconds=0.1)).generate(deck.id) is DeckStatus.COMPLETED

    # Slide 0 takes 0.3 s: a look after 0.05 s, then every 0.5 s; slide 1 is there by then.
    assert h.flags.looks == 1


class ThreadNotingRenderer(FakeRenderer):
    """Notes the thread each slide is drawn in, by its title."""

    def __init__(self) -> None:
        self.drawn_in: dict[str, int] = {}

    def render(self, content: SlideContent, theme: str | None) -> str:
        self.drawn_in[content.title] = threading.get_ident()
        return super().render(content, theme)


class LongSecondSlideWriter(FakeWriter):
    async def write_slide(
        self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
    ) -> SlideContent:
        content = await super().write_slide(brief, plan, index, budget)
        if index == 1:  # far more text than a slide shows: the sanitizer may take a while
            return msgspec.structs.replace(content, body="<em>word</em> " * 100)
        return content


async def test_a_short_slide_is_drawn_on_the_spot_and_a_long_one_in_a_thread() -> None:
    h = Harness(slides_per_deck=AHEAD)
    renderer = ThreadNotingRenderer()
    h.ports.renderer = renderer
    deck = await h.create(slide_count=2)

    assert await h.generator(LongSecondSlideWriter(2)).generate(deck.id) is DeckStatus.COMPLETED

    loop_thread = threading.get_ident()
    assert renderer.drawn_in["Slide 1 of 2"] == loop_thread
    assert renderer.drawn_in["Slide 2 of 2"] != loop_thread
