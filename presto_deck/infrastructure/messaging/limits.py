"""Abuse-limit counts in Redis, shared by every API instance.

Each check is one Lua script, so that counting and deciding are atomic, and every entry is dated
by Redis's own clock (``TIME``), so the instances' clocks need not agree. A call that fails or
takes longer than ``_CALL_SECONDS`` raises the port's ``LimitUnavailable``: the use case then
lets the request through rather than wait on, or refuse because of, an unhealthy Redis.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar
from uuid import uuid4

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from presto_deck.application.ports import LimitUnavailable, SocketCount
from presto_deck.infrastructure.messaging import keys

_T = TypeVar("_T")

#: A limit check normally takes well under a millisecond; past this it is not worth waiting for.
_CALL_SECONDS = 1.0

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# A sliding window log: the set holds the time of every creation admitted within the window.
# KEYS[1] the log; ARGV: limit, window (ms), a unique member. Returns 0 when admitted, else
# the milliseconds until the oldest entry leaves the window.
_ACQUIRE = (
    _NOW_MS
    + """
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], window)
    return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(tonumber(oldest[2]) + window - now, 1)
"""
)

# Seats: each set holds socket ids scored by the time their seat expires. A set lives as long
# as its longest seat, so the sets of users with no socket left go away by themselves.
_TAKE_SEAT = """
local expires = now + tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
    redis.call('ZADD', key, expires, ARGV[1])
    redis.call('PEXPIRE', key, ARGV[2])
end
"""

# KEYS: the user's set, the set of all; ARGV: socket id, seat lifetime (ms), per-user limit,
# total limit. Returns 0 when seated, 1 when the user's sockets are full, 2 when all are.
_CLAIM = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 2 end
"""
    + _TAKE_SEAT
    + "return 0"
)

# KEYS and the first two ARGV as for _CLAIM; the seat is taken whatever the counts say, since
# its socket is open already.
_REFRESH = _NOW_MS + _TAKE_SEAT

_FULL = {1: SocketCount.USER, 2: SocketCount.TOTAL}


async def _bounded(call: Awaitable[_T]) -> _T:
    try:
        async with asyncio.timeout(_CALL_SECONDS):
            return await call
    except TimeoutError as exc:  # also redis-py's, which is both a RedisError and an OSError
        raise LimitUnavailable(f"Redis did not answer within {_CALL_SECONDS:g}s") from exc
    except (RedisError, OSError) as exc:
        raise LimitUnavailable(str(exc) or type(exc).__name__) from exc


class RedisRateLimiter:
    """At most ``limit`` actions of a user in any ``window_seconds`` (a sliding window)."""

    def __init__(
        self,
        redis: ArqRedis,
        *,
        limit: int,
        log: Callable[[str], str] = keys.creation_log,
        window_seconds: float = 60.0,
    ) -> None:
        """``log`` names the key that holds a user's recent actions."""
        self._acquire = redis.register_script(_ACQUIRE)
        self._limit = limit
        self._log = log
        self._window_ms = math.ceil(window_seconds * 1000)

    async def acquire(self, user_id: str) -> float:
        wait_ms = await _bounded(
            self._acquire(
                keys=[self._log(user_id)],
                args=[self._limit, self._window_ms, uuid4().hex],
            )
        )
        return int(wait_ms) / 1000


class RedisSocketQuota:
    """Seats for at most ``per_user`` sockets of each user and ``total`` in all.

    A seat lasts ``seat_seconds`` unless refreshed; expired seats are dropped when counting.
    """

    def __init__(self, redis: ArqRedis, *, per_user: int, total: int, seat_seconds: float) -> None:
        self._claim = redis.register_script(_CLAIM)
        self._refresh = redis.register_script(_REFRESH)
        self._redis = redis
        self._per_user = per_user
        self._total = total
        self._seat_ms = max(math.ceil(seat_seconds * 1000), 1)

    async def claim(self, socket_id: str, user_id: str) -> SocketCount | None:
        full = await _bounded(
            self._claim(
                keys=[keys.user_sockets(user_id), keys.ALL_SOCKETS],
                args=[socket_id, self._seat_ms, self._per_user, self._total],
            )
        )
        return _FULL.get(int(full))

    async def refresh(self, socket_id: str, user_id: str) -> None:
        await _bounded(
            self._refresh(
                keys=[keys.user_sockets(user_id), keys.ALL_SOCKETS],
                args=[socket_id, self._seat_ms],
            )
        )

    async def release(self, socket_id: str, user_id: str) -> None:
        await _bounded(self._release(socket_id, user_id))

    async def _release(self, socket_id: str, user_id: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.user_sockets(user_id), socket_id)
            pipe.zrem(keys.ALL_SOCKETS, socket_id)
            await pipe.execute()
