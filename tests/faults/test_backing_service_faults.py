"""The servers underneath fail: Redis restarts or is flushed mid-deck, PostgreSQL ends the
sessions of the processes. Nobody restarts ``serve`` or ``work``: they must ride it out."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
import redis.asyncio as aioredis

from tests.faults.conftest import Cluster, FaultRun
from tests.faults.contract import assert_contract, wait_until_ended
from tests.support.client import DeckClient, eventually, is_terminal, receive_events
from tests.support.sockets import take

pytestmark = [pytest.mark.fault, pytest.mark.timeout(180)]

#: From Redis being back to the last event on a socket that stayed connected: seconds, while
#: heartbeats are a minute apart, so it cannot be the heartbeat's catch-up that delivers.
RESUME_SECONDS = 15


async def test_a_redis_restart_mid_deck_ends_every_deck_and_live_delivery_resumes(
    cluster: Cluster, alice: DeckClient, fault_run: FaultRun
) -> None:
    deployment, settings = cluster.deployment, cluster.settings()
    work = deployment.start_work(**settings)
    serve = deployment.serve(**settings)
    deck_ids = [
        await alice.create(f"Deck {n} through a restart", slide_count=10) for n in (1, 2, 3)
    ]
    async with alice.socket(deck_ids[0], last_version=1) as ws:
        before = await take(ws, 4)
        await asyncio.to_thread(cluster.redis.restart, 2.0)
        fault_run.count("Redis restart (kill -9, empty)")
        after = await receive_events(ws, is_terminal, timeout=RESUME_SECONDS)
    # Nobody restarted them, and they did not exit.
    assert work.running
    assert serve.running
    deck_ids.append(await alice.create("A deck created after the restart", slide_count=3))

    await wait_until_ended(alice, deck_ids, timeout=60)
    history = await assert_contract(alice, deck_ids[0], fault_run, status="COMPLETED", slides=10)
    assert before + after == history  # the socket got every version once, in order
    for deck_id, slides in zip(deck_ids[1:], (10, 10, 3), strict=True):
        await assert_contract(alice, deck_id, fault_run, status="COMPLETED", slides=slides)


async def test_a_redis_flush_mid_deck_loses_no_event_and_no_deck(
    cluster: Cluster, alice: DeckClient, fault_run: FaultRun
) -> None:
    deployment, settings = cluster.deployment, cluster.settings()
    deployment.start_work(**settings)
    deployment.serve(**settings)
    deck_ids = [await alice.create(f"Deck {n} through a flush", slide_count=10) for n in range(3)]
    client = aioredis.Redis.from_url(cluster.redis.url())
    try:
        async with alice.socket(deck_ids[0], last_version=1) as ws:
            before = await take(ws, 4)
            for _ in range(2):
                await client.flushall()  # the queue, the stream, its group, the flags
                fault_run.count("Redis FLUSHALL")
                before += await take(ws, 2)
            after = await receive_events(ws, is_terminal, timeout=RESUME_SECONDS)
    finally:
        await client.aclose()

    await wait_until_ended(alice, deck_ids, timeout=60)
    history = await assert_contract(alice, deck_ids[0], fault_run, status="COMPLETED", slides=10)
    assert before + after == history
    for deck_id in deck_ids[1:]:
        await assert_contract(alice, deck_id, fault_run, status="COMPLETED", slides=10)


async def test_postgresql_sessions_terminated_mid_deck_lose_and_repeat_nothing(
    cluster: Cluster, alice: DeckClient, fault_run: FaultRun
) -> None:
    deployment, settings = cluster.deployment, cluster.settings()
    deployment.start_work(**settings)
    deployment.serve(**settings)
    deck_ids = [
        await alice.create(f"Deck {n} through lost sessions", slide_count=8) for n in range(3)
    ]
    database = deployment.database_url.rsplit("/", 1)[1]
    admin_url = deployment.database_url.rsplit("/", 1)[0] + "/postgres"

    for round_ in range(3):

        async def progressed(target: int = 6 + 5 * round_) -> bool:
            versions = [(await alice.deck(deck_id))["version"] for deck_id in deck_ids]
            return sum(versions) >= target

        await eventually(progressed, timeout=60)
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            ended = (await cursor.fetchone() or [0])[0]
        fault_run.count("PostgreSQL sessions terminated", int(ended))

    await wait_until_ended(alice, deck_ids, timeout=60)
    for deck_id in deck_ids:
        await assert_contract(alice, deck_id, fault_run, status="COMPLETED", slides=8)
