"""What a round trip to PostgreSQL costs a Python process here, the floor under the pipeline's
figure: transactions per second of ``BEGIN; SELECT 1 x3; COMMIT`` from one process, 10 at once,
through SQLAlchemy's async engine on psycopg (as the service talks to the database, with the
pool's pre-ping) and through psycopg alone.

    uv run python benchmarks/round_trips.py [--transactions 3000]

A slide step is six round trips (pre-ping, BEGIN, the deck locked, slides inserted, the deck and
its events written, COMMIT); a 10-slide deck about 36, plus about 9 to Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import psycopg
import sqlalchemy as sa
from scratch import ADMIN_URL, between, summary
from sqlalchemy.ext.asyncio import create_async_engine

CONCURRENCY = 10


async def through_sqlalchemy(transactions: int, *, pre_ping: bool) -> float:
    engine = create_async_engine(
        ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        pool_size=CONCURRENCY,
        pool_pre_ping=pre_ping,
    )
    select = sa.text("SELECT 1")

    async def some(count: int) -> None:
        for _ in range(count):
            async with engine.connect() as conn:
                await conn.begin()
                for _ in range(3):
                    await conn.execute(select)
                await conn.commit()

    try:
        await some(CONCURRENCY)  # the pool filled
        started = time.perf_counter()
        await asyncio.gather(*(some(transactions // CONCURRENCY) for _ in range(CONCURRENCY)))
        return transactions / (time.perf_counter() - started)
    finally:
        await engine.dispose()


async def through_psycopg(transactions: int) -> float:
    conns = [await psycopg.AsyncConnection.connect(ADMIN_URL) for _ in range(CONCURRENCY)]

    async def some(conn: psycopg.AsyncConnection[object], count: int) -> None:
        for _ in range(count):
            async with conn.transaction():
                for _ in range(3):
                    await conn.execute("SELECT 1")

    try:
        started = time.perf_counter()
        await asyncio.gather(*(some(conn, transactions // CONCURRENCY) for conn in conns))
        return transactions / (time.perf_counter() - started)
    finally:
        for conn in conns:
            await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=summary(__doc__))
    parser.add_argument("--transactions", type=between(10, 1_000_000), default=3000)
    args = parser.parse_args()
    pinged = await through_sqlalchemy(args.transactions, pre_ping=True)
    orm = await through_sqlalchemy(args.transactions, pre_ping=False)
    raw = await through_psycopg(args.transactions)
    print(f"SQLAlchemy async + psycopg, pre-ping (6 round trips): {pinged:7.0f} transactions/s")
    print(f"SQLAlchemy async + psycopg (5 round trips):           {orm:7.0f} transactions/s")
    print(f"psycopg alone (5 round trips):                        {raw:7.0f} transactions/s")


if __name__ == "__main__":
    asyncio.run(main())
