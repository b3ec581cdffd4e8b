"""Editing a deck that has ended, on fakes of the ports: what each edit changes, what is
refused and why, the request id that makes a repeat harmless, and the worker's side of edits by
prompt (leases, failures, takeovers, bounded model calls)."""

from __future__ import annotations

import asyncio
import contextlib
from uuid import UUID, uuid4

import pytest

from presto_deck.application.limits import ThemeChangeRateExceeded
from presto_deck.domain.deck import (
    BadOrder,
    DeckBusy,
    DeckFull,
    DeckNotFound,
    DeckStatus,
    SlideNotFound,
    TooManyEdits,
)
from presto_deck.domain.edits import (
    ChangeSlideText,
    ChangeTheme,
    DeleteSlide,
    EditStatus,
    InsertSlide,
    ReorderSlides,
    RewriteSlide,
)
from presto_deck.domain.events import Event
from tests.unit.fakes import FakeWriter, Harness, WorkerKilled


@pytest.fixture
def h() -> Harness:
    return Harness(lease_seconds=30)


async def _written(h: Harness, slides: int = 3) -> UUID:
    deck = await h.create(slide_count=slides)
    assert await h.generator(FakeWriter(slides)).generate(deck.id) is DeckStatus.COMPLETED
    return deck.id


def _ids(h: Harness, deck_id: UUID) -> list[UUID]:
    return [slide.id for slide in h.store.slides(deck_id)]


def _orders(h: Harness, deck_id: UUID) -> list[int]:
    return [slide.order for slide in h.store.slides(deck_id)]


def _last(h: Harness, deck_id: UUID) -> Event:
    return h.store.events(deck_id)[-1]


def _dying_writer() -> FakeWriter:
    """A writer whose worker dies in every edit's model call."""
    writer = FakeWriter()

    async def die() -> None:
        raise WorkerKilled

    writer.before_edit = die
    return writer


def _versions_are_contiguous(h: Harness, deck_id: UUID) -> None:
    versions = [event.version for event in h.store.events(deck_id)]
    assert versions == list(range(2, 2 + len(versions)))
    assert h.store.deck(deck_id).version == versions[-1]


# -- applied at once -------------------------------------------------------------------------------


async def test_a_text_change_is_one_slide_updated_event_with_the_request_id(h: Harness) -> None:
    deck_id = await _written(h)
    slide = h.store.slides(deck_id)[1]
    before = h.store.deck(deck_id).version

    outcome = await h.edits.submit(
        "alice", deck_id, ChangeSlideText(slide_id=slide.id, title="Better"), "r-1"
    )

    assert outcome.status is EditStatus.APPLIED
    assert outcome.version == before + 1
    event = _last(h, deck_id)
    assert event.event_type == "SlideUpdated"
    assert event.version == before + 1
    assert event.payload["request_id"] == "r-1"
    assert event.payload["slide_id"] == str(slide.id)
    changed = h.store.slides(deck_id)[1]
    assert changed.content is not None
    assert changed.content.title == "Better"
    assert changed.content.bullets == slide.content.bullets if slide.content else True
    assert changed.html_content == "<section><h1>Better</h1></section>"
    assert h.publisher.published_for(deck_id)[-1] == event
    _versions_are_contiguous(h, deck_id)


async def test_a_deletion_renumbers_the_rest_and_names_the_new_order(h: Harness) -> None:
    deck_id = await _written(h, 4)
    ids = _ids(h, deck_id)

    await h.edits.submit("alice", deck_id, DeleteSlide(slide_id=ids[1]), "r-1")

    assert _ids(h, deck_id) == [ids[0], ids[2], ids[3]]
    assert _orders(h, deck_id) == [1, 2, 3]
    event = _last(h, deck_id)
    assert event.event_type == "SlideDeleted"
    assert event.payload == {
        "slide_id": str(ids[1]),
        "slide_ids": [str(i) for i in (ids[0], ids[2], ids[3])],
        "request_id": "r-1",
    }


async def test_the_last_slide_may_be_deleted_and_a_slide_added_to_the_empty_deck(
    h: Harness,
) -> None:
    deck_id = await _written(h, 1)

    await h.edits.submit("alice", deck_id, DeleteSlide(slide_id=_ids(h, deck_id)[0]))
    assert h.store.slides(deck_id) == []
    await h.edits.submit("alice", deck_id, InsertSlide(prompt="a fresh start"))
    await h.editor().run(deck_id)

    assert [s.content.title for s in h.store.slides(deck_id) if s.content] == [
        "Added: a fresh start"
    ]
    assert _orders(h, deck_id) == [1]


async def test_a_reorder_gives_each_slide_its_place(h: Harness) -> None:
    deck_id = await _written(h, 3)
    a, b, c = _ids(h, deck_id)

    await h.edits.submit("alice", deck_id, ReorderSlides(slide_ids=[c, a, b]), "r-1")

    assert _ids(h, deck_id) == [c, a, b]
    assert _orders(h, deck_id) == [1, 2, 3]
    event = _last(h, deck_id)
    assert event.event_type == "SlidesReordered"
    assert event.payload == {"slide_ids": [str(c), str(a), str(b)], "request_id": "r-1"}


@pytest.mark.parametrize(
    "order",
    [
        pytest.param(lambda a, b, c: [a, b], id="one left out"),
        pytest.param(lambda a, b, c: [a, b, c, c], id="one twice"),
        pytest.param(lambda a, b, c: [a, b, uuid4()], id="one unknown"),
        pytest.param(lambda a, b, c: [a, b, c, uuid4()], id="one too many"),
    ],
)
async def test_a_reorder_that_does_not_name_each_slide_once_is_refused(
    h: Harness, order: object
) -> None:
    deck_id = await _written(h, 3)
    ids = _ids(h, deck_id)
    events = h.store.events(deck_id)

    with pytest.raises(BadOrder):
        await h.edits.submit("alice", deck_id, ReorderSlides(slide_ids=order(*ids)))  # type: ignore[operator]

    assert _ids(h, deck_id) == ids
    assert h.store.events(deck_id) == events
    assert h.store.edits(deck_id) == []


# -- refused ---------------------------------------------------------------------------------------


async def test_a_deck_being_generated_is_busy(h: Harness) -> None:
    deck = await h.create()

    with pytest.raises(DeckBusy) as refused:
        await h.edits.submit("alice", deck.id, InsertSlide(prompt="more"))

    assert refused.value.code == "deck_busy"
    assert h.queue.edits == []


@pytest.mark.parametrize(
    "edit",
    [
        ChangeSlideText(slide_id=uuid4(), title="T"),
        RewriteSlide(slide_id=uuid4(), prompt="p"),
        DeleteSlide(slide_id=uuid4()),
        InsertSlide(prompt="p", after_slide_id=uuid4()),
    ],
    ids=["text", "rewrite", "delete", "insert after"],
)
async def test_an_unknown_slide_is_not_found(h: Harness, edit: object) -> None:
    deck_id = await _written(h)

    with pytest.raises(SlideNotFound):
        await h.edits.submit("alice", deck_id, edit)  # type: ignore[arg-type]

    assert h.queue.edits == []


async def test_another_users_deck_does_not_exist(h: Harness) -> None:
    deck_id = await _written(h)

    with pytest.raises(DeckNotFound):
        await h.edits.submit("mallory", deck_id, DeleteSlide(slide_id=_ids(h, deck_id)[0]))

    assert len(h.store.slides(deck_id)) == 3


async def test_edits_waiting_for_the_model_are_capped_per_deck() -> None:
    h = Harness(max_queued_edits=2)
    deck_id = await _written(h)
    slide_id = _ids(h, deck_id)[0]
    for n in range(2):
        await h.edits.submit("alice", deck_id, RewriteSlide(slide_id=slide_id, prompt=f"v{n}"))

    with pytest.raises(TooManyEdits):
        await h.edits.submit("alice", deck_id, InsertSlide(prompt="one more"))
    # Edits that need no model are not held up by the queue.
    await h.edits.submit("alice", deck_id, ChangeSlideText(slide_id=slide_id, notes="n"))
    await h.editor().run(deck_id)
    await h.edits.submit("alice", deck_id, InsertSlide(prompt="now there is room"))


# -- the same request twice ------------------------------------------------------------------------


async def test_the_same_request_id_twice_changes_the_deck_once_and_answers_the_same(
    h: Harness,
) -> None:
    deck_id = await _written(h, 4)
    victim = _ids(h, deck_id)[0]

    first = await h.edits.submit("alice", deck_id, DeleteSlide(slide_id=victim), "r-1")
    again = await h.edits.submit("alice", deck_id, DeleteSlide(slide_id=victim), "r-1")

    assert again == first
    assert [e.event_type for e in h.store.events(deck_id)].count("SlideDeleted") == 1


async def test_the_same_request_sent_twice_at_once_changes_the_deck_once(h: Harness) -> None:
    deck_id = await _written(h, 4)
    slide_id = _ids(h, deck_id)[2]
    edit = RewriteSlide(slide_id=slide_id, prompt="punchier")

    outcomes = await asyncio.gather(
        *(h.edits.submit("alice", deck_id, edit, "same") for _ in range(5))
    )

    assert {outcome.status for outcome in outcomes} == {EditStatus.QUEUED}
    assert len(h.store.edits(deck_id)) == 1
    assert len(h.queue.edits) == 1
    writer = FakeWriter()
    await h.editor(writer).run(deck_id)
    assert len(writer.edit_calls) == 1
    assert [e.event_type for e in h.store.events(deck_id)].count("SlideUpdated") == 1
    applied = await h.edits.submit("alice", deck_id, edit, "same")
    assert applied.status is EditStatus.APPLIED
    assert applied.version == _last(h, deck_id).version


async def test_a_request_id_names_a_request_of_one_deck_only(h: Harness) -> None:
    first, second = await _written(h), await _written(h)

    await h.edits.submit("alice", first, DeleteSlide(slide_id=_ids(h, first)[0]), "r-1")
    await h.edits.submit("alice", second, DeleteSlide(slide_id=_ids(h, second)[0]), "r-1")

    assert len(h.store.slides(first)) == len(h.store.slides(second)) == 2


# -- by prompt, in the worker ----------------------------------------------------------------------


async def test_a_rewrite_is_queued_then_applied_by_the_worker_with_its_context(h: Harness) -> None:
    deck_id = await _written(h, 3)
    ids = _ids(h, deck_id)

    queued = await h.edits.submit("alice", deck_id, RewriteSlide(slide_id=ids[1], prompt="x"), "r")
    assert queued.status is EditStatus.QUEUED
    assert queued.version is None
    assert h.queue.edits == [(deck_id, h.store.edits(deck_id)[0].id)]
    writer = FakeWriter()
    assert await h.editor(writer).run(deck_id) == 1

    (request,) = writer.edit_calls
    slides = h.store.slides(deck_id)
    assert request.prompt == "x"
    assert request.position == 2
    assert request.total == 3
    assert request.previous == slides[0].content
    assert request.following == slides[2].content
    assert slides[1].id == ids[1]
    assert slides[1].content
    assert slides[1].content.title == "Rewritten: x"
    event = _last(h, deck_id)
    assert event.event_type == "SlideUpdated"
    assert event.payload["request_id"] == "r"
    (record,) = h.store.edits(deck_id)
    assert record.status is EditStatus.APPLIED
    assert record.version == event.version
    assert record.model_calls == 1
    assert h.store.deck(deck_id).lease is None  # given up when no edit was left
    _versions_are_contiguous(h, deck_id)


@pytest.mark.parametrize(("after", "place"), [(None, 0), (0, 1), (2, 3)])
async def test_an_added_slide_goes_where_asked_and_the_orders_stay_contiguous(
    h: Harness, after: int | None, place: int
) -> None:
    deck_id = await _written(h, 3)
    ids = _ids(h, deck_id)
    after_id = None if after is None else ids[after]

    await h.edits.submit("alice", deck_id, InsertSlide(prompt="new", after_slide_id=after_id))
    await h.editor().run(deck_id)

    now = _ids(h, deck_id)
    assert len(now) == 4
    assert now[:place] + now[place + 1 :] == ids
    assert _orders(h, deck_id) == [1, 2, 3, 4]
    event = _last(h, deck_id)
    assert event.event_type == "SlideAdded"
    assert event.payload["slide_id"] == str(now[place])
    assert event.payload["order"] == place + 1
    assert event.payload["slide_ids"] == [str(i) for i in now]


async def test_queued_edits_are_applied_oldest_first_by_one_run(h: Harness) -> None:
    deck_id = await _written(h, 2)
    first = _ids(h, deck_id)[0]
    for n in range(3):
        await h.edits.submit(
            "alice", deck_id, RewriteSlide(slide_id=first, prompt=f"v{n}"), f"r{n}"
        )

    assert await h.editor().run(deck_id) == 3

    updates = [e for e in h.store.events(deck_id) if e.event_type == "SlideUpdated"]
    assert [e.payload["request_id"] for e in updates] == ["r0", "r1", "r2"]
    assert h.store.slides(deck_id)[0].content.title == "Rewritten: v2"  # type: ignore[union-attr]


async def test_an_edit_the_model_cannot_make_leaves_the_slide_and_says_why(h: Harness) -> None:
    deck_id = await _written(h, 3)
    before = h.store.slides(deck_id)
    await h.edits.submit("alice", deck_id, RewriteSlide(slide_id=before[0].id, prompt="x"), "r")
    writer = FakeWriter()
    writer.fail_edit = "The model is unavailable."

    await h.editor(writer).run(deck_id)

    assert h.store.slides(deck_id) == before
    event = _last(h, deck_id)
    assert event.event_type == "EditFailed"
    assert event.payload["request_id"] == "r"
    assert event.payload["code"] == "llm_unavailable"
    assert event.payload["error"].startswith("The model is unavailable. (ref ")
    assert "upstream said no" not in event.payload["error"]
    assert event.payload["slide_id"] == str(before[0].id)
    again = await h.edits.submit(
        "alice", deck_id, RewriteSlide(slide_id=before[0].id, prompt="x"), "r"
    )
    assert again.status is EditStatus.FAILED
    assert again.failure is not None
    assert again.failure.code == "llm_unavailable"
    assert again.version == event.version
    _versions_are_contiguous(h, deck_id)


async def test_a_slide_deleted_while_its_rewrite_waited_fails_the_rewrite_without_a_call(
    h: Harness,
) -> None:
    deck_id = await _written(h, 3)
    target = _ids(h, deck_id)[1]
    await h.edits.submit("alice", deck_id, RewriteSlide(slide_id=target, prompt="x"), "r")
    await h.edits.submit("alice", deck_id, DeleteSlide(slide_id=target))
    writer = FakeWriter()

    await h.editor(writer).run(deck_id)

    assert writer.edit_calls == []
    event = _last(h, deck_id)
    assert event.event_type == "EditFailed"
    assert event.payload["code"] == "slide_not_found"


async def test_a_slide_deleted_while_the_model_rewrote_it_fails_the_rewrite(h: Harness) -> None:
    deck_id = await _written(h, 3)
    target = _ids(h, deck_id)[1]
    await h.edits.submit("alice", deck_id, RewriteSlide(slide_id=target, prompt="x"), "r")
    writer = FakeWriter()

    async def delete_meanwhile() -> None:
        await h.edits.submit("alice", deck_id, DeleteSlide(slide_id=target))

    writer.before_edit = delete_meanwhile
    await h.editor(writer).run(deck_id)

    assert target not in _ids(h, deck_id)
    assert _orders(h, deck_id) == [1, 2]
    assert _last(h, deck_id).event_type == "EditFailed"
    assert h.store.edits(deck_id)[0].status is EditStatus.FAILED


async def test_an_edit_spends_at_most_its_model_calls_however_often_its_worker_dies(
    h: Harness,
) -> None:
    deck_id = await _written(h, 2)
    await h.edits.submit("alice", deck_id, RewriteSlide(slide_id=_ids(h, deck_id)[0], prompt="x"))
    dying = _dying_writer()
    for _ in range(6):  # each time: the worker dies, its lease lapses, the sweep requeues
        with contextlib.suppress(WorkerKilled):
            await h.editor(dying, worker_id=f"w{_}").run(deck_id)
        h.clock.advance(31)
        await h.recovery.sweep()

    assert len(dying.edit_calls) == 4
    event = _last(h, deck_id)
    assert event.event_type == "EditFailed"
    assert event.payload["code"] == "model_calls_exhausted"
    assert h.store.edits(deck_id)[0].status is EditStatus.FAILED
    assert len(h.queue.requeued_edits) == 4  # until the edit ended, never after


async def test_an_edit_whose_worker_died_is_requeued_by_the_sweep_and_applied_once(
    h: Harness,
) -> None:
    deck_id = await _written(h, 2)
    await h.edits.submit("alice", deck_id, RewriteSlide(slide_id=_ids(h, deck_id)[0], prompt="x"))
    dying = _dying_writer()
    with pytest.raises(WorkerKilled):
        await h.editor(dying, worker_id="dead").run(deck_id)
    assert (await h.recovery.sweep()).requeued_edits == 0  # its lease is still live
    h.clock.advance(31)
    report = await h.recovery.sweep()
    assert report.requeued_edits == 1

    assert await h.editor(worker_id="alive").run(deck_id) == 1
    assert [e.event_type for e in h.store.events(deck_id)].count("SlideUpdated") == 1
    assert (await h.recovery.sweep()).requeued_edits == 0


async def test_a_run_finding_the_deck_held_by_a_live_run_leaves_the_edits_to_it(
    h: Harness,
) -> None:
    deck_id = await _written(h, 2)
    slide_id = _ids(h, deck_id)[0]
    await h.edits.submit("alice", deck_id, RewriteSlide(slide_id=slide_id, prompt="a"), "a")
    second = FakeWriter()
    first = FakeWriter()

    async def second_run_meanwhile() -> None:
        await h.edits.submit("alice", deck_id, RewriteSlide(slide_id=slide_id, prompt="b"), "b")
        assert await h.editor(second, worker_id="w2").run(deck_id) == 0

    first.before_edit = second_run_meanwhile
    assert await h.editor(first, worker_id="w1").run(deck_id) == 2

    assert second.edit_calls == []
    assert [r.status for r in h.store.edits(deck_id)] == [EditStatus.APPLIED] * 2


async def test_a_run_that_lost_the_deck_commits_nothing(h: Harness) -> None:
    deck_id = await _written(h, 2)
    slide_id = _ids(h, deck_id)[0]
    await h.edits.submit("alice", deck_id, RewriteSlide(slide_id=slide_id, prompt="a"), "a")
    frozen = FakeWriter()

    async def taken_over_meanwhile() -> None:
        h.clock.advance(31)  # the frozen run's lease lapses; another run takes the deck
        assert await h.editor(worker_id="w2").run(deck_id) == 1

    frozen.before_edit = taken_over_meanwhile
    assert await h.editor(frozen, worker_id="w1").run(deck_id) == 0

    assert [e.event_type for e in h.store.events(deck_id)].count("SlideUpdated") == 1
    _versions_are_contiguous(h, deck_id)


async def test_a_deck_may_not_grow_past_its_most_slides(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("presto_deck.domain.edits.MAX_SLIDES", 3)
    deck_id = await _written(h, 2)
    await h.edits.submit("alice", deck_id, InsertSlide(prompt="third"), "a")
    await h.edits.submit("alice", deck_id, InsertSlide(prompt="fourth"), "b")  # queued in time

    await h.editor().run(deck_id)

    assert len(h.store.slides(deck_id)) == 3
    event = _last(h, deck_id)
    assert event.event_type == "EditFailed"
    assert event.payload["code"] == "too_many_slides"
    with pytest.raises(DeckFull):
        await h.edits.submit("alice", deck_id, InsertSlide(prompt="fifth"))


async def test_an_empty_deck_may_be_reordered_to_nothing(h: Harness) -> None:
    deck_id = await _written(h, 1)
    await h.edits.submit("alice", deck_id, DeleteSlide(slide_id=_ids(h, deck_id)[0]))

    outcome = await h.edits.submit("alice", deck_id, ReorderSlides(slide_ids=[]))

    assert outcome.status is EditStatus.APPLIED
    with pytest.raises(BadOrder):
        await h.edits.submit("alice", await _written(h, 1), ReorderSlides(slide_ids=[]))


async def test_a_users_bullets_are_text_never_markup(h: Harness) -> None:
    deck_id = await _written(h, 2)
    slide_id = _ids(h, deck_id)[0]

    await h.edits.submit(
        "alice", deck_id, ChangeSlideText(slide_id=slide_id, bullets=["x<y and y>z", "<b>b</b>"])
    )

    content = h.store.slides(deck_id)[0].content
    assert content is not None
    assert content.bullets == ["x&lt;y and y&gt;z", "&lt;b&gt;b&lt;/b&gt;"]


async def test_a_theme_change_redraws_every_slide_and_the_same_theme_again_changes_nothing(
    h: Harness,
) -> None:
    deck_id = await _written(h, 3)
    before = h.store.deck(deck_id).version

    first = await h.edits.submit("alice", deck_id, ChangeTheme(theme="dark"))
    again = await h.edits.submit("alice", deck_id, ChangeTheme(theme="dark"))

    assert first.version == before + 1
    assert again.status is EditStatus.APPLIED
    assert again.version == before + 1  # no second event
    assert all('data-theme="dark"' in s.html_content for s in h.store.slides(deck_id))
    event = _last(h, deck_id)
    assert event.event_type == "DeckThemeChanged"
    assert [d["slide_id"] for d in event.payload["slides"]] == [str(i) for i in _ids(h, deck_id)]
    assert h.store.deck(deck_id).brief.theme == "dark"


async def test_a_slide_rewritten_while_the_theme_changed_is_drawn_in_the_new_theme(
    h: Harness,
) -> None:
    deck_id = await _written(h, 2)
    slide_id = _ids(h, deck_id)[0]
    await h.edits.submit("alice", deck_id, RewriteSlide(slide_id=slide_id, prompt="x"))
    writer = FakeWriter()

    async def theme_changed_meanwhile() -> None:
        await h.edits.submit("alice", deck_id, ChangeTheme(theme="playful"))

    writer.before_edit = theme_changed_meanwhile
    await h.editor(writer).run(deck_id)

    assert all('data-theme="playful"' in s.html_content for s in h.store.slides(deck_id))
    assert _last(h, deck_id).event_type == "SlideUpdated"


async def test_a_user_past_the_rate_of_theme_changes_is_told_when_to_try_again() -> None:
    h = Harness(theme_changes_per_minute=2)
    deck = await h.create(slide_count=2)
    await h.generator(FakeWriter(2)).generate(deck.id)

    for theme in ("dark", "playful"):
        await h.edits.submit("alice", deck.id, ChangeTheme(theme=theme))
    with pytest.raises(ThemeChangeRateExceeded) as refused:
        await h.edits.submit("alice", deck.id, ChangeTheme(theme="corporate"))
    h.clock.advance(61)
    await h.edits.submit("alice", deck.id, ChangeTheme(theme="corporate"))

    assert refused.value.retry_after == 60
    assert h.store.deck(deck.id).brief.theme == "corporate"
