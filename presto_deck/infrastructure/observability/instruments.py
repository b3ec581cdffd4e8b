"""The ports, measured: a writer whose calls are counted and timed, a publisher that counts the
slides it publishes, and the price table that turns tokens into an estimated cost. Bootstrap
wraps the real adapters in these; the use cases do not know they are measured."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from presto_deck.application.ports import DeckWriter, EventPublisher, ModelCallBudget
from presto_deck.domain.content import DeckBrief, DeckPlan, SlideContent, SlideRequest
from presto_deck.domain.events import Event
from presto_deck.infrastructure.observability.metrics import (
    ERRORS,
    LLM_CALLS,
    LLM_COST,
    LLM_SECONDS,
    LLM_TOKENS,
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

    async def plan(self, brief: DeckBrief, budget: ModelCallBudget) -> DeckPlan:
        return await self._measured(self._writer.plan(brief, budget))

    async def write_slide(
        self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
    ) -> SlideContent:
        return await self._measured(self._writer.write_slide(brief, plan, index, budget))

    async def edit_slide(self, request: SlideRequest, budget: ModelCallBudget) -> SlideContent:
        return await self._measured(self._writer.edit_slide(request, budget))

    async def _measured(self, call: Awaitable[_T]) -> _T:
        started = time.perf_counter()
        outcome = "error"
        try:
            answer = await call
            outcome = "ok"
            return answer
        except BaseException as exc:
            if isinstance(exc, Exception):
                ERRORS.labels(kind="llm").inc()
            else:
                outcome = "cancelled"
            raise
        finally:
            LLM_CALLS.labels(model=self._model, outcome=outcome).inc()
            LLM_SECONDS.labels(model=self._model).observe(time.perf_counter() - started)


class MeteredPublisher:
    """An ``EventPublisher`` that counts the slides it publishes."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def publish(self, events: Sequence[Event]) -> None:
        try:
            await self._publisher.publish(events)
        except Exception:
            ERRORS.labels(kind="publish").inc()
            raise
        if added := sum(event.event_type == "SlideAdded" for event in events):
            SLIDES_GENERATED.inc(added)


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
        LLM_TOKENS.labels(model=model, kind="prompt").inc(prompt_tokens)
        LLM_TOKENS.labels(model=model, kind="completion").inc(completion_tokens)
        if (cost := prices.cost(model, prompt_tokens, completion_tokens)) is not None:
            LLM_COST.labels(model=model).inc(cost)

    return count
