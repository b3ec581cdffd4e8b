"""What the benchmarks run on: a database of their own on the PostgreSQL of
PRESTO_BENCH_DATABASE_URL (dropped afterwards), and the Redis db of PRESTO_BENCH_REDIS_URL (db 12
by default, EMPTIED before and afterwards: give them a db nothing else uses), on 127.0.0.1 unless
told otherwise."""

from __future__ import annotations

import argparse
import contextlib
import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import redis

from presto_deck.infrastructure.db.migrations import migrate_to_head

ADMIN_URL = os.environ.get(
    "PRESTO_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PRESTO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def summary(doc: str | None) -> str:
    """A script's first paragraph, for its --help."""
    return " ".join((doc or "").split("\n\n")[0].split())


def between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not from {low} to {high}")
        return value

    return parse


@contextlib.contextmanager
def scratch_database(prefix: str, *, migrated: bool = True) -> Iterator[str]:
    """A new database's URL; ``migrated``: with this version's schema, and the Redis db empty
    before and after it."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        if migrated:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
    except (psycopg.Error, redis.RedisError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SystemExit(
            f"the benchmarks need PostgreSQL at PRESTO_BENCH_DATABASE_URL ({ADMIN_URL}) and Redis"
            f" at PRESTO_BENCH_REDIS_URL ({REDIS_URL}): {first}"
        ) from None
    url = f"{ADMIN_URL.rpartition('/')[0]}/{name}"
    try:
        if migrated:
            migrate_to_head(url.replace("postgresql://", "postgresql+psycopg://", 1), quiet=True)
            redis.Redis.from_url(REDIS_URL).flushdb()
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if migrated:
            redis.Redis.from_url(REDIS_URL).flushdb()
