"""Whether a process can do its work: PostgreSQL reachable with the schema this version needs,
and Redis reachable; each problem named in words, with what to do about it."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from arq.connections import ArqRedis
from redis.exceptions import AuthenticationError, RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from presto_deck.infrastructure.db.migrations import schema_problem
from presto_deck.infrastructure.db.problems import describe_database_error

_CHECK_TIMEOUT_SECONDS = 2.0
OK = "ok"


class Readiness:
    def __init__(
        self, engine: AsyncEngine, redis: ArqRedis, *, database_url: str, redis_url: str
    ) -> None:
        self._engine = engine
        self._redis = redis
        self._database_url = database_url
        self._redis_url = redis_url

    async def check(self) -> dict[str, str]:
        """``{"database": …, "redis": …}``, each ``"ok"`` or what is wrong."""
        database, redis = await asyncio.gather(self._database(), self._redis_problem())
        return {"database": database or OK, "redis": redis or OK}

    async def _database(self) -> str | None:
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS), self._engine.connect() as db:
                return await schema_problem(db)
        except Exception as exc:
            return describe_database_error(exc, self._database_url)

    async def _redis_problem(self) -> str | None:
        where = urlsplit(self._redis_url).netloc.rpartition("@")[2] or self._redis_url
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS):
                await self._redis.ping()
        except TimeoutError:
            return f"Redis at {where} did not answer in time"
        except AuthenticationError:
            return f"Redis at {where} refused the credentials; fix PRESTO_REDIS_URL"
        except (RedisError, OSError) as exc:
            reason = str(exc).rstrip(".") or type(exc).__name__
            return f"no Redis answers at {where} ({reason}); start it or fix PRESTO_REDIS_URL"
        return None
