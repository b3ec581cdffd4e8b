"""The arq worker: generation jobs, plus a sweep at start-up and every few seconds that requeues
decks whose worker died and relays events that were committed but never published."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from uuid import UUID

from arq import Worker, cron, func
from loguru import logger

from presto_deck.bootstrap import Container
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.redis_client import (
    connect,
    deserialize_job,
    serialize_job,
)

#: Long enough for a 30-slide deck on a slow model; a dead worker's job is freed by the sweep
#: (its lease lapses) long before this runs out.
_JOB_TIMEOUT_SECONDS = 3600


async def generate_deck(ctx: dict[str, Any], deck_id: str) -> None:
    container: Container = ctx["container"]
    with logger.contextualize(deck_id=deck_id):
        status = await container.generator.generate(UUID(deck_id))
        logger.info("generation job ended with the deck {}", status)


async def sweep(ctx: dict[str, Any]) -> None:
    container: Container = ctx["container"]
    report = await container.recovery.sweep()
    if report.requeued or report.relayed:
        logger.info("sweep requeued {} deck(s), relayed {} event(s)", *vars(report).values())


def build_worker(
    container: Container, *, handle_signals: bool = True, burst: bool = False
) -> Worker:
    settings = container.settings
    every = max(1, round(settings.worker_sweep_seconds))
    return Worker(
        functions=[func(generate_deck, name=keys.GENERATE_JOB)],
        cron_jobs=[
            cron(
                sweep,
                second=set(range(0, 60, every)),
                run_at_startup=True,
                unique=True,
                timeout=60,
            )
        ],
        # arq closes its pool when it stops, so it gets its own rather than the container's.
        redis_pool=connect(settings.redis_url),
        queue_name=keys.QUEUE,
        ctx={"container": container},
        handle_signals=handle_signals,
        burst=burst,
        max_jobs=settings.worker_max_jobs,
        job_timeout=_JOB_TIMEOUT_SECONDS,
        keep_result=0,
        poll_delay=0.1,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
        log_results=False,
    )


async def stop_gracefully(worker: Worker, task: asyncio.Task[Any], grace: float = 5.0) -> None:
    """Take no new job, give running ones ``grace`` seconds to finish, then cancel the rest.

    A cancelled generation loses nothing: its lease lapses and another worker continues it.
    """
    worker.burst = True
    worker.max_burst_jobs = 0  # arq's main loop then waits for running jobs and returns
    with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
        async with asyncio.timeout(grace):
            await asyncio.shield(task)
    await worker.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
