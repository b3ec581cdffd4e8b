"""The WebSocket protocol's timers against a fake transport: a client that stops reading is
aborted, one that reads again in time is not, and an unanswered ping aborts instead of waiting
for a buffer that never drains."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from presto_deck.api.websocket_protocol import BoundedWebSocketProtocol, bounded_websocket_protocol

WRITE_TIMEOUT = 0.05


class FakeTransport(asyncio.Transport):
    """Records what the protocol does to its connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.high_water: int | None = None
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.written += data

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high_water = high

    def close(self) -> None:
        self.closed = True  # a real transport would now wait for its unsent buffer

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


@pytest.fixture
async def connected() -> tuple[BoundedWebSocketProtocol, FakeTransport]:
    config = uvicorn.Config(_app, log_config=None, ws_per_message_deflate=False)
    config.load()
    protocol_class = bounded_websocket_protocol(
        write_timeout_seconds=WRITE_TIMEOUT, frames_per_second=20
    )
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def until_aborted(transport: FakeTransport, timeout: float = 2) -> None:
    async with asyncio.timeout(timeout):
        while not transport.aborted:
            await asyncio.sleep(0.005)


async def test_anything_the_kernel_does_not_take_pauses_the_sender(
    connected: tuple[BoundedWebSocketProtocol, FakeTransport],
) -> None:
    _, transport = connected

    assert transport.high_water == 0


async def test_writes_paused_past_the_write_timeout_abort_the_connection(
    connected: tuple[BoundedWebSocketProtocol, FakeTransport],
) -> None:
    protocol, transport = connected
    started = asyncio.get_running_loop().time()

    protocol.pause_writing()
    await until_aborted(transport)

    assert asyncio.get_running_loop().time() - started >= WRITE_TIMEOUT * 0.9
    assert not transport.closed, "close() would wait for the unsent buffer"


async def test_writes_resumed_within_the_write_timeout_keep_the_connection(
    connected: tuple[BoundedWebSocketProtocol, FakeTransport],
) -> None:
    protocol, transport = connected

    for _ in range(5):  # a slow reader: paused again and again, never for long
        protocol.pause_writing()
        await asyncio.sleep(WRITE_TIMEOUT / 2)
        protocol.resume_writing()
    # Nothing can signal that a timer did not fire: wait past the point where it would have.
    await asyncio.sleep(WRITE_TIMEOUT * 3)

    assert not transport.aborted
    assert protocol.writable.is_set()


async def test_a_connection_lost_while_paused_leaves_no_timer_behind(
    connected: tuple[BoundedWebSocketProtocol, FakeTransport],
) -> None:
    protocol, transport = connected
    protocol.pause_writing()

    protocol.connection_lost(None)
    await asyncio.sleep(WRITE_TIMEOUT * 3)

    assert not transport.aborted


async def test_an_unanswered_ping_aborts_the_connection(
    connected: tuple[BoundedWebSocketProtocol, FakeTransport],
) -> None:
    protocol, transport = connected

    protocol.keepalive_timeout()

    assert transport.aborted
