"""One deck through separate ``serve`` and ``work`` processes, as an operator sees it: one trace
whose id is the deck's, spans from both processes in the expected shape, every series of both
``/metrics`` moved, and JSON log lines that all name the deck and its trace."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Deployment, mint
from tests.support.client import DeckClient
from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import ManagedProcess, free_port

pytestmark = pytest.mark.e2e

SLIDES = 3
MODEL = "openai:gpt-4o-mini"  # priced in config/prices.toml: its cost is counted


@dataclass(frozen=True)
class Span:
    name: str
    service: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]
    links: list[str]
    kind: str


@dataclass(frozen=True)
class Observed:
    deck_id: UUID
    spans: list[Span]
    api_metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    worker_metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    logs: list[dict[str, Any]]
    #: A token a client put in a query string, and every span as written.
    stray_token: str
    raw_spans: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def observed(deployment: Deployment) -> Observed:
    """One deck written by a model through separate processes that trace to their stdout."""
    deployment.fresh()
    metrics_port = free_port()
    traced = {"OTEL_TRACES_EXPORTER": "console"}
    with FakeOpenAI(plan_slides=SLIDES) as model:
        settings = {
            "llm_model": MODEL,
            "llm_base_url": model.base_url,
            "llm_api_key": "sk-test",
            "log_format": "json",
        }
        work = deployment.launch(
            "work", "work", "--metrics-port", str(metrics_port), environment=traced, **settings
        )
        serve = deployment.serve(environment=traced, **settings)
        work.wait_for_log("Starting worker")
        client = DeckClient(deployment.url, deployment.ws_url, mint("alice"))
        try:
            deck_id = await client.create("Tides and towns", slide_count=SLIDES)
            deck = await client.wait_for_status(deck_id, "COMPLETED", timeout=30)
            stray_token = mint("alice")
            await client.http.get(f"/api/v1/decks/{deck_id}", params={"token": stray_token})
            async with client.socket(deck_id, last_version=1) as ws:  # a replay
                for _ in range(deck["version"] - 1):
                    await ws.recv()
            api_metrics = await _scrape(f"{deployment.url}/metrics")
            worker_metrics = await _scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            await client.aclose()
        deployment.stop_all()  # every span ended and written
    return Observed(
        deck_id=UUID(deck_id),
        spans=[*_spans(serve), *_spans(work)],
        api_metrics=api_metrics,
        worker_metrics=worker_metrics,
        logs=[*_json_lines(serve.stderr()), *_json_lines(work.stderr())],
        stray_token=stray_token,
        raw_spans=serve.stdout() + work.stdout(),
    )


def test_every_span_of_the_deck_is_in_the_trace_whose_id_is_the_deck_id(
    observed: Observed,
) -> None:
    of_deck = [span for span in observed.spans if span.attributes.get("deck.id")]
    trace_id = f"0x{observed.deck_id.hex}"

    assert of_deck
    assert {span.trace_id for span in of_deck} == {trace_id}
    in_trace = _in_trace(observed)
    names = Counter(span.name for span in in_trace)
    assert names["deck.create"] == 1
    assert names["job generate"] == 1
    assert names["deck.plan"] == 1
    assert names["deck.slide"] == SLIDES
    assert names["llm plan"] == 1
    assert names["llm write_slide"] == SLIDES
    published = sum(
        span.attributes["messaging.batch.message_count"]
        for span in in_trace
        if span.name == "events publish"
    )
    assert published >= SLIDES + 2  # started, planned, each slide, completed
    assert names["stream fan-out"] >= SLIDES + 2  # one per event
    # The creation, the start, the plan and the slides' steps: slides written by the time an
    # earlier one is stored go into its step, so there may be fewer steps than slides.
    assert names["db transaction"] >= 4
    assert names["socket replay"] >= 1
    assert {span.service for span in in_trace} == {"presto-deck-api", "presto-deck-worker"}


def test_the_trace_has_the_shape_of_the_decks_life_across_both_processes(
    observed: Observed,
) -> None:
    spans = _in_trace(observed)
    by_id = {span.span_id: span for span in spans}
    (root,) = [span for span in spans if span.parent_id is None]

    def parent(span: Span) -> Span:
        assert span.parent_id is not None
        return by_id[span.parent_id]

    assert root.name == "deck.create"
    assert root.service == "presto-deck-api"
    assert int(root.span_id, 16) == observed.deck_id.int & (2**64 - 1)
    assert all(span.parent_id in by_id for span in spans if span is not root)  # no orphan
    (job,) = [span for span in spans if span.name == "job generate"]
    assert job.service == "presto-deck-worker"
    assert parent(job) is root
    assert job.attributes["job.try"] == 1  # its first start: no worker died under it
    for span in spans:
        match span.name:
            case "deck.plan" | "deck.slide":
                assert parent(span) is job
            case "llm plan":
                assert parent(span).name == "deck.plan"
            case "llm write_slide":
                assert parent(span).name == "deck.slide"
            case "stream fan-out":  # in the API, the child of the worker's publish
                assert span.service == "presto-deck-api"
                assert parent(span).name == "events publish"
                assert parent(span).service == "presto-deck-worker"
            case "socket replay":
                assert parent(span).service == "presto-deck-api"
    # The request that created the deck is a trace of its own, linked from the deck's root;
    # requests on the deck are too, named by their route, not their path.
    (post,) = [s for s in observed.spans if s.name == "POST /api/v1/decks"]
    assert post.trace_id != root.trace_id
    assert post.span_id in root.links
    gets = [s for s in observed.spans if s.name == "GET /api/v1/decks/{deck_id}"]
    assert gets
    assert all(s.trace_id != root.trace_id and s.kind == "SpanKind.SERVER" for s in gets)


def test_a_token_in_a_query_string_is_in_no_span(observed: Observed) -> None:
    assert observed.stray_token.rsplit(".", 1)[1] not in observed.raw_spans
    assert "token=[redacted]" in observed.raw_spans


def test_each_model_call_span_carries_its_model_and_tokens(observed: Observed) -> None:
    calls = [span for span in _in_trace(observed) if span.name.startswith("llm ")]

    assert len(calls) == SLIDES + 1
    for span in calls:
        assert span.attributes["gen_ai.request.model"] == MODEL
        assert span.attributes["presto.outcome"] == "ok"
        assert span.attributes["gen_ai.usage.input_tokens"] > 0
        assert span.attributes["gen_ai.usage.output_tokens"] > 0


def test_both_metrics_endpoints_show_every_series_moved_by_the_deck(observed: Observed) -> None:
    worker, api = observed.worker_metrics, observed.api_metrics
    model = {"model": MODEL}

    assert _value(worker, "presto_queue_wait_seconds_count", job="generate_deck") == 1
    assert _value(worker, "presto_job_seconds_count", job="generate_deck") == 1
    assert _value(worker, "presto_deck_generation_seconds_count", status="COMPLETED") == 1
    assert _value(worker, "presto_deck_generation_seconds_sum", status="COMPLETED") > 0
    assert _value(worker, "presto_slide_generation_seconds_count") == SLIDES
    assert _value(worker, "presto_slides_generated_total") == SLIDES
    assert _value(worker, "presto_decks_finished_total", status="COMPLETED") == 1
    assert _value(worker, "presto_llm_calls_total", outcome="ok", **model) == SLIDES + 1
    assert _value(worker, "presto_llm_call_seconds_count", **model) == SLIDES + 1
    assert _value(worker, "presto_llm_tokens_total", kind="prompt", **model) > 0
    assert _value(worker, "presto_llm_tokens_total", kind="completion", **model) > 0
    assert _value(worker, "presto_llm_cost_usd_total", **model) > 0
    for gauge in ("presto_decks_active", "presto_oldest_active_deck_seconds"):
        assert (gauge, ()) in worker  # set by the sweep, 0 once the deck is done
    assert _value(api, "presto_events_delivered_total", source="socket") >= SLIDES + 2
    assert _value(api, "presto_events_replayed_total") >= SLIDES + 2
    assert _value(api, "presto_open_websockets") == 0  # the socket was closed
    for gauge in ("presto_stream_pending_entries", "presto_stream_lag_entries"):
        assert (gauge, ()) in api
    for process in (worker, api):  # each collection's pause, by generation
        assert _value(process, "presto_gc_pause_seconds_count", generation="0") > 0


def test_the_decks_log_lines_all_carry_its_id_and_its_trace_id(observed: Observed) -> None:
    deck_id = str(observed.deck_id)
    mentioning = [
        line
        for line in observed.logs
        if line.get("deck_id") == deck_id or deck_id in line.get("message", "")
    ]

    services = {line.get("logger", "").split(".")[0] for line in mentioning}
    assert len(mentioning) >= 3
    assert {"presto_deck", "uvicorn"} <= services
    for line in mentioning:
        assert line.get("deck_id") == deck_id, line
        assert line.get("trace_id") == observed.deck_id.hex, line
        assert len(line.get("span_id", "")) == 16, line


def _in_trace(observed: Observed) -> list[Span]:
    trace_id = f"0x{observed.deck_id.hex}"
    return [span for span in observed.spans if span.trace_id == trace_id]


def _spans(process: ManagedProcess) -> list[Span]:
    spans = []
    for line in process.stdout().splitlines():
        if not line.startswith("{"):
            continue
        raw = json.loads(line)
        spans.append(
            Span(
                name=raw["name"],
                service=raw["resource"]["attributes"]["service.name"],
                trace_id=raw["context"]["trace_id"],
                span_id=raw["context"]["span_id"],
                parent_id=raw["parent_id"],
                attributes=raw["attributes"],
                links=[link["context"]["span_id"] for link in raw["links"]],
                kind=raw["kind"],
            )
        )
    return spans


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(url)).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
