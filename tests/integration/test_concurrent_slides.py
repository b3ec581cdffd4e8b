"""A real model's slides written at once: the LangChain writer over HTTP asks for several slides
of a deck together, and the deck still streams them in order, each once."""

from __future__ import annotations

import msgspec

from presto_deck.settings import Settings
from tests.support.client import DeckClient, assert_contiguous
from tests.support.deck_http import events_via_http
from tests.support.fake_openai import FakeOpenAI
from tests.support.llm import API_KEY
from tests.support.running import running_worker

SLIDES = 8
AHEAD = 4
LATENCY = 0.4


async def test_a_decks_slides_are_asked_of_the_model_together_and_stored_in_order(
    alice: DeckClient, settings: Settings
) -> None:
    with FakeOpenAI(plan_slides=SLIDES, latency=LATENCY) as model:
        writing = msgspec.structs.replace(
            settings,
            llm_model="openai:fake-model",
            llm_base_url=model.base_url,
            llm_api_key=API_KEY,
            llm_concurrent_slides_per_deck=AHEAD,
        )
        async with running_worker(writing):
            deck_id = await alice.create("Tides and towns", slide_count=SLIDES)
            deck = await alice.wait_for_status(deck_id, "COMPLETED", timeout=20)

    calls = [request.at for request in model.requests]
    assert len(calls) == 1 + SLIDES  # the plan, then each slide once
    first_slides = calls[1 : 1 + AHEAD]
    # Asked together: one after another they would be a call's latency apart at least.
    assert max(first_slides) - min(first_slides) < LATENCY / 2
    assert [slide["order"] for slide in deck["slides"]] == list(range(1, SLIDES + 1))
    events = await events_via_http(alice, deck_id)
    assert_contiguous(events, first=2)
    added = [e["payload"]["order"] for e in events if e["event_type"] == "SlideAdded"]
    assert added == list(range(1, SLIDES + 1))
