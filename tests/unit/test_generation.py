"""DeckGenerator: idempotent, resumable, cancellable generation, on fakes of the ports."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import uuid4

import msgspec
import pytest
from loguru import logger

from presto_deck.application.ports import ModelCallBudget
from presto_deck.domain.content import DeckBrief, DeckPlan, SlideContent
from presto_deck.domain.deck import DeckStatus, Slide
from presto_deck.domain.events import Event
from tests.unit.event_checks import (
    assert_ends_with,
    assert_failed_with,
    assert_one_normal_life,
    types_of,
)
from tests.unit.fakes import FakeWriter, Harness, UnlimitedBudget, WorkerKilled, new_deck


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- a normal run ---------------------------------------------------------------------------------


async def test_a_full_run_records_started_plan_slides_completed_with_contiguous_versions(
    h: Harness,
) -> None:
    deck = await h.create(slide_count=4)

    status = await h.generator(FakeWriter(4)).generate(deck.id)

    assert status is DeckStatus.COMPLETED
    assert_one_normal_life(h, deck.id, 4)


async def test_a_full_run_publishes_every_event_once_in_order_and_marks_them_published(
    h: Harness,
) -> None:
    deck = await h.create()

    await h.generator(FakeWriter(3)).generate(deck.id)

    assert h.publisher.published == h.store.events(deck.id)
    assert h.store.unpublished(deck.id) == []


async def test_the_step_that_completes_the_deck_gives_its_lease_up_with_no_transaction_after(
    h: Harness,
) -> None:
    deck = await h.create(slide_count=2)
    commits_at_the_end: list[int] = []

    async def note(events: Sequence[Event]) -> None:
        if events[-1].event_type == "DeckCompleted":
            commits_at_the_end.append(h.store.commits)

    h.publisher.on_publish = note
    await h.generator(FakeWriter(2)).generate(deck.id)

    assert h.store.deck(deck.id).lease is None
    assert h.store.commits == commits_at_the_end[0] + 1  # the mark of what was published


async def test_a_run_locks_the_deck_once_and_steps_on_from_what_it_stored(h: Harness) -> None:
    """After its start, a run that nothing interrupts plans, stores slides and completes the
    deck without reading it again."""
    deck = await h.create(slide_count=5)

    assert await h.generator(FakeWriter(5)).generate(deck.id) is DeckStatus.COMPLETED

    assert h.store.locks_taken == 1
    assert_one_normal_life(h, deck.id, 5)


async def test_the_step_that_stores_the_last_slide_completes_the_deck_in_the_same_commit(
    h: Harness,
) -> None:
    deck = await h.create(slide_count=3)
    batches: list[list[str]] = []

    async def note(events: Sequence[Event]) -> None:
        batches.append([event.event_type for event in events])

    h.publisher.on_publish = note
    await h.generator(FakeWriter(3)).generate(deck.id)

    assert batches[-1][-2:] == ["SlideAdded", "DeckCompleted"]
    assert_one_normal_life(h, deck.id, 3)


async def test_a_last_slide_found_stored_leaves_the_completion_to_a_step_that_counts(
    h: Harness,
) -> None:
    """The last slide's order taken already (by a run before a takeover): the step adds
    nothing, and the deck completes once its slides are counted, the stored one kept."""
    deck = await h.create(slide_count=2)
    there_first = uuid4()

    class Overtaken(FakeWriter):
        async def write_slide(
            self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
        ) -> SlideContent:
            content = await super().write_slide(brief, plan, index, budget)
            if index == 1:
                async with h.store.uow() as uow:
                    now = h.clock()
                    kept = Slide(
                        id=there_first,
                        deck_id=deck.id,
                        order=2,
                        html_content="<p>kept</p>",
                        presenter_notes=None,
                        created_at=now,
                        updated_at=now,
                        content=content,
                    )
                    await uow.slides.add(kept)
                    await uow.commit()
            return content

    assert await h.generator(Overtaken(2)).generate(deck.id) is DeckStatus.COMPLETED

    assert [(s.order, s.id) for s in h.store.slides(deck.id)][1] == (2, there_first)
    assert types_of(h.store.events(deck.id)).count("DeckCompleted") == 1


async def test_the_plan_is_stored_and_its_title_replaces_the_placeholder(h: Harness) -> None:
    deck = await h.create(prompt="wind power")
    writer = FakeWriter(2)

    await h.generator(writer).generate(deck.id)

    stored = h.store.deck(deck.id)
    assert stored.plan == await FakeWriter(2).plan(stored.brief, UnlimitedBudget())
    assert stored.title == "A deck about wind power"
    plan_event = h.store.events(deck.id)[1]
    assert msgspec.convert(plan_event.payload["plan"], DeckPlan) == stored.plan


async def test_slides_hold_the_rendered_html_and_the_writers_notes(h: Harness) -> None:
    deck = await h.create()

    await h.generator(FakeWriter(2)).generate(deck.id)

    [first, second] = h.store.slides(deck.id)
    assert first.html_content == "<section><h1>Slide 1 of 2</h1></section>"
    assert (first.presenter_notes, second.presenter_notes) == ("notes 1", "notes 2")


async def test_a_missing_deck_is_reported_as_none_without_calling_the_writer(h: Harness) -> None:
    writer = FakeWriter()

    assert await h.generator(writer).generate(uuid4()) is None
    assert (writer.plan_calls, writer.slide_calls) == (0, [])


# -- idempotency ----------------------------------------------------------------------------------


async def test_running_the_job_again_after_it_finished_changes_nothing(h: Harness) -> None:
    deck = await h.create()
    await h.generator(FakeWriter(3)).generate(deck.id)
    again = FakeWriter(3)

    status = await h.generator(again, worker_id="w2").generate(deck.id)

    assert status is DeckStatus.COMPLETED
    assert (again.plan_calls, again.slide_calls) == (0, [])
    assert_one_normal_life(h, deck.id, 3)


@pytest.mark.parametrize("jobs", [2, 3])
async def test_concurrent_runs_of_the_job_leave_the_deck_to_one_and_spend_no_calls(
    h: Harness, jobs: int
) -> None:
    deck = await h.create(slide_count=5)
    writers = [FakeWriter(5) for _ in range(jobs)]
    generators = [h.generator(writer, worker_id=f"w{i}") for i, writer in enumerate(writers)]

    statuses = await asyncio.gather(*(g.generate(deck.id) for g in generators))

    assert sorted(statuses, key=str) == [DeckStatus.COMPLETED] + [None] * (jobs - 1)
    assert_one_normal_life(h, deck.id, 5)
    assert sorted(e.version for e in h.publisher.published) == [
        e.version for e in h.store.events(deck.id)
    ]
    idle = [w for w, status in zip(writers, statuses, strict=True) if status is None]
    assert all((w.plan_calls, w.slide_calls) == (0, []) for w in idle)
    assert h.store.deck(deck.id).model_calls == 1 + 5


async def test_a_run_taken_over_mid_plan_never_commits_its_own_plan_and_stops(
    h: Harness,
) -> None:
    # A frozen run (SIGSTOP, a long pause) wakes after another run took the deck over: the model
    # answered it with a plan of its own, which must not be stored, and it must stop at once.
    deck = await h.create(slide_count=3)
    frozen = asyncio.Event()
    wake = asyncio.Event()

    async def freeze() -> None:
        frozen.set()
        await wake.wait()

    sleeper = FakeWriter(plan_sizes=[2], before_plan=freeze)
    first = asyncio.create_task(h.generator(sleeper, worker_id="frozen").generate(deck.id))
    await asyncio.wait_for(frozen.wait(), 5)
    h.clock.advance(h.lease_seconds + 1)

    async def wake_the_frozen_run() -> None:
        wake.set()
        await asyncio.wait_for(asyncio.shield(first), 5)

    successor = FakeWriter(4, before_slide={1: wake_the_frozen_run})
    status = await h.generator(successor, worker_id="alive").generate(deck.id)

    assert status is DeckStatus.COMPLETED
    assert first.result() is None
    assert sleeper.slide_calls == []
    stored = h.store.deck(deck.id)
    assert stored.plan is not None
    assert len(stored.plan.slides) == 4
    assert_one_normal_life(h, deck.id, 4)


async def test_a_job_resumes_a_generating_deck_after_its_last_committed_slide(
    h: Harness,
) -> None:
    deck = await h.create(slide_count=5)
    dying = FakeWriter(5, crash_slide={2: WorkerKilled()})
    with pytest.raises(WorkerKilled):
        await h.generator(dying, worker_id="w1").generate(deck.id)
    assert h.store.deck(deck.id).status is DeckStatus.GENERATING
    assert [s.order for s in h.store.slides(deck.id)] == [1, 2]
    successor = FakeWriter(5)

    status = await h.generator(successor, worker_id="w2").generate(deck.id)

    assert status is DeckStatus.COMPLETED
    assert successor.plan_calls == 0
    assert successor.slide_calls == [2, 3, 4]
    assert_one_normal_life(h, deck.id, 5)


async def test_a_job_resumes_a_deck_left_in_planning_without_starting_it_twice(
    h: Harness,
) -> None:
    # The worker died after DeckStarted, before its plan was committed.
    planning = new_deck()
    planning.start(h.clock())
    h.store.put(planning, events=list(planning.pending_events))
    successor = FakeWriter(3)

    status = await h.generator(successor, worker_id="w2").generate(planning.id)

    assert status is DeckStatus.COMPLETED
    assert successor.plan_calls == 1
    assert_one_normal_life(h, planning.id, 3)


async def test_a_crash_before_a_commit_leaves_nothing_half_written(h: Harness) -> None:
    deck = await h.create()

    with pytest.raises(WorkerKilled):
        await h.generator(FakeWriter(3, crash_slide={1: WorkerKilled()})).generate(deck.id)

    events = h.store.events(deck.id)
    assert types_of(events) == ["DeckStarted", "PlanUpdated", "SlideAdded"]
    assert h.store.deck(deck.id).version == events[-1].version
    assert len(h.store.slides(deck.id)) == 1


@pytest.mark.parametrize("ending", ["completed", "failed", "cancelled"])
async def test_a_finished_deck_is_left_alone(h: Harness, ending: str) -> None:
    deck = await h.create()
    match ending:
        case "completed":
            await h.generator(FakeWriter(2)).generate(deck.id)
        case "failed":
            await h.generator(FakeWriter(fail_plan="down")).generate(deck.id)
        case "cancelled":
            await h.service.cancel("alice", deck.id)
    events, version = h.store.events(deck.id), h.store.deck(deck.id).version
    published = len(h.publisher.published)
    writer = FakeWriter(2)

    status = await h.generator(writer, worker_id="late").generate(deck.id)

    assert status is h.store.deck(deck.id).status
    assert not status.is_active
    assert (writer.plan_calls, writer.slide_calls) == (0, [])
    assert (h.store.events(deck.id), h.store.deck(deck.id).version) == (events, version)
    assert len(h.publisher.published) == published
    assert h.store.deck_row(deck.id).lease_owner is None


# -- cancellation ---------------------------------------------------------------------------------


async def test_a_pending_deck_cancelled_before_its_job_runs_stays_cancelled(h: Harness) -> None:
    deck = await h.create()
    await h.service.cancel("alice", deck.id)
    writer = FakeWriter()

    status = await h.generator(writer).generate(deck.id)

    assert status is DeckStatus.CANCELLED
    assert writer.plan_calls == 0
    assert types_of(assert_ends_with(h, deck.id, "DeckCancelled")) == ["DeckCancelled"]


async def test_a_job_that_finds_a_cancel_request_cancels_without_calling_the_writer(
    h: Harness,
) -> None:
    # The worker that started the deck died; the user cancelled; a new job picks the deck up.
    deck = new_deck()
    deck.start(h.clock())
    started = list(deck.pending_events)
    deck.pending_events.clear()
    deck.cancel_requested = True
    h.store.put(deck, events=started)
    writer = FakeWriter()

    status = await h.generator(writer).generate(deck.id)

    assert status is DeckStatus.CANCELLED
    assert (writer.plan_calls, writer.slide_calls) == (0, [])
    assert types_of(assert_ends_with(h, deck.id, "DeckCancelled")) == [
        "DeckStarted",
        "DeckCancelled",
    ]


async def test_cancel_during_planning_ends_cancelled_before_any_slide(h: Harness) -> None:
    deck = await h.create()

    async def cancel() -> None:
        await h.service.cancel("alice", deck.id)

    writer = FakeWriter(3, before_plan=cancel)

    status = await h.generator(writer).generate(deck.id)

    assert status is DeckStatus.CANCELLED
    assert writer.slide_calls == []
    assert h.store.slides(deck.id) == []
    events = assert_ends_with(h, deck.id, "DeckCancelled")
    assert types_of(events) == ["DeckStarted", "DeckCancelled"]
    assert h.store.deck(deck.id).plan is None
    assert h.publisher.published == events


@pytest.mark.parametrize("after", [1, 2])
async def test_cancel_between_slides_stops_before_the_next_slide_is_written(
    h: Harness, after: int
) -> None:
    deck = await h.create(slide_count=4)

    async def cancel_after_slide(events: Sequence[Event]) -> None:
        if any(e.event_type == "SlideAdded" and e.payload["order"] == after for e in events):
            await h.service.cancel("alice", deck.id)

    h.publisher.on_publish = cancel_after_slide
    writer = FakeWriter(4)

    status = await h.generator(writer).generate(deck.id)

    assert status is DeckStatus.CANCELLED
    assert writer.slide_calls == list(range(after))  # the flag is read before each slide
    events = assert_ends_with(h, deck.id, "DeckCancelled")
    assert types_of(events) == [
        "DeckStarted",
        "PlanUpdated",
        *["SlideAdded"] * after,
        "DeckCancelled",
    ]
    assert [s.order for s in h.store.slides(deck.id)] == list(range(1, after + 1))


async def test_cancel_while_a_slide_is_being_written_discards_that_slide(h: Harness) -> None:
    deck = await h.create(slide_count=4)

    async def cancel() -> None:
        await h.service.cancel("alice", deck.id)

    writer = FakeWriter(4, before_slide={2: cancel})

    status = await h.generator(writer).generate(deck.id)

    assert status is DeckStatus.CANCELLED
    assert writer.slide_calls == [0, 1, 2]
    events = assert_ends_with(h, deck.id, "DeckCancelled")
    assert types_of(events) == [
        "DeckStarted",
        "PlanUpdated",
        "SlideAdded",
        "SlideAdded",
        "DeckCancelled",
    ]
    assert len(h.store.slides(deck.id)) == 2


async def test_cancel_is_honoured_from_the_database_when_the_flag_could_not_be_set(
    h: Harness,
) -> None:
    deck = await h.create(slide_count=4)

    async def cancel_with_flags_down() -> None:
        h.flags.fail = True
        try:
            await h.service.cancel("alice", deck.id)
        finally:
            h.flags.fail = False

    writer = FakeWriter(4, before_slide={1: cancel_with_flags_down})

    status = await h.generator(writer).generate(deck.id)

    assert status is DeckStatus.CANCELLED
    assert h.flags.requested == set()
    assert types_of(assert_ends_with(h, deck.id, "DeckCancelled"))[-2:] == [
        "SlideAdded",
        "DeckCancelled",
    ]


async def test_nothing_follows_deck_cancelled_even_when_the_job_runs_again(h: Harness) -> None:
    deck = await h.create(slide_count=3)

    async def cancel() -> None:
        await h.service.cancel("alice", deck.id)

    await h.generator(FakeWriter(3, before_slide={1: cancel})).generate(deck.id)
    cancelled = h.store.events(deck.id)

    await h.generator(FakeWriter(3), worker_id="w2").generate(deck.id)

    assert h.store.events(deck.id) == cancelled
    assert cancelled[-1].event_type == "DeckCancelled"


# -- failures -------------------------------------------------------------------------------------


async def test_a_writer_error_while_planning_fails_the_deck_with_its_reason(h: Harness) -> None:
    deck = await h.create()

    status = await h.generator(FakeWriter(fail_plan="model unavailable")).generate(deck.id)

    assert status is DeckStatus.FAILED
    events = assert_ends_with(h, deck.id, "DeckFailed")
    assert types_of(events) == ["DeckStarted", "DeckFailed"]
    assert_failed_with(events[-1], "model unavailable", "writer_failed")


async def test_a_writer_error_on_a_slide_fails_the_deck_after_the_slides_before_it(
    h: Harness,
) -> None:
    deck = await h.create(slide_count=4)

    status = await h.generator(FakeWriter(4, fail_slide={2: "rate limited"})).generate(deck.id)

    assert status is DeckStatus.FAILED
    events = assert_ends_with(h, deck.id, "DeckFailed")
    assert types_of(events) == [
        "DeckStarted",
        "PlanUpdated",
        "SlideAdded",
        "SlideAdded",
        "DeckFailed",
    ]
    assert_failed_with(events[-1], "rate limited", "writer_failed")
    assert h.publisher.published == events


async def test_a_writer_error_without_a_reason_fails_with_a_generic_one(h: Harness) -> None:
    deck = await h.create()

    await h.generator(FakeWriter(fail_slide={0: ""})).generate(deck.id)

    assert_failed_with(h.store.events(deck.id)[-1], "The writer failed.", "writer_failed")


async def test_any_other_error_of_the_writer_fails_the_deck_with_the_detail_only_in_the_log(
    h: Harness,
) -> None:
    deck = await h.create()
    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="WARNING")
    try:
        writer = FakeWriter(crash_slide={1: KeyError("internal-host:5432")})
        status = await h.generator(writer).generate(deck.id)
    finally:
        logger.remove(sink)

    assert status is DeckStatus.FAILED
    failed = assert_ends_with(h, deck.id, "DeckFailed")[-1]
    assert_failed_with(failed, "The writer failed.", "writer_failed")
    assert "internal-host" not in failed.payload["error"]
    [line] = [line for line in logged if failed.payload["ref"] in line]
    assert "KeyError" in line
    assert "internal-host:5432" in line


async def test_a_writer_error_after_a_cancel_request_ends_cancelled_not_failed(
    h: Harness,
) -> None:
    deck = await h.create()

    async def cancel() -> None:
        await h.service.cancel("alice", deck.id)

    writer = FakeWriter(3, before_slide={1: cancel}, fail_slide={1: "boom"})

    status = await h.generator(writer).generate(deck.id)

    assert status is DeckStatus.CANCELLED
    assert_ends_with(h, deck.id, "DeckCancelled")


# -- publishing after the commit ------------------------------------------------------------------


async def test_a_failed_publish_leaves_events_committed_and_unpublished_and_generation_goes_on(
    h: Harness,
) -> None:
    deck = await h.create()
    h.publisher.fail = True

    status = await h.generator(FakeWriter(3)).generate(deck.id)

    assert status is DeckStatus.COMPLETED
    assert_one_normal_life(h, deck.id, 3)
    assert h.publisher.published == []
    assert h.store.unpublished(deck.id) == h.store.events(deck.id)


async def test_events_whose_publish_failed_are_relayed_later_and_marked(h: Harness) -> None:
    deck = await h.create()
    h.publisher.fail = True

    async def stream_is_back() -> None:
        h.publisher.fail = False

    await h.generator(FakeWriter(2, before_slide={0: stream_is_back})).generate(deck.id)
    lost = h.store.unpublished(deck.id)
    assert types_of(lost) == ["DeckStarted", "PlanUpdated"]

    h.clock.advance(10)
    relayed = await h.publishing.relay()

    assert relayed == 2
    assert h.publisher.published[-2:] == lost
    assert h.store.unpublished(deck.id) == []


# -- the lease ------------------------------------------------------------------------------------


async def test_the_lease_is_held_while_generating_and_released_at_the_end(h: Harness) -> None:
    deck = await h.create()
    seen: list[tuple[str | None, datetime | None]] = []

    async def look() -> None:
        row = h.store.deck_row(deck.id)
        seen.append((row.lease_owner, row.lease_expires_at))

    await h.generator(FakeWriter(2, before_slide={1: look}), worker_id="worker-7").generate(deck.id)

    [(owner, expires_at)] = seen
    assert owner is not None
    assert owner.startswith("worker-7/")
    assert expires_at == h.clock.now + timedelta(seconds=h.lease_seconds)
    row = h.store.deck_row(deck.id)
    assert (row.lease_owner, row.lease_expires_at) == (None, None)


async def test_the_lease_is_released_when_the_job_crashes(h: Harness) -> None:
    deck = await h.create()

    with pytest.raises(WorkerKilled):
        await h.generator(FakeWriter(crash_slide={0: WorkerKilled()})).generate(deck.id)

    assert h.store.deck_row(deck.id).lease_owner is None


async def test_a_deck_with_a_live_lease_is_not_stalled_and_one_without_is(h: Harness) -> None:
    deck = await h.create()
    report: list[int] = []

    async def sweep_while_generating() -> None:
        h.clock.advance(h.lease_seconds / 2)
        report.append((await h.recovery.sweep()).requeued)

    await h.generator(FakeWriter(2, before_slide={0: sweep_while_generating})).generate(deck.id)

    assert report == [0]
    assert h.queue.requeued == []


async def test_the_lease_is_renewed_while_a_slow_slide_is_written() -> None:
    h = Harness(lease_seconds=0.03)  # renewed every 10 ms of real time
    deck = await h.create()
    renewed: list[datetime] = []

    async def slow_slide() -> None:
        h.clock.advance(3600)
        wanted = h.clock.now + timedelta(seconds=h.lease_seconds)
        async with asyncio.timeout(5):
            while h.store.deck_row(deck.id).lease_expires_at != wanted:
                await asyncio.sleep(0.005)
        renewed.append(wanted)

    await h.generator(FakeWriter(2, before_slide={0: slow_slide})).generate(deck.id)

    assert len(renewed) == 1
    assert h.store.deck_row(deck.id).lease_owner is None
