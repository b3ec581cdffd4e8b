"""The ports, measured and traced: a writer whose calls are counted, timed and traced, a
publisher that counts the slides it publishes and traces each publish, a renderer whose failures
are counted, the meter of generation, and the price table that turns tokens into an estimated
cost. Bootstrap wraps the real adapters in these; the use cases do not know they are measured."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from presto_deck.application.ports import (
    DeckWriter,
    EventPublisher,
    ModelCallBudget,
    SlideRenderer,
)
from presto_deck.application.tracing import tracer
from presto_deck.domain.content import DeckBrief, DeckPlan, SlideContent, SlideRequest
from presto_deck.domain.deck import DeckStatus
from presto_deck.domain.events import Event
from presto_deck.infrastructure.observability.metrics import (
    DECK_SECONDS,
    DECKS_FINISHED,
    ERRORS,
    LLM_CALLS,
    LLM_COST,
    LLM_SECONDS,
    LLM_TOKENS,
    SLIDE_SECONDS,
    SLIDES_GENERATED,
)
from presto_deck.settings import config_text

_T = TypeVar("_T")
_PER_TOKENS = 1_000_000


class MeteredWriter:
    """A ``DeckWriter`` whose every call is counted by outcome and timed."""

    def __init__(self, writer: DeckWriter, model: str) -> None:
        self._writer = writer
        self._model = model
        self.name = writer.name
        # The series, looked up once (there from the start, at 0), not at every call.
        self._calls = {
            outcome: LLM_CALLS.labels(model=model, outcome=outcome)
            for outcome in ("ok", "error", "cancelled")
        }
        self._seconds = LLM_SECONDS.labels(model=model)

    async def plan(self, brief: DeckBrief, budget: ModelCallBudget) -> DeckPlan:
        return await self._measured("plan", lambda: self._writer.plan(brief, budget))

    async def write_slide(
        self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
    ) -> SlideContent:
        return await self._measured(
            "write_slide", lambda: self._writer.write_slide(brief, plan, index, budget)
        )

    async def edit_slide(self, request: SlideRequest, budget: ModelCallBudget) -> SlideContent:
        return await self._measured("edit_slide", lambda: self._writer.edit_slide(request, budget))

    async def _measured(self, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
        started = time.perf_counter()
        outcome = "error"
        # The model's token counts are added to this span as its answers come (token_counter).
        # The provider's error text (its hosts, its request ids) is in the worker's log, not in
        # spans that may leave for a hosted backend: the span says the error's type.
        with tracer.start_as_current_span(
            f"llm {operation}",
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": operation, "gen_ai.request.model": self._model},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                answer = await call()
                outcome = "ok"
                return answer
            except BaseException as exc:
                if isinstance(exc, Exception):
                    ERRORS.labels(kind="llm").inc()
                    span.set_status(StatusCode.ERROR, type(exc).__name__)
                else:
                    outcome = "cancelled"
                raise
            finally:
                span.set_attribute("presto.outcome", outcome)
                self._calls[outcome].inc()
                self._seconds.observe(time.perf_counter() - started)


class MeteredPublisher:
    """An ``EventPublisher`` that counts the slides it publishes."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def publish(self, events: Sequence[Event]) -> None:
        # Each stream entry carries this span, for the API's fan-out span to be its child.
        with tracer.start_as_current_span(
            "events publish",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.batch.message_count": len(events)},
        ):
            try:
                await self._publisher.publish(events)
            except Exception:
                ERRORS.labels(kind="publish").inc()
                raise
        if added := sum(event.event_type == "SlideAdded" for event in events):
            SLIDES_GENERATED.inc(added)


class MeteredRenderer:
    """A ``SlideRenderer`` whose failures (the sanitizer's, mostly) are counted."""

    def __init__(self, renderer: SlideRenderer) -> None:
        self._renderer = renderer

    def render(self, content: SlideContent, theme: str | None) -> str:
        try:
            return self._renderer.render(content, theme)
        except Exception:
            ERRORS.labels(kind="sanitizer").inc()
            raise


class PrometheusGenerationMeter:
    """The ``GenerationMeter`` of a worker: Prometheus histograms and counters."""

    def slide_generated(self, seconds: float) -> None:
        SLIDE_SECONDS.observe(seconds)

    def deck_finished(self, status: DeckStatus, seconds: float) -> None:
        DECKS_FINISHED.labels(status=status.value).inc()
        DECK_SECONDS.labels(status=status.value).observe(seconds)


class PriceTable:
    """USD per million tokens by model (``config/prices.toml``); an unlisted model is free of
    any guess: its tokens are counted, its cost is not."""

    def __init__(self, prices: Mapping[str, Mapping[str, float]]) -> None:
        self._prices = prices

    @classmethod
    def load(cls) -> PriceTable:
        return cls(tomllib.loads(config_text("prices.toml")))

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = self._prices.get(model)
        if price is None:
            return None
        return (
            prompt_tokens * price.get("prompt", 0.0)
            + completion_tokens * price.get("completion", 0.0)
        ) / _PER_TOKENS


def token_counter(prices: PriceTable) -> Callable[[str, int, int], None]:
    """Count one response's tokens, and its estimated cost where the model has a price."""

    def count(model: str, prompt_tokens: int, completion_tokens: int) -> None:
        trace.get_current_span().set_attributes(
            {
                "gen_ai.usage.input_tokens": prompt_tokens,
                "gen_ai.usage.output_tokens": completion_tokens,
            }
        )
        LLM_TOKENS.labels(model=model, kind="prompt").inc(prompt_tokens)
        LLM_TOKENS.labels(model=model, kind="completion").inc(completion_tokens)
        if (cost := prices.cost(model, prompt_tokens, completion_tokens)) is not None:
            LLM_COST.labels(model=model).inc(cost)

    return count
