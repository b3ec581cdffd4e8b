"""Processes that die or freeze: workers killed with kill -9 at random moments, an API killed with
sockets attached, a worker frozen past its lease, a frozen session holding a deck's lock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys

import psycopg
import pytest
import websockets

from tests.e2e.conftest import mint
from tests.faults.conftest import Cluster, FaultRun
from tests.faults.contract import assert_contract, wait_until_ended
from tests.support.client import DeckClient, Frame, eventually, is_terminal
from tests.support.deck_http import events_via_http
from tests.support.fake_openai import FakeOpenAI, hang
from tests.support.llm import API_KEY
from tests.support.processes import ManagedProcess, clean_environment, free_port
from tests.support.sockets import replayed_after

pytestmark = [pytest.mark.fault, pytest.mark.timeout(180)]


async def total_version(client: DeckClient, deck_ids: list[str]) -> int:
    return sum([(await client.deck(deck_id))["version"] for deck_id in deck_ids])


async def test_workers_killed_at_random_moments_lose_and_repeat_nothing(
    cluster: Cluster, alice: DeckClient, fault_run: FaultRun
) -> None:
    seed = random.randrange(1 << 30)
    print(f"random seed {seed}")  # to replay a failing order of kills
    rng = random.Random(seed)
    deployment, settings = cluster.deployment, cluster.settings()
    workers = [deployment.start_work(**settings), deployment.start_work(**settings)]
    deployment.serve(**settings)
    deck_ids = [await alice.create(f"Deck {n} about tea", slide_count=6) for n in range(4)]
    final = 4 * 10  # each deck ends at version 10

    progress = 4  # every deck starts at version 1
    for _ in range(4):
        progress += rng.randint(3, 7)
        target = min(progress, final - 4)

        async def reached(target: int = target) -> bool:
            return await total_version(alice, deck_ids) >= target

        await eventually(reached, timeout=60)
        victim = rng.randrange(len(workers))
        assert workers[victim].kill() == -9
        fault_run.count("worker kill -9")
        workers[victim] = deployment.start_work(**settings)

    await wait_until_ended(alice, deck_ids, timeout=60)
    for deck_id in deck_ids:
        await assert_contract(alice, deck_id, fault_run, status="COMPLETED", slides=6)


async def test_an_api_killed_with_sockets_attached_leaves_every_client_whole(
    cluster: Cluster, alice: DeckClient, fault_run: FaultRun
) -> None:
    deployment = cluster.deployment
    # Heartbeats every second here: a surviving socket may need one to fetch a last event that
    # the dead instance had read from the stream but not yet broadcast.
    settings = cluster.settings(ws_heartbeat_seconds="1", offline_slide_delay_ms="250")
    deployment.start_work(**settings)
    doomed = deployment.serve(**settings)
    other_port = free_port()
    survivor = deployment.launch("serve-2", "serve", "--port", str(other_port), **settings)
    survivor.wait_until_ready(f"http://127.0.0.1:{other_port}")
    other = DeckClient(
        f"http://127.0.0.1:{other_port}", f"ws://127.0.0.1:{other_port}", mint("alice")
    )
    try:
        deck_id = await alice.create("Tea ceremonies", slide_count=8)
        clients = [alice, alice, other, other]
        received: list[list[Frame]] = [[] for _ in clients]
        followers = [
            asyncio.create_task(_follow(client, deck_id, seen, fallback=other))
            for client, seen in zip(clients, received, strict=True)
        ]

        async def mid_deck() -> bool:
            return all(any(f["event_type"] == "SlideAdded" for f in seen) for seen in received)

        await eventually(mid_deck, timeout=60)
        assert doomed.kill() == -9
        fault_run.count("API kill -9")
        await asyncio.wait_for(asyncio.gather(*followers), timeout=60)

        history = await assert_contract(other, deck_id, fault_run, status="COMPLETED", slides=8)
        for seen in received:
            assert seen == history  # each version once, in order, on every client
    finally:
        await other.aclose()


async def _follow(
    client: DeckClient, deck_id: str, seen: list[Frame], fallback: DeckClient
) -> None:
    """A client that follows the deck to its end, reconnecting after a drop from where it was,
    to the other instance once its own is gone."""
    current = client
    while True:
        last = seen[-1]["version"] if seen else 1
        url = f"{current.ws_url}/ws/decks/{deck_id}?token={current.token}&last_version={last}"
        try:
            async with websockets.connect(url) as ws:
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame.get("event_type") == "Heartbeat":
                        continue
                    seen.append(frame)
                    if is_terminal(frame):
                        return
        except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake):
            current = fallback
            await asyncio.sleep(0.1)


async def test_a_worker_frozen_past_its_lease_is_taken_over_and_stops_when_it_wakes(
    cluster: Cluster, alice: DeckClient, fault_run: FaultRun
) -> None:
    # A real model's pace, so that the frozen run wakes while the run that took the deck over is
    # still writing: two runs could then both call the model for every remaining slide.
    slides = 10
    with FakeOpenAI(plan_slides=slides, latency=0.3) as model:
        deployment = cluster.deployment
        settings = cluster.settings(
            llm_model="openai:fake-model", llm_base_url=model.base_url, llm_api_key=API_KEY
        )
        workers = [deployment.start_work(**settings), deployment.start_work(**settings)]
        deployment.serve(**settings)
        prompt = "A deck whose worker freezes"
        deck_id = await alice.create(prompt, slide_count=slides)
        owner_pid = await _lease_owner_pid(deployment.database_url, deck_id)
        frozen = next(w for w in workers if w.pid == owner_pid)
        frozen.pause()
        fault_run.count("worker SIGSTOP past its lease")
        bob = DeckClient(deployment.url, deployment.ws_url, mint("bob"))
        try:
            others = [await bob.create(f"Bob's deck {n}", slide_count=2) for n in range(3)]
            await wait_until_ended(bob, others, timeout=30)  # the healthy worker keeps serving

            async def taken_over_and_halfway() -> bool:
                return len((await alice.deck(deck_id))["slides"]) >= slides // 2

            await eventually(taken_over_and_halfway, timeout=30)
            frozen.resume()
            await wait_until_ended(alice, [deck_id], timeout=30)
            await frozen_run_noticed(frozen)
            await assert_contract(alice, deck_id, fault_run, status="COMPLETED", slides=slides)
            for other in others:
                await assert_contract(bob, other, fault_run, status="COMPLETED", slides=2)
        finally:
            frozen.resume()
            await bob.aclose()
        calls = [request for request in model.requests if prompt in request.prompt]
    fault_run.model_calls += len(calls)
    # The plan and each slide once, and at most the one call the frozen run had in flight.
    assert len(calls) <= 1 + slides + 1, len(calls)


async def frozen_run_noticed(frozen: ManagedProcess) -> None:
    """The woken worker's run has ended: it found the deck taken over, or already finished by
    the run that took it over; either way anything it wrote would now show in the deck."""

    async def noticed() -> bool:
        return "generation job ended" in frozen.output()

    await eventually(noticed, timeout=20)


async def test_a_frozen_session_holding_a_decks_lock_delays_that_deck_only(
    cluster: Cluster, alice: DeckClient, fault_run: FaultRun
) -> None:
    deployment = cluster.deployment
    settings = cluster.settings(worker_max_jobs="2", offline_slide_delay_ms="300")
    deployment.start_work(**settings)
    deployment.serve(**settings)
    holder = _LockHolder(deployment.settings(**settings))
    bob = DeckClient(deployment.url, deployment.ws_url, mint("bob"))
    try:
        deck_id = await alice.create("A locked deck", slide_count=10)

        async def started() -> bool:
            return (await alice.deck(deck_id))["version"] >= 4

        await eventually(started, timeout=60)
        holder.lock_and_freeze(deck_id)
        fault_run.count("frozen session holding a deck's row lock")
        assert (await alice.deck(deck_id))["status"] == "GENERATING"
        others = [await bob.create(f"Bob's deck {n}", slide_count=3) for n in range(4)]
        await wait_until_ended(bob, others, timeout=30)  # not held up by the locked deck
        await wait_until_ended(alice, [deck_id], timeout=30)  # its lock freed, then finished
        await assert_contract(alice, deck_id, fault_run, status="COMPLETED", slides=10)
        for other in others:
            await assert_contract(bob, other, fault_run, status="COMPLETED", slides=3)
    finally:
        holder.kill()
        await bob.aclose()


async def _lease_owner_pid(database_url: str, deck_id: str) -> int:
    """The pid of the worker process whose run holds the deck's lease (its id names the pid)."""
    owner = ""

    async def leased() -> bool:
        nonlocal owner
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            row = await (
                await conn.execute("SELECT lease_owner FROM decks WHERE id = %s", (deck_id,))
            ).fetchone()
        owner = (row or [None])[0] or ""
        return bool(owner)

    await eventually(leased, timeout=60)
    return int(owner.split("/")[0].rsplit("-", 2)[1])


class _LockHolder:
    """A process that connects as a worker does (the product's engine and settings) and, when
    told, locks a deck's row inside a transaction and freezes there (SIGSTOP): a worker frozen
    in the middle of a step, as far as PostgreSQL can tell."""

    _SCRIPT = """\
import asyncio, os, signal, sys
import sqlalchemy as sa
from presto_deck.bootstrap import build_container
from presto_deck.settings import load_settings

async def main() -> None:
    container = build_container(load_settings())
    async with container.engine.connect() as conn:
        print("ready", flush=True)
        deck_id = sys.stdin.readline().strip()
        await conn.begin()
        query = sa.text("SELECT 1 FROM decks WHERE id = :id FOR UPDATE")
        await conn.execute(query, {"id": deck_id})
        print("locked", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)

asyncio.run(main())
"""

    def __init__(self, environment: dict[str, str]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", self._SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=clean_environment(environment),
        )
        assert self._line() == b"ready"  # imported and connected: locking takes no time now

    def lock_and_freeze(self, deck_id: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(f"{deck_id}\n".encode())
        self._process.stdin.flush()
        assert self._line() == b"locked"
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._process.pid, os.WUNTRACED)  # until it has stopped, holding it

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()

    def _line(self) -> bytes:
        assert self._process.stdout is not None
        return self._process.stdout.readline().strip()


async def test_a_worker_killed_mid_edit_leaves_it_to_another_that_applies_it_once(
    cluster: Cluster, alice: DeckClient, fault_run: FaultRun
) -> None:
    with FakeOpenAI(plan_slides=3) as model:
        deployment = cluster.deployment
        settings = cluster.settings(
            llm_model="openai:fake-model", llm_base_url=model.base_url, llm_api_key=API_KEY
        )
        doomed = deployment.start_work(**settings)
        deployment.serve(**settings)
        deck_id = await alice.create("A deck to edit", slide_count=3)
        await wait_until_ended(alice, [deck_id], timeout=30)
        written = await assert_contract(alice, deck_id, fault_run, status="COMPLETED", slides=3)
        slide_id = (await alice.deck(deck_id))["slides"][1]["id"]
        model.script(hang(60))  # the edit's first call never answers: the worker dies in it
        prompt = "Rewrite this slide for engineers"
        response = await alice.http.patch(
            f"/api/v1/decks/{deck_id}/slides/{slide_id}",
            json={"prompt": prompt},
            headers={"Idempotency-Key": "edit-1"},
        )
        assert response.status_code == 202, response.text

        async def in_flight() -> bool:
            return any(prompt in request.prompt for request in model.requests)

        await eventually(in_flight, timeout=20)
        assert doomed.kill() == -9
        fault_run.count("worker kill -9 mid-edit")
        deployment.start_work(**settings)

        async def applied() -> bool:
            return (await alice.deck(deck_id))["version"] > written[-1]["version"]

        await eventually(applied, timeout=30)  # lease 2 s, sweep 1 s: well within
        calls = [request for request in model.requests if prompt in request.prompt]
    fault_run.model_calls += len(calls)
    assert len(calls) == 2  # the one the dead worker made, and the one that was applied
    deck = await alice.deck(deck_id)
    history = await events_via_http(alice, deck_id)
    edits = history[len(written) :]
    assert [e["event_type"] for e in edits] == ["SlideUpdated"]
    assert edits[0]["version"] == written[-1]["version"] + 1 == deck["version"]
    assert edits[0]["payload"]["request_id"] == "edit-1"
    assert edits[0]["payload"]["slide_id"] == slide_id
    assert deck["slides"][1]["html_content"] == edits[0]["payload"]["html_content"]
    for version in (0, written[-1]["version"]):
        assert (
            await replayed_after(alice, deck_id, version)
            == history[version - 1 if version else 0 :]
        )
        fault_run.replays += 1
    fault_run.events += len(edits)
