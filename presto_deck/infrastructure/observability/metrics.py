"""Prometheus metrics of this process (the API and the worker each expose their own: the API on
``/metrics``, the worker on ``presto-deck work --metrics-port``; ``serve --with-worker`` has both
in its one ``/metrics``)."""

from __future__ import annotations

import gc
import time

from prometheus_client import Counter, Gauge, Histogram

OPEN_WEBSOCKETS = Gauge("presto_open_websockets", "WebSocket connections currently open")
EVENTS_DELIVERED = Counter(
    "presto_events_delivered_total", "Deck events sent to WebSocket clients", ["source"]
)
LLM_TOKENS = Counter("presto_llm_tokens_total", "LLM tokens used", ["model", "kind"])
LLM_COST = Counter(
    "presto_llm_cost_usd_total",
    "Estimated cost of the tokens used, from the price table (models it does not list: none)",
    ["model"],
)
LLM_CALLS = Counter(
    "presto_llm_calls_total",
    "Writer calls (a plan, a slide, an edit; retries inside one call included in it)",
    ["model", "outcome"],
)
LLM_SECONDS = Histogram(
    "presto_llm_call_seconds",
    "Time of one writer call, retries included",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
)
QUEUE_WAIT = Histogram(
    "presto_queue_wait_seconds",
    "From a job's enqueue to its start",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
JOB_SECONDS = Histogram(
    "presto_job_seconds",
    "A generation or edit job, from its start to its end",
    ["job"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
DECKS_FINISHED = Counter(
    "presto_decks_finished_total", "Decks a worker ended, by their final status", ["status"]
)
DECK_SECONDS = Histogram(
    "presto_deck_generation_seconds",
    "From a deck's creation to the end of its generation (completed, failed or cancelled)",
    ["status"],
    buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600),
)
SLIDE_SECONDS = Histogram(
    "presto_slide_generation_seconds",
    "One slide written by the model, drawn, stored and published",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
DECKS_ACTIVE = Gauge(
    "presto_decks_active", "Decks being generated or waiting to be, counted every sweep period"
)
OLDEST_ACTIVE_DECK = Gauge(
    "presto_oldest_active_deck_seconds",
    "Age of the oldest deck still being generated or waiting to be, every sweep period",
)
SLIDES_GENERATED = Counter(
    "presto_slides_generated_total", "Slides written and published (SlideAdded events)"
)
SWEEP_TAKEOVERS = Counter(
    "presto_sweep_takeovers_total",
    "Decks and edits the sweep queued again because no live worker held them",
    ["kind"],
)
EVENTS_RELAYED = Counter(
    "presto_events_relayed_total", "Events the outbox relay published after a failed publish"
)
EVENTS_REPLAYED = Counter(
    "presto_events_replayed_total", "Events read from PostgreSQL for a socket (replay, backfill)"
)
STREAM_PENDING = Gauge(
    "presto_stream_pending_entries", "Event stream entries delivered to an API instance, not acked"
)
STREAM_LAG = Gauge("presto_stream_lag_entries", "Event stream entries no API instance has read yet")
OUTBOX_BACKLOG = Gauge(
    "presto_outbox_backlog_events", "Committed events the last sweep found never published"
)
ERRORS = Counter(
    "presto_errors_total",
    "Errors by kind: llm, storage, publish, redis, sanitizer",
    ["kind"],
)


def _zeroed() -> None:
    """Series that exist from the start, at 0, rather than from their first occurrence: a rate
    over a counter that appears with its first increment misses that increment."""
    for kind in ("llm", "storage", "publish", "redis", "sanitizer"):
        ERRORS.labels(kind=kind)
    for status in ("COMPLETED", "FAILED", "CANCELLED"):
        DECKS_FINISHED.labels(status=status)
    for kind in ("deck", "edit"):
        SWEEP_TAKEOVERS.labels(kind=kind)


_zeroed()
GC_PAUSES = Histogram(
    "presto_gc_pause_seconds",
    "How long each of Python's garbage collections stopped the process (every socket and job in "
    "it waits meanwhile); generation 2 is a full collection, which walks every object alive",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class _CollectionTimer:
    """Observes each collection's pause in ``GC_PAUSES``; one per process."""

    def __init__(self) -> None:
        self._by_generation = [GC_PAUSES.labels(generation=str(g)) for g in range(3)]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)


def time_garbage_collections() -> None:
    """From now on, observe how long each garbage collection of this process takes."""
    if not any(isinstance(callback, _CollectionTimer) for callback in gc.callbacks):
        gc.callbacks.append(_CollectionTimer())
