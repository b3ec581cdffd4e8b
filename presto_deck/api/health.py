"""Operational endpoints, without JWT: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from presto_deck.infrastructure.readiness import OK, Readiness


@get("/health/live", include_in_schema=False, sync_to_thread=False)
def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", include_in_schema=False)
async def ready(readiness: NamedDependency[Readiness]) -> Response[dict[str, str]]:
    """200 when PostgreSQL (with the schema this version needs) and Redis answer; else 503
    naming, for each, what is wrong and what to do."""
    checks = await readiness.check()
    healthy = all(value == OK for value in checks.values())
    return Response(
        {"status": "ok" if healthy else "unavailable", **checks},
        status_code=200 if healthy else HTTP_503_SERVICE_UNAVAILABLE,
    )


@get("/metrics", include_in_schema=False, media_type=MediaType.TEXT, sync_to_thread=False)
def metrics() -> Response[bytes]:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
