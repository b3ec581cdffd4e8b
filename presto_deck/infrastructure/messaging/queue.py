"""The arq job queue and the Redis cancellation flags."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from presto_deck.application.tracing import carrier_of_current
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.redis_client import honour_cancellation

_CANCEL_FLAG_TTL_SECONDS = 24 * 3600


class ArqJobQueue:
    def __init__(self, redis: ArqRedis) -> None:
        self._redis = redis

    async def enqueue_generation(self, deck_id: UUID) -> None:
        await self._redis.enqueue_job(
            keys.GENERATE_JOB,
            str(deck_id),
            **_trace(),
            _job_id=keys.generation_job_id(deck_id),
            _queue_name=keys.QUEUE,
        )

    async def requeue_generation(self, deck_id: UUID) -> None:
        # arq keeps a dead worker's job "in progress" until its job timeout runs out; the deck's
        # lapsed lease in PostgreSQL already proves that worker dead, so free the job now.
        await self._redis.delete(in_progress_key_prefix + keys.generation_job_id(deck_id))
        await self.enqueue_generation(deck_id)

    async def enqueue_edit(self, deck_id: UUID, edit_id: UUID) -> None:
        await self._redis.enqueue_job(
            keys.EDIT_JOB,
            str(deck_id),
            str(edit_id),
            **_trace(),
            _job_id=keys.edit_job_id(edit_id),
            _queue_name=keys.QUEUE,
        )

    async def requeue_edit(self, deck_id: UUID, edit_id: UUID) -> None:
        await self._redis.delete(in_progress_key_prefix + keys.edit_job_id(edit_id))
        await self.enqueue_edit(deck_id, edit_id)


def _trace() -> dict[str, Any]:
    """The job's ``trace`` argument: the enqueuing span, for the job's span to be its child."""
    carrier = carrier_of_current()
    return {"trace": carrier} if carrier else {}


class RedisCancelFlags:
    def __init__(self, redis: ArqRedis) -> None:
        self._redis = redis

    async def request(self, deck_id: UUID) -> None:
        await self._redis.set(keys.cancel_flag(deck_id), b"1", ex=_CANCEL_FLAG_TTL_SECONDS)

    async def is_requested(self, deck_id: UUID) -> bool:
        try:
            return bool(await self._redis.exists(keys.cancel_flag(deck_id)))
        finally:
            honour_cancellation()  # a cancel that redis-py swallowed (an error, or a retry)
