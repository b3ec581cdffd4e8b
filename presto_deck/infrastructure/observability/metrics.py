"""Prometheus metrics of this process (the API and the worker each expose their own)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OPEN_WEBSOCKETS = Gauge("presto_open_websockets", "WebSocket connections currently open")
EVENTS_DELIVERED = Counter(
    "presto_events_delivered_total", "Deck events sent to WebSocket clients", ["source"]
)
SLIDE_SECONDS = Histogram(
    "presto_slide_generation_seconds",
    "Time to write and render one slide",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
LLM_TOKENS = Counter("presto_llm_tokens_total", "LLM tokens used", ["model", "kind"])
ERRORS = Counter("presto_errors_total", "Errors by kind", ["kind"])
