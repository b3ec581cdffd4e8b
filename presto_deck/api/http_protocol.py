"""uvicorn's httptools protocol with the two limits it lacks: the size of a request's head (request
line and headers) and the time a client may take to send it.

httptools has neither: it buffers a header for as long as the client keeps sending it, and waits
for the end of the head for ever. So the bytes of a head are counted as they arrive and fed to the
parser no further than the limit; past it the request gets 431 and the connection is closed, and
no more than twice the limit is ever held in memory. A head not complete within the timeout,
counted from the connection's opening, from its first byte, or from the previous response when a
pipelined head waited for it, gets 408 and the connection is closed. WebSocket upgrades are parsed
here too, so both limits cover them.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import ClassVar

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class BoundedHttpProtocol(HttpToolsProtocol):
    """The limits are class attributes: ``bounded_http_protocol`` sets them."""

    max_head_bytes: ClassVar[int]
    head_timeout_seconds: ClassVar[float]

    # Per connection (class-level defaults, so uvicorn's constructor stays untouched).
    #: Bytes of the current head seen so far; None while a body is read.
    _head_bytes: int | None = 0
    _head_started = False
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        start = 0
        while start < len(data):
            room = self._room()
            if room <= 0:
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return
            chunk = data[start : start + room]
            start += len(chunk)
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

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes = 0  # whatever comes next is the next request's head

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._head_started and not self.transport.is_closing():
            self._start_head_timer()  # a pipelined head's time starts now

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

    def _response_in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _refuse(self, status: HTTPStatus) -> None:
        """Answer ``status`` and close; if a response is being written, close after it instead."""
        self._stop_head_timer()
        if self._response_in_flight():
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        self.transport.write(_error_response(status))
        self.transport.close()


def bounded_http_protocol(
    *, max_head_bytes: int, head_timeout_seconds: float
) -> type[BoundedHttpProtocol]:
    """The protocol class for uvicorn's ``http=``, with these limits."""

    class _Configured(BoundedHttpProtocol):
        pass

    _Configured.max_head_bytes = max_head_bytes
    _Configured.head_timeout_seconds = head_timeout_seconds
    return _Configured


def _error_response(status: HTTPStatus) -> bytes:
    # The same JSON shape as the application's errors (api/errors.py).
    body = msgspec.json.encode({"status_code": status.value, "detail": f"{status.phrase}."})
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
