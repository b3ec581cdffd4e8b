"""A generation run's steps, through psycopg directly.

After its first step, a run stores each of its steps (the plan, a batch of slides, the deck's
completion) by one statement that writes only if the deck is still as the run left it. They are
a worker's most frequent statements, and the cheapest for the database: through SQLAlchemy, the
unit of work around one cost the worker three times the CPU of the statement itself (the pooled
connection checked out and back, its isolation level set and reset, the execution context, the
greenlet hops). Here they go through a small psycopg pool of connections in autocommit, the
statement compiled once from its SQLAlchemy construct; every other transaction keeps the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from presto_deck.domain.deck import Deck, Slide
from presto_deck.infrastructure.db.repositories import SAVE_IF_UNCHANGED, step_parameters
from presto_deck.infrastructure.db.unit_of_work import (
    CONNECT_TIMEOUT_SECONDS,
    end_transaction_span,
    session_options,
    storage_error,
    transaction_span,
)

# The SQL as SQLAlchemy would send it through psycopg (its placeholders, its casts).
_COMPILED = SAVE_IF_UNCHANGED.compile(dialect=PGDialect_psycopg())  # type: ignore[no-untyped-call]
_SQL = str(_COMPILED)
#: The parameters that are JSON documents; psycopg is told so, and they are encoded by msgspec.
_JSON = frozenset(name for name, bind in _COMPILED.binds.items() if isinstance(bind.type, JSONB))
#: What these connections are called in ``pg_stat_activity``.
APPLICATION_NAME = "presto-deck steps"
#: How long a step waits for a connection of the pool before it fails and the run takes the
#: engine's way instead. Each step holds one for a millisecond or two: a longer wait means the
#: database is unreachable, and the engine's way says so at once.
_WAIT_SECONDS = 2.0


class PsycopgDeckSteps:
    """The ``DeckSteps`` on PostgreSQL: at most ``connections`` connections of its own, opened
    once the first step needs one."""

    def __init__(
        self,
        database_url: str,
        *,
        connections: int,
        lock_timeout_seconds: float,
        idle_transaction_timeout_seconds: float,
    ) -> None:
        self._pool = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=connections,
            kwargs={
                "autocommit": True,
                "application_name": APPLICATION_NAME,
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                "options": session_options(lock_timeout_seconds, idle_transaction_timeout_seconds),
            },
            open=False,
            name="deck-steps",
            timeout=_WAIT_SECONDS,
        )
        self._opened = False

    async def save_if_unchanged(
        self, deck: Deck, *, since: int, owner: str, slides: Sequence[Slide] = ()
    ) -> bool:
        parameters = _adapted(step_parameters(deck, since=since, owner=owner, slides=slides))
        span, stored, failure = transaction_span(), False, None
        try:
            if not self._opened:
                await self._pool.open()  # connects in the background; the first step waits
                self._opened = True
            conn = await self._pool.getconn()
            try:
                cursor = await conn.execute(_SQL, parameters, prepare=True)
                row = await cursor.fetchone()
            finally:  # one the server dropped, or left mid-statement, the pool replaces
                await self._pool.putconn(conn)
            stored = bool(row and row[0])
            return stored
        except (psycopg.Error, OSError) as exc:
            failure = exc
            raise storage_error(exc) from exc
        finally:
            if span is not None:
                end_transaction_span(span, committed=stored, failure=failure)

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()


def _adapted(parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        name: Jsonb(value, dumps=_json) if name in _JSON and value is not None else value
        for name, value in parameters.items()
    }


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)
