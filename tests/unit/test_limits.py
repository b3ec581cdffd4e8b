"""Socket seats and the frame throttle, on fakes and a hand-driven clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import pytest
from loguru import logger

from presto_deck.application.limits import (
    FrameRateExceeded,
    FrameThrottle,
    FrameVerdict,
    LimitExceeded,
    SocketAdmission,
    SocketLimitExceeded,
)
from tests.unit.fakes import FakeSocketQuota

ACCEPT, WARN, DROP = FrameVerdict.ACCEPT, FrameVerdict.DROP_AND_WARN, FrameVerdict.DROP


class Ticks:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def warnings_logged() -> Iterator[list[str]]:
    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="WARNING")
    try:
        yield logged
    finally:
        logger.remove(sink)


async def wait_for(check: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.001)


# -- socket seats ---------------------------------------------------------------------------------


async def test_a_seat_is_held_while_the_socket_is_open_and_released_after() -> None:
    quota = FakeSocketQuota()
    admission = SocketAdmission(quota, refresh_seconds=60)

    async with admission.seat("alice"):
        held = quota.taken("alice")

    assert (held, quota.taken("alice")) == (1, 0)


async def test_a_user_past_the_per_user_limit_is_refused_and_others_are_not() -> None:
    admission = SocketAdmission(FakeSocketQuota(per_user=2), refresh_seconds=60)

    async with admission.seat("alice"), admission.seat("alice"):
        with pytest.raises(SocketLimitExceeded) as refused:
            async with admission.seat("alice"):
                pass
        async with admission.seat("bob"):
            pass

    assert str(refused.value) == "too many open sockets for this user"
    assert refused.value.retry_after is None


async def test_any_user_past_the_total_limit_is_refused() -> None:
    admission = SocketAdmission(FakeSocketQuota(total=2), refresh_seconds=60)

    async with admission.seat("alice"), admission.seat("bob"):
        with pytest.raises(SocketLimitExceeded) as refused:
            async with admission.seat("carol"):
                pass

    assert str(refused.value) == "too many open sockets"


async def test_a_seat_is_refreshed_while_its_socket_is_open_and_not_after() -> None:
    quota = FakeSocketQuota()
    admission = SocketAdmission(quota, refresh_seconds=0.01)

    async with admission.seat("alice"):
        await wait_for(lambda: quota.refreshes >= 3)
    refreshed = quota.refreshes
    await asyncio.sleep(0.05)

    assert quota.refreshes == refreshed
    assert quota.taken("alice") == 0


async def test_unavailable_counts_let_the_socket_in_and_a_later_refresh_takes_its_seat() -> None:
    quota = FakeSocketQuota(per_user=1)
    admission = SocketAdmission(quota, refresh_seconds=0.01)
    quota.fail = True

    with warnings_logged() as logged:
        async with admission.seat("alice"):
            await wait_for(lambda: len(logged) >= 2)  # the claim, then a refresh
            quota.fail = False
            await wait_for(lambda: quota.taken("alice") == 1)

    assert "socket limits not checked" in logged[0]
    assert quota.taken("alice") == 0


async def test_a_seat_that_cannot_be_released_is_left_to_lapse_without_an_error() -> None:
    quota = FakeSocketQuota()
    admission = SocketAdmission(quota, refresh_seconds=60)

    with warnings_logged() as logged:
        async with admission.seat("alice"):
            quota.fail = True

    assert quota.taken("alice") == 1
    assert any("could not release" in line for line in logged), logged


# -- frame throttle -------------------------------------------------------------------------------


def test_frames_within_the_rate_are_accepted() -> None:
    clock = Ticks()
    throttle = FrameThrottle(10, clock)
    verdicts = []
    for _ in range(100):  # ten a second for ten seconds
        verdicts.append(throttle.admit())
        clock.now += 0.1

    assert verdicts == [ACCEPT] * 100


def test_a_burst_past_the_rate_is_dropped_with_one_warning() -> None:
    throttle = FrameThrottle(10, Ticks())

    verdicts = [throttle.admit() for _ in range(25)]

    assert verdicts == [ACCEPT] * 10 + [WARN] + [DROP] * 14


def test_frames_are_accepted_again_as_the_bucket_refills_and_a_new_spell_warns_again() -> None:
    clock = Ticks()
    throttle = FrameThrottle(10, clock)
    for _ in range(12):
        throttle.admit()

    clock.now += 0.25  # two and a half frames' worth
    refilled = [throttle.admit() for _ in range(4)]

    assert refilled == [ACCEPT, ACCEPT, WARN, DROP]


def test_twice_the_rate_for_a_minute_is_throttled_but_never_closed() -> None:
    assert frames_until_closed(10, every=0.05, most=20 * 60) is None


def test_a_client_that_keeps_flooding_at_four_times_the_rate_is_closed_within_seconds() -> None:
    sent = frames_until_closed(10, every=0.025, most=40 * 60)

    assert sent is not None
    assert 2 <= sent * 0.025 <= 5


def test_a_tight_loop_is_closed_once_its_drops_overflow_the_flood_meter() -> None:
    sent = frames_until_closed(20, every=0, most=10_000)

    assert sent == 20 + 20 * 5  # the bucket, then five seconds' worth of dropped frames


def test_closing_a_flood_is_a_limit_with_a_short_reason() -> None:
    throttle = FrameThrottle(1, Ticks())
    for _ in range(1 + 5):  # the bucket, then five seconds' worth of dropped frames
        throttle.admit()

    with pytest.raises(FrameRateExceeded) as closed:
        throttle.admit()

    assert str(closed.value) == "too many frames"
    assert isinstance(closed.value, LimitExceeded)


def frames_until_closed(rate: int, every: float, most: int) -> int | None:
    """Send up to ``most`` frames ``every`` seconds apart; how many were taken (accepted or
    dropped) before the throttle closed the socket, or None if it never did."""
    clock = Ticks()
    throttle = FrameThrottle(rate, clock)
    for sent in range(most):
        try:
            throttle.admit()
        except FrameRateExceeded:
            return sent
        clock.now += every
    return None
