"""What every worker run on a deck shares, generation and edits alike: a lease that names the run,
kept alive while it works and checked before it writes (fencing); model calls counted in the
database before they are made; the writer's failures made final; the database's retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar
from uuid import UUID

import stamina
from loguru import logger

from presto_deck.application.ports import (
    CancelRequested,
    Clock,
    LeaseLost,
    LeaseState,
    ModelCallsExhausted,
    RunStopped,
    StorageError,
    UnitOfWork,
    UnitOfWorkFactory,
    WriterError,
)

_T = TypeVar("_T")

#: Tries of one step when the database fails it; a value it refuses ends the run after these.
STEP_ATTEMPTS = 3


class Leases:
    """Keeps the lease of a run on a deck: renewed while it works, given up when it ends."""

    def __init__(self, *, uow: UnitOfWorkFactory, clock: Clock, lease_seconds: float) -> None:
        self._uow = uow
        self._clock = clock
        self._lease_seconds = lease_seconds

    def deadline(self) -> datetime:
        """When a lease taken or renewed now runs out."""
        return self._clock() + timedelta(seconds=self._lease_seconds)

    @contextlib.asynccontextmanager
    async def kept(
        self, deck_id: UUID, owner: str, *, honour_cancel: bool = True
    ) -> AsyncIterator[None]:
        """Renew the lease while the block runs. If another run took it (or, with
        ``honour_cancel``, the user asked to cancel the deck), cancel the block, model call in
        flight included, and raise LeaseLost (or CancelRequested)."""
        run = asyncio.current_task()
        assert run is not None
        stopped: list[RunStopped] = []
        renewal = asyncio.create_task(self._renew(deck_id, owner, run, stopped, honour_cancel))
        try:
            yield
        except asyncio.CancelledError:
            if stopped and run.uncancel() == 0:
                raise stopped[0] from None
            raise
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    async def release(self, deck_id: UUID, owner: str) -> None:
        try:
            async with self._uow() as uow:
                await uow.decks.release_lease(deck_id, owner)
                await uow.commit()
        except StorageError as exc:  # the lease lapses on its own
            logger.warning("could not release the lease on deck {}: {}", deck_id, exc)

    async def _renew(
        self,
        deck_id: UUID,
        owner: str,
        run: asyncio.Task[object],
        stopped: list[RunStopped],
        honour_cancel: bool,
    ) -> None:
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                async with self._uow() as uow:
                    lease = await uow.decks.renew_lease(deck_id, owner, self.deadline())
                    await uow.commit()
            except StorageError as exc:  # a missed renewal risks a takeover, which fencing stops
                logger.warning("could not renew the lease on deck {}: {}", deck_id, exc)
                continue
            if not lease.held:
                stopped.append(LeaseLost(f"deck {deck_id} was taken over by another run"))
            elif honour_cancel and lease.cancel_requested:
                stopped.append(CancelRequested(f"the user asked to cancel deck {deck_id}"))
            else:
                continue
            run.cancel()
            return


#: Counts one model call in a transaction and says whether the run still holds the deck.
CountCall = Callable[[UnitOfWork, datetime], Awaitable[LeaseState]]


class CountedCalls:
    """The ``ModelCallBudget`` of one run.

    Each call is counted in PostgreSQL before it is made, in the statement that also proves that
    the run still holds the deck and extends its lease: a run that was taken over makes no call,
    and no number of runs, crashes or retries spends more than ``limit``.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        count: CountCall,
        *,
        limit: int,
        deadline: Callable[[], datetime],
        what: str,
        honour_cancel: bool = True,
    ) -> None:
        self._uow = uow
        self._count = count
        self._limit = limit
        self._deadline = deadline
        self._what = what
        self._honour_cancel = honour_cancel

    async def spend(self) -> None:
        try:
            spent = await with_storage_retries(self._count_one)
        except StorageError as exc:
            raise RunStopped(f"the model-call budget could not be checked: {exc}") from exc
        if not spent.held:
            raise LeaseLost(f"{self._what}: the run no longer holds the deck")
        if self._honour_cancel and spent.cancel_requested:
            raise CancelRequested(f"{self._what}: the user asked to cancel it")
        if spent.calls > self._limit:
            raise ModelCallsExhausted(f"{self._what} has spent its {self._limit} calls")

    async def _count_one(self) -> LeaseState:
        # Tried again after a failure: a commit whose answer was lost may count a call twice,
        # which errs on the side of the budget.
        async with self._uow() as uow:
            spent = await self._count(uow, self._deadline())
            await uow.commit()
        return spent


async def writing(call: Awaitable[_T]) -> _T:
    """Await the writer or renderer; whatever goes wrong there ends the work, never stalls it.

    Retrying belongs to the writer, which knows what is transient: an error reaching this point
    would only repeat, so it becomes a ``WriterError`` instead of a run swept forever.
    """
    try:
        return await call
    except (WriterError, RunStopped):
        raise
    except Exception as exc:
        logger.opt(exception=exc).error("writer error")
        detail = f"{type(exc).__name__}: {exc}"
        raise WriterError("The writer failed.", code="writer_failed", detail=detail) from exc


async def with_storage_retries(step: Callable[[], Awaitable[_T]]) -> _T:
    """Run a database step, again after a ``StorageError``, ``STEP_ATTEMPTS`` times at most."""
    async for attempt in stamina.retry_context(
        on=StorageError,
        attempts=STEP_ATTEMPTS,
        timeout=None,
        wait_initial=0.2,
        wait_max=2.0,
        wait_jitter=0.2,
    ):
        with attempt:
            return await step()
    raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover
