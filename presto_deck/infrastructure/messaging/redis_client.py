"""The one Redis client a process uses: arq's (it is a redis.asyncio.Redis), with timeouts and
retries on connection errors."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def serialize_job(job: dict[str, Any]) -> bytes:
    return msgspec.msgpack.encode(job)


def deserialize_job(data: bytes) -> dict[str, Any]:
    job: dict[str, Any] = msgspec.msgpack.decode(data)
    return job


def connect(url: str) -> ArqRedis:
    """A lazily connecting client; the db number in the URL is honoured.

    It owns its pool: close it with ``aclose(close_connection_pool=True)``.
    """
    pool = ConnectionPool.from_url(
        url,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=Retry(EqualJitterBackoff(cap=2.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return ArqRedis(pool, job_serializer=serialize_job, job_deserializer=deserialize_job)


def honour_cancellation() -> None:
    """Re-raise a cancellation that redis-py swallowed; call it where a Redis error is caught.

    A cancel that races the read timeout of a Redis command can come back out of redis-py as
    its TimeoutError (asyncio.timeout on Python 3.11); a loop that waits out Redis errors would
    then carry on, and the process would never finish shutting down.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
