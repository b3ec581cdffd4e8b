"""What the benchmarks run on: a database of their own on the PostgreSQL of
PRESTO_BENCH_DATABASE_URL (dropped afterwards), and the Redis db of PRESTO_BENCH_REDIS_URL (db 12
by default, emptied afterwards), on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
import redis

from presto_deck.infrastructure.db.migrations import migrate_to_head

ADMIN_URL = os.environ.get(
    "PRESTO_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PRESTO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


@contextlib.contextmanager
def scratch_database(prefix: str, *, migrated: bool = True) -> Iterator[str]:
    """A new database's URL; ``migrated``: with this version's schema, and the Redis db empty
    before and after it."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
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
