"""``/health/ready`` tells the truth: 503, naming the cause and the fix, while PostgreSQL or Redis
cannot be reached or the schema is not the one this version needs."""

from __future__ import annotations

import httpx
import msgspec
import psycopg

from presto_deck.settings import Settings
from tests.support.running import running_api


async def _readiness(settings: Settings) -> httpx.Response:
    async with running_api(settings) as api, httpx.AsyncClient(base_url=api.url) as http:
        return await http.get("/health/ready")


async def test_an_unreachable_database_is_named_with_its_address(settings: Settings) -> None:
    unreachable = msgspec.structs.replace(
        settings, database_url="postgresql://postgres@127.0.0.1:9/presto"
    )

    answer = await _readiness(unreachable)

    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"
    assert answer.json()["database"] == (
        "no PostgreSQL answers at 127.0.0.1:9 (connection refused); start it or fix "
        "PRESTO_DATABASE_URL"
    )
    assert answer.json()["redis"] == "ok"


async def test_an_unreachable_redis_is_named_with_its_address(settings: Settings) -> None:
    unreachable = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:9/0")

    answer = await _readiness(unreachable)

    assert answer.status_code == 503
    assert answer.json()["database"] == "ok"
    assert answer.json()["redis"].startswith("no Redis answers at 127.0.0.1:9 (")
    assert answer.json()["redis"].endswith("start it or fix PRESTO_REDIS_URL")


async def test_a_schema_behind_the_code_asks_for_a_migration(settings: Settings) -> None:
    with psycopg.connect(settings.database_url, autocommit=True) as db:
        db.execute("UPDATE alembic_version SET version_num = '0002'")
    try:
        answer = await _readiness(settings)
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as db:
            db.execute("UPDATE alembic_version SET version_num = '0003'")

    assert answer.status_code == 503
    assert answer.json()["database"].startswith("the schema is at revision 0002, this version")
    assert answer.json()["database"].endswith("run presto-deck migrate")
