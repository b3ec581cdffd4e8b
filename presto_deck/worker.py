"""The worker role: arq runs the generation jobs; beside it, outside arq's job slots, a sweep
requeues decks whose worker died and relays events committed but never published.

Both ride out outages of Redis and PostgreSQL: they log one line, wait with backoff and carry
on, so that a restarted Redis never leaves a worker process dead and its decks stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import io
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from arq import Worker, func
from loguru import logger
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue
from redis.exceptions import RedisError

from presto_deck.application.tracing import deck_span
from presto_deck.bootstrap import Container, WorkerServices
from presto_deck.domain.events import utc_now
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.redis_client import (
    deserialize_job,
    honour_cancellation,
    serialize_job,
)
from presto_deck.infrastructure.observability.metrics import (
    DECKS_ACTIVE,
    EVENTS_RELAYED,
    JOB_SECONDS,
    OLDEST_ACTIVE_DECK,
    OUTBOX_BACKLOG,
    QUEUE_WAIT,
    SWEEP_TAKEOVERS,
)

#: Long enough for a 30-slide deck on a slow model; a dead worker's job is freed by the sweep
#: (its lease lapses) long before this runs out.
_JOB_TIMEOUT_SECONDS = 3600
#: Pauses between tries while Redis is unreachable: from the first to the longest.
_FIRST_BACKOFF_SECONDS = 0.2
_MAX_BACKOFF_SECONDS = 5.0
#: What an unreachable or restarting Redis raises (redis-py wraps most of it; not all of it).
_OUTAGE = (RedisError, OSError)
_CLOSE_SECONDS = 2.0
#: Exit status of a worker whose shutdown overran its deadline (EX_SOFTWARE).
OVERDUE_EXIT_STATUS = 70


async def generate_deck(
    ctx: dict[str, Any], deck_id: str, trace: dict[str, str] | None = None
) -> None:
    """Generate the deck; ``trace`` is the span that queued the job, in the deck's trace."""
    services: WorkerServices = ctx["services"]
    with _job_run(ctx, keys.GENERATE_JOB, "job generate", deck_id, trace) as deck:
        status = await services.generator.generate(deck)
        if status is None:  # the run said why it stopped (another run holds the deck, ...)
            logger.info("generation job ended without a say on the deck")
        else:
            logger.info("generation job ended with the deck {}", status.value)


async def edit_deck(
    ctx: dict[str, Any], deck_id: str, edit_id: str, trace: dict[str, str] | None = None
) -> None:
    """Apply the deck's queued edits, the one this job was queued for among them."""
    services: WorkerServices = ctx["services"]
    with _job_run(ctx, keys.EDIT_JOB, "job edit", deck_id, trace) as deck:
        handled = await services.editor.run(deck)
        logger.info("edit job for {} ended after {} edit(s)", edit_id, handled)


@contextlib.contextmanager
def _job_run(
    ctx: dict[str, Any], job: str, span: str, deck_id: str, trace: object
) -> Iterator[UUID]:
    """What every job runs in: its deck's log context, its span in the deck's trace (the child
    of the span that queued it, if ``trace`` brought one), and its measures."""
    # Its start (above 1: it runs again after its worker died), for whoever reads the span.
    attributes: dict[str, AttributeValue] = {
        "job.id": str(ctx.get("job_id", "")),
        "job.try": int(ctx.get("job_try", 1)),
    }
    deck = UUID(deck_id)
    with (
        logger.contextualize(deck_id=deck_id),
        deck_span(span, deck, carrier=trace, kind=SpanKind.CONSUMER, attributes=attributes),
        _measured(ctx, job),
    ):
        yield deck


@contextlib.contextmanager
def _measured(ctx: dict[str, Any], job: str) -> Iterator[None]:
    """The job's wait in the queue (arq's enqueue time to now) and its own time."""
    enqueued, tries = ctx.get("enqueue_time"), ctx.get("job_try", 1)
    if tries != 1:  # started again after its worker died: its wait was that worker's run
        logger.info("{} job started again (start {})", job, tries)
    elif isinstance(enqueued, datetime):
        waited = max(0.0, (utc_now() - enqueued).total_seconds())
        QUEUE_WAIT.labels(job=job).observe(waited)
        logger.info("{} job started after {:.2f}s in the queue", job, waited)
    started = time.perf_counter()
    try:
        yield
    finally:
        JOB_SECONDS.labels(job=job).observe(time.perf_counter() - started)


class DeckWorker:
    """One process's worker: arq's job loop and the sweep, started and stopped together."""

    def __init__(self, container: Container, *, handle_signals: bool = True) -> None:
        settings = container.settings
        role = container.worker_role()
        self._recovery = role.services.recovery
        self._redis = container.redis
        self._sweep_seconds = settings.worker_sweep_seconds
        self.arq = _ResilientWorker(
            functions=[
                func(generate_deck, name=keys.GENERATE_JOB),
                func(edit_deck, name=keys.EDIT_JOB),
            ],
            redis_pool=role.job_redis(),
            queue_name=keys.QUEUE,
            ctx={"services": role.services},
            handle_signals=handle_signals,
            max_jobs=settings.worker_max_jobs,
            job_timeout=_JOB_TIMEOUT_SECONDS,
            keep_result=0,
            poll_delay=0.1,
            job_serializer=serialize_job,
            job_deserializer=deserialize_job,
            log_results=False,
        )

    async def run(self) -> None:
        """Run jobs and sweeps until arq stops (a signal, or ``stop``)."""
        sweeper = asyncio.create_task(self._sweep_forever(), name="sweep")
        try:
            await self.arq.async_run()
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def stop(self, task: asyncio.Task[Any], grace: float = 5.0) -> None:
        """Take no new job, give running ones ``grace`` seconds to finish, then cancel the rest.

        A cancelled generation loses nothing: its lease lapses and another worker continues it.
        """
        self.arq.burst = True
        self.arq.max_burst_jobs = 0  # arq's main loop then waits for running jobs and returns
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            async with asyncio.timeout(grace):
                await asyncio.shield(task)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await self.close()

    def exit_within(self, seconds: float) -> None:
        """Once the worker is told to stop, make sure the process is gone ``seconds`` later.

        Every step of the shutdown is bounded, but a bug or a library that swallows a
        cancellation must not leave a process that ignores SIGTERM until a supervisor kills it
        blindly: past the deadline, the tasks still running are logged, then the process exits.
        """
        loop = asyncio.get_running_loop()

        def overdue() -> None:
            logger.error(
                "shutdown not done after {:g}s, exiting; still running:\n{}",
                seconds,
                _task_stacks(loop),
            )
            faulthandler.dump_traceback(all_threads=True)
            os._exit(OVERDUE_EXIT_STATUS)

        def arm(_signal: object) -> None:
            deadline = threading.Timer(seconds, overdue)
            deadline.daemon = True
            deadline.start()

        self.arq.on_stop = arm

    async def close(self) -> None:
        """Close arq's connections, in a bounded time: Redis may be down. (The events its jobs
        published are marked when the container closes.)"""
        with contextlib.suppress(TimeoutError, *_OUTAGE):
            async with asyncio.timeout(_CLOSE_SECONDS):
                await self.arq.close()

    async def _sweep_forever(self) -> None:
        failing = False
        while True:
            try:
                # Every worker counts the active decks, so that none shows a stale figure; one
                # sweeps, and the others say that they relayed nothing this period.
                census = await self._recovery.census()
                DECKS_ACTIVE.set(census.active)
                OLDEST_ACTIVE_DECK.set(census.oldest_seconds)
                OUTBOX_BACKLOG.set(0)
                if await self._may_sweep():
                    report = await self._recovery.sweep()
                    SWEEP_TAKEOVERS.labels(kind="deck").inc(report.requeued)
                    SWEEP_TAKEOVERS.labels(kind="edit").inc(report.requeued_edits)
                    EVENTS_RELAYED.inc(report.relayed)
                    OUTBOX_BACKLOG.set(report.relayed)
                    if report.requeued or report.requeued_edits or report.relayed:
                        logger.info(
                            "sweep requeued {} deck(s) and {} edit(s), relayed {} event(s)",
                            report.requeued,
                            report.requeued_edits,
                            report.relayed,
                        )
                if failing:
                    logger.info("the sweep works again")
                failing = False
            except Exception as exc:  # the next round tries again; a dead sweep would be worse
                honour_cancellation()
                if not failing:  # once a run of failures, not every period
                    logger.warning("sweep failed, trying every {:g}s: {}", self._sweep_seconds, exc)
                failing = True
            await asyncio.sleep(self._sweep_seconds)

    async def _may_sweep(self) -> bool:
        """One sweep per period across all workers: whoever sets the key first."""
        claimed = await self._redis.set(
            keys.SWEEP_LOCK, b"1", nx=True, px=max(round(self._sweep_seconds * 900), 1)
        )
        return bool(claimed)


def _task_stacks(loop: asyncio.AbstractEventLoop) -> str:
    """What each task of ``loop`` is waiting on (read from another thread: best effort)."""
    out = io.StringIO()
    try:
        for task in asyncio.all_tasks(loop):
            task.print_stack(limit=8, file=out)
    except RuntimeError as exc:  # the loop changed the set of tasks while it was read
        out.write(f"(tasks could not be listed: {exc})")
    return out.getvalue()


_ARQ_LOG = logging.getLogger("arq.worker")


@contextlib.contextmanager
def _about_its_deck(job_id: str) -> Iterator[None]:
    """arq's own lines about a generation job carry its deck's id (and so its trace), as ours do."""
    deck_id = keys.deck_of_job(job_id)
    if deck_id is None:
        yield
        return
    with logger.contextualize(deck_id=str(deck_id)):
        yield


class _WithoutJobArguments(logging.Filter):
    """arq's line at a job's start shows its arguments (the trace context among them): the
    job's own first line says what matters instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("%6.2fs → "))


class _AnnouncedOnce(logging.Filter):
    """arq announces the worker's start each time it starts; after an outage once is enough."""

    def __init__(self) -> None:
        super().__init__()
        self.starting_again = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.starting_again and record.getMessage().startswith("Starting worker"))


class _ResilientWorker(Worker):
    """arq's worker, which would exit on the first Redis error of its poll loop.

    Here a poll that fails waits with backoff and polls again, a job whose start or end cannot be
    recorded in Redis is logged (the deck's lease in PostgreSQL decides what happens to it), and
    a slot that arq counted for a job it then failed to start is given back.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._backoff = 0.0

    async def main(self) -> None:
        again, quiet = _AnnouncedOnce(), _WithoutJobArguments()
        _ARQ_LOG.addFilter(again)
        _ARQ_LOG.addFilter(quiet)
        try:
            while True:
                try:
                    await super().main()
                    return
                except _OUTAGE as exc:  # at start-up: arq reads Redis's info before it polls
                    again.starting_again = True
                    await self._wait_out(exc)
        finally:
            _ARQ_LOG.removeFilter(again)
            _ARQ_LOG.removeFilter(quiet)

    def handle_sig(self, signum: signal.Signals) -> None:
        if signum != signal.SIGUSR1:
            super().handle_sig(signum)
            return
        # arq's close() passes itself SIGUSR1 where the process's signals are not arq's (an
        # in-process worker): not a signal anyone sent, so not announced as one.
        level = _ARQ_LOG.level
        _ARQ_LOG.setLevel(logging.WARNING)
        try:
            super().handle_sig(signum)
        finally:
            _ARQ_LOG.setLevel(level)

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except _OUTAGE as exc:
            await self._wait_out(exc)
            return
        if self._backoff:
            logger.info("Redis is back; the worker polls for jobs again")
            self._backoff = 0.0

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # The sweep frees the job of a deck whose lease lapsed; if this worker still runs it (a
        # renewal that failed), arq would start it again beside itself and lose track of both.
        job_ids = [job_id for job_id in job_ids if not self._still_running(job_id.decode())]
        try:
            await super().start_jobs(job_ids)
        except _OUTAGE:
            # arq counts a job (and takes a slot) before it records the start in Redis.
            started = sum(not task.done() for task in self.tasks.values())
            for _ in range(self.job_counter - started):
                self._release_sem_dec_counter_on_complete()
            raise

    def _still_running(self, job_id: str) -> bool:
        task = self.tasks.get(job_id)
        return task is not None and not task.done()

    async def run_job(self, job_id: str, score: int) -> None:
        try:
            with _about_its_deck(job_id):
                await super().run_job(job_id, score)
        except _OUTAGE as exc:
            logger.warning("could not record job {} in Redis: {}", job_id, exc)

    async def _wait_out(self, exc: BaseException) -> None:
        honour_cancellation()
        if not self._backoff:
            logger.warning("Redis is unavailable, the worker waits for it: {}", exc)
        self._backoff = min(max(self._backoff * 2, _FIRST_BACKOFF_SECONDS), _MAX_BACKOFF_SECONDS)
        await asyncio.sleep(self._backoff)
