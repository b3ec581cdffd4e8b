"""The composition root: the one place that picks adapters and wires the use cases to them.

A process plays the API role, the worker role or both. Each role is built from the settings
here, and only what it uses: an API builds no writer (no LLM client), a worker no Pub/Sub.
The wiring of the use cases to their ports (``api_services``, ``worker_services``) is the same
for the real adapters and for the fakes of the unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from presto_deck.application.decks import DeckService
from presto_deck.application.editing import EditService, SlideEditor
from presto_deck.application.export import ExportService
from presto_deck.application.generation import DeckGenerator
from presto_deck.application.heads import DeckHeads
from presto_deck.application.limits import SocketAdmission
from presto_deck.application.ports import (
    CancelFlags,
    Clock,
    DeckExporter,
    DeckSteps,
    DeckWriter,
    EventPublisher,
    GenerationMeter,
    JobQueue,
    RateLimiter,
    SlideRenderer,
    SocketQuota,
    UnitOfWorkFactory,
)
from presto_deck.application.publishing import EventPublishing
from presto_deck.application.recovery import Recovery
from presto_deck.domain.events import utc_now
from presto_deck.domain.themes import ThemeBook
from presto_deck.infrastructure.db.steps import PsycopgDeckSteps
from presto_deck.infrastructure.db.unit_of_work import SqlUnitOfWork, create_engine
from presto_deck.infrastructure.export.html import HtmlExporter
from presto_deck.infrastructure.export.pdf import PdfExporter
from presto_deck.infrastructure.export.pptx import PptxExporter
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.limits import RedisRateLimiter, RedisSocketQuota
from presto_deck.infrastructure.messaging.live import LiveEvents
from presto_deck.infrastructure.messaging.queue import ArqJobQueue, RedisCancelFlags
from presto_deck.infrastructure.messaging.redis_client import connect
from presto_deck.infrastructure.messaging.stream import RedisStreamPublisher
from presto_deck.infrastructure.observability.instruments import (
    MeteredPublisher,
    MeteredRenderer,
    MeteredWriter,
    PriceTable,
    PrometheusGenerationMeter,
    token_counter,
)
from presto_deck.infrastructure.observability.tracing import Tracing, install_tracing
from presto_deck.infrastructure.readiness import Readiness
from presto_deck.infrastructure.themes import load_themes
from presto_deck.infrastructure.tokens import TokenVerifier
from presto_deck.infrastructure.writers.offline import OfflineWriter
from presto_deck.infrastructure.writers.rendering import ThemeRenderer
from presto_deck.settings import Settings, SettingsError

#: Refresh periods a socket's seat outlives: an instance killed with its sockets open holds
#: their seats this many heartbeat periods at most.
_SEAT_PERIODS = 3
#: The longest wait for each backing service to close its connections at shutdown.
_CLOSE_STEP_SECONDS = 2.0
#: Rounds of the writer's attempts an edit may spend, however many workers try it.
_EDIT_CALL_ROUNDS = 2
#: A worker marks the events it published in one transaction this often, not one per step.
_MARK_AFTER_SECONDS = 0.1
#: A worker's connections for its runs' steps, beside the engine's pool. A step is one short
#: statement: 20 decks written at once keep fewer than this busy.
_STEP_CONNECTIONS = 4


#: The service a process's spans are of, unless OTEL_SERVICE_NAME names another.
_SERVICE_NAMES = {
    "api": "presto-deck-api",
    "worker": "presto-deck-worker",
    "both": "presto-deck",
}


class Role(enum.Enum):
    API = "api"
    WORKER = "worker"
    BOTH = "both"

    @property
    def serves_api(self) -> bool:
        return self is not Role.WORKER

    @property
    def works(self) -> bool:
        return self is not Role.API


@dataclass(kw_only=True)
class Ports:
    """The adapters the use cases talk to: built from the settings here, fakes in unit tests."""

    uow: UnitOfWorkFactory
    steps: DeckSteps
    publisher: EventPublisher
    queue: JobQueue
    cancel_flags: CancelFlags
    renderer: SlideRenderer
    clock: Clock
    creations: RateLimiter
    theme_changes: RateLimiter
    export_rate: RateLimiter
    exporters: Mapping[str, DeckExporter]
    socket_quota: SocketQuota
    meter: GenerationMeter


@dataclass(kw_only=True)
class ApiServices:
    decks: DeckService
    #: The head version of each deck the process has sockets on, for their heartbeats.
    heads: DeckHeads
    edits: EditService
    exports: ExportService
    sockets: SocketAdmission


@dataclass(kw_only=True)
class WorkerServices:
    generator: DeckGenerator
    editor: SlideEditor
    recovery: Recovery
    worker_id: str
    #: Their publishing, whose batch of marks is flushed when the worker stops.
    publishing: EventPublishing


@dataclass(kw_only=True)
class ApiRole:
    services: ApiServices
    verifier: TokenVerifier
    live: LiveEvents


@dataclass(kw_only=True)
class WorkerRole:
    services: WorkerServices
    #: A connection pool for arq's own use: arq closes its pool when it stops.
    job_redis: Callable[[], ArqRedis]


def api_services(settings: Settings, ports: Ports) -> ApiServices:
    publishing = EventPublishing(ports.uow, ports.publisher, ports.clock)
    decks = DeckService(
        uow=ports.uow,
        queue=ports.queue,
        cancel_flags=ports.cancel_flags,
        publishing=publishing,
        clock=ports.clock,
        creations=ports.creations,
        max_active_decks=settings.limit_active_decks_per_user,
    )
    return ApiServices(
        decks=decks,
        # Read at most every second (more often with short heartbeats) for all sockets.
        heads=DeckHeads(
            decks.versions, max_age_seconds=min(1.0, settings.ws_heartbeat_seconds / 2)
        ),
        edits=EditService(
            uow=ports.uow,
            queue=ports.queue,
            publishing=publishing,
            renderer=ports.renderer,
            clock=ports.clock,
            max_queued_edits=settings.limit_queued_edits_per_deck,
            theme_changes=ports.theme_changes,
        ),
        exports=ExportService(
            uow=ports.uow,
            exporters=ports.exporters,
            rate=ports.export_rate,
            concurrency=settings.limit_concurrent_exports,
        ),
        # Seats refreshed on every heartbeat period, lapsing after three missed refreshes.
        sockets=SocketAdmission(ports.socket_quota, refresh_seconds=settings.ws_heartbeat_seconds),
    )


def worker_services(
    settings: Settings,
    ports: Ports,
    writer: DeckWriter,
    worker_id: str,
    *,
    mark_after_seconds: float = _MARK_AFTER_SECONDS,
) -> WorkerServices:
    publishing = EventPublishing(
        ports.uow, ports.publisher, ports.clock, mark_after_seconds=mark_after_seconds
    )
    return WorkerServices(
        generator=DeckGenerator(
            uow=ports.uow,
            steps=ports.steps,
            writer=writer,
            renderer=ports.renderer,
            publishing=publishing,
            cancel_flags=ports.cancel_flags,
            clock=ports.clock,
            worker_id=worker_id,
            lease_seconds=settings.worker_lease_seconds,
            max_model_calls=settings.llm_max_calls_per_deck,
            meter=ports.meter,
            slides_per_deck=settings.llm_concurrent_slides_per_deck,
            slide_slots=asyncio.Semaphore(settings.llm_concurrent_slides_per_worker),
        ),
        editor=SlideEditor(
            uow=ports.uow,
            writer=writer,
            renderer=ports.renderer,
            publishing=publishing,
            clock=ports.clock,
            worker_id=worker_id,
            lease_seconds=settings.worker_lease_seconds,
            # An edit is one slide: the writer's attempts, and as many again after a takeover.
            max_model_calls=_EDIT_CALL_ROUNDS * settings.llm_max_attempts,
        ),
        recovery=Recovery(
            uow=ports.uow,
            queue=ports.queue,
            publishing=publishing,
            clock=ports.clock,
            lease_seconds=settings.worker_lease_seconds,
        ),
        worker_id=worker_id,
        publishing=publishing,
    )


@dataclass(kw_only=True)
class Container:
    """Everything one process needs, built once from the settings for its role."""

    settings: Settings
    role: Role
    engine: AsyncEngine
    steps: PsycopgDeckSteps
    redis: ArqRedis
    themes: ThemeBook
    readiness: Readiness
    api: ApiRole | None = None
    worker: WorkerRole | None = None
    #: The OpenTelemetry SDK, when spans have somewhere to go.
    tracing: Tracing | None = None

    def api_role(self) -> ApiRole:
        if self.api is None:
            raise RuntimeError(f"this process was built for the {self.role.value} role")
        return self.api

    def worker_role(self) -> WorkerRole:
        if self.worker is None:
            raise RuntimeError(f"this process was built for the {self.role.value} role")
        return self.worker

    async def close(self) -> None:
        """Mark the last events published, close the connections and export the last spans;
        each step is bounded, as a backing service or the trace collector may be down."""
        if self.worker is not None:
            with contextlib.suppress(TimeoutError, Exception):
                async with asyncio.timeout(_CLOSE_STEP_SECONDS):
                    await self.worker.services.publishing.flush()
        for closing in (
            self.redis.aclose(close_connection_pool=True),
            self.engine.dispose(),
            self.steps.close(),
        ):
            with contextlib.suppress(TimeoutError, Exception):
                async with asyncio.timeout(_CLOSE_STEP_SECONDS):
                    await closing
        if self.tracing is not None:
            self.tracing.shutdown(_CLOSE_STEP_SECONDS)


def build_container(settings: Settings, role: Role = Role.BOTH) -> Container:
    themes = load_themes(settings.themes_dir)  # first: a bad theme file is a start-up error
    writer = build_writer(settings) if role.works else None  # then a model that cannot work
    tracing = install_tracing(_SERVICE_NAMES[role.value])  # then OTEL_* variables that cannot work
    engine = create_engine(
        settings.sqlalchemy_url,
        lock_timeout_seconds=settings.db_lock_timeout_seconds,
        idle_transaction_timeout_seconds=settings.db_idle_transaction_timeout_seconds,
        # A request must not fail for a connection the server dropped; a worker's transactions
        # are tried again anyway, and it makes many more of them.
        pre_ping=role.serves_api,
    )
    # A worker's connections for its most frequent statements (see steps.py): short ones, so a
    # few serve all the decks it writes at once.
    steps = PsycopgDeckSteps(
        settings.libpq_url,
        connections=_STEP_CONNECTIONS,
        lock_timeout_seconds=settings.db_lock_timeout_seconds,
        idle_transaction_timeout_seconds=settings.db_idle_transaction_timeout_seconds,
    )
    redis = connect(settings.redis_url)
    ports = build_ports(settings, engine, steps, redis, themes)
    container = Container(
        settings=settings,
        role=role,
        engine=engine,
        steps=steps,
        redis=redis,
        themes=themes,
        readiness=Readiness(
            engine, redis, database_url=settings.database_url, redis_url=settings.redis_url
        ),
        tracing=tracing,
    )
    if role.serves_api:
        container.api = ApiRole(
            services=api_services(settings, ports),
            verifier=TokenVerifier(settings),
            live=LiveEvents(settings, redis),
        )
    if writer is not None:
        worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        container.worker = WorkerRole(
            services=worker_services(
                settings, ports, MeteredWriter(writer, settings.llm_model), worker_id
            ),
            job_redis=functools.partial(connect, settings.redis_url),
        )
    return container


def build_ports(
    settings: Settings,
    engine: AsyncEngine,
    steps: DeckSteps,
    redis: ArqRedis,
    themes: ThemeBook,
) -> Ports:
    """The real adapters, on PostgreSQL and Redis."""

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine)

    return Ports(
        uow=uow,
        steps=steps,
        publisher=MeteredPublisher(RedisStreamPublisher(redis, settings.stream_maxlen)),
        queue=ArqJobQueue(redis),
        cancel_flags=RedisCancelFlags(redis),
        renderer=MeteredRenderer(ThemeRenderer(themes)),
        clock=utc_now,
        creations=RedisRateLimiter(redis, limit=settings.limit_deck_creations_per_minute),
        theme_changes=RedisRateLimiter(
            redis, limit=settings.limit_theme_changes_per_minute, log=keys.theme_change_log
        ),
        export_rate=RedisRateLimiter(
            redis, limit=settings.limit_exports_per_minute, log=keys.export_log
        ),
        exporters={
            "html": HtmlExporter(themes),
            "pdf": PdfExporter(themes),
            "pptx": PptxExporter(themes),
        },
        socket_quota=RedisSocketQuota(
            redis,
            per_user=settings.limit_sockets_per_user,
            total=settings.limit_sockets_total,
            seat_seconds=_SEAT_PERIODS * settings.ws_heartbeat_seconds,
        ),
        meter=PrometheusGenerationMeter(),
    )


def build_writer(settings: Settings) -> DeckWriter:
    """The offline writer, or a LangChain chat model named ``provider:model``."""
    if settings.llm_model == "offline":
        return OfflineWriter(slide_delay_ms=settings.offline_slide_delay_ms)
    from presto_deck.infrastructure.writers.langchain import LangChainWriter, TokenUsage

    count = token_counter(PriceTable.load())

    def count_tokens(usage: TokenUsage) -> None:
        count(usage.model, usage.input_tokens, usage.output_tokens)

    try:
        return LangChainWriter(
            model=settings.llm_model,
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key,
            timeout_seconds=settings.llm_timeout_seconds,
            max_attempts=settings.llm_max_attempts,
            structured_output=settings.llm_structured_output,
            on_usage=count_tokens,
        )
    except Exception as exc:  # building a client only reads configuration: it is the cause
        reason = next(iter(str(exc).splitlines()), "") or type(exc).__name__
        raise SettingsError(f"PRESTO_LLM_MODEL={settings.llm_model}: {reason}") from exc
