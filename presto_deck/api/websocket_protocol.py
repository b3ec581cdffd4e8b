"""uvicorn's sans-I/O WebSocket protocol that gives up on a client that stops reading.

uvicorn makes a send wait while the transport's buffer is over its high-water mark, and waits
for as long as it takes: a client that never reads holds its socket, its unsent frames and the
session's backlog for ever. Even a keepalive ping that goes unanswered only ``close()``s the
transport, and ``close()`` waits for the unsent buffer, which never drains.

Here the high-water mark is zero: whatever the kernel does not take at once pauses the sender, so
the process holds at most one unsent frame per socket. Writes that stay paused for
``write_timeout_seconds`` reset the connection, and so does a keepalive ping left unanswered; a
reset also frees what the kernel still held for the client. The session's backlog is bounded
separately, by the channels plugin (api/app.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import ClassVar

from loguru import logger
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

#: SO_LINGER on, with a zero linger time.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """The timeout is a class attribute: ``bounded_websocket_protocol`` sets it."""

    write_timeout_seconds: ClassVar[float]

    # Per connection (a class-level default, so uvicorn's constructor stays untouched).
    _stalled_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.set_write_buffer_limits(high=0)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled_timer is None:
            self._stalled_timer = self.loop.call_later(self.write_timeout_seconds, self._stalled)

    def resume_writing(self) -> None:
        self._stop_stalled_timer()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_stalled_timer()
        super().connection_lost(exc)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        # The close frame just written sits behind whatever the client did not read.
        self._reset()

    def _stalled(self) -> None:
        self._stalled_timer = None
        logger.info(
            "WebSocket of {} reset: it read nothing for {}s",
            "{}:{}".format(*self.client) if self.client else "a client",
            self.write_timeout_seconds,
        )
        self._reset()

    def _reset(self) -> None:
        """Drop the connection and everything unsent, in this process and in the kernel."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # A plain close() leaves the kernel retrying the unsent bytes (megabytes per
            # socket) for as long as the client acknowledges its zero window; a zero linger
            # time makes it send a reset and free them at once.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        self.transport.abort()

    def _stop_stalled_timer(self) -> None:
        if self._stalled_timer is not None:
            self._stalled_timer.cancel()
            self._stalled_timer = None


def bounded_websocket_protocol(*, write_timeout_seconds: float) -> type[BoundedWebSocketProtocol]:
    """The protocol class for uvicorn's ``ws=``, with this write timeout."""

    class _Configured(BoundedWebSocketProtocol):
        pass

    _Configured.write_timeout_seconds = write_timeout_seconds
    return _Configured
