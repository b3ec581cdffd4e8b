"""Operational endpoints, without JWT: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from arq.connections import ArqRedis
from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

_CHECK_TIMEOUT_SECONDS = 2.0


@get("/health/live", include_in_schema=False, sync_to_thread=False)
def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", include_in_schema=False)
async def ready(
    engine: NamedDependency[AsyncEngine], redis: NamedDependency[ArqRedis]
) -> Response[dict[str, str]]:
    checks = {"database": "ok", "redis": "ok"}
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS):
            await redis.ping()
    except Exception as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return Response(
        {"status": "ok" if healthy else "unavailable", **checks},
        status_code=200 if healthy else HTTP_503_SERVICE_UNAVAILABLE,
    )


@get("/metrics", include_in_schema=False, media_type=MediaType.TEXT, sync_to_thread=False)
def metrics() -> Response[bytes]:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
