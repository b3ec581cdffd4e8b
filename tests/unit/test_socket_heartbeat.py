"""A socket's heartbeat is its safety net for a live event that never comes: it reads the deck's
events from the database only when the deck's head is past what the socket sent and the live
events on their way have not brought it there within a moment."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import msgspec
import pytest

from presto_deck.api.socket_session import SocketSession
from presto_deck.application.heads import DeckHeads
from presto_deck.domain.events import Event, encode_event
from presto_deck.infrastructure.tokens import Identity
from tests.unit.fakes import Harness

HEARTBEAT = 0.4  # the grace for live events: half of it


class FakeSocket:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed = asyncio.Event()

    async def send_data(self, data: str | bytes, mode: str = "text") -> None:
        self.frames.append(json.loads(data))

    async def receive(self) -> dict[str, Any]:
        await self.closed.wait()
        return {"type": "websocket.disconnect"}

    def events(self) -> list[tuple[str, int]]:
        return [
            (f["event_type"], f["version"]) for f in self.frames if f["event_type"] != "Heartbeat"
        ]


@pytest.fixture
def h() -> Harness:
    return Harness()


def _session(h: Harness, socket: FakeSocket, deck_id: UUID, heartbeat: float) -> SocketSession:
    return SocketSession(
        socket,  # type: ignore[arg-type]
        h.service,
        h.edits,
        Identity(user_id="alice", expires_at=time.time() + 60),
        deck_id,
        msgspec.structs.replace(h.settings, ws_heartbeat_seconds=heartbeat),
        DeckHeads(h.service.versions, max_age_seconds=0.05),
    )


async def _watch(h: Harness, live_after: float | None) -> tuple[FakeSocket, list[int]]:
    """A socket on a deck that is cancelled just after it opens, the event committed but not
    fanned out; it comes live ``live_after`` seconds after the socket opened (never, with None).
    What the socket was sent, and after which versions the database was asked for events."""
    deck = await h.create()
    asked: list[int] = []
    history = h.service.history

    async def counted(deck_id: UUID, version: int, limit: int) -> Sequence[Event]:
        asked.append(version)
        return await history(deck_id, version, limit)

    h.service.history = counted  # type: ignore[method-assign]
    socket = FakeSocket()
    session = _session(h, socket, deck.id, HEARTBEAT)
    opened = time.monotonic()
    running = asyncio.create_task(session.run(last_version=1, current=1))
    await asyncio.sleep(0.02)  # open, and up to date
    await h.service.cancel("alice", deck.id)  # version 2, committed; the fan-out is this test's
    if live_after is not None:
        await asyncio.sleep(live_after - (time.monotonic() - opened))
        (event,) = h.store.events(deck.id)
        session.inbox.put(encode_event(event))
    await asyncio.sleep(2.5 * HEARTBEAT - (time.monotonic() - opened))
    socket.closed.set()
    await asyncio.wait_for(running, 2)
    return socket, asked


async def test_an_event_still_on_its_way_at_a_heartbeat_arrives_live_without_a_database_read(
    h: Harness,
) -> None:
    socket, asked = await _watch(h, live_after=HEARTBEAT + 0.05)  # within the beat's grace

    assert socket.events() == [("DeckCancelled", 2)]
    assert asked == []  # none as it opened (it was up to date), none at the beat


async def test_an_event_that_never_comes_live_is_read_from_the_database_at_the_heartbeat(
    h: Harness,
) -> None:
    socket, asked = await _watch(h, live_after=None)

    assert socket.events() == [("DeckCancelled", 2)]
    assert asked[:1] == [1]  # the heartbeat's look after the grace (none as it opened)


async def test_a_socket_that_opens_behind_the_deck_reads_what_it_missed_at_once() -> None:
    h = Harness()
    deck = await h.create()
    await h.service.cancel("alice", deck.id)  # version 2, before the socket opens
    socket = FakeSocket()
    session = _session(h, socket, deck.id, heartbeat=60)
    running = asyncio.create_task(session.run(last_version=1, current=2))
    await asyncio.sleep(0.05)  # long before any heartbeat

    assert socket.events() == [("DeckCancelled", 2)]
    socket.closed.set()
    await asyncio.wait_for(running, 2)
