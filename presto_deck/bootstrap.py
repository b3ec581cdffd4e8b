"""The composition root: the one place that picks adapters and wires the use cases to them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from dataclasses import dataclass, field

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from presto_deck.api.auth import TokenVerifier
from presto_deck.application.decks import DeckService
from presto_deck.application.editing import EditService, SlideEditor
from presto_deck.application.export import ExportService
from presto_deck.application.generation import DeckGenerator
from presto_deck.application.limits import SocketAdmission
from presto_deck.application.ports import DeckWriter
from presto_deck.application.publishing import EventPublishing
from presto_deck.application.recovery import Recovery
from presto_deck.domain.events import utc_now
from presto_deck.domain.themes import ThemeBook
from presto_deck.infrastructure.db.unit_of_work import SqlUnitOfWork, create_engine
from presto_deck.infrastructure.export.html import HtmlExporter
from presto_deck.infrastructure.export.pdf import PdfExporter
from presto_deck.infrastructure.export.pptx import PptxExporter
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.limits import RedisRateLimiter, RedisSocketQuota
from presto_deck.infrastructure.messaging.queue import ArqJobQueue, RedisCancelFlags
from presto_deck.infrastructure.messaging.redis_client import connect
from presto_deck.infrastructure.messaging.stream import RedisStreamPublisher
from presto_deck.infrastructure.observability.instruments import (
    MeteredPublisher,
    MeteredWriter,
    PriceTable,
    token_counter,
)
from presto_deck.infrastructure.readiness import Readiness
from presto_deck.infrastructure.themes import load_themes
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


@dataclass(kw_only=True)
class Container:
    """Everything one process needs, built once from the settings."""

    settings: Settings
    engine: AsyncEngine
    redis: ArqRedis
    decks: DeckService
    generator: DeckGenerator
    edits: EditService
    editor: SlideEditor
    exports: ExportService
    themes: ThemeBook
    recovery: Recovery
    verifier: TokenVerifier
    sockets: SocketAdmission
    readiness: Readiness
    worker_id: str = field(default="")

    async def close(self) -> None:
        """Close the connections; each step is bounded, as a backing service may be down."""
        for closing in (self.redis.aclose(close_connection_pool=True), self.engine.dispose()):
            with contextlib.suppress(TimeoutError, Exception):
                async with asyncio.timeout(_CLOSE_STEP_SECONDS):
                    await closing


def build_container(settings: Settings) -> Container:
    themes = load_themes(settings.themes_dir)  # first: a bad theme file is a start-up error
    engine = create_engine(
        settings.sqlalchemy_url,
        lock_timeout_seconds=settings.db_lock_timeout_seconds,
        idle_transaction_timeout_seconds=settings.db_idle_transaction_timeout_seconds,
    )
    redis = connect(settings.redis_url)

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine)

    publisher = MeteredPublisher(RedisStreamPublisher(redis, settings.stream_maxlen))
    publishing = EventPublishing(uow, publisher, utc_now)
    queue = ArqJobQueue(redis)
    cancel_flags = RedisCancelFlags(redis)
    worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    writer = MeteredWriter(build_writer(settings), settings.llm_model)
    renderer = ThemeRenderer(themes)
    return Container(
        settings=settings,
        engine=engine,
        redis=redis,
        decks=DeckService(
            uow=uow,
            queue=queue,
            cancel_flags=cancel_flags,
            publishing=publishing,
            clock=utc_now,
            creations=RedisRateLimiter(redis, limit=settings.limit_deck_creations_per_minute),
            max_active_decks=settings.limit_active_decks_per_user,
        ),
        generator=DeckGenerator(
            uow=uow,
            writer=writer,
            renderer=renderer,
            publishing=publishing,
            cancel_flags=cancel_flags,
            clock=utc_now,
            worker_id=worker_id,
            lease_seconds=settings.worker_lease_seconds,
            max_model_calls=settings.llm_max_calls_per_deck,
        ),
        edits=EditService(
            uow=uow,
            queue=queue,
            publishing=publishing,
            renderer=renderer,
            clock=utc_now,
            max_queued_edits=settings.limit_queued_edits_per_deck,
            theme_changes=RedisRateLimiter(
                redis, limit=settings.limit_theme_changes_per_minute, log=keys.theme_change_log
            ),
        ),
        editor=SlideEditor(
            uow=uow,
            writer=writer,
            renderer=renderer,
            publishing=publishing,
            clock=utc_now,
            worker_id=worker_id,
            lease_seconds=settings.worker_lease_seconds,
            # An edit is one slide: the writer's attempts, and as many again after a takeover.
            max_model_calls=_EDIT_CALL_ROUNDS * settings.llm_max_attempts,
        ),
        exports=ExportService(
            uow=uow,
            exporters={
                "html": HtmlExporter(themes),
                "pdf": PdfExporter(themes),
                "pptx": PptxExporter(themes),
            },
            rate=RedisRateLimiter(
                redis, limit=settings.limit_exports_per_minute, log=keys.export_log
            ),
            concurrency=settings.limit_concurrent_exports,
        ),
        themes=themes,
        recovery=Recovery(
            uow=uow,
            queue=queue,
            publishing=publishing,
            clock=utc_now,
            lease_seconds=settings.worker_lease_seconds,
        ),
        verifier=TokenVerifier(settings),
        sockets=_socket_admission(settings, redis),
        readiness=Readiness(
            engine, redis, database_url=settings.database_url, redis_url=settings.redis_url
        ),
        worker_id=worker_id,
    )


def _socket_admission(settings: Settings, redis: ArqRedis) -> SocketAdmission:
    """Seats refreshed on every heartbeat period, lapsing after three missed refreshes."""
    quota = RedisSocketQuota(
        redis,
        per_user=settings.limit_sockets_per_user,
        total=settings.limit_sockets_total,
        seat_seconds=_SEAT_PERIODS * settings.ws_heartbeat_seconds,
    )
    return SocketAdmission(quota, refresh_seconds=settings.ws_heartbeat_seconds)


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
