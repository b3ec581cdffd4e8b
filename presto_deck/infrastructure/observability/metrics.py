"""Prometheus metrics of this process (the API and the worker each expose their own)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OPEN_WEBSOCKETS = Gauge("presto_open_websockets", "WebSocket connections currently open")
EVENTS_DELIVERED = Counter(
    "presto_events_delivered_total", "Deck events sent to WebSocket clients", ["source"]
)
LLM_TOKENS = Counter("presto_llm_tokens_total", "LLM tokens used", ["model", "kind"])
