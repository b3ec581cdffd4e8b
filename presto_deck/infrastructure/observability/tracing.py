"""The OpenTelemetry SDK for this process, installed only when there is somewhere to send spans.

The standard variables decide, as the OpenTelemetry specification says: ``OTEL_TRACES_EXPORTER``
(``otlp``, ``console``, ``none``; a comma-separated list), the OTLP exporter's own
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, ``_HEADERS``, ``_TIMEOUT``…, ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*`` for the batching and
``OTEL_SDK_DISABLED``. One difference: with no exporter named, spans go over OTLP only if an
OTLP endpoint is set, and nowhere otherwise (no SDK, no cost) rather than to localhost.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from presto_deck.application.tracing import root_span_id_of, starting_root, trace_id_of
from presto_deck.infrastructure.observability.logging import redact
from presto_deck.settings import SettingsError

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
_EXPORTERS = ("otlp", "console", "none")
_URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.query")


class DeckIdGenerator(RandomIdGenerator):
    """Random ids, except for a deck's root span: its trace id and span id come from the deck."""

    def generate_trace_id(self) -> int:
        deck_id = starting_root.get()
        return trace_id_of(deck_id) if deck_id else super().generate_trace_id()

    def generate_span_id(self) -> int:
        deck_id = starting_root.get()
        return root_span_id_of(deck_id) if deck_id else super().generate_span_id()


class RedactingProcessor(SpanProcessor):
    """Takes tokens out of a span's URL attributes as it starts, as the logs do: a client may
    put one in a query string, and the HTTP instrumentation records the URL whole."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for name in _URL_ATTRIBUTES:
            value = (span.attributes or {}).get(name)
            if isinstance(value, str) and (redacted := redact(value)) != value:
                span.set_attribute(name, redacted)


class Tracing:
    """The installed SDK: flushed and shut down with the process, in a bounded time."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider

    def shutdown(self, timeout_seconds: float = 2.0) -> None:
        """Export what is still queued; a collector that does not answer delays the process's
        exit by ``timeout_seconds`` at most (the exporting thread is a daemon)."""
        closing = threading.Thread(target=self.provider.shutdown, name="otel-shutdown", daemon=True)
        closing.start()
        closing.join(timeout_seconds)


def install_tracing(default_service_name: str) -> Tracing | None:
    """Install the SDK as the global tracer provider if spans have somewhere to go."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = _exporters(env)
    if not exporters:
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    # Shut down by the process itself, bounded; not by an exit hook that may wait on a collector.
    provider = TracerProvider(
        resource=resource, id_generator=DeckIdGenerator(), shutdown_on_exit=False
    )
    provider.add_span_processor(RedactingProcessor())  # first: before any exporter sees the span
    for exporter in exporters:
        if isinstance(exporter, ConsoleSpanExporter):  # a person or a test reads it as it comes
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* apply
    trace.set_tracer_provider(provider)
    return Tracing(provider)


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    named = [name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    named = [name for name in named if name]
    if not named:
        named = ["otlp"] if any(env.get(name, "").strip() for name in _ENDPOINTS) else []
    unknown = sorted(set(named) - set(_EXPORTERS))
    if unknown:
        raise SettingsError(
            f"OTEL_TRACES_EXPORTER={','.join(unknown)}: expected {', '.join(_EXPORTERS)}"
        )
    exporters: list[SpanExporter] = []
    if "otlp" in named:
        exporters.append(_otlp_exporter(env))
    if "console" in named:
        exporters.append(ConsoleSpanExporter(out=sys.stdout, formatter=_one_line))
    return exporters


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    for name in _PROTOCOLS:
        protocol = env.get(name, "").strip()
        if protocol and protocol != "http/protobuf":
            raise SettingsError(f"{name}={protocol}: this version sends http/protobuf only")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: from OTEL_EXPORTER_OTLP_*


def _one_line(span: ReadableSpan) -> str:
    return f"{span.to_json(indent=None)}\n"
