"""A model that misbehaves, behind the real worker process: output PostgreSQL refuses, output that
breaks the schema, short plans, server errors, rate limits and hangs. Every deck ends, and the
paid calls it made are counted and bounded."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.faults.conftest import Cluster, FaultRun, running_cluster
from tests.faults.contract import assert_contract, wait_until_ended
from tests.support.client import DeckClient
from tests.support.fake_openai import Behaviour, FakeOpenAI, garbage, hang, ok, status
from tests.support.llm import API_KEY

pytestmark = [pytest.mark.fault, pytest.mark.timeout(180)]

MAX_ATTEMPTS = 3


@dataclass
class ModelStack:
    cluster: Cluster
    model: FakeOpenAI


@pytest.fixture(scope="module")
def stack(fault_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelStack]:
    """``serve`` and ``work`` writing with the fake model, shared by the tests of this module:
    each creates its decks one at a time, so each script meets its own deck's calls."""
    with (
        FakeOpenAI(plan_slides=4) as model,
        running_cluster(fault_database, tmp_path_factory.mktemp("model-faults")) as cluster,
    ):
        settings = cluster.settings(
            llm_model="openai:fake-model",
            llm_base_url=model.base_url,
            llm_api_key=API_KEY,
            llm_max_attempts=str(MAX_ATTEMPTS),
            llm_timeout_seconds="1",
            llm_max_calls_per_deck="20",
        )
        cluster.deployment.start_work(**settings)
        cluster.deployment.serve(**settings)
        yield ModelStack(cluster, model)


@pytest.fixture
def cluster(stack: ModelStack) -> Cluster:
    return stack.cluster


@pytest.fixture
def model(stack: ModelStack) -> FakeOpenAI:
    return stack.model


@pytest.fixture
def writing(alice: DeckClient) -> DeckClient:
    return alice


async def one_deck(
    client: DeckClient, model: FakeOpenAI, run: FaultRun, script: list[Behaviour], slides: int
) -> tuple[str, int]:
    """Create a deck with the model answering ``script`` first; its id and the calls it made."""
    model.script(*script, replace=True)
    before = len(model.requests)
    deck_id = await client.create("Why tea matters", slide_count=slides)
    await wait_until_ended(client, [deck_id], timeout=60)
    calls = len(model.requests) - before
    run.model_calls += calls
    return deck_id, calls


async def counted_calls(cluster: Cluster, deck_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(cluster.deployment.database_url) as conn:
        cursor = await conn.execute("SELECT model_calls FROM decks WHERE id = %s", (deck_id,))
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_output_full_of_nul_and_lone_surrogates_completes_in_one_call_a_step(
    cluster: Cluster, writing: DeckClient, model: FakeOpenAI, fault_run: FaultRun
) -> None:
    hostile = [ok(hostile=True)] * 5
    deck_id, calls = await one_deck(writing, model, fault_run, hostile, slides=4)
    fault_run.count("model output with NUL and lone surrogates", calls)

    assert calls == 5
    assert await counted_calls(cluster, deck_id) == 5
    await assert_contract(writing, deck_id, fault_run, status="COMPLETED", slides=4)


async def test_output_that_breaks_the_schema_fails_the_deck_after_its_attempts(
    cluster: Cluster, writing: DeckClient, model: FakeOpenAI, fault_run: FaultRun
) -> None:
    deck_id, calls = await one_deck(writing, model, fault_run, [garbage()] * 10, slides=4)
    fault_run.count("schema-breaking model output", calls)

    assert calls == MAX_ATTEMPTS
    history = await assert_contract(writing, deck_id, fault_run, status="FAILED")
    failed = history[-1]["payload"]
    assert failed["code"] == "llm_bad_output"
    assert failed["error"].startswith("The model's answers did not have the expected structure")


async def test_a_plan_short_of_slides_is_asked_for_once_more_then_kept(
    cluster: Cluster, writing: DeckClient, model: FakeOpenAI, fault_run: FaultRun
) -> None:
    script = [ok(slides=2), ok(slides=2)]
    deck_id, calls = await one_deck(writing, model, fault_run, script, slides=4)
    fault_run.count("plan with 2 of 4 slides", 2)

    assert calls == 2 + 2  # the plan asked twice, then its two slides
    await assert_contract(writing, deck_id, fault_run, status="COMPLETED", slides=2)


async def test_server_errors_rate_limits_and_hangs_are_retried_within_bounds(
    cluster: Cluster, writing: DeckClient, model: FakeOpenAI, fault_run: FaultRun
) -> None:
    script = [
        status(500),
        status(429, retry_after="1"),
        ok(),  # the plan, on its third attempt
        hang(30),
        ok(),  # slide 1, after a timeout
        status(503),
        ok(),  # slide 2
    ]
    deck_id, calls = await one_deck(writing, model, fault_run, script, slides=4)
    for fault in ("model HTTP 500", "model HTTP 429 with Retry-After", "model hang", "model 503"):
        fault_run.count(fault)

    assert calls == 3 + 2 + 2 + 1 + 1
    _, second, third = model.requests[-calls : -calls + 3]
    assert third.at - second.at >= 1.0  # Retry-After: 1 was honoured
    assert await counted_calls(cluster, deck_id) == calls
    await assert_contract(writing, deck_id, fault_run, status="COMPLETED", slides=4)


async def test_a_model_that_never_answers_fails_the_deck_after_its_attempts(
    cluster: Cluster, writing: DeckClient, model: FakeOpenAI, fault_run: FaultRun
) -> None:
    deck_id, calls = await one_deck(writing, model, fault_run, [hang(30)] * 10, slides=4)
    fault_run.count("model that never answers", calls)

    assert calls == MAX_ATTEMPTS
    history = await assert_contract(writing, deck_id, fault_run, status="FAILED")
    assert history[-1]["payload"]["code"] == "llm_timeout"
