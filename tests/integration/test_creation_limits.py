"""Limits on creating decks, through the real API on PostgreSQL and Redis (SPEC §8c).

Per user: a creation rate (a sliding minute, counted in Redis and shared by every API instance)
and a number of decks still being generated (counted in PostgreSQL at creation). Past either the
answer is 429 with ``Retry-After`` and a JSON error, and nothing is stored or queued. Together
they keep one user's burst from filling the queue ahead of everyone else's decks.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket

import httpx
import msgspec
import pytest
from loguru import logger

from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.limits import RedisRateLimiter
from presto_deck.settings import Settings
from tests.support.client import DeckClient, receive_events
from tests.support.deck_http import client_of
from tests.support.running import RunningApi, running_api, running_worker

RATE = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A low creation rate; the limit of active decks stays out of the way unless lowered."""
    return msgspec.structs.replace(settings, limit_deck_creations_per_minute=RATE)


async def post_deck(client: DeckClient, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await client.http.post("/api/v1/decks", json={"prompt": "Tea"}, headers=headers)


def retry_after_of(response: httpx.Response) -> int:
    """The refusal's ``Retry-After`` in whole seconds, after checking the rest of the 429."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"status_code", "detail"}
    assert body["status_code"] == 429
    assert body["detail"].strip()
    value = response.headers["retry-after"]
    assert re.fullmatch("[0-9]+", value), value
    return int(value)


async def total_decks(client: DeckClient) -> int:
    return int((await client.http.get("/api/v1/decks")).json()["total"])


async def queued_jobs(api: RunningApi) -> int:
    return int(await api.container.redis.zcard(keys.QUEUE))


# -- the creation rate -----------------------------------------------------------------------------


async def test_creations_past_the_rate_get_429_with_retry_after_and_nothing_is_stored(
    api: RunningApi, alice: DeckClient
) -> None:
    responses = [await post_deck(alice) for _ in range(RATE + 2)]

    assert [r.status_code for r in responses] == [202] * RATE + [429] * 2
    for refused in responses[RATE:]:
        assert 1 <= retry_after_of(refused) <= 60
        assert "try again in" in refused.json()["detail"]
    assert await total_decks(alice) == RATE
    assert await queued_jobs(api) == RATE


async def test_one_users_rate_does_not_limit_another_user(
    alice: DeckClient, bob: DeckClient
) -> None:
    for _ in range(RATE):
        await alice.create()
    refused = await post_deck(alice)

    accepted = [await post_deck(bob) for _ in range(RATE)]

    assert refused.status_code == 429
    assert [r.status_code for r in accepted] == [202] * RATE


async def test_the_creation_rate_is_shared_by_two_api_instances(settings: Settings) -> None:
    async with (
        running_api(settings) as first,
        running_api(settings) as second,
        client_of(first, settings, "alice") as on_first,
        client_of(second, settings, "alice") as on_second,
    ):
        spread = [await post_deck(client) for client in (on_first, on_second, on_first)]
        past = [await post_deck(on_second), await post_deck(on_first)]

    assert [r.status_code for r in spread] == [202] * RATE
    assert [r.status_code for r in past] == [429, 429]


async def test_a_replay_with_the_same_idempotency_key_is_neither_refused_nor_counted(
    alice: DeckClient,
) -> None:
    first = await post_deck(alice, key="order-1")
    replays = [await post_deck(alice, key="order-1") for _ in range(5)]
    others = [await post_deck(alice) for _ in range(RATE - 1)]  # the rest of the minute's rate
    past = await post_deck(alice)
    replay_past_the_rate = await post_deck(alice, key="order-1")

    assert first.status_code == 202
    deck_id = first.json()["deck_id"]
    assert [(r.status_code, r.json()["deck_id"]) for r in replays] == [(202, deck_id)] * 5
    assert [r.status_code for r in others] == [202] * (RATE - 1)
    assert past.status_code == 429
    assert (replay_past_the_rate.status_code, replay_past_the_rate.json()["deck_id"]) == (
        202,
        deck_id,
    )
    assert await total_decks(alice) == RATE


async def test_the_same_key_sent_many_times_at_once_makes_one_deck_and_counts_once(
    alice: DeckClient,
) -> None:
    burst = await asyncio.gather(*(post_deck(alice, key="order-2") for _ in range(10)))
    others = [await post_deck(alice) for _ in range(RATE - 1)]  # the rest of the minute's rate

    assert {(r.status_code, r.json()["deck_id"]) for r in burst} == {
        (202, burst[0].json()["deck_id"])
    }
    assert [r.status_code for r in others] == [202] * (RATE - 1)
    assert await total_decks(alice) == RATE


async def test_a_creation_refused_for_too_many_active_decks_leaves_the_rate_untouched(
    settings: Settings,
) -> None:
    tight = msgspec.structs.replace(settings, limit_active_decks_per_user=1)
    async with running_api(tight) as one, client_of(one, tight, "carol") as carol:
        first = await post_deck(carol)
        refused = [await post_deck(carol) for _ in range(RATE)]
        cancelled = await carol.http.post(f"/api/v1/decks/{first.json()['deck_id']}/cancel")
        after = await post_deck(carol)

    assert first.status_code == 202
    assert {r.status_code for r in refused} == {429}
    assert cancelled.status_code == 202
    assert after.status_code == 202, after.text  # the refusals used none of the minute's rate


async def test_the_rate_window_slides_and_retry_after_says_when_an_action_fits_again(
    api: RunningApi,
) -> None:
    limiter = RedisRateLimiter(api.container.redis, limit=2, window_seconds=1.5)
    loop = asyncio.get_running_loop()

    admitted = [await limiter.acquire("alice"), await limiter.acquire("alice")]
    wait = await limiter.acquire("alice")
    refused_at = loop.time()
    while await limiter.acquire("alice") > 0:  # refused tries are not counted
        await asyncio.sleep(0.05)
    waited = loop.time() - refused_at

    assert admitted == [0, 0]
    assert 0 < wait <= 1.5
    assert wait - 0.3 <= waited <= wait + 1.0


# -- decks being generated -------------------------------------------------------------------------


async def test_a_user_with_the_most_decks_being_generated_gets_429_until_one_is_cancelled(
    settings: Settings,
) -> None:
    limited = msgspec.structs.replace(
        settings, limit_deck_creations_per_minute=100, limit_active_decks_per_user=2
    )
    async with running_api(limited) as api, client_of(api, settings, "alice") as alice:
        first, _ = [await alice.create() for _ in range(2)]  # no worker: both stay PENDING
        refused = await post_deck(alice)
        cancelled = await alice.http.post(f"/api/v1/decks/{first}/cancel")
        after_cancel = await post_deck(alice)
        total = await total_decks(alice)

    assert 1 <= retry_after_of(refused) <= 10
    assert "cancel one" in refused.json()["detail"]
    assert cancelled.status_code == 202
    assert after_cancel.status_code == 202
    assert total == 3


async def test_concurrent_creations_on_two_instances_cannot_pass_the_active_deck_limit(
    settings: Settings,
) -> None:
    limited = msgspec.structs.replace(
        settings, limit_deck_creations_per_minute=100, limit_active_decks_per_user=3
    )
    async with (
        running_api(limited) as first,
        running_api(limited) as second,
        client_of(first, settings, "alice") as on_first,
        client_of(second, settings, "alice") as on_second,
    ):
        responses = await asyncio.gather(
            *(post_deck(client) for _ in range(10) for client in (on_first, on_second))
        )
        total = await total_decks(on_first)

    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 3 + [429] * 17
    assert total == 3


async def test_one_users_burst_does_not_hold_up_another_users_deck(settings: Settings) -> None:
    # One worker with three slots and slow slides: without the limits, Alice's burst would fill
    # the queue and Bob's deck would wait for a dozen of hers to be written first.
    slow = msgspec.structs.replace(
        settings,
        offline_slide_delay_ms=200,
        worker_max_jobs=3,
        limit_deck_creations_per_minute=30,
        limit_active_decks_per_user=2,
    )
    async with (
        running_api(slow) as api,
        running_worker(slow),
        client_of(api, settings, "alice") as alice,
        client_of(api, settings, "bob") as bob,
    ):
        burst = await asyncio.gather(*(post_deck(alice) for _ in range(40)))
        loop = asyncio.get_running_loop()
        created_at = loop.time()
        deck_id = await bob.create(slide_count=8)
        async with bob.socket(deck_id, last_version=1) as ws:
            await receive_events(ws, lambda frame: frame["event_type"] == "DeckStarted")
        waited = loop.time() - created_at

    assert sorted(r.status_code for r in burst) == [202] * 2 + [429] * 38
    assert waited < 3.0, f"Bob's deck started {waited:.1f}s after it was created"


# -- Redis unavailable -----------------------------------------------------------------------------


async def test_with_redis_unreachable_decks_are_still_created_and_a_warning_is_logged(
    settings: Settings,
) -> None:
    with socket.socket() as probe:  # a port that nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = msgspec.structs.replace(
        settings, redis_url=f"redis://127.0.0.1:{port}/0", limit_deck_creations_per_minute=1
    )
    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="WARNING")
    try:
        async with running_api(nowhere) as api, client_of(api, settings, "alice") as alice:
            responses = [await post_deck(alice) for _ in range(3)]
            deck_id = responses[0].json()["deck_id"]
            async with alice.socket(deck_id, last_version=1) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    finally:
        logger.remove(sink)

    assert [r.status_code for r in responses] == [202] * 3  # past a rate of one a minute
    assert sum("deck creation rate not checked" in line for line in logged) == 3, logged
    # The socket's limits let it through too, and it is served from PostgreSQL (its heartbeat
    # carries the deck's version); live events reach it once Pub/Sub is back.
    assert any("socket limits not checked" in line for line in logged), logged
    assert first["event_type"] == "Heartbeat"
    assert first["version"] == 1
