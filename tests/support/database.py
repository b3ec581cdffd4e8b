"""Raw SQL against the container's engine, for tests that look at or tamper with the tables."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from presto_deck.bootstrap import Container


async def rows(container: Container, query: str, **params: Any) -> list[Any]:
    async with container.engine.connect() as conn:
        return list((await conn.execute(sa.text(query), params)).all())


async def execute(container: Container, query: str, **params: Any) -> None:
    async with container.engine.begin() as conn:
        await conn.execute(sa.text(query), params)
