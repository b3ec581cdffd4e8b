"""The schema's migrations (Alembic): where they are, which revision is the latest, and which one
a database is at."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection

_PACKAGE = Path(__file__).resolve().parents[2]


def _scripts() -> Path:
    """The migrations: inside an installed package, or beside it in a source checkout."""
    inside = _PACKAGE / "migrations"
    return inside if inside.is_dir() else _PACKAGE.parent / "migrations"


def alembic_config(sqlalchemy_url: str) -> Config:
    """Alembic's configuration for the migrations (no ini file: the logs are ours)."""
    config = Config()
    config.set_main_option("script_location", str(_scripts()))
    config.attributes["sqlalchemy_url"] = sqlalchemy_url
    return config


@cache
def head_revision() -> str:
    """The latest revision: the one this version of the code needs."""
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


async def schema_problem(connection: AsyncConnection) -> str | None:
    """None if the database's schema is the one the code needs; else what to do about it."""
    exists = await connection.scalar(sa.text("SELECT to_regclass('alembic_version') IS NOT NULL"))
    if not exists:
        return "the database has no schema yet: run presto-deck migrate"
    current = await connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
    if current != head_revision():
        return (
            f"the schema is at revision {current}, this version needs {head_revision()}: "
            "run presto-deck migrate"
        )
    return None


def migrate_to_head(sqlalchemy_url: str, *, quiet: bool = False) -> tuple[str | None, str]:
    """Upgrade the database to the latest revision: (the revision before, the one after).
    ``quiet`` keeps Alembic's own progress lines out of the log (a person at a terminal gets
    one line instead)."""
    from alembic import command

    alembic_logger = logging.getLogger("alembic")
    level = alembic_logger.level
    if quiet:
        alembic_logger.setLevel(logging.WARNING)
    engine = sa.create_engine(sqlalchemy_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(alembic_config(sqlalchemy_url), "head")
    finally:
        engine.dispose()
        alembic_logger.setLevel(level)
    return before, head_revision()
