"""One trace per deck: its trace id is the deck id's 128 bits, so whoever holds a deck id can
open its trace, and every process that works on the deck adds its spans to that one trace.

The request that creates a deck starts the trace with its root span, whose span id is derived
from the deck id too: work on the deck that has no parent of its own to hang from (a replay to a
socket, an edit, a job queued again by the sweep) hangs from that root. Where a parent did
travel with the work (in a queued job, in a stream entry), the span is that parent's child.

This is OpenTelemetry's API only, which does nothing until a process installs an SDK; without
one, the spans still carry the deck's trace id, so the log lines written inside them do too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from uuid import UUID

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

tracer = trace.get_tracer("presto_deck")
_W3C = TraceContextTextMapPropagator()

_SPAN_ID_BITS = (1 << 64) - 1
#: The deck whose root span is being started, for the id generator of the SDK to read.
starting_root: ContextVar[UUID | None] = ContextVar("presto_deck_starting_root", default=None)


def trace_id_of(deck_id: UUID) -> int:
    return deck_id.int


def root_span_id_of(deck_id: UUID) -> int:
    """The span id of the deck's root span: the deck id's low 64 bits (never zero)."""
    return deck_id.int & _SPAN_ID_BITS or 1


def root_of(deck_id: UUID) -> SpanContext:
    """The deck's root span, as a parent for spans in another process: sampled if this
    process's sampler samples the deck's trace (a ratio sampler decides on the trace id, so
    every process decides alike)."""
    return SpanContext(
        trace_id=trace_id_of(deck_id),
        span_id=root_span_id_of(deck_id),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if _sampled(deck_id) else TraceFlags.DEFAULT),
    )


def _sampled(deck_id: UUID) -> bool:
    sampler = getattr(trace.get_tracer_provider(), "sampler", None)  # the SDK's; none without
    if sampler is None:
        return True
    return bool(sampler.should_sample(None, trace_id_of(deck_id), "deck").decision.is_sampled())


@contextlib.contextmanager
def deck_root_span(
    name: str, deck_id: UUID, attributes: Mapping[str, AttributeValue] | None = None
) -> Iterator[Span]:
    """Start the deck's trace: its root span, linked to the span of the request it came from."""
    links = _link_to_current()
    token = starting_root.set(deck_id)
    try:
        span = tracer.start_span(
            name, context=Context(), links=links, attributes=_attributes(deck_id, attributes)
        )
    finally:
        starting_root.reset(token)
    if not span.get_span_context().is_valid:  # no SDK: the deck's ids all the same, for logs
        span = NonRecordingSpan(root_of(deck_id))
    with trace.use_span(span, end_on_exit=True):
        yield span


@contextlib.contextmanager
def deck_span(
    name: str,
    deck_id: UUID,
    *,
    carrier: object = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
    start_time: int | None = None,
) -> Iterator[Span]:
    """A span in the deck's trace: the child of the parent ``carrier`` brought (a queued job's,
    a stream entry's), else of the current span if it is in the deck's trace, else of the
    deck's root span, linked to the current span of another trace (an HTTP request's).

    ``start_time`` (``time.time_ns()``) records work that already happened, once it is known to
    be worth a span."""
    parent, links = _parent_in(deck_id, carrier)
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        links=links,
        attributes=_attributes(deck_id, attributes),
        start_time=start_time,
    ) as span:
        yield span


def carrier_of_current() -> dict[str, str]:
    """The current span as a W3C ``traceparent``, to travel with work to another process;
    empty when nothing is being recorded. Only the trace context travels: no baggage a client
    sent, whatever OTEL_PROPAGATORS says."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().is_recording():
        _W3C.inject(carrier)
    return carrier


def _parent_in(deck_id: UUID, carrier: object) -> tuple[Context, list[Link]]:
    if isinstance(carrier, Mapping) and isinstance(carrier.get("traceparent"), str):
        brought = _W3C.extract({"traceparent": carrier["traceparent"]})
        if trace.get_current_span(brought).get_span_context().trace_id == trace_id_of(deck_id):
            return brought, []
    current = trace.get_current_span().get_span_context()
    if current.is_valid and current.trace_id == trace_id_of(deck_id):
        return trace.set_span_in_context(trace.get_current_span()), []
    return trace.set_span_in_context(NonRecordingSpan(root_of(deck_id))), _link_to_current()


def _link_to_current() -> list[Link]:
    current = trace.get_current_span().get_span_context()
    return [Link(current)] if current.is_valid else []


def _attributes(
    deck_id: UUID, attributes: Mapping[str, AttributeValue] | None
) -> dict[str, AttributeValue]:
    return {"deck.id": str(deck_id), **(attributes or {})}
