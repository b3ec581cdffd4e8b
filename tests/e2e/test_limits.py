"""End to end: the socket seats of an API process killed with ``kill -9`` do not outlive it by
more than three heartbeat periods, as another API process on the same Redis sees (SPEC §8c); a
client that floods its socket while it reads is told, then closed with 1008, not reset."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import Deployment
from tests.support.client import DeckClient
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e

CLOSE_POLICY_VIOLATION = 1008
HEARTBEAT_SECONDS = 1
LIMITS = {"limit_sockets_per_user": "2", "ws_heartbeat_seconds": str(HEARTBEAT_SECONDS)}


async def first_frame_or_close(url: str) -> int | str:
    """The event type of the socket's first frame, or the code it was closed with instead."""
    async with websockets.connect(url) as ws:
        try:
            async with asyncio.timeout(10):
                return str(json.loads(await ws.recv())["event_type"])
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else -1


@pytest.mark.timeout(120)
async def test_the_seats_of_a_killed_api_lapse_and_another_api_admits_the_user_again(
    deployment: Deployment, alice: DeckClient
) -> None:
    deployment.fresh()
    deployment.serve(**LIMITS)
    port = free_port()
    doomed = deployment.launch("serve", "serve", "--port", str(port), **LIMITS)
    doomed.wait_until_ready(f"http://127.0.0.1:{port}")
    deck_id = await alice.create("Seats")
    cancelled = await alice.http.post(f"/api/v1/decks/{deck_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    path = f"/ws/decks/{deck_id}?token={alice.token}&last_version=1"

    on_doomed = [await websockets.connect(f"ws://127.0.0.1:{port}{path}") for _ in range(2)]
    try:
        seated = [json.loads(await ws.recv())["event_type"] for ws in on_doomed]
        while_alive = await first_frame_or_close(f"{deployment.ws_url}{path}")
        assert doomed.kill() == -9
        killed_at = time.monotonic()
        async with asyncio.timeout(30):
            while (after_kill := await first_frame_or_close(f"{deployment.ws_url}{path}")) != (
                "DeckCancelled"
            ):
                assert after_kill == CLOSE_POLICY_VIOLATION
                await asyncio.sleep(0.1)
        freed_after = time.monotonic() - killed_at
    finally:
        for ws in on_doomed:
            await ws.close()

    assert seated == ["DeckCancelled", "DeckCancelled"]
    assert while_alive == CLOSE_POLICY_VIOLATION
    assert freed_after <= 3 * HEARTBEAT_SECONDS + 2, f"the seats lapsed after {freed_after:.1f}s"


@pytest.mark.timeout(120)
async def test_a_client_that_floods_while_it_reads_gets_its_answers_then_a_1008_close(
    deployment: Deployment, alice: DeckClient
) -> None:
    # A separate process: a test's in-process server reads every frame as it comes, and the
    # flood's unread bytes, which turned the close into a reset, never pile up in the kernel.
    deployment.fresh()
    deployment.serve(limit_frames_per_second="20")
    deck_id = await alice.create("Flood")
    cancelled = await alice.http.post(f"/api/v1/decks/{deck_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    frames: list[dict[str, object]] = []
    url = f"{deployment.ws_url}/ws/decks/{deck_id}?token={alice.token}&last_version=1"

    async with websockets.connect(url) as ws:

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    frames.append(json.loads(message))

        reading = asyncio.create_task(read())
        with contextlib.suppress(ConnectionClosed):
            for _ in range(3_000):
                await ws.send('{"type": "Nope"}')
        await asyncio.wait_for(reading, 10)

    codes = [frame.get("code") for frame in frames]
    close = ws.protocol.close_rcvd
    assert close is not None, "the socket was reset, not closed"
    assert (close.code, close.reason) == (CLOSE_POLICY_VIOLATION, "too many frames")
    assert frames[0]["event_type"] == "DeckCancelled"
    assert codes.count("rate_limited") == 1
    assert 1 <= codes.count("invalid_frame") <= 21
