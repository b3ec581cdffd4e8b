"""The OpenTelemetry SDK for this process, installed only when there is somewhere to send spans.

The standard variables decide, as the OpenTelemetry specification says: ``OTEL_TRACES_EXPORTER``
(``otlp``, ``console``, ``none``; a comma-separated list), the OTLP exporter's own
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, ``_HEADERS``, ``_TIMEOUT``…, ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*`` for the batching and
``OTEL_SDK_DISABLED``. One difference: with no exporter named, spans go over OTLP only if an
OTLP endpoint is set, and nowhere otherwise (no SDK, no cost) rather than to localhost.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Span

from presto_deck.application.tracing import root_span_id_of, starting_root, trace_id_of
from presto_deck.infrastructure.observability.logging import redact
from presto_deck.settings import SettingsError

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
_EXPORTERS = ("otlp", "console", "none")
_URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.query")
_PROPAGATORS = ("tracecontext", "baggage", "none")
_HEADERS = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")


class DeckIdGenerator(RandomIdGenerator):
    """Random ids, except for a deck's root span: its trace id and span id come from the deck."""

    def generate_trace_id(self) -> int:
        deck_id = starting_root.get()
        return trace_id_of(deck_id) if deck_id else super().generate_trace_id()

    def generate_span_id(self) -> int:
        deck_id = starting_root.get()
        return root_span_id_of(deck_id) if deck_id else super().generate_span_id()


def redact_url_attributes(span: Span, scope: dict[str, Any]) -> None:
    """Take tokens out of a server span's URL attributes, as the logs do: a client may put one
    in a query string, and the HTTP instrumentation records the URL whole (called by it once it
    has set them)."""
    attributes = getattr(span, "attributes", None) or {}
    for name in _URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and (redacted := redact(value)) != value:
            span.set_attribute(name, redacted)


class RandomBitsRatio(TraceIdRatioBased):
    """``traceidratio`` on the trace id's low 62 bits: a deck's trace id is its UUID, whose two
    bits above those are always ``10`` (the variant), which would skew the standard sampler to
    keep every deck or none."""

    TRACE_ID_LIMIT = (1 << 62) - 1


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
    try:
        # Shut down by the process itself, bounded; not by an exit hook that may wait on a
        # collector. The batches are written from a thread of their own, the console's too.
        provider = TracerProvider(
            resource=resource,
            id_generator=DeckIdGenerator(),
            sampler=_sampler(env),
            shutdown_on_exit=False,
        )
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* apply
    except ValueError as exc:  # the SDK's reading of OTEL_BSP_*, OTEL_*_LIMIT and the like
        raise SettingsError(f"an OTEL_* variable cannot be used: {exc}") from None
    _quiet_sdk_loggers()
    trace.set_tracer_provider(provider)
    return Tracing(provider)


def check_otel_environment(env: Mapping[str, str] | None = None) -> None:
    """Refuse, in one line, what OpenTelemetry would refuse with a traceback when it is imported."""
    env = os.environ if env is None else env
    named = [p.strip() for p in env.get("OTEL_PROPAGATORS", "").split(",") if p.strip()]
    if unknown := sorted(set(named) - set(_PROPAGATORS)):
        raise SettingsError(
            f"OTEL_PROPAGATORS={','.join(unknown)}: expected {', '.join(_PROPAGATORS)}"
        )
    for name in _HEADERS:
        for item in filter(None, (i.strip() for i in env.get(name, "").split(","))):
            if "=" not in item or not item.partition("=")[0].strip():
                # Not the value: it holds an API key.
                raise SettingsError(f"{name}: expected key=value pairs separated by commas")


def _sampler(env: Mapping[str, str]) -> Sampler | None:
    """The ratio samplers on the bits of a trace id that are random; the others as the SDK
    reads them from OTEL_TRACES_SAMPLER (None: the SDK decides)."""
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if name not in ("traceidratio", "parentbased_traceidratio"):
        return None
    argument = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0").strip() or "1.0"
    try:
        rate = float(argument)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise SettingsError(f"OTEL_TRACES_SAMPLER_ARG={argument}: expected a ratio from 0 to 1")
    ratio = RandomBitsRatio(rate)
    return ParentBased(ratio) if name.startswith("parentbased") else ratio


def _quiet_sdk_loggers() -> None:
    """A malformed trace header a client sends is logged by the SDK at WARNING, whole (a
    client's way to flood the log); a collector that does not answer, at every retry. What is
    left: the batches that are dropped."""
    for name in (
        "opentelemetry.baggage",
        "opentelemetry.trace.propagation",
        "opentelemetry.propagators",
        "opentelemetry.exporter.otlp.proto.http",
        "opentelemetry.exporter.http_transport",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)


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
