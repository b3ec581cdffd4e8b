"""Tokens turned into an estimated cost, only for the models the price table lists."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from presto_deck.infrastructure.observability.instruments import (
    MeteredPublisher,
    MeteredWriter,
    PriceTable,
    token_counter,
)


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_price_table_costs_listed_models_and_guesses_none_for_the_others() -> None:
    prices = PriceTable.load()

    assert prices.cost("openai:gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert prices.cost("openai:some-new-model", 1_000, 1_000) is None


def test_tokens_are_counted_by_kind_and_cost_only_where_there_is_a_price() -> None:
    count = token_counter(PriceTable({"p:priced": {"prompt": 1.0, "completion": 2.0}}))
    before = {
        "prompt": _value("presto_llm_tokens_total", model="p:priced", kind="prompt"),
        "cost": _value("presto_llm_cost_usd_total", model="p:priced"),
        "unpriced": _value("presto_llm_cost_usd_total", model="p:unpriced"),
    }

    count("p:priced", 1_000_000, 500_000)
    count("p:unpriced", 10, 10)

    assert _value("presto_llm_tokens_total", model="p:priced", kind="prompt") == (
        before["prompt"] + 1_000_000
    )
    assert _value("presto_llm_cost_usd_total", model="p:priced") == pytest.approx(
        before["cost"] + 2.0
    )
    assert _value("presto_llm_cost_usd_total", model="p:unpriced") == before["unpriced"]
    assert _value("presto_llm_tokens_total", model="p:unpriced", kind="completion") >= 10


class _Failing:
    name = "failing"

    async def plan(self, brief: object, budget: object) -> object:
        raise RuntimeError("the model is down")

    async def write_slide(self, *args: object) -> object:
        raise NotImplementedError

    async def edit_slide(self, *args: object) -> object:
        raise NotImplementedError

    async def publish(self, events: object) -> None:
        raise RuntimeError("Redis is down")


async def test_failed_writer_calls_and_publishes_are_counted_as_errors_by_kind() -> None:
    before = {kind: _value("presto_errors_total", kind=kind) for kind in ("llm", "publish")}
    calls = _value("presto_llm_calls_total", model="m:failing", outcome="error")
    writer = MeteredWriter(_Failing(), "m:failing")  # type: ignore[arg-type]
    publisher = MeteredPublisher(_Failing())  # type: ignore[arg-type]

    with pytest.raises(RuntimeError):
        await writer.plan(None, None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await publisher.publish([])

    assert _value("presto_errors_total", kind="llm") == before["llm"] + 1
    assert _value("presto_errors_total", kind="publish") == before["publish"] + 1
    assert _value("presto_llm_calls_total", model="m:failing", outcome="error") == calls + 1
