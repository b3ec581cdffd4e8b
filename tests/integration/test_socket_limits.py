"""Limits on sockets, through the real API on PostgreSQL and Redis (SPEC §8c).

Open sockets are counted per user and in all, in Redis, so the counts hold across API instances;
a socket over either limit is accepted and closed at once with 1008, before any event. A seat
lapses three heartbeat periods after its instance stopped refreshing it (it died). Client frames
over the rate of a socket, pings and pongs included, are dropped (messages with one
``rate_limited`` error, pings without a pong), and a client that keeps flooding is closed with
1008.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Opcode
from websockets.frames import Frame as WireFrame
from websockets.http11 import Response
from websockets.uri import parse_uri

from presto_deck.infrastructure.messaging.limits import RedisSocketQuota
from presto_deck.settings import Settings
from tests.support.client import DeckClient, Frame
from tests.support.deck_http import client_of
from tests.support.raw_http import connection
from tests.support.running import RunningApi, running_api
from tests.support.sockets import is_heartbeat, next_frame, reply_to, wait_until_live

CLOSE_POLICY_VIOLATION = 1008
PER_USER = 2
FRAMES_PER_SECOND = 5
#: A client frame whose answer (an ``invalid_frame`` error naming it) is told from the others.
PROBE = '{"type": "Probe"}'


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings, limit_sockets_per_user=PER_USER, limit_frames_per_second=FRAMES_PER_SECOND
    )


async def cancelled_deck(client: DeckClient) -> str:
    """A deck of the client's whose only event is DeckCancelled (version 2); no worker needed."""
    deck_id = await client.create("Seats")
    response = await client.http.post(f"/api/v1/decks/{deck_id}/cancel")
    assert response.status_code == 202, response.text
    return deck_id


async def admitted(stack: contextlib.AsyncExitStack, client: DeckClient, deck_id: str) -> None:
    """Open a socket that the server must admit, kept open until ``stack`` closes."""
    ws = await stack.enter_async_context(client.socket(deck_id, last_version=1))
    assert (await next_frame(ws))["event_type"] == "DeckCancelled"


async def refusal(client: DeckClient, deck_id: str) -> tuple[int, str]:
    """Open a socket that the server must refuse; its close code and reason.

    Fails if any frame (the deck's DeckCancelled, for one) arrives before the close.
    """
    async with client.socket(deck_id, last_version=1) as ws, asyncio.timeout(5):
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    close = closed.value.rcvd
    assert close is not None, "the connection ended without a close frame"
    return close.code, close.reason


async def admitted_again(
    stack: contextlib.AsyncExitStack, client: DeckClient, deck_id: str, timeout: float
) -> None:
    """Try to open a socket until the server admits one (no fixed sleeps)."""
    async with asyncio.timeout(timeout):
        while True:
            ws = await stack.enter_async_context(client.socket(deck_id, last_version=1))
            with contextlib.suppress(ConnectionClosed):
                assert (await next_frame(ws))["event_type"] == "DeckCancelled"
                return
            assert ws.close_code == CLOSE_POLICY_VIOLATION
            await asyncio.sleep(0.05)


# -- sockets per user and in all -------------------------------------------------------------------


async def test_a_socket_past_the_users_limit_is_closed_1008_before_any_event(
    api: RunningApi, alice: DeckClient, bob: DeckClient
) -> None:
    alices, bobs = await cancelled_deck(alice), await cancelled_deck(bob)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(PER_USER):
            await admitted(stack, alice, alices)
        refused = await refusal(alice, alices)
        await admitted(stack, bob, bobs)  # Bob has seats of his own

    assert refused == (CLOSE_POLICY_VIOLATION, "too many open sockets for this user")


async def test_a_closed_socket_gives_its_seat_back(api: RunningApi, alice: DeckClient) -> None:
    deck_id = await cancelled_deck(alice)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(PER_USER - 1):
            await admitted(stack, alice, deck_id)
        async with alice.socket(deck_id, last_version=1) as leaving:
            await next_frame(leaving)
            refused = await refusal(alice, deck_id)

        await admitted_again(stack, alice, deck_id, timeout=5)

    assert refused[0] == CLOSE_POLICY_VIOLATION


async def test_past_the_total_limit_every_users_socket_is_closed_1008(
    settings: Settings,
) -> None:
    limited = msgspec.structs.replace(settings, limit_sockets_per_user=100, limit_sockets_total=3)
    async with (
        running_api(limited) as api,
        client_of(api, settings, "alice") as alice,
        client_of(api, settings, "bob") as bob,
        client_of(api, settings, "carol") as carol,
    ):
        decks = {client: await cancelled_deck(client) for client in (alice, bob, carol)}
        async with contextlib.AsyncExitStack() as stack:
            for client in (alice, alice, bob):
                await admitted(stack, client, decks[client])
            refused = [await refusal(client, decks[client]) for client in (alice, bob, carol)]

    assert refused == [(CLOSE_POLICY_VIOLATION, "too many open sockets")] * 3


async def test_the_socket_counts_are_shared_by_two_api_instances(settings: Settings) -> None:
    limited = msgspec.structs.replace(settings, limit_sockets_per_user=3, limit_sockets_total=4)
    async with (
        running_api(limited) as first,
        running_api(limited) as second,
        client_of(first, settings, "alice") as alice_on_first,
        client_of(second, settings, "alice") as alice_on_second,
        client_of(second, settings, "bob") as bob_on_second,
        client_of(first, settings, "carol") as carol_on_first,
    ):
        alices = await cancelled_deck(alice_on_first)
        bobs = await cancelled_deck(bob_on_second)
        carols = await cancelled_deck(carol_on_first)
        async with contextlib.AsyncExitStack() as stack:
            for client in (alice_on_first, alice_on_first, alice_on_second):
                await admitted(stack, client, alices)
            alice_refused = [await refusal(c, alices) for c in (alice_on_first, alice_on_second)]
            await admitted(stack, bob_on_second, bobs)  # the fourth socket in all
            carol_refused = await refusal(carol_on_first, carols)

    assert [code for code, _ in alice_refused] == [CLOSE_POLICY_VIOLATION] * 2
    assert carol_refused == (CLOSE_POLICY_VIOLATION, "too many open sockets")


async def test_the_seats_of_an_instance_that_died_lapse_within_three_heartbeats(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    # An instance that seated two of Alice's sockets and died: it never refreshes or releases.
    dead_instance = RedisSocketQuota(
        api.container.redis,
        per_user=PER_USER,
        total=settings.limit_sockets_total,
        seat_seconds=3 * settings.ws_heartbeat_seconds,
    )
    for ghost in ("ghost-1", "ghost-2"):
        assert await dead_instance.claim(ghost, "alice") is None
    deck_id = await cancelled_deck(alice)
    loop = asyncio.get_running_loop()
    died_at = loop.time()

    refused = await refusal(alice, deck_id)
    async with contextlib.AsyncExitStack() as stack:
        await admitted_again(stack, alice, deck_id, timeout=10)
    waited = loop.time() - died_at

    assert refused[0] == CLOSE_POLICY_VIOLATION
    assert waited <= 3 * settings.ws_heartbeat_seconds + 2


async def test_the_seats_of_open_sockets_do_not_lapse(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    deck_id = await cancelled_deck(alice)
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for _ in range(PER_USER):
            ws = await stack.enter_async_context(alice.socket(deck_id, last_version=1))
            await next_frame(ws)
            sockets.append(ws)
        for _ in range(5):  # five heartbeat periods, past the seats' own lifetime of three
            for ws in sockets:
                assert is_heartbeat(await next_frame(ws))

        refused = await refusal(alice, deck_id)

    assert refused[0] == CLOSE_POLICY_VIOLATION


# -- client frames ---------------------------------------------------------------------------------


async def answers_until_a_probe(ws: ClientConnection, timeout: float = 10) -> list[Frame]:
    """The answers to the frames sent so far, up to the answer to a probe frame.

    A probe is sent every quarter of a second, so one is answered as soon as the rate allows.
    """

    async def probe() -> None:
        while True:
            await ws.send(PROBE)
            await asyncio.sleep(0.25)

    answers: list[Frame] = []
    prober = asyncio.create_task(probe())
    try:
        async with asyncio.timeout(timeout):
            while True:
                frame = await next_frame(ws)
                if "Probe" in frame.get("message", ""):
                    return answers
                if not is_heartbeat(frame):
                    answers.append(frame)
    finally:
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await prober


async def test_frames_past_the_rate_are_dropped_with_one_rate_limited_error(
    api: RunningApi, alice: DeckClient
) -> None:
    deck_id = await cancelled_deck(alice)
    async with alice.socket(deck_id) as ws:
        await wait_until_live(ws)
        for _ in range(4 * FRAMES_PER_SECOND):  # a burst, not yet a flood
            await ws.send("{}")
        answers = await answers_until_a_probe(ws)

    codes = [answer["code"] for answer in answers]
    answered = codes.count("invalid_frame")
    assert codes == ["invalid_frame"] * answered + ["rate_limited"], codes
    assert answered <= FRAMES_PER_SECOND + 1  # the bucket and what refilled during the burst
    assert f"{FRAMES_PER_SECOND} frames a second" in answers[-1]["message"]


async def test_a_client_that_keeps_flooding_is_closed_1008(
    api: RunningApi, alice: DeckClient
) -> None:
    deck_id = await cancelled_deck(alice)
    async with alice.socket(deck_id) as ws:
        await wait_until_live(ws)
        with contextlib.suppress(ConnectionClosed):  # the server may close before the end
            for _ in range(20_000):
                await ws.send("{}")
        answers = []
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    answers.append(await next_frame(ws))

    assert (ws.close_code, ws.close_reason) == (CLOSE_POLICY_VIOLATION, "too many frames")
    codes = [answer["code"] for answer in answers if not is_heartbeat(answer)]
    assert codes.count("rate_limited") == 1
    assert codes.count("invalid_frame") <= FRAMES_PER_SECOND + 1


async def control_frame_flood(
    api: RunningApi, client: DeckClient, deck_id: str, opcode: Opcode, count: int
) -> tuple[int, Close | None]:
    """Open a deck's socket, send ``count`` control frames of ``opcode`` at once and read until the
    server closes (or 10 s pass): the pongs it sent, and its close frame."""
    protocol = ClientProtocol(parse_uri(f"{api.ws_url}/ws/decks/{deck_id}?token={client.token}"))
    protocol.send_request(protocol.connect())
    pongs = 0
    async with connection(api.url) as (reader, writer):

        async def exchange() -> list[object]:
            writer.write(b"".join(protocol.data_to_send()))
            data = await reader.read(65536)
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            return list(protocol.events_received())

        async with asyncio.timeout(10):
            while not any(isinstance(event, Response) for event in await exchange()):
                pass
        assert protocol.handshake_exc is None, protocol.handshake_exc
        for n in range(count):
            payload = n.to_bytes(4, "big")
            protocol.send_ping(payload) if opcode is Opcode.PING else protocol.send_pong(payload)
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(10):
                while protocol.close_rcvd is None and not reader.at_eof():
                    events = await exchange()
                    pongs += sum(
                        isinstance(event, WireFrame) and event.opcode is Opcode.PONG
                        for event in events
                    )
    return pongs, protocol.close_rcvd


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG], ids=["pings", "pongs"])
async def test_a_flood_of_control_frames_is_not_answered_and_is_closed_1008(
    api: RunningApi, alice: DeckClient, opcode: Opcode
) -> None:
    deck_id = await cancelled_deck(alice)

    pongs, close = await control_frame_flood(api, alice, deck_id, opcode, count=5_000)

    assert pongs <= FRAMES_PER_SECOND + 1  # the bucket and what refilled during the flood
    assert close is not None, "the server never closed the flooding socket"
    assert (close.code, close.reason) == (CLOSE_POLICY_VIOLATION, "too many frames")


async def test_pings_and_messages_share_one_budget(api: RunningApi, alice: DeckClient) -> None:
    deck_id = await cancelled_deck(alice)
    async with alice.socket(deck_id) as ws:
        await wait_until_live(ws)
        await asyncio.sleep(1)  # the bucket fills up again
        pongs = [await ws.ping() for _ in range(FRAMES_PER_SECOND)]
        answer = await reply_to(ws, "{}")
        async with asyncio.timeout(5):
            await asyncio.gather(*pongs)  # the pings within the budget are answered

    assert answer["code"] == "rate_limited", answer
