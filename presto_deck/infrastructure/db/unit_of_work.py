"""One transaction as one object: the repositories share its connection, and whatever the
database does wrong leaves it as the port's ``StorageError``."""

from __future__ import annotations

import contextlib
import re
from types import TracebackType
from typing import Self

import msgspec
import psycopg
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from presto_deck.application.ports import StorageError
from presto_deck.application.tracing import tracer
from presto_deck.infrastructure.db.repositories import (
    SqlDeckRepository,
    SqlEditRepository,
    SqlEventLog,
    SqlSlideRepository,
)

#: Failures that may pass when tried again: lost connections, a lock not granted within
#: ``lock_timeout``, a session ended by the server, a pool with no free connection (psycopg's own
#: errors where a statement goes through psycopg directly; its pool's timeout is one of them).
_TRANSIENT = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    OSError,
)
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
#: An undefined table or column: a database not migrated to this version.
_SCHEMA_MISSING = frozenset({"42P01", "42703"})
_DB_ATTRIBUTES = {"db.system.name": "postgresql"}
CONNECT_TIMEOUT_SECONDS = 10


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    lock_timeout_seconds: float = 5.0,
    idle_transaction_timeout_seconds: float = 10.0,
    pre_ping: bool = True,
) -> AsyncEngine:
    """An async engine (psycopg 3) that encodes JSONB with msgspec.

    No statement waits longer than ``lock_timeout_seconds`` for a lock, and the server ends a
    session that sits idle inside a transaction for ``idle_transaction_timeout_seconds``: a frozen
    process (SIGSTOP, a long pause) that holds a deck's row lock cannot block the others for long.

    With ``pre_ping`` a pooled connection is tested (a round trip) before each transaction, so
    that one the server dropped (a restart) is replaced unseen. Without it, the first transaction
    on a dropped connection fails as transient and the whole pool is renewed: for callers that
    try their transactions again anyway, it saves a round trip on every one.
    """
    options = session_options(lock_timeout_seconds, idle_transaction_timeout_seconds)
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_timeout=10,
        # A statement's parameters (prompts, slide text) never reach an error or a log line.
        hide_parameters=True,
        json_serializer=lambda value: msgspec.json.encode(value).decode(),
        json_deserializer=msgspec.json.decode,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": options},
    )


def session_options(lock_timeout_seconds: float, idle_transaction_timeout_seconds: float) -> str:
    """libpq's ``options`` for every session: ``create_engine`` says why."""
    return (
        f"-c lock_timeout={round(lock_timeout_seconds * 1000)}"
        f" -c idle_in_transaction_session_timeout={round(idle_transaction_timeout_seconds * 1000)}"
    )


class SqlUnitOfWork:
    decks: SqlDeckRepository
    slides: SqlSlideRepository
    events: SqlEventLog
    edits: SqlEditRepository

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._span: Span | None = None
        self._committed = False

    async def __aenter__(self) -> Self:
        self._span = transaction_span()
        try:
            self._conn = await self._engine.connect()
            await self._conn.begin()
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            await self._close()
            self._end_span(exc)
            raise storage_error(exc) from exc
        self.decks = SqlDeckRepository(self._conn)
        self.slides = SqlSlideRepository(self._conn)
        self.events = SqlEventLog(self._conn)
        self.edits = SqlEditRepository(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        failure = exc
        try:
            await self._conn.rollback()  # nothing left to roll back after a commit
        except (sa_exc.SQLAlchemyError, OSError) as rollback_error:
            failure = failure or rollback_error  # the first error is the one worth seeing
        finally:
            await self._close()
            self._end_span(failure)
        if isinstance(failure, sa_exc.SQLAlchemyError | OSError):
            raise storage_error(failure) from failure

    def _end_span(self, failure: BaseException | None) -> None:
        if self._span is not None:
            span, self._span = self._span, None
            end_transaction_span(span, committed=self._committed, failure=failure)

    async def commit(self) -> None:
        assert self._conn is not None
        await self._conn.commit()
        self._committed = True

    async def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(sa_exc.SQLAlchemyError, OSError):
                await conn.close()


def transaction_span() -> Span | None:
    """A transaction's span, when it is part of a deck's work. One with no trace (the sweep's, a
    health check's) would be a trace of its own every few seconds: it is not traced."""
    if not trace.get_current_span().is_recording():
        return None
    return tracer.start_span("db transaction", kind=SpanKind.CLIENT, attributes=_DB_ATTRIBUTES)


def end_transaction_span(span: Span, *, committed: bool, failure: BaseException | None) -> None:
    span.set_attribute("db.transaction.committed", committed)
    if failure is not None:
        span.set_status(StatusCode.ERROR, type(failure).__name__)
    span.end()


def storage_error(exc: BaseException) -> StorageError:
    """What SQLAlchemy or psycopg raised, as the port's error."""
    driver_error = exc if isinstance(exc, psycopg.Error) else getattr(exc, "orig", None)
    if getattr(driver_error, "sqlstate", None) in _SCHEMA_MISSING:
        # Not our bug but the operator's step: the service is unavailable until it is taken.
        return StorageError(
            "the database's schema is not this version's: run presto-deck migrate",
            transient=True,
        )
    transient = isinstance(exc, _TRANSIENT) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    )
    # SQLAlchemy's message goes on with the statement (its parameters hidden): keep the first
    # line, without the values PostgreSQL quotes in it (a prompt, a slide's text).
    first = next(iter(str(exc).splitlines()), "") or type(exc).__name__
    message = _QUOTED.sub("…", first)
    return StorageError(message, transient=transient)
