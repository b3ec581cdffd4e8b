"""The metrics move when a deck is written: queue wait, job time, the deck's end, its slides and
the writer's calls, as ``/metrics`` shows them."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import DeckClient
from tests.support.running import RunningApi

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _scrape(api: RunningApi) -> Samples:
    async with httpx.AsyncClient(base_url=api.url) as http:
        text = (await http.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_a_deck_moves_every_series_of_its_work(
    api: RunningApi, alice: DeckClient, worker: None
) -> None:
    before = await _scrape(api)
    deck_id = await alice.create("Tides and towns", slide_count=3)
    deck = await alice.wait_for_status(deck_id, "COMPLETED")
    async with alice.socket(deck_id, last_version=1) as ws:  # replayed from PostgreSQL
        for _ in range(deck["version"] - 1):
            await ws.recv()
    after = await _scrape(api)

    job = {"job": "generate_deck"}
    assert _moved(before, after, "presto_queue_wait_seconds_count", **job) == 1
    assert _moved(before, after, "presto_job_seconds_count", **job) == 1
    assert _moved(before, after, "presto_job_seconds_sum", **job) > 0
    assert _moved(before, after, "presto_decks_finished_total", status="COMPLETED") == 1
    assert _moved(before, after, "presto_slides_generated_total") == 3
    calls = {"model": "offline"}
    assert _moved(before, after, "presto_llm_calls_total", outcome="ok", **calls) == 4
    assert _moved(before, after, "presto_llm_call_seconds_count", **calls) == 4
    assert _moved(before, after, "presto_events_replayed_total") >= deck["version"] - 1
    # The stream's gauges are there from the start (nothing pending once delivered).
    assert ("presto_stream_pending_entries", ()) in after
    assert ("presto_stream_lag_entries", ()) in after
