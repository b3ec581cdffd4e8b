"""Abuse limits, which one user's traffic meets before it can crowd out the others': the errors
of a request over a limit, seats for open sockets (per user and in all) and the throttle of a
socket's client frames. ``DeckService.create`` checks the limits of deck creation.

Every limit counted in Redis fails open: when the count cannot be read, the request goes
through and a warning is logged, so that a Redis outage never turns into refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import time
from collections.abc import AsyncIterator, Callable
from uuid import uuid4

from loguru import logger

from presto_deck.application.ports import LimitUnavailable, RateLimiter, SocketCount, SocketQuota

#: A client's flood is tolerated for this many seconds' worth of frames at the allowed rate
#: before its socket is closed (see ``FrameThrottle``).
_FLOOD_SECONDS = 5.0


class LimitExceeded(Exception):
    """A request over one of the limits. The message is for the client; ``retry_after`` is in
    whole seconds (at least 1) where waiting helps."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = None if retry_after is None else max(1, math.ceil(retry_after))


class CreationRateExceeded(LimitExceeded):
    """The user created as many decks as a minute allows."""


class ExportRateExceeded(LimitExceeded):
    """The user exported as many files as a minute allows."""


class ThemeChangeRateExceeded(LimitExceeded):
    """The user changed as many decks' themes as a minute allows."""


class ExportsBusy(LimitExceeded):
    """The process draws as many exports as it may, and this one waited its turn too long."""


class ActiveDecksExceeded(LimitExceeded):
    """The user has as many decks being generated as allowed."""


class SocketLimitExceeded(LimitExceeded):
    """No seat for another socket: the user's, or the whole service's, are taken."""


class FrameRateExceeded(LimitExceeded):
    """The client keeps sending frames far faster than the allowed rate."""


async def count_action(
    limiter: RateLimiter, user_id: str, refusal: Callable[[float], LimitExceeded], what: str
) -> None:
    """Count one of the user's actions, or raise ``refusal(seconds to wait)`` over the rate.
    An action whose count is unavailable is let through (``what`` names it in the warning)."""
    try:
        wait = await limiter.acquire(user_id)
    except LimitUnavailable as exc:
        logger.warning("{} rate not checked, its count is unavailable: {}", what, exc)
        return
    if wait > 0:
        raise refusal(wait)


_SOCKET_REFUSALS = {
    SocketCount.USER: "too many open sockets for this user",
    SocketCount.TOTAL: "too many open sockets",
}


class SocketAdmission:
    """Seats for open sockets, shared by every API instance through a ``SocketQuota``.

    The seats of this process's open sockets are refreshed every ``refresh_seconds``, one after
    another, by one task (not a task a socket: thousands may be open); the quota lets a seat
    lapse when it has not been refreshed for a few periods (its instance died).
    """

    def __init__(self, quota: SocketQuota, *, refresh_seconds: float) -> None:
        self._quota = quota
        self._refresh_seconds = refresh_seconds
        self._seats: dict[str, str] = {}  # socket id -> user id
        self._keeper: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def seat(self, user_id: str) -> AsyncIterator[None]:
        """Hold a seat while the block runs; raises ``SocketLimitExceeded`` if none is free."""
        socket_id = uuid4().hex
        full = await self._claim(socket_id, user_id)
        if full is not None:
            raise SocketLimitExceeded(_SOCKET_REFUSALS[full])
        self._seats[socket_id] = user_id
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep(), name="socket-seats")
        try:
            yield
        finally:
            del self._seats[socket_id]
            if not self._seats and self._keeper is not None:
                self._keeper.cancel()
                self._keeper = None
            await self._release(socket_id, user_id)

    async def _claim(self, socket_id: str, user_id: str) -> SocketCount | None:
        try:
            return await self._quota.claim(socket_id, user_id)
        except LimitUnavailable as exc:
            logger.warning("socket limits not checked, their count is unavailable: {}", exc)
            return None

    async def _keep(self) -> None:
        # A refresh also takes the seat again after the count was lost (Redis restarted) or
        # never taken (it failed open), so the count recovers while the socket stays open.
        while True:
            await asyncio.sleep(self._refresh_seconds)
            for socket_id, user_id in list(self._seats.items()):
                if socket_id not in self._seats:
                    continue  # closed meanwhile: its seat is released, not taken again
                try:
                    await self._quota.refresh(socket_id, user_id)
                except LimitUnavailable as exc:  # the rest would fail alike: next period
                    logger.warning("could not refresh the sockets' seats: {}", exc)
                    break

    async def _release(self, socket_id: str, user_id: str) -> None:
        try:
            await self._quota.release(socket_id, user_id)
        except LimitUnavailable as exc:  # the seat lapses on its own
            logger.warning("could not release a socket's seat: {}", exc)


class FrameVerdict(enum.Enum):
    ACCEPT = "accept"
    #: Dropped, and the first drop since the last accepted frame: tell the client once.
    DROP_AND_WARN = "drop and warn"
    DROP = "drop"


class FrameThrottle:
    """One socket's client frames: a token bucket of ``rate`` frames a second, bursts of ``rate``.

    A frame over the rate is dropped. Dropped frames also fill a flood meter that drains at
    ``rate`` a second and holds ``_FLOOD_SECONDS`` worth of them: a client that sends at twice
    the rate or less is only throttled, while one that keeps sending several times faster
    (thrice the rate fills it in about five seconds, a tight loop in a fraction of one) makes
    ``admit`` raise ``FrameRateExceeded``.
    """

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = float(rate)
        self._clock = clock
        self._tokens = self._rate
        self._flood = 0.0
        self._flood_limit = self._rate * _FLOOD_SECONDS
        self._dropping = False
        self._updated = clock()

    def admit(self) -> FrameVerdict:
        """What to do with the frame that just arrived."""
        self._drain()
        if self._tokens >= 1:
            self._tokens -= 1
            self._dropping = False
            return FrameVerdict.ACCEPT
        self._flood += 1
        if self._flood > self._flood_limit:
            raise FrameRateExceeded("too many frames")
        warn, self._dropping = not self._dropping, True
        return FrameVerdict.DROP_AND_WARN if warn else FrameVerdict.DROP

    def _drain(self) -> None:
        now = self._clock()
        elapsed, self._updated = max(now - self._updated, 0.0), now
        self._tokens = min(self._tokens + elapsed * self._rate, self._rate)
        self._flood = max(self._flood - elapsed * self._rate, 0.0)
