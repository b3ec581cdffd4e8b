"""Deck generation under the test's control: a writer that can be held at a chosen point, a
generator wired from a container's parts, the real arq worker writing with such a writer, and
what a worker killed with ``kill -9`` leaves behind."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import msgspec
from arq.constants import in_progress_key_prefix, retry_key_prefix

from presto_deck.application.generation import DeckGenerator
from presto_deck.application.ports import EventPublisher, ModelCallBudget
from presto_deck.bootstrap import Container, Role, build_container, build_ports, worker_services
from presto_deck.domain.content import DeckBrief, DeckPlan, SlideContent
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.writers.offline import OfflineWriter
from presto_deck.settings import Settings
from presto_deck.worker import DeckWorker
from tests.support.database import execute
from tests.support.themes import THEME_BOOK


class HeldWriter:
    """The offline writer, held while planning or before slide ``hold_slide`` until released.

    ``retitle`` makes its plans differ from the offline writer's, as two calls to an LLM would.
    """

    name = "held-offline"

    def __init__(
        self,
        *,
        hold_plan: bool = False,
        hold_slide: int | None = None,
        retitle: str = "",
        slide_delay_ms: int = 0,
    ) -> None:
        self._offline = OfflineWriter(slide_delay_ms=slide_delay_ms)
        self._hold_plan = hold_plan
        self._hold_slide = hold_slide
        self._retitle = retitle
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def plan(self, brief: DeckBrief, budget: ModelCallBudget) -> DeckPlan:
        if self._hold_plan:
            await self._hold()
        plan = await self._offline.plan(brief, budget)
        if not self._retitle:
            return plan
        slides = [
            msgspec.structs.replace(slide, title=self._retitle + slide.title)
            for slide in plan.slides
        ]
        return msgspec.structs.replace(plan, slides=slides)

    async def write_slide(
        self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
    ) -> SlideContent:
        if index == self._hold_slide:
            await self._hold()
        return await self._offline.write_slide(brief, plan, index, budget)

    async def _hold(self) -> None:
        self.held.set()
        await self.release.wait()


def generator_for(
    container: Container,
    writer: Any,
    worker_id: str,
    *,
    publisher: EventPublisher | None = None,
) -> DeckGenerator:
    """A generator wired as bootstrap wires it, with our own writer and worker id (and, if
    given, our own stream publisher instead of the container's Redis stream)."""
    settings = container.settings
    ports = build_ports(settings, container.engine, container.steps, container.redis, THEME_BOOK)
    if publisher is not None:
        ports = dataclasses.replace(ports, publisher=publisher)
    # Each publish marked at once: no batch left waiting when the test's loop ends.
    return worker_services(settings, ports, writer, worker_id, mark_after_seconds=0.0).generator


@contextlib.asynccontextmanager
async def worker_writing_with(settings: Settings, writer: HeldWriter) -> AsyncIterator[DeckWorker]:
    """The real worker, whose generator writes with ``writer``."""
    container = build_container(settings, Role.WORKER)
    services = container.worker_role().services
    services.generator = generator_for(container, writer, services.worker_id)
    worker = DeckWorker(container, handle_signals=False)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        writer.release.set()
        await worker.stop(task)
        await container.close()


async def job_finished(container: Container, deck_id: UUID) -> bool:
    """Whether arq has no job of the deck queued or running."""
    job_id = keys.generation_job_id(deck_id)
    queued = await container.redis.zscore(keys.QUEUE, job_id)
    running = await container.redis.exists(in_progress_key_prefix + job_id)
    return queued is None and not running


async def kill_mid_deck(container: Container, deck_id: UUID, writer: HeldWriter) -> None:
    """Leave the deck as a worker killed with kill -9 inside ``writer`` would leave it."""
    doomed = asyncio.create_task(generator_for(container, writer, "doomed").generate(deck_id))
    await asyncio.wait_for(writer.held.wait(), 10)
    doomed.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await doomed
    # What kill -9 leaves behind: its lease in PostgreSQL, about to lapse, and its arq job
    # "in progress" for the job timeout plus 10 s.
    await execute(
        container,
        "UPDATE decks SET lease_owner = 'doomed',"
        " lease_expires_at = now() + interval '1 second' WHERE id = :id",
        id=deck_id,
    )
    job_id = keys.generation_job_id(deck_id)
    await container.redis.set(in_progress_key_prefix + job_id, b"1", px=3610_000)
    await container.redis.incr(retry_key_prefix + job_id)
