"""The deck aggregate: each change bumps the version by one and records its event (SPEC §7)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import msgspec
import pytest

from presto_deck.domain.content import DeckPlan, SlideOutline
from presto_deck.domain.deck import (
    TITLE_MAX_LENGTH,
    Deck,
    DeckAlreadyFinished,
    DeckBusy,
    DeckStatus,
    Failure,
    InvalidTransition,
    Slide,
)
from tests.unit.fakes import new_deck

T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=5)

_PLAN = DeckPlan(
    title="Solar in Korea",
    summary="why and how",
    slides=[SlideOutline(title="Intro", layout="title"), SlideOutline(title="Outlook")],
)


def _slide(deck: Deck, order: int = 1) -> Slide:
    return Slide(
        id=uuid4(),
        deck_id=deck.id,
        order=order,
        html_content=f"<h1>{order}</h1>",
        presenter_notes="say hello",
        created_at=T1,
        updated_at=T1,
    )


def _deck_in(status: DeckStatus) -> Deck:
    """A deck brought to ``status`` by the aggregate's own transitions, events cleared."""
    deck = new_deck()
    if status is not DeckStatus.PENDING:
        deck.start(T0)
    if status in (DeckStatus.GENERATING, DeckStatus.COMPLETED):
        deck.set_plan(_PLAN, T0)
    match status:
        case DeckStatus.COMPLETED:
            deck.complete(0, T0)
        case DeckStatus.FAILED:
            deck.fail(Failure(error="boom", code="llm_timeout", ref="r1"), T0)
        case DeckStatus.CANCELLED:
            deck.cancel(T0)
    deck.pending_events.clear()
    return deck


ACTIVE = [DeckStatus.PENDING, DeckStatus.PLANNING, DeckStatus.GENERATING]
FINISHED = [DeckStatus.COMPLETED, DeckStatus.FAILED, DeckStatus.CANCELLED]


def test_only_pending_planning_and_generating_are_active() -> None:
    assert [s for s in DeckStatus if s.is_active] == ACTIVE


def test_start_moves_pending_to_planning_and_records_deck_started() -> None:
    deck = new_deck()

    deck.start(T1)

    assert deck.status is DeckStatus.PLANNING
    assert deck.version == 2
    assert deck.updated_at == T1
    [event] = deck.pending_events
    assert event.event_type == "DeckStarted"
    assert event.deck_id == str(deck.id)
    assert event.version == 2
    assert event.timestamp == T1
    assert event.payload == {"status": "PLANNING"}


def test_set_plan_moves_planning_to_generating_and_records_the_plan() -> None:
    deck = _deck_in(DeckStatus.PLANNING)

    deck.set_plan(_PLAN, T1)

    assert deck.status is DeckStatus.GENERATING
    assert deck.plan == _PLAN
    assert deck.version == 3
    [event] = deck.pending_events
    assert event.event_type == "PlanUpdated"
    assert event.version == 3
    assert event.payload == {"plan": msgspec.to_builtins(_PLAN)}
    assert msgspec.convert(event.payload["plan"], DeckPlan) == _PLAN


def test_add_generated_slide_records_slide_added_with_the_slide_fields() -> None:
    deck = _deck_in(DeckStatus.GENERATING)
    slide = _slide(deck, order=1)

    deck.add_generated_slide(slide, T1)

    assert deck.status is DeckStatus.GENERATING
    assert deck.version == 4
    [event] = deck.pending_events
    assert event.event_type == "SlideAdded"
    assert event.payload == {
        "slide_id": str(slide.id),
        "order": 1,
        "html_content": "<h1>1</h1>",
        "presenter_notes": "say hello",
    }


def test_complete_records_the_slide_count() -> None:
    deck = _deck_in(DeckStatus.GENERATING)

    deck.complete(7, T1)

    assert deck.status is DeckStatus.COMPLETED
    assert deck.version == 4
    [event] = deck.pending_events
    assert (event.event_type, event.payload) == ("DeckCompleted", {"slide_count": 7})


@pytest.mark.parametrize("status", ACTIVE)
def test_fail_is_allowed_from_every_active_status(status: DeckStatus) -> None:
    deck = _deck_in(status)
    before = deck.version

    failure = Failure(error="The model is down (ref r1)", code="llm_unavailable", ref="r1")
    deck.fail(failure, T1)

    assert deck.status is DeckStatus.FAILED
    assert deck.version == before + 1
    [event] = deck.pending_events
    assert event.event_type == "DeckFailed"
    assert deck.failure == failure
    assert event.payload == {
        "error": "The model is down (ref r1)",
        "code": "llm_unavailable",
        "ref": "r1",
    }


@pytest.mark.parametrize("status", ACTIVE)
def test_cancel_is_allowed_from_every_active_status(status: DeckStatus) -> None:
    deck = _deck_in(status)
    before = deck.version

    deck.cancel(T1)

    assert deck.status is DeckStatus.CANCELLED
    assert deck.version == before + 1
    [event] = deck.pending_events
    assert (event.event_type, event.payload) == ("DeckCancelled", {})


def test_a_whole_life_bumps_the_version_once_per_event_from_2() -> None:
    deck = new_deck()

    deck.start(T0)
    deck.set_plan(_PLAN, T0)
    deck.add_generated_slide(_slide(deck, 1), T0)
    deck.add_generated_slide(_slide(deck, 2), T0)
    deck.complete(2, T0)

    assert [(e.version, e.event_type) for e in deck.pending_events] == [
        (2, "DeckStarted"),
        (3, "PlanUpdated"),
        (4, "SlideAdded"),
        (5, "SlideAdded"),
        (6, "DeckCompleted"),
    ]
    assert deck.version == 6


_TRANSITIONS: dict[str, tuple[Callable[[Deck], None], set[DeckStatus]]] = {
    "start": (lambda d: d.start(T1), {DeckStatus.PENDING}),
    "set_plan": (lambda d: d.set_plan(_PLAN, T1), {DeckStatus.PLANNING}),
    "add_generated_slide": (
        lambda d: d.add_generated_slide(_slide(d), T1),
        {DeckStatus.GENERATING},
    ),
    "complete": (lambda d: d.complete(1, T1), {DeckStatus.GENERATING}),
    "fail": (lambda d: d.fail(Failure(error="x", code="c", ref="r"), T1), set(ACTIVE)),
    "cancel": (lambda d: d.cancel(T1), set(ACTIVE)),
}


@pytest.mark.parametrize(
    ("transition", "status"),
    [
        (name, status)
        for name, (_, allowed) in _TRANSITIONS.items()
        for status in DeckStatus
        if status not in allowed
    ],
)
def test_a_transition_from_a_status_that_forbids_it_raises_and_changes_nothing(
    transition: str, status: DeckStatus
) -> None:
    deck = _deck_in(status)
    change, _ = _TRANSITIONS[transition]
    before = (deck.status, deck.version, deck.plan, deck.title, deck.updated_at)

    with pytest.raises(InvalidTransition):
        change(deck)

    assert (deck.status, deck.version, deck.plan, deck.title, deck.updated_at) == before
    assert deck.pending_events == []


def test_request_cancel_on_a_pending_deck_cancels_it_at_once() -> None:
    deck = new_deck()

    deck.request_cancel(T1)

    assert deck.status is DeckStatus.CANCELLED
    assert deck.version == 2
    assert [e.event_type for e in deck.pending_events] == ["DeckCancelled"]


@pytest.mark.parametrize("status", [DeckStatus.PLANNING, DeckStatus.GENERATING])
def test_request_cancel_on_a_running_deck_only_sets_the_request(status: DeckStatus) -> None:
    deck = _deck_in(status)
    before = deck.version

    deck.request_cancel(T1)

    assert deck.cancel_requested is True
    assert deck.status is status
    assert deck.version == before
    assert deck.pending_events == []


@pytest.mark.parametrize("status", FINISHED)
def test_request_cancel_on_a_finished_deck_raises_deck_already_finished(
    status: DeckStatus,
) -> None:
    deck = _deck_in(status)

    with pytest.raises(DeckAlreadyFinished):
        deck.request_cancel(T1)

    assert deck.status is status
    assert deck.cancel_requested is False


def test_the_plan_title_replaces_the_placeholder_when_the_user_gave_no_title() -> None:
    deck = _deck_in(DeckStatus.PLANNING)
    assert deck.brief.title is None

    deck.set_plan(DeckPlan(title="  Solar in Korea  ", slides=[]), T1)

    assert deck.title == "Solar in Korea"


def test_the_plan_title_never_replaces_the_title_the_user_gave() -> None:
    deck = new_deck(title="My own title")
    deck.start(T0)

    deck.set_plan(_PLAN, T1)

    assert deck.title == "My own title"


def test_a_blank_plan_title_keeps_the_placeholder() -> None:
    deck = _deck_in(DeckStatus.PLANNING)

    deck.set_plan(DeckPlan(title="   ", slides=[]), T1)

    assert deck.title == "placeholder title"


def test_a_long_plan_title_is_cut_to_the_column_length() -> None:
    deck = _deck_in(DeckStatus.PLANNING)

    deck.set_plan(DeckPlan(title="x" * 1000, slides=[]), T1)

    assert deck.title == "x" * TITLE_MAX_LENGTH


@pytest.mark.parametrize(
    "end",
    [
        lambda deck: deck.complete(2, T1),
        lambda deck: deck.fail(Failure(error="e", code="writer_failed", ref="r"), T1),
        lambda deck: deck.cancel(T1),
    ],
    ids=["complete", "fail", "cancel"],
)
def test_the_generation_runs_lease_ends_with_the_deck(end: Callable[[Deck], None]) -> None:
    # An edit queued the moment the deck ends must find it free, not held by a run that only
    # has its lease left to give up.
    deck = _deck_in(DeckStatus.GENERATING)
    deck.take_lease("run-1", T1 + timedelta(seconds=30), T1)

    end(deck)

    assert deck.lease is None


def test_edits_are_refused_while_the_deck_is_generated_and_allowed_once_it_ended() -> None:
    for status in ACTIVE:
        with pytest.raises(DeckBusy):
            _deck_in(status).require_editable()
    for status in FINISHED:
        _deck_in(status).require_editable()
