"""Alembic environment: runs migrations on the database the settings name."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from presto_deck.infrastructure.db.tables import metadata

config = context.config
url = config.attributes.get("sqlalchemy_url") or config.get_main_option("sqlalchemy.url")
if not url:
    from presto_deck.settings import load_settings

    url = load_settings().sqlalchemy_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            # Two processes migrating at once (several containers starting) take turns.
            context.execute("SELECT pg_advisory_xact_lock(7261837461)")
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
