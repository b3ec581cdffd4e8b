"""Raw SQL against the container's engine, for tests that look at or tamper with the tables."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from presto_deck.bootstrap import Container
from presto_deck.settings import Settings


async def rows(container: Container, query: str, **params: Any) -> list[Any]:
    async with container.engine.connect() as conn:
        return list((await conn.execute(sa.text(query), params)).all())


async def execute(container: Container, query: str, **params: Any) -> None:
    async with container.engine.begin() as conn:
        await conn.execute(sa.text(query), params)


async def deck_row_of(settings: Settings, deck_id: str) -> Any:
    """The deck's row as it is in the database now (on a connection of its own)."""
    engine = create_async_engine(settings.sqlalchemy_url)
    try:
        async with engine.connect() as conn:
            query = sa.text("SELECT * FROM decks WHERE id = :id")
            return (await conn.execute(query, {"id": deck_id})).one()
    finally:
        await engine.dispose()
