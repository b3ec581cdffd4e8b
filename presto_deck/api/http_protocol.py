"""uvicorn's httptools protocol with the limits it lacks: the size of a request's head (request
line and headers) and the time a client may take to send it and its body.

httptools has none: it buffers a header for as long as the client keeps sending it, and waits
for the end of the head, and of the body, for ever. So the bytes of a head are counted as they
arrive and fed to the parser no further than the limit; past it the request gets 431 and the
connection is closed, and no more than twice the limit is ever held in memory. A head not
complete within the timeout, counted from the connection's opening, from its first byte, or from
the previous response when a pipelined head waited for it, gets 408 and the connection is closed.
The body must then arrive within the same time, counted from the end of its head; the clock
stops while the server itself does not read (a pipelined request waits for the one before it, or
the handler has not yet taken what arrived). Past it the request gets 408 if no response has
started, its handler sees the client gone, and the connection is closed. WebSocket upgrades are
parsed here too, so the limits of the head cover them.

uvicorn also parses every pipelined request it has read (sent before the answers to the previous
ones were read) and queues them all; a client that writes thousands at once has them all held in
memory. Here the parser is fed in slices that end no more request heads than the connection has
room for, up to ``MOST_WAITING_REQUESTS`` waiting; beyond that the rest of what was read is kept
unparsed and nothing more is read until a response is done. A pipelining client is still served,
in order; a flood holds a few requests and at most one read's worth of bytes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import ClassVar

import msgspec
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: The most requests a connection may hold waiting for the one being answered (pipelined).
MOST_WAITING_REQUESTS = 8
#: Every LF that ends an empty line; only there can a request's head end.
_EMPTY_LINE_END = re.compile(rb"(?<=\n)\r?\n")


class BoundedHttpProtocol(HttpToolsProtocol):
    """The limits are class attributes: ``bounded_http_protocol`` sets them."""

    max_head_bytes: ClassVar[int]
    head_timeout_seconds: ClassVar[float]

    # Per connection (class-level defaults, so uvicorn's constructor stays untouched).
    #: Bytes of the current head seen so far; None while a body is read.
    _head_bytes: int | None = 0
    _head_started = False
    _head_timer: asyncio.TimerHandle | None = None
    #: Bytes read from the client while the connection held ``MOST_WAITING_REQUESTS``: they are
    #: parsed once a response is done, and nothing more is read until then.
    _held = b""
    #: The last two bytes fed to the parser: an empty line may begin in one read and end in the
    #: next.
    _fed_tail = b""
    #: The time left for the body of the request whose head was parsed last; None when it has
    #: all arrived.
    _body_deadline: _Deadline | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _ConnectionFlowControl(
            transport, may_resume=lambda: not self._held, on_change=self._pace_body_deadline
        )
        self._start_head_timer()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_body_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._held:  # a transport that delivers what it had read before it paused
            self._held += data
            return
        data = self._fed_tail + data
        start = len(self._fed_tail)
        while start < len(data):
            room_for_requests = MOST_WAITING_REQUESTS - len(self.pipeline)
            if room_for_requests <= 0:
                self._hold(data[start:])
                return
            room = self._room()
            if room <= 0:
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return
            stop = _cut(data, start, min(start + room, len(data)), heads=room_for_requests)
            chunk = data[start:stop]
            self._fed_tail = data[max(stop - 2, 0) : stop]
            start = stop
            if self._head_bytes is not None:
                self._head_bytes += len(chunk)
            super().data_received(chunk)
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return  # refused, unparsable, or upgraded to a WebSocket

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        if not self._response_in_flight():
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._head_started = False
        self._stop_head_timer()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._body_deadline = _Deadline(
                self.loop, self.head_timeout_seconds, self._body_timed_out
            )
            self._pace_body_deadline()

    def on_message_complete(self) -> None:
        self._stop_body_deadline()
        super().on_message_complete()
        self._head_bytes = 0  # whatever comes next is the next request's head

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self._held:
            self._release()  # a waiting request has just started: there is room for another
        if self._head_started:
            self._start_head_timer()  # a pipelined head's time starts now
        self._pace_body_deadline()  # a pipelined request may just have started

    def _hold(self, data: bytes) -> None:
        """Keep ``data`` unparsed, and read nothing more, until a waiting request starts."""
        self._held = data
        self.flow.pause_reading()

    def _release(self) -> None:
        """Parse what was held, as far as there is room, and read again if all of it was."""
        held, self._held = self._held, b""
        self.data_received(held)
        if not self._held and not self.transport.is_closing():
            self.flow.resume_reading()

    def _room(self) -> int:
        """How many more bytes the parser may be fed now."""
        if self._head_bytes is None:
            # In a body: slices no longer than the limit, so that a head that starts inside one
            # is counted from the next on, and at most twice the limit is ever buffered.
            return self.max_head_bytes
        return self.max_head_bytes - self._head_bytes

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_started:
            self._refuse(HTTPStatus.REQUEST_TIMEOUT)
        else:
            self.transport.close()  # nothing was asked, so nothing is answered

    def _pace_body_deadline(self) -> None:
        """Let the body's time run only while the server reads and the request is being handled:
        a request queued behind another (pipelined) or whose bytes wait for the server to read
        them again has not been kept waiting by its client."""
        if self._body_deadline is None:
            return
        if self.flow.read_paused or self.pipeline:
            self._body_deadline.hold()
        else:
            self._body_deadline.run()

    def _stop_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.hold()
            self._body_deadline = None

    def _body_timed_out(self) -> None:
        """Give up on a request whose body did not arrive in time: 408 if nothing was answered
        yet, and the connection closed; its handler sees the client gone."""
        self._body_deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if not cycle.response_started:
            self.transport.write(error_response(HTTPStatus.REQUEST_TIMEOUT))
        if not cycle.response_complete:
            cycle.disconnected = True  # nothing more of this request is read or written
            cycle.message_event.set()
        self.transport.close()

    def _response_in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _refuse(self, status: HTTPStatus) -> None:
        """Answer ``status`` and close; if a response is being written, close after it instead."""
        self._stop_head_timer()
        if self._response_in_flight():
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        self.transport.write(error_response(status))
        self.transport.close()


class _Deadline:
    """A timer whose time runs only between ``run`` and ``hold``."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, seconds: float, expired: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._left = seconds
        self._expired = expired
        self._timer: asyncio.TimerHandle | None = None
        self._since = 0.0

    def run(self) -> None:
        if self._timer is None:
            self._since = self._loop.time()
            self._timer = self._loop.call_later(self._left, self._expire)

    def hold(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._left -= self._loop.time() - self._since

    def _expire(self) -> None:
        self._timer = None
        self._expired()


class _ConnectionFlowControl(FlowControl):
    """uvicorn's flow control, which reads again only when the protocol allows it (uvicorn asks
    to after every response, and whenever a handler waits for its body) and tells the protocol
    whenever reading stops or starts again."""

    def __init__(
        self,
        transport: asyncio.Transport,
        *,
        may_resume: Callable[[], bool],
        on_change: Callable[[], None],
    ) -> None:
        super().__init__(transport)
        self._may_resume = may_resume
        self._on_change = on_change

    def pause_reading(self) -> None:
        super().pause_reading()
        self._on_change()

    def resume_reading(self) -> None:
        if self._may_resume():
            super().resume_reading()
            self._on_change()


def _cut(data: bytes, start: int, end: int, *, heads: int) -> int:
    """Where to end the slice of ``data[start:end]`` fed to the parser next, so that it ends no
    more than ``heads`` request heads: past the ``heads``-th LF that ends an empty line, counting
    the lines that began in the two bytes before ``start`` (already fed)."""
    ends = 0
    for found in _EMPTY_LINE_END.finditer(data, max(start - 1, 0), end):
        if found.end() > start:
            ends += 1
            if ends == heads:
                return found.end()
    return end


def bounded_http_protocol(
    *, max_head_bytes: int, head_timeout_seconds: float
) -> type[BoundedHttpProtocol]:
    """The protocol class for uvicorn's ``http=``, with these limits."""

    class _Configured(BoundedHttpProtocol):
        pass

    _Configured.max_head_bytes = max_head_bytes
    _Configured.head_timeout_seconds = head_timeout_seconds
    return _Configured


def error_response(status: HTTPStatus) -> bytes:
    """A whole HTTP response, closing the connection, with a JSON body like the application's."""
    # The same JSON shape as the application's errors (api/errors.py).
    body = msgspec.json.encode({"status_code": status.value, "detail": f"{status.phrase}."})
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
