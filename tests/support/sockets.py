"""Reading a deck's WebSocket frame by frame: heartbeats, replies to client frames, and knowing
when a session has replayed and listens."""

from __future__ import annotations

import asyncio
import json

import websockets
from websockets.asyncio.client import ClientConnection

from tests.support.client import DeckClient, Frame, is_terminal, receive_events


def is_heartbeat(frame: Frame) -> bool:
    return frame.get("event_type") == "Heartbeat"


async def next_frame(ws: ClientConnection, timeout: float = 10) -> Frame:
    async with asyncio.timeout(timeout):
        return dict(json.loads(await ws.recv()))


async def events_until_heartbeat(
    ws: ClientConnection, timeout: float = 10
) -> tuple[list[Frame], Frame]:
    """The deck events that arrive before the first heartbeat, and that heartbeat.

    The server sends its replay before it starts the heartbeat timer, so on a deck that no longer
    changes these are exactly the replayed events.
    """
    events: list[Frame] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await next_frame(ws)
            if is_heartbeat(frame):
                return events, frame
            events.append(frame)


async def reply_to(ws: ClientConnection, message: str | bytes, timeout: float = 10) -> Frame:
    """Send a client frame and return the server's answer to it (heartbeats skipped)."""
    await ws.send(message)
    async with asyncio.timeout(timeout):
        while True:
            frame = await next_frame(ws)
            if frame.get("type") == "error":
                return frame
            assert is_heartbeat(frame), f"unexpected frame before the reply: {frame}"


async def wait_until_live(ws: ClientConnection) -> None:
    """Return once the session has replayed and listens: it answers frames only from then on.

    Only for sockets that have nothing to replay; any deck event here fails the test.
    """
    answer = await reply_to(ws, "{}")
    assert answer["code"] == "invalid_frame"


async def take(ws: ClientConnection, count: int) -> list[Frame]:
    """The next ``count`` deck events, or fewer if the deck ends first."""
    received = 0

    def enough(frame: Frame) -> bool:
        nonlocal received
        received += 1
        return is_terminal(frame) or received >= count

    return await receive_events(ws, enough)


async def watch_from_start(client: DeckClient, deck_id: str) -> list[Frame]:
    """Every event of the deck from version 2 through its terminal event, over one socket."""
    async with client.socket(deck_id, last_version=1) as ws:
        return await receive_events(ws, is_terminal)


async def replayed_after(client: DeckClient, deck_id: str, version: int) -> list[Frame]:
    """What a socket opened with ``last_version=version`` replays, up to the point it listens.

    The server answers a client frame only once its replay is sent, so the frames before the
    answer to a bad frame are exactly the replay.
    """
    url = f"{client.ws_url}/ws/decks/{deck_id}?token={client.token}&last_version={version}"
    events: list[Frame] = []
    async with websockets.connect(url) as ws:
        await ws.send("{}")
        async with asyncio.timeout(20):
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "error":
                    return events
                if frame.get("event_type") != "Heartbeat":
                    events.append(frame)
