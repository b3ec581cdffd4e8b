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

Every frame the client sends, pings and pongs included (its close aside), is admitted here by the
socket's ``FrameThrottle``: websockets answers every ping, and uvicorn hands every message to the
application, however fast they come. A ping over the rate is not answered; a message over the
rate is dropped, and the first of a run of them reaches the application marked
(``is_over_the_rate``) so that it can tell the client once. A flood closes the socket with 1008,
after the answers to the messages that arrived before it; what the client sends after that is
read and dropped until it closes its side, for ``_FLOOD_LINGER_SECONDS`` at most (a close with
its bytes unread would be a reset, which makes the client's kernel drop what it had not read).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar, cast

from loguru import logger
from uvicorn._types import ASGIReceiveEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import HeaderLineTooLong, RequestLineTooLong, TooManyHeaders
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from presto_deck.api.http_protocol import error_response
from presto_deck.application.limits import FrameRateExceeded, FrameThrottle, FrameVerdict

#: SO_LINGER on, with a zero linger time.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)
#: How long a client closed for a flood has to close its side before its connection is reset.
_FLOOD_LINGER_SECONDS = 2.0
#: The key that marks a received message as the first of a run over the rate.
_OVER_THE_RATE = "presto_deck.over_the_rate"
_DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
#: How a message's frames combine: the worst verdict of any of them is the message's.
_SEVERITY = {FrameVerdict.ACCEPT: 0, FrameVerdict.DROP: 1, FrameVerdict.DROP_AND_WARN: 2}


def is_over_the_rate(message: Mapping[str, Any]) -> bool:
    """Whether a received message is the first of a run of messages over the frame rate: the
    client should be told once, and the message itself is not to be answered."""
    return bool(message.get(_OVER_THE_RATE))


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """The write timeout and the frame rate are class attributes: ``bounded_websocket_protocol``
    sets them."""

    write_timeout_seconds: ClassVar[float]
    frames_per_second: ClassVar[int]

    # Per connection (class-level defaults, so uvicorn's constructor stays untouched).
    _stalled_timer: asyncio.TimerHandle | None = None
    _throttled: _ThrottledServerProtocol
    #: The event that stands for the flood in the application's queue, once there is one.
    _flood_event: ASGIReceiveEvent | None = None
    #: Closed for a flood: what the client still sends is dropped unread, until the client
    #: closes or ``close_timer`` resets the connection.
    _discarding = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.set_write_buffer_limits(high=0)
        # uvicorn's sans-I/O connection, made again the same way but with its frames throttled.
        self.conn = self._throttled = _ThrottledServerProtocol(
            FrameThrottle(self.frames_per_second),
            extensions=self.conn.available_extensions,
            max_size=self.config.ws_max_size,
            logger=self.conn.logger,
        )

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        super().data_received(data)
        if self.conn.state is State.CONNECTING and self.conn.handshake_exc is not None:
            self._refuse_handshake(self.conn.handshake_exc)
            return
        flood = self._throttled.flood
        if flood is not None and self._flood_event is None and not self.close_sent:
            # Behind the messages that came before it: the application answers those first.
            self._flood_event = {
                "type": "websocket.disconnect",
                "code": CloseCode.POLICY_VIOLATION,
                "reason": str(flood),
            }
            self.queue.put_nowait(self._flood_event)
            self.transport.pause_reading()  # nothing more is read from a flooding client

    def _refuse_handshake(self, exc: Exception) -> None:
        """Answer an upgrade request websockets could not parse (a line over its 8 KiB, more than
        128 headers, no HTTP at all) and close: uvicorn sends nothing when no request came out of
        the parser, and the connection would stay open for ever."""
        if self.transport.is_closing():
            return
        if isinstance(exc, RequestLineTooLong):
            status = HTTPStatus.REQUEST_URI_TOO_LONG
        elif isinstance(exc, HeaderLineTooLong | TooManyHeaders):
            status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
        else:
            status = HTTPStatus.BAD_REQUEST
        self.transport.write(error_response(status))
        self.transport.close()

    def send_receive_event_to_app(self) -> None:
        verdict = self._throttled.message_verdicts.pop(0)
        if verdict is FrameVerdict.ACCEPT:
            super().send_receive_event_to_app()
            return
        self.frames = []
        if verdict is FrameVerdict.DROP_AND_WARN and not self.close_sent:
            marked = {"type": "websocket.receive", "bytes": b"", _OVER_THE_RATE: True}
            self.queue.put_nowait(cast(ASGIReceiveEvent, marked))

    async def receive(self) -> ASGIReceiveEvent:
        message = await super().receive()
        if message is self._flood_event:
            self._close_for_flood()
        return message

    def _close_for_flood(self) -> None:
        """Close with 1008: the application has taken every message that came before the flood."""
        flood = self._throttled.flood
        closed = self.close_sent or self.transport.is_closing() or self.conn.state is not State.OPEN
        if flood is None or closed:
            return
        logger.info(
            "WebSocket of {} closed: {}",
            "{}:{}".format(*self.client) if self.client else "a client",
            flood,
        )
        self.conn.send_close(CloseCode.POLICY_VIOLATION, str(flood))
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        # Closing with the flood's bytes unread in the kernel would send a reset, and the
        # client's kernel would throw away what it had not read yet: the answers to the frames
        # before the flood and this close frame. So end our side after them (a FIN), read and
        # drop what still comes, and reset only a client that has not closed within a moment.
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.transport.resume_reading()
        # uvicorn's own wait for the client's close: the application's end leaves it be.
        self.close_timer = self.loop.call_later(_FLOOD_LINGER_SECONDS, self._reset)

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


class _ThrottledServerProtocol(ServerProtocol):
    """websockets' server side of a connection, with the client's frames admitted by ``throttle``
    while the connection is open: a ping over the rate is not answered, each message's verdict
    is kept for uvicorn in ``message_verdicts``, and after a flood (``flood``) nothing but a
    close frame is taken any more."""

    def __init__(self, throttle: FrameThrottle, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._throttle = throttle
        #: The verdict of each message received in full and not yet handed on, oldest first.
        # A list, not a deque: it seldom holds more than one, and a deque costs 0.7 KiB a socket.
        self.message_verdicts: list[FrameVerdict] = []
        self._message_verdict = FrameVerdict.ACCEPT
        self.flood: FrameRateExceeded | None = None

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE or self.state is not State.OPEN:
            super().recv_frame(frame)
            return
        if self.flood is not None:
            return  # the socket is about to be closed: nothing more is read or answered
        try:
            verdict = self._throttle.admit()
        except FrameRateExceeded as exc:
            self.flood = exc
            return
        if frame.opcode is Opcode.PING and verdict is not FrameVerdict.ACCEPT:
            return  # not answered
        if frame.opcode in _DATA_OPCODES:
            self._message_verdict = max(self._message_verdict, verdict, key=_SEVERITY.__getitem__)
            if frame.fin:
                self.message_verdicts.append(self._message_verdict)
                self._message_verdict = FrameVerdict.ACCEPT
        super().recv_frame(frame)


def bounded_websocket_protocol(
    *, write_timeout_seconds: float, frames_per_second: int
) -> type[BoundedWebSocketProtocol]:
    """The protocol class for uvicorn's ``ws=``, with this write timeout and frame rate."""

    class _Configured(BoundedWebSocketProtocol):
        pass

    _Configured.write_timeout_seconds = write_timeout_seconds
    _Configured.frames_per_second = frames_per_second
    return _Configured
