"""One transaction as one object: the repositories share its connection."""

from __future__ import annotations

from typing import Self

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from presto_deck.infrastructure.db.repositories import (
    SqlDeckRepository,
    SqlEventLog,
    SqlSlideRepository,
)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine (psycopg 3) that encodes JSONB with msgspec."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        json_serializer=lambda value: msgspec.json.encode(value).decode(),
        json_deserializer=msgspec.json.decode,
        connect_args={"connect_timeout": 10},
    )


class SqlUnitOfWork:
    decks: SqlDeckRepository
    slides: SqlSlideRepository
    events: SqlEventLog

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        self._conn = await self._engine.connect()
        await self._conn.begin()
        self.decks = SqlDeckRepository(self._conn)
        self.slides = SqlSlideRepository(self._conn)
        self.events = SqlEventLog(self._conn)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._conn is not None
        try:
            await self._conn.rollback()  # nothing left to roll back after a commit
        finally:
            await self._conn.close()
            self._conn = None

    async def commit(self) -> None:
        assert self._conn is not None
        await self._conn.commit()
