"""Real PostgreSQL and Redis for the tests: a throw-away database and a Redis db of their own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis

ADMIN_DATABASE_URL = os.environ.get(
    "PRESTO_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_REDIS_URL = os.environ.get("PRESTO_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@contextmanager
def temporary_database() -> Iterator[str]:
    """Create a migrated database for this test run and drop it afterwards."""
    name = f"presto_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DATABASE_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(ADMIN_DATABASE_URL, name)
    try:
        _migrate(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_DATABASE_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> None:
    from alembic import command

    from presto_deck.cli import migrations_config

    config = migrations_config(url.replace("postgresql://", "postgresql+psycopg://", 1))
    command.upgrade(config, "head")


def reset_database(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE decks, slides, deck_events")


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
