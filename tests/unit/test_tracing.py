"""Tracing is on only when spans have somewhere to go, speaks OTLP over HTTP as the standard
variables say, gives a deck's spans the deck's ids, and never holds up a process's exit.

A process has one global tracer provider, for good: what installs one runs in a child process
here, so that the rest of the suite keeps running untraced."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from loguru import logger
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from presto_deck.application.tracing import deck_span, root_span_id_of
from presto_deck.infrastructure.observability.logging import configure_logging
from presto_deck.infrastructure.observability.tracing import (
    check_otel_environment,
    install_tracing,
    redact_url_attributes,
)
from presto_deck.settings import SettingsError

#: One deck's life in miniature, in a process of its own: the root span, a child, the exit.
_ONE_DECK = textwrap.dedent(
    """
    import sys, uuid
    from presto_deck.application.tracing import deck_root_span, deck_span
    from presto_deck.infrastructure.observability.tracing import install_tracing

    tracing = install_tracing("presto-deck-api")
    assert tracing is not None
    deck_id = uuid.UUID(sys.argv[1])
    with deck_root_span("deck.create", deck_id):
        with deck_span("db transaction", deck_id):
            pass
    tracing.shutdown()
    """
)


@pytest.fixture(autouse=True)
def _no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def test_without_an_exporter_or_an_endpoint_nothing_is_installed() -> None:
    assert install_tracing("presto-deck-api") is None


def test_a_disabled_sdk_installs_nothing_even_with_an_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")

    assert install_tracing("presto-deck-api") is None


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
        ),
    ],
    ids=["unknown exporter", "grpc"],
)
def test_a_variable_this_version_cannot_honour_is_a_one_line_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError, match=named) as raised:
        install_tracing("presto-deck-api")
    assert "\n" not in str(raised.value)


def test_spans_go_over_otlp_http_protobuf_with_the_decks_ids_and_the_named_service() -> None:
    deck_id = uuid.uuid4()
    with _collector() as collector:
        _run(_ONE_DECK, str(deck_id), env=_otlp_to(collector, OTEL_SERVICE_NAME="acme-decks"))

    ((path, content_type, body),) = collector.requests
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    export = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = export.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "acme-decks"
    spans = {span.name: span for scope in resource_spans.scope_spans for span in scope.spans}
    root, child = spans["deck.create"], spans["db transaction"]
    assert root.trace_id == child.trace_id == deck_id.bytes
    assert int.from_bytes(root.span_id) == root_span_id_of(deck_id)
    assert not root.parent_span_id
    assert child.parent_span_id == root.span_id


def test_a_process_whose_collector_never_answers_still_exits_within_seconds() -> None:
    with _collector(answer=False) as collector:
        started = time.monotonic()
        _run(_ONE_DECK, str(uuid.uuid4()), env=_otlp_to(collector))
        took = time.monotonic() - started

    assert collector.requests  # it tried
    assert took < 8  # the interpreter's start, and the export given up after 2 s


def test_without_an_sdk_a_decks_log_lines_still_carry_its_trace_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    deck_id = uuid.uuid4()
    configure_logging("json", "INFO")
    try:
        with logger.contextualize(deck_id=str(deck_id)), deck_span("deck.slide", deck_id):
            logger.info("slide written")
    finally:
        logger.remove()
        logger.add(sys.stderr)

    (line,) = [json.loads(text) for text in capsys.readouterr().err.splitlines()]
    assert line["deck_id"] == str(deck_id)
    assert line["trace_id"] == deck_id.hex
    assert int(line["span_id"], 16) == root_span_id_of(deck_id)


class _Collector:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.requests: list[tuple[str, str, bytes]] = []


@contextlib.contextmanager
def _collector(*, answer: bool = True) -> Iterator[_Collector]:
    """An OTLP/HTTP endpoint that keeps what it is sent; or one that never answers."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.requests.append((self.path, self.headers["Content-Type"], body))
            if not answer:
                release.wait(30)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    received = _Collector(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def _otlp_to(collector: _Collector, **variables: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PRESTO_"))}
    return {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, **variables}


def _run(script: str, *args: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr


def test_a_token_in_a_requests_url_never_reaches_a_span() -> None:
    token = jwt.encode({"sub": "alice", "exp": 4102444800}, "k" * 32, algorithm="HS256")
    exported = InMemorySpanExporter()
    provider = TracerProvider()  # of this test only: the process's global one is left alone
    provider.add_span_processor(SimpleSpanProcessor(exported))
    url = f"http://127.0.0.1:8000/api/v1/decks?token={token}&limit=5"
    span = provider.get_tracer("test").start_span("GET /api/v1/decks")
    span.set_attributes({"http.url": url, "http.target": url[21:]})  # as the instrumentation does

    redact_url_attributes(span, {})
    span.end()

    (ended,) = exported.get_finished_spans()
    assert ended.attributes is not None
    for name in ("http.url", "http.target"):
        value = str(ended.attributes[name])
        assert token.rsplit(".", 1)[1] not in value
        assert "token=[redacted]" in value
        assert "limit=5" in value


#: Many decks' root spans under a ratio sampler, and whether each process would agree on them.
_SAMPLED_DECKS = textwrap.dedent(
    """
    import json, uuid
    from presto_deck.application.tracing import deck_root_span, root_of
    from presto_deck.infrastructure.observability.tracing import install_tracing

    tracing = install_tracing("presto-deck-api")
    decks = [uuid.uuid4() for _ in range(400)]
    for deck_id in decks:
        with deck_root_span("deck.create", deck_id):
            pass
    tracing.shutdown()
    agreed = {str(d): root_of(d).trace_flags.sampled for d in decks}
    print("AGREED " + json.dumps(agreed))
    """
)


def test_a_ratio_sampler_keeps_that_share_of_decks_and_every_process_agrees_on_which() -> None:
    env = _otlp_to(
        _Collector(1),  # unused: the spans go to the console
        OTEL_TRACES_EXPORTER="console",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.25",
    )
    done = subprocess.run(
        [sys.executable, "-c", _SAMPLED_DECKS], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr

    lines = done.stdout.splitlines()
    agreed = json.loads(next(line for line in lines if line.startswith("AGREED "))[7:])
    roots = {
        str(uuid.UUID(json.loads(line)["context"]["trace_id"][2:]))
        for line in lines
        if line.startswith("{")
    }
    assert 50 <= len(roots) <= 150  # a quarter of 400, give or take what chance gives
    assert roots == {deck for deck, sampled in agreed.items() if sampled}


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"OTEL_PROPAGATORS": "tracecontext,b3"}, "OTEL_PROPAGATORS=b3"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "api-key: s3cr3t"}, "OTEL_EXPORTER_OTLP_HEADERS"),
    ],
    ids=["propagator", "malformed headers"],
)
def test_variables_opentelemetry_would_refuse_with_a_traceback_are_refused_in_one_line(
    variables: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named) as raised:
        check_otel_environment(variables)
    assert "s3cr3t" not in str(raised.value)
