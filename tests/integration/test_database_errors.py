"""What the database says when a statement fails never carries the statement's values (a
user's prompt, a slide's text) into an error the service logs or answers with."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from presto_deck.application.ports import StorageError
from presto_deck.infrastructure.db.unit_of_work import SqlUnitOfWork, create_engine
from presto_deck.settings import Settings


async def test_a_failed_statement_keeps_its_values_to_itself(settings: Settings) -> None:
    engine = create_engine(settings.sqlalchemy_url)
    secret = "the board must not learn about the layoffs"
    try:
        with pytest.raises(sa.exc.DBAPIError) as raw:
            async with engine.connect() as connection:
                await connection.execute(
                    sa.text("SELECT CAST(:prompt AS integer)"), {"prompt": secret}
                )
        with pytest.raises(StorageError) as failed:
            async with SqlUnitOfWork(engine) as uow:  # as a repository's statement would fail
                await uow.decks._conn.execute(
                    sa.text("SELECT CAST(:prompt AS integer)"), {"prompt": secret}
                )
    finally:
        await engine.dispose()

    assert "[SQL parameters hidden due to hide_parameters=True]" in str(raw.value)
    assert secret not in str(failed.value)
    assert "invalid input syntax for type integer" in str(failed.value)
