"""The LangChain writer through the real langchain-openai client, over HTTP to a fake server."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import stamina

from presto_deck.application.ports import ModelCallsExhausted
from presto_deck.domain.content import (
    DeckBrief,
    DeckPlan,
    SlideContent,
    SlideOutline,
    SlideRequest,
)
from presto_deck.infrastructure.writers.langchain import (
    LangChainWriter,
    StructuredOutput,
    TokenUsage,
    WriterError,
)
from tests.support.fake_openai import FakeOpenAI, Raw, garbage, hang, ok, raw, status
from tests.support.llm import API_KEY, PLAN_SLIDES, CountingBudget

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
def budget() -> CountingBudget:
    return CountingBudget()


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
    budget: CountingBudget,
    fake_openai: FakeOpenAI,
    make_writer: WriterFactory,
    mode: StructuredOutput,
) -> None:
    writer = make_writer(structured_output=mode)

    plan = await writer.plan(BRIEF, budget)

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
    budget: CountingBudget,
    fake_openai: FakeOpenAI,
    make_writer: WriterFactory,
    mode: StructuredOutput,
) -> None:
    slide = await make_writer(structured_output=mode).write_slide(BRIEF, PLAN, 1, budget)

    assert slide.title == "A written slide"
    assert slide.bullets == ["first <strong>point</strong>", "second point"]
    assert slide.notes
    [request] = fake_openai.requests
    assert request.requested_schema == "SlideContent"
    prompt = request.body["messages"][-1]["content"]
    assert "slide 2 of 3" in prompt
    assert "Part 2" in prompt


@pytest.mark.parametrize("mode", MODES)
async def test_rewrites_a_slide_as_asked_with_its_neighbours_as_context(
    budget: CountingBudget,
    fake_openai: FakeOpenAI,
    make_writer: WriterFactory,
    mode: StructuredOutput,
) -> None:
    current = SlideContent(title="Cats online", bullets=["memes"])
    request = SlideRequest(
        brief=BRIEF,
        plan=PLAN,
        prompt="Make it about dogs instead",
        current=current,
        previous=SlideContent(title="Opening"),
        following=SlideContent(title="Closing words"),
        position=2,
        total=3,
    )

    slide = await make_writer(structured_output=mode).edit_slide(request, budget)

    assert slide.title == "A written slide"
    assert budget.spent == 1
    [sent] = fake_openai.requests
    assert sent.requested_schema == "SlideContent"
    prompt = sent.body["messages"][-1]["content"]
    for part in ("Make it about dogs instead", "Cats online", "Opening", "Closing words"):
        assert part in prompt
    assert "Rewrite slide 2 of 3" in prompt
    assert BRIEF.prompt in prompt


async def test_writes_a_new_slide_where_it_will_stand(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    request = SlideRequest(
        brief=BRIEF, plan=None, prompt="A chart", current=None, position=1, total=4
    )

    slide = await make_writer().edit_slide(request, budget)

    assert slide.title == "A written slide"
    prompt = fake_openai.requests[0].body["messages"][-1]["content"]
    assert "Write a new slide, which will be slide 1 of 4" in prompt
    assert "A chart" in prompt


async def test_a_title_given_in_the_brief_is_kept(
    budget: CountingBudget, make_writer: WriterFactory
) -> None:
    brief = DeckBrief(prompt="Cats", slide_count=3, title="My own title")

    plan = await make_writer().plan(brief, budget)

    assert plan.title == "My own title"


async def test_a_longer_plan_is_cut_to_the_requested_slide_count(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(ok(slides=5))

    plan = await make_writer().plan(BRIEF, budget)

    assert len(plan.slides) == 3
    assert len(fake_openai.requests) == 1


async def test_a_shorter_plan_is_asked_for_again(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(ok(slides=2))

    plan = await make_writer().plan(BRIEF, budget)

    assert len(plan.slides) == 3
    assert len(fake_openai.requests) == 2


@pytest.mark.parametrize("code", [500, 503, 429])
async def test_server_errors_and_rate_limits_are_retried(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory, code: int
) -> None:
    fake_openai.script(status(code))

    plan = await make_writer().plan(BRIEF, budget)

    assert len(plan.slides) == 3
    assert len(fake_openai.requests) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_unparseable_output_is_retried(
    budget: CountingBudget,
    fake_openai: FakeOpenAI,
    make_writer: WriterFactory,
    mode: StructuredOutput,
) -> None:
    fake_openai.script(garbage())

    slide = await make_writer(structured_output=mode).write_slide(BRIEF, PLAN, 0, budget)

    assert slide.title == "A written slide"
    assert len(fake_openai.requests) == 2


@pytest.mark.parametrize(
    ("code", "category"),
    [(400, "llm_refused"), (401, "llm_refused"), (404, "llm_refused"), (422, "llm_refused")],
)
async def test_client_errors_are_not_retried(
    budget: CountingBudget,
    fake_openai: FakeOpenAI,
    make_writer: WriterFactory,
    code: int,
    category: str,
) -> None:
    fake_openai.script(status(code))

    with pytest.raises(WriterError) as failure:
        await make_writer().plan(BRIEF, budget)

    assert failure.value.code == category
    assert "after 1 attempt" in failure.value.detail
    assert len(fake_openai.requests) == budget.spent == 1


async def test_gives_up_after_the_last_attempt(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(status(500), status(500), status(500))

    with pytest.raises(WriterError) as failure:
        await make_writer(max_attempts=3).plan(BRIEF, budget)

    assert len(fake_openai.requests) == budget.spent == 3
    assert failure.value.code == "llm_unavailable"
    assert failure.value.reason == "The model provider was unavailable (3 attempt(s))"
    assert "could not plan the deck after 3 attempt" in failure.value.detail
    assert "500" in failure.value.detail


async def test_the_reason_never_carries_the_providers_own_message(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    leak = "upstream 10.0.3.7:8443 rejected key sk-internal-123 for tenant acme"
    fake_openai.script(status(500, leak), status(500, leak))

    with pytest.raises(WriterError) as failure:
        await make_writer(max_attempts=2).plan(BRIEF, budget)

    assert "10.0.3.7" not in failure.value.reason
    assert "sk-internal" not in failure.value.reason
    assert leak in failure.value.detail  # for the operator's log


async def test_a_hanging_server_hits_the_timeout_on_every_attempt(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(hang(30), hang(30))
    writer = make_writer(timeout_seconds=0.5, max_attempts=2)
    started = time.monotonic()

    with pytest.raises(WriterError) as failure:
        await writer.write_slide(BRIEF, PLAN, 0, budget)

    assert time.monotonic() - started < 5
    assert len(fake_openai.requests) == budget.spent == 2
    assert failure.value.code == "llm_timeout"
    assert failure.value.reason == "The model did not answer within 0.5 s (2 attempt(s))"


async def test_an_unreachable_server_is_retried_then_reported(
    budget: CountingBudget, caplog: pytest.LogCaptureFixture
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
        await writer.plan(BRIEF, budget)

    assert failure.value.code == "llm_unavailable"
    assert "after 3 attempt" in failure.value.detail
    assert budget.spent == 3
    assert len([r for r in caplog.records if r.name == "stamina"]) == 2  # two retries scheduled


@pytest.mark.parametrize("mode", MODES)
async def test_requests_carry_the_key_and_no_null_parameters(
    budget: CountingBudget,
    fake_openai: FakeOpenAI,
    make_writer: WriterFactory,
    mode: StructuredOutput,
) -> None:
    writer = make_writer(structured_output=mode)

    await writer.write_slide(BRIEF, await writer.plan(BRIEF, budget), 0, budget)

    assert len(fake_openai.requests) == 2
    for request in fake_openai.requests:
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert {key for key, value in request.body.items() if value is None} == set()
        assert not {"max_tokens", "max_completion_tokens"} & request.body.keys()


async def test_token_usage_is_reported_for_every_answer(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    usage: list[TokenUsage] = []
    writer = make_writer(on_usage=usage.append)
    fake_openai.script(garbage())  # an unusable answer still cost its tokens

    await writer.write_slide(BRIEF, await writer.plan(BRIEF, budget), 0, budget)

    expected = TokenUsage(model="openai:fake-model", input_tokens=42, output_tokens=17)
    assert usage == [expected, expected, expected]


@pytest.mark.parametrize("code", [401, 500])
async def test_the_error_never_shows_the_api_key(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory, code: int
) -> None:
    # Real providers echo the key back (OpenAI: "Incorrect API key provided: sk-...").
    echo = f"Incorrect API key provided: {API_KEY}"
    fake_openai.script(*[status(code, echo)] * 2)

    with pytest.raises(WriterError) as failure:
        await make_writer(max_attempts=2).plan(BRIEF, budget)

    assert API_KEY not in failure.value.reason
    assert API_KEY not in failure.value.detail
    assert "***" in failure.value.detail


# -- the deck's model-call budget -----------------------------------------------------------------


async def test_every_attempt_is_counted_against_the_budget_before_it_is_made(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(status(500), garbage())

    await make_writer(max_attempts=3).plan(BRIEF, budget)

    assert budget.spent == len(fake_openai.requests) == 3


async def test_a_refused_call_is_never_made_and_stops_the_retries(
    fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    budget = CountingBudget(limit=1)
    fake_openai.script(status(500), status(500))

    with pytest.raises(ModelCallsExhausted):
        await make_writer(max_attempts=4).plan(BRIEF, budget)

    assert len(fake_openai.requests) == 1


# -- the number of slides -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_the_schema_states_the_number_of_slides(
    budget: CountingBudget,
    fake_openai: FakeOpenAI,
    make_writer: WriterFactory,
    mode: StructuredOutput,
) -> None:
    await make_writer(structured_output=mode).plan(BRIEF, budget)

    [request] = fake_openai.requests
    if mode == "function_calling":
        schema = request.body["tools"][0]["function"]["parameters"]
    else:
        schema = request.body["response_format"]["json_schema"]["schema"]
    slides = schema["properties"]["slides"]
    assert (slides["minItems"], slides["maxItems"]) == (3, 3)


async def test_a_plan_that_stays_short_is_kept_rather_than_failing_the_deck(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(ok(slides=2), ok(slides=1))

    plan = await make_writer().plan(BRIEF, budget)

    assert len(plan.slides) == 2  # the longer of the two answers
    assert len(fake_openai.requests) == budget.spent == 2
    second_prompt = fake_openai.requests[1].body["messages"][-1]["content"]
    assert "A first plan had only 2 slide outlines" in second_prompt
    assert "exactly 3 slide outlines" in second_prompt


async def test_a_short_plan_is_kept_when_asking_again_fails(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(ok(slides=2), status(500), status(500))

    plan = await make_writer(max_attempts=2).plan(BRIEF, budget)

    assert len(plan.slides) == 2
    assert budget.spent == 3


# -- a provider that says when to come back -------------------------------------------------------


async def test_a_rate_limit_with_retry_after_is_retried_after_that_long(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    fake_openai.script(status(429, retry_after="1"))

    with stamina.set_testing(False):  # real waits: the wait is what is tested
        plan = await make_writer().plan(BRIEF, budget)

    assert len(plan.slides) == 3
    first, second = fake_openai.requests
    assert second.at - first.at >= 1.0


async def test_a_server_given_by_its_base_url_needs_no_key(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory
) -> None:
    plan = await make_writer(api_key=None).plan(BRIEF, budget)

    assert len(plan.slides) == 3
    assert fake_openai.requests[0].headers["authorization"] == "Bearer not-needed"


_TOOL_ARGS_AS_ARRAY = (
    b'{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [{"index":'
    b' 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,'
    b' "tool_calls": [{"id": "c", "type": "function", "function": {"name": "DeckPlan",'
    b' "arguments": "[1, 2]"}}]}}]}'
)


@pytest.mark.parametrize(
    "answer",
    [
        raw(b'{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}'),
        raw(b"<html><body>502 Bad Gateway</body></html>", b"text/html"),
        raw(b"\xff\xfe not utf-8 \xc3\x28"),
        raw(_TOOL_ARGS_AS_ARRAY),
    ],
    ids=["no-choices", "html-page", "not-utf8", "arguments-not-an-object"],
)
async def test_an_answer_the_client_cannot_read_is_bad_output_and_asked_again(
    budget: CountingBudget, fake_openai: FakeOpenAI, make_writer: WriterFactory, answer: Raw
) -> None:
    fake_openai.script(answer, answer)

    with pytest.raises(WriterError) as failure:
        await make_writer(max_attempts=2).plan(BRIEF, budget)

    assert failure.value.code == "llm_bad_output"
    assert len(fake_openai.requests) == budget.spent == 2
