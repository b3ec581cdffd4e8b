"""The LangChain writer through the real langchain-openai client, over HTTP to a fake server."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from presto_deck.domain.content import DeckBrief, DeckPlan, SlideOutline
from presto_deck.infrastructure.writers.langchain import (
    LangChainWriter,
    StructuredOutput,
    TokenUsage,
    WriterError,
)
from tests.support.fake_openai import FakeOpenAI, garbage, hang, ok, status
from tests.support.llm import API_KEY, PLAN_SLIDES

pytestmark = pytest.mark.usefixtures("no_backoff")

MODES: list[StructuredOutput] = ["function_calling", "json_schema"]
BRIEF = DeckBrief(prompt="Why cats rule the internet", slide_count=PLAN_SLIDES, language="English")
PLAN = DeckPlan(
    title="Cats",
    summary="Why the internet loves cats.",
    slides=[SlideOutline(title=f"Part {n}", key_points=[f"point {n}"]) for n in range(1, 4)],
)

WriterFactory = Callable[..., LangChainWriter]


@pytest.fixture
def make_writer(fake_openai: FakeOpenAI) -> WriterFactory:
    def make(**overrides: Any) -> LangChainWriter:
        settings: dict[str, Any] = {
            "model": "openai:fake-model",
            "base_url": fake_openai.base_url,
            "api_key": API_KEY,
            "timeout_seconds": 5.0,
            "max_attempts": 3,
            "structured_output": "function_calling",
        }
        return LangChainWriter(**(settings | overrides))

    return make


@pytest.mark.parametrize("mode", MODES)
async def test_plans_a_deck_with_the_requested_slides(
    fake_openai: FakeOpenAI, make_writer: WriterFactory, mode: StructuredOutput
) -> None:
    writer = make_writer(structured_output=mode)

    plan = await writer.plan(BRIEF)

    assert writer.name == "openai:fake-model"
    assert plan.title == "A fake deck"
    assert [slide.title for slide in plan.slides] == ["Slide 1", "Slide 2", "Slide 3"]
    [request] = fake_openai.requests
    assert request.requested_schema == "DeckPlan"
    assert ("tools" in request.body) is (mode == "function_calling")
    assert ("response_format" in request.body) is (mode == "json_schema")
    prompt = request.body["messages"][-1]["content"]
    assert BRIEF.prompt in prompt
    assert "Number of slides: 3" in prompt


@pytest.mark.parametrize("mode", MODES)
async def test_writes_a_slide_from_its_outline(
    fake_openai: FakeOpenAI, make_writer: WriterFactory, mode: StructuredOutput
) -> None:
    slide = await make_writer(structured_output=mode).write_slide(BRIEF, PLAN, 1)

    assert slide.title == "A written slide"
    assert slide.bullets == ["first <strong>point</strong>", "second point"]
    assert slide.notes
    [request] = fake_openai.requests
    assert request.requested_schema == "SlideContent"
    prompt = request.body["messages"][-1]["content"]
    assert "slide 2 of 3" in prompt
    assert "Part 2" in prompt


async def test_a_title_given_in_the_brief_is_kept(make_writer: WriterFactory) -> None:
    brief = DeckBrief(prompt="Cats", slide_count=3, title="My own title")

    plan = await make_writer().plan(brief)

    assert plan.title == "My own title"


async def test_a_longer_plan_is_cut_to_the_requested_slide_count(
    fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(ok(slides=5))

    plan = await make_writer().plan(BRIEF)

    assert len(plan.slides) == 3
    assert len(fake_openai.requests) == 1


async def test_a_shorter_plan_is_asked_for_again(
    fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(ok(slides=2))

    plan = await make_writer().plan(BRIEF)

    assert len(plan.slides) == 3
    assert len(fake_openai.requests) == 2


@pytest.mark.parametrize("code", [500, 503, 429])
async def test_server_errors_and_rate_limits_are_retried(
    fake_openai: FakeOpenAI, make_writer: WriterFactory, code: int
) -> None:
    fake_openai.script(status(code))

    plan = await make_writer().plan(BRIEF)

    assert len(plan.slides) == 3
    assert len(fake_openai.requests) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_unparseable_output_is_retried(
    fake_openai: FakeOpenAI, make_writer: WriterFactory, mode: StructuredOutput
) -> None:
    fake_openai.script(garbage())

    slide = await make_writer(structured_output=mode).write_slide(BRIEF, PLAN, 0)

    assert slide.title == "A written slide"
    assert len(fake_openai.requests) == 2


@pytest.mark.parametrize("code", [400, 401, 404, 422])
async def test_client_errors_are_not_retried(
    fake_openai: FakeOpenAI, make_writer: WriterFactory, code: int
) -> None:
    fake_openai.script(status(code))

    with pytest.raises(WriterError, match="after 1 attempt"):
        await make_writer().plan(BRIEF)

    assert len(fake_openai.requests) == 1


async def test_gives_up_after_the_last_attempt(
    fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(status(500), status(500), status(500))

    with pytest.raises(WriterError, match="could not plan the deck after 3 attempt") as failure:
        await make_writer(max_attempts=3).plan(BRIEF)

    assert len(fake_openai.requests) == 3
    assert "500" in str(failure.value)


async def test_a_hanging_server_hits_the_timeout_on_every_attempt(
    fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(hang(30), hang(30))
    writer = make_writer(timeout_seconds=0.5, max_attempts=2)
    started = time.monotonic()

    with pytest.raises(WriterError, match="after 2 attempt"):
        await writer.write_slide(BRIEF, PLAN, 0)

    assert time.monotonic() - started < 5
    assert len(fake_openai.requests) == 2


async def test_an_unreachable_server_is_retried_then_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port that nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    writer = LangChainWriter(
        model="openai:fake-model",
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key=API_KEY,
        timeout_seconds=2.0,
        max_attempts=3,
        structured_output="function_calling",
    )

    with caplog.at_level(logging.WARNING, logger="stamina"), pytest.raises(WriterError) as failure:
        await writer.plan(BRIEF)

    assert "after 3 attempt" in str(failure.value)
    assert len([r for r in caplog.records if r.name == "stamina"]) == 2  # two retries scheduled


@pytest.mark.parametrize("mode", MODES)
async def test_requests_carry_the_key_and_no_null_parameters(
    fake_openai: FakeOpenAI, make_writer: WriterFactory, mode: StructuredOutput
) -> None:
    writer = make_writer(structured_output=mode)

    await writer.write_slide(BRIEF, await writer.plan(BRIEF), 0)

    assert len(fake_openai.requests) == 2
    for request in fake_openai.requests:
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert {key for key, value in request.body.items() if value is None} == set()
        assert not {"max_tokens", "max_completion_tokens"} & request.body.keys()


async def test_token_usage_is_reported_for_every_answer(
    fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    usage: list[TokenUsage] = []
    writer = make_writer(on_usage=usage.append)
    fake_openai.script(garbage())  # an unusable answer still cost its tokens

    await writer.write_slide(BRIEF, await writer.plan(BRIEF), 0)

    expected = TokenUsage(model="openai:fake-model", input_tokens=42, output_tokens=17)
    assert usage == [expected, expected, expected]


@pytest.mark.parametrize("code", [401, 500])
async def test_the_error_message_never_shows_the_api_key(
    fake_openai: FakeOpenAI, make_writer: WriterFactory, code: int
) -> None:
    # Real providers echo the key back (OpenAI: "Incorrect API key provided: sk-...").
    echo = f"Incorrect API key provided: {API_KEY}"
    fake_openai.script(*[status(code, echo)] * 2)

    with pytest.raises(WriterError) as failure:
        await make_writer(max_attempts=2).plan(BRIEF)

    assert API_KEY not in str(failure.value)
    assert "***" in str(failure.value)
