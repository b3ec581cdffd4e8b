"""Real PostgreSQL and Redis for the tests: a throw-away database and a Redis db of their own.

The servers are the ones named by ``PRESTO_TEST_DATABASE_URL`` and ``PRESTO_TEST_REDIS_URL``, else
the ones on the default ports of 127.0.0.1 (as in CI). When neither is given nor answers, the
embedded servers of ``presto-deck dev`` are started in a temporary directory for this test run
and stopped when it ends, so ``uv run pytest`` passes on a machine with neither installed.

``ADMIN_DATABASE_URL`` and ``TEST_REDIS_URL`` are looked up on first use (PEP 562), so a run that
needs no PostgreSQL never starts one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis

_DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
_TEST_REDIS_DB = 13
#: The e2e tests' Redis db (tests/e2e/conftest.py reads this variable when it is imported).
_E2E_REDIS_URL_VARIABLE = "PRESTO_TEST_E2E_REDIS_URL"
_E2E_REDIS_DB = 14


class _EmbeddedServers:
    """The embedded servers started for this run, stopped (and their files removed) at exit."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._root: Path | None = None
        self.database_url: str | None = None
        self.redis_url: str | None = None

    def postgres(self) -> str:
        if self.database_url is None:
            from presto_deck.infrastructure.embedded import embedded_postgres

            self.database_url = self._stack.enter_context(
                embedded_postgres(self._dir() / "postgres", durable=False)
            )
        return self.database_url

    def redis(self) -> str:
        if self.redis_url is None:
            from presto_deck.infrastructure.embedded import embedded_redis

            self.redis_url = self._stack.enter_context(
                embedded_redis(self._dir() / "redis", durable=False)
            )
        return self.redis_url

    def _dir(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="presto-test-servers-"))
            self._stack.callback(shutil.rmtree, self._root, ignore_errors=True)
            atexit.register(self._stack.close)
        return self._root


_embedded = _EmbeddedServers()
_resolved: dict[str, str] = {}


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def admin_database_url() -> str:
    """A superuser URL of the PostgreSQL the tests create their databases on."""
    if "database" not in _resolved:
        given = os.environ.get("PRESTO_TEST_DATABASE_URL")
        if given:
            _resolved["database"] = given
        elif _answers(5432):
            _resolved["database"] = _DEFAULT_DATABASE_URL
        else:
            _resolved["database"] = _embedded.postgres()
    return _resolved["database"]


def integration_redis_url() -> str:
    """The Redis db of the integration tests; also points the e2e tests at the same server."""
    if "redis" not in _resolved:
        given = os.environ.get("PRESTO_TEST_REDIS_URL")
        if given:
            _resolved["redis"] = given
        elif _answers(6379):
            _resolved["redis"] = f"{_DEFAULT_REDIS_URL}/{_TEST_REDIS_DB}"
        else:
            base = _embedded.redis().rpartition("/")[0]
            _resolved["redis"] = f"{base}/{_TEST_REDIS_DB}"
            os.environ.setdefault(_E2E_REDIS_URL_VARIABLE, f"{base}/{_E2E_REDIS_DB}")
    return _resolved["redis"]


def __getattr__(name: str) -> str:
    if name == "ADMIN_DATABASE_URL":
        return admin_database_url()
    if name == "TEST_REDIS_URL":
        return integration_redis_url()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@contextmanager
def temporary_database() -> Iterator[str]:
    """Create a migrated database for this test run and drop it afterwards."""
    admin_url = admin_database_url()
    name = f"presto_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(admin_url, name)
    try:
        _migrate(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> None:
    from alembic import command

    from presto_deck.infrastructure.db.migrations import alembic_config

    config = alembic_config(url.replace("postgresql://", "postgresql+psycopg://", 1))
    command.upgrade(config, "head")


def reset_database(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE decks, slides, deck_events, deck_edits")


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
