"""Clients that read their WebSocket slowly or not at all, on the real uvicorn server: the server
holds a bounded backlog per socket, resets a socket that reads nothing for the write timeout,
and a slow reader whose backlog overflowed still gets every version once, in order."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from uuid import UUID

import msgspec
import pytest
import websockets
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from presto_deck.domain.events import Event
from presto_deck.infrastructure.messaging.live import Follower
from presto_deck.settings import Settings
from tests.support.client import DeckClient, assert_contiguous, eventually, receive_events
from tests.support.deck_http import client_of
from tests.support.flood import flood
from tests.support.raw_http import address
from tests.support.running import RunningApi, api_of, running_api

SEND_QUEUE = 20
WRITE_TIMEOUT = 2.0
#: The client's receive buffer: tiny, so that nearly everything waits on the server's side.
CLIENT_RECEIVE_BUFFER = 4096
SLIDE_BYTES = 16 * 1024


def _kernel_send_buffer_max() -> int:
    """How much the kernel may buffer for one socket's unsent data (Linux autotunes up to it)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 * 1024 * 1024


#: Twice what the kernel holds for the socket, so that the server has to keep or drop the rest.
SLIDES = 2 * _kernel_send_buffer_max() // SLIDE_BYTES


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings, ws_send_queue=SEND_QUEUE, ws_write_timeout_seconds=WRITE_TIMEOUT
    )


def followers(api: RunningApi, deck_id: str) -> frozenset[Follower]:
    """The inboxes of the deck's sockets in the API."""
    return api.container.api_role().live.feeds.followers(UUID(deck_id))


def open_websockets(api: RunningApi) -> int:
    connections = api.server.server_state.connections
    return sum(isinstance(c, WebSocketsSansIOProtocol) for c in connections)


#: Linux's state of a socket whose connection was reset (``struct tcp_info``'s first byte).
_TCP_CLOSE = 7


def was_reset(sock: socket.socket) -> bool:
    """Whether the server reset the connection (one closed in good order sits in CLOSE_WAIT until
    we close it too)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == _TCP_CLOSE


async def small_socket(api: RunningApi) -> socket.socket:
    """A connection to the API with a tiny receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RECEIVE_BUFFER)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, address(api.url))
    return sock


@contextlib.asynccontextmanager
async def never_reading_socket(api: RunningApi, path: str) -> AsyncIterator[socket.socket]:
    """A socket that asks for a WebSocket and then reads nothing, not even the handshake."""
    sock = await small_socket(api)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await asyncio.get_running_loop().sock_sendall(sock, request.encode())
        yield sock
    finally:
        sock.close()


async def largest_backlog(api: RunningApi, deck_id: str, until: asyncio.Task[int]) -> int:
    """The longest any of the deck's inboxes got while ``until`` runs."""
    largest = 0
    while not until.done():
        largest = max([largest, *(len(inbox) for inbox in followers(api, deck_id))])
        await asyncio.sleep(0.005)
    return largest


def record_history_pages(api: RunningApi, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the history pages the API's sockets ask for, from now on: a page is held in
    memory until its last event is sent, so it counts towards a stalled socket's backlog."""
    decks = api_of(api.container).decks
    read_history = decks.history
    pages: list[int] = []

    async def recording(deck_id: UUID, version: int, limit: int) -> Sequence[Event]:
        pages.append(limit)
        return await read_history(deck_id, version, limit)

    monkeypatch.setattr(decks, "history", recording)
    return pages


async def test_a_socket_that_never_reads_is_reset_within_the_write_timeout_with_a_bounded_backlog(
    api: RunningApi, alice: DeckClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    deck_id = await alice.create()
    # The socket opens behind the deck: it reads what it missed, a page of history at a time.
    await flood(api.container, deck_id, slides=3, slide_bytes=100)
    history_pages = record_history_pages(api, monkeypatch)
    path = f"/ws/decks/{deck_id}?token={alice.token}&last_version=1"
    async with never_reading_socket(api, path) as sock:
        await holds(lambda: len(followers(api, deck_id)) == 1, timeout=10)

        flooding = asyncio.create_task(
            flood(api.container, deck_id, slides=SLIDES, slide_bytes=SLIDE_BYTES, after=3)
        )
        largest = await largest_backlog(api, deck_id, until=flooding)
        await flooding
        flooded_at = time.monotonic()
        await holds(lambda: open_websockets(api) == 0, timeout=WRITE_TIMEOUT + 10)
        gone_after = time.monotonic() - flooded_at
        # A reset, not a close: a close would leave the unsent megabytes in the kernel.
        await holds(lambda: was_reset(sock), timeout=5)

    assert largest <= SEND_QUEUE
    assert history_pages, "the socket should have read the history it missed"
    assert max(history_pages) <= SEND_QUEUE
    assert gone_after <= WRITE_TIMEOUT + 3, "the stalled socket outlived its write timeout"
    await holds(lambda: not followers(api, deck_id), timeout=5)


async def test_a_slow_reader_whose_backlog_overflowed_gets_every_version_in_order(
    settings: Settings,
) -> None:
    patient = msgspec.structs.replace(settings, ws_write_timeout_seconds=60)  # never aborted here
    async with running_api(patient) as api, client_of(api, patient, "alice") as alice:
        deck_id = await alice.create()
        url = f"{api.ws_url}/ws/decks/{deck_id}?token={alice.token}&last_version=1"
        sock = await small_socket(api)
        # max_queue=1: the client stops reading from the network once it holds one message.
        async with websockets.connect(url, sock=sock, max_queue=1) as ws:
            await holds(lambda: len(followers(api, deck_id)) == 1, timeout=10)
            (inbox,) = followers(api, deck_id)

            last = await flood(api.container, deck_id, slides=SLIDES, slide_bytes=SLIDE_BYTES)
            # A full inbox once the flood is out means the oldest events were dropped from it.
            await holds(lambda: len(inbox) == SEND_QUEUE, timeout=10)
            events = await receive_events(ws, lambda frame: frame["version"] == last)

    assert_contiguous(events, first=2)
    assert events[-1]["version"] == last


async def holds(check: Callable[[], bool], timeout: float) -> None:
    async def checked() -> bool:
        return check()

    await eventually(checked, timeout)
