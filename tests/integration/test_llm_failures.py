"""A deck written by an LLM through the real arq worker, with a fake OpenAI-compatible server:
a model that keeps failing ends the deck as FAILED, never stuck; a working one completes it with
sanitized slides (SPEC §8, §9)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from presto_deck.settings import Settings
from tests.support.client import DeckClient, assert_contiguous, eventually
from tests.support.database import deck_row_of
from tests.support.deck_http import events_via_http
from tests.support.fake_openai import FakeOpenAI, hang, ok, status
from tests.support.llm import API_KEY
from tests.support.running import running_worker

pytestmark = pytest.mark.usefixtures("no_backoff")

# -- helpers ---------------------------------------------------------------------------------------


class HostileOpenAI(FakeOpenAI):
    """A model whose slides carry scripts, event handlers and javascript: URLs."""

    @staticmethod
    def _content(name: str | None, slides: int) -> dict[str, Any]:
        content = FakeOpenAI._content(name, slides)
        if name == "SlideContent":
            content["bullets"] = [
                "first <strong>point</strong>",
                "<script>alert('bullet')</script>second point",
                '<img src="x" onerror="alert(1)">third point',
                '<a href="javascript:alert(2)">a link</a>',
            ]
            content["body"] = '<iframe src="https://evil.example"></iframe><em>body</em>'
            content["layout"] = "text"
        return content


def llm_settings(settings: Settings, server: FakeOpenAI, **overrides: Any) -> Settings:
    llm: dict[str, Any] = {
        "llm_model": "openai:fake-model",
        "llm_base_url": server.base_url,
        "llm_api_key": API_KEY,
        "llm_max_attempts": 2,
        "llm_timeout_seconds": 2.0,
    }
    return msgspec.structs.replace(settings, **(llm | overrides))


async def written_deck(
    alice: DeckClient,
    settings: Settings,
    server: FakeOpenAI,
    *args: str,
    slide_count: int = 3,
    **overrides: Any,
) -> tuple[str, dict[str, Any]]:
    """Create a deck (``args``: its prompt) and let a worker writing with ``server``'s model run
    until the deck has COMPLETED or FAILED; its id and that last state."""
    async with running_worker(llm_settings(settings, server, **overrides)):
        deck_id = await alice.create(*args, slide_count=slide_count)
        deck = await alice.wait_for_status(deck_id, "FAILED", "COMPLETED", timeout=20)
    return deck_id, deck


# -- failures --------------------------------------------------------------------------------------


async def test_a_model_that_fails_every_call_ends_the_deck_as_failed(
    alice: DeckClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    fake_openai.script(*[status(500)] * 10)

    deck_id, deck = await written_deck(alice, settings, fake_openai)

    assert deck["status"] == "FAILED"
    history = await events_via_http(alice, deck_id)
    assert_contiguous(history, first=2)
    assert [event["event_type"] for event in history] == ["DeckStarted", "DeckFailed"]
    failed = history[-1]["payload"]
    assert failed["code"] == "llm_unavailable"
    assert (
        failed["error"]
        == f"The model provider was unavailable (2 attempt(s)) (ref {failed['ref']})"
    )
    assert deck["failure"] == failed  # and it stays readable once the events have gone by
    assert deck["version"] == history[-1]["version"]
    assert deck["slides"] == []
    assert len(fake_openai.requests) == 2  # llm_max_attempts, and no retry by the client itself


async def test_a_model_that_fails_mid_deck_keeps_the_slides_written_so_far(
    alice: DeckClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    fake_openai.script(ok(), ok(), status(503), status(503))  # plan, slide 1, then slide 2 fails

    deck_id, deck = await written_deck(alice, settings, fake_openai)

    assert deck["status"] == "FAILED"
    history = await events_via_http(alice, deck_id)
    assert_contiguous(history, first=2)
    assert [event["event_type"] for event in history] == [
        "DeckStarted",
        "PlanUpdated",
        "SlideAdded",
        "DeckFailed",
    ]
    assert history[-1]["payload"]["code"] == "llm_unavailable"
    assert [slide["order"] for slide in deck["slides"]] == [1]


async def test_a_model_that_never_answers_ends_the_deck_as_failed_after_its_timeouts(
    alice: DeckClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    fake_openai.script(hang(30), hang(30))

    deck_id, deck = await written_deck(alice, settings, fake_openai, llm_timeout_seconds=0.5)

    assert deck["status"] == "FAILED"
    history = await events_via_http(alice, deck_id)
    assert [event["event_type"] for event in history] == ["DeckStarted", "DeckFailed"]
    assert history[-1]["payload"]["code"] == "llm_timeout"
    assert "did not answer within 0.5 s" in history[-1]["payload"]["error"]
    assert len(fake_openai.requests) == 2


async def test_the_failure_reported_in_the_event_never_shows_the_api_key(
    alice: DeckClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    fake_openai.script(*[status(500, f"Incorrect API key provided: {API_KEY}")] * 2)

    deck_id, _ = await written_deck(alice, settings, fake_openai)

    history = await events_via_http(alice, deck_id)
    error = history[-1]["payload"]["error"]
    assert history[-1]["event_type"] == "DeckFailed"
    assert API_KEY not in error
    assert "Incorrect API key" not in error  # the provider's own words stay in the log


# -- success ---------------------------------------------------------------------------------------


async def test_a_working_model_completes_the_deck_through_the_worker(
    alice: DeckClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    fake_openai.script(status(500))  # one transient error on the way is retried

    deck_id, deck = await written_deck(alice, settings, fake_openai, "Why cats rule the internet")

    assert deck["status"] == "COMPLETED"
    assert deck["title"] == "A fake deck"
    assert [outline["title"] for outline in deck["deck_plan"]["slides"]] == [
        "Slide 1",
        "Slide 2",
        "Slide 3",
    ]
    history = await events_via_http(alice, deck_id)
    assert_contiguous(history, first=2)
    assert [event["event_type"] for event in history] == (
        ["DeckStarted", "PlanUpdated"] + ["SlideAdded"] * 3 + ["DeckCompleted"]
    )
    assert [slide["order"] for slide in deck["slides"]] == [1, 2, 3]
    for slide in deck["slides"]:
        assert "A written slide" in slide["html_content"]
        assert "<strong>point</strong>" in slide["html_content"]
        assert slide["presenter_notes"] == "Say something useful here."
    schemas = [request.requested_schema for request in fake_openai.requests]
    assert schemas == ["DeckPlan", "DeckPlan"] + ["SlideContent"] * 3
    assert (await deck_row_of(settings, deck_id)).model_calls == 5


async def test_hostile_model_output_is_sanitized_before_it_is_stored(
    alice: DeckClient, settings: Settings
) -> None:
    with HostileOpenAI(plan_slides=2) as server:
        deck_id, deck = await written_deck(alice, settings, server, slide_count=2)

    assert deck["status"] == "COMPLETED"
    history = await events_via_http(alice, deck_id)
    streamed = [e["payload"]["html_content"] for e in history if e["event_type"] == "SlideAdded"]
    stored = [slide["html_content"] for slide in deck["slides"]]
    assert streamed == stored
    for html in stored:
        lowered = html.lower()
        for forbidden in ("<script", "onerror", "javascript:", "<iframe", "<img"):
            assert forbidden not in lowered, (forbidden, html)
        assert "<strong>point</strong>" in html
        assert "<em>body</em>" in html
        assert "second point" in html


# -- what PostgreSQL refuses, and paid calls ------------------------------------------------------


async def test_model_output_full_of_nul_and_lone_surrogates_completes_in_bounded_calls(
    alice: DeckClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    fake_openai.script(*[ok(hostile=True)] * 4)

    deck_id, deck = await written_deck(alice, settings, fake_openai)

    assert deck["status"] == "COMPLETED"
    assert len(fake_openai.requests) == 4  # the plan and three slides, each once
    assert "\x00" not in deck["title"]
    assert deck["title"] == "A fake deck\ufffd"
    for slide in deck["slides"]:
        assert "\x00" not in slide["html_content"]
        assert slide["presenter_notes"] == "Say something useful here.\ufffd"
    history = await events_via_http(alice, deck_id)
    assert_contiguous(history, first=2)


async def test_a_deck_stops_at_its_model_call_budget_with_a_readable_reason(
    alice: DeckClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    fake_openai.script(ok(), status(500), status(500), status(500))  # slide 1 keeps failing

    deck_id, deck = await written_deck(
        alice, settings, fake_openai, llm_max_calls_per_deck=3, llm_max_attempts=4
    )

    assert deck["status"] == "FAILED"
    assert len(fake_openai.requests) == 3
    failed = (await events_via_http(alice, deck_id))[-1]["payload"]
    assert failed["code"] == "model_calls_exhausted"
    assert failed["error"].startswith("The deck used all 3 model calls it may make.")


async def test_a_cancellation_stops_a_hanging_model_call_within_a_lease_renewal(
    alice: DeckClient, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    fake_openai.script(*[hang(30)] * 4)
    slow = llm_settings(settings, fake_openai, llm_timeout_seconds=20.0, llm_max_attempts=4)
    async with running_worker(slow):
        deck_id = await alice.create("A deck nobody wants any more", slide_count=3)

        async def calling() -> bool:
            return len(fake_openai.requests) >= 1

        await eventually(calling, timeout=10)
        cancelled = await alice.http.post(f"/api/v1/decks/{deck_id}/cancel")
        assert cancelled.status_code == 202
        started = time.monotonic()
        deck = await alice.wait_for_status(deck_id, "CANCELLED", "FAILED", timeout=10)
        took = time.monotonic() - started

    assert deck["status"] == "CANCELLED"
    assert took < settings.worker_lease_seconds + 2  # a renewal's period, not 4 timeouts of 20 s
    assert len(fake_openai.requests) == 1  # the call in flight, and no retry after the cancel
