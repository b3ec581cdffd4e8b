"""One open socket of a deck: replay, then live events and heartbeats, while client frames ask
for edits.

Each frame is decoded, then dispatched to one use case. An edit is answered with an ack tied to
its request id once the change is committed, and always after the change's event on this socket
(so a client that sees the ack has seen the change); a refused edit, or one the worker could not
make, is answered with an error frame carrying the same request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

import msgspec
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect
from loguru import logger
from redis.exceptions import RedisError

from presto_deck.api.errors import DECK_NOT_FOUND, INVALID_FRAME, RATE_LIMITED, UNAVAILABLE
from presto_deck.api.frames import (
    InvalidFrame,
    ack_frame,
    edit_of,
    error_frame,
    frame_decoder,
    request_id_of,
)
from presto_deck.api.websocket_protocol import is_over_the_rate
from presto_deck.application.decks import DeckService
from presto_deck.application.editing import EditOutcome, EditService
from presto_deck.application.heads import DeckHeads
from presto_deck.application.ports import StorageError
from presto_deck.application.replay import DeliveryCursor, EventDelivery, Inbox
from presto_deck.application.tracing import deck_span
from presto_deck.domain.deck import DeckNotFound, EditRejected
from presto_deck.domain.edits import EditStatus, SlideEdit
from presto_deck.domain.events import Event, encode_event, heartbeat
from presto_deck.infrastructure.observability.metrics import (
    EVENTS_DELIVERED,
    EVENTS_REPLAYED,
    OPEN_WEBSOCKETS,
)
from presto_deck.infrastructure.tokens import Identity
from presto_deck.settings import Settings

_AnySocket = WebSocket[Any, Any, Any]
#: How a client that went away shows up when we read or write (uvicorn's ClientDisconnected is
#: an OSError); none of these is an error of ours.
DISCONNECTED = (WebSocketDisconnect, OSError)


class TokenExpired(Exception):
    """The socket's token expired: it may no longer change the deck (the socket is closed)."""


class _Answer(msgspec.Struct):
    """What an event says about the request that caused it, read without the rest of it."""

    request_id: str | None = None
    code: str | None = None
    error: str | None = None


class _EventAnswer(msgspec.Struct):
    event_type: str
    version: int
    payload: _Answer = msgspec.field(default_factory=_Answer)


_answer_decoder = msgspec.json.Decoder(_EventAnswer)
#: How long a live event that came before the one it follows waits for it before the database
#: is asked for the missing one.
_REORDER_GRACE_SECONDS = 0.25
#: Looked up once: a fan-out counts thousands of deliveries per event.
_DELIVERED_BY_SOCKET = EVENTS_DELIVERED.labels(source="socket")


class SocketSession:
    def __init__(
        self,
        socket: _AnySocket,
        decks: DeckService,
        edits: EditService,
        identity: Identity,
        deck_id: UUID,
        settings: Settings,
        heads: DeckHeads,
    ) -> None:
        self._socket = socket
        self._decks = decks
        self._heads = heads
        self._edits = edits
        self._user_id = identity.user_id
        self._token_expires_at = identity.expires_at
        self._deck_id = deck_id
        self._heartbeat_seconds = settings.ws_heartbeat_seconds
        self._live_grace = min(1.0, settings.ws_heartbeat_seconds / 2)
        self._frames_per_second = settings.limit_frames_per_second
        # A page of history stays in memory until its last event is sent: no more of it than
        # of live events may wait for a client that reads slowly.
        self._history_page = settings.ws_send_queue
        self._lock = asyncio.Lock()  # one writer at a time; also guards the cursor
        #: Where the deck's live events arrive, from the moment the socket follows the deck.
        self.inbox = Inbox(settings.ws_send_queue)
        self._delivery = EventDelivery(
            DeliveryCursor(0),
            history=self._history,
            send=self._send_event,
            page=self._history_page,
        )
        #: Request ids of this socket's edits whose event has not been sent yet, with how many
        #: times each was sent: every frame gets its answer.
        self._awaiting: Counter[str] = Counter()

    async def _history(self, after_version: int, limit: int) -> Sequence[Event]:
        started = time.time_ns()
        events = await self._decks.history(self._deck_id, after_version, limit)
        if events:  # a look that found nothing (most heartbeats) is not worth a span
            attributes = {"deck.after_version": after_version, "events.count": len(events)}
            with deck_span(
                "socket replay", self._deck_id, attributes=attributes, start_time=started
            ):
                EVENTS_REPLAYED.inc(len(events))
        return events

    async def run(self, last_version: int | None, current: int) -> None:
        """Serve the socket until it closes; its inbox must already follow the deck, and
        ``current`` be the deck's version read after that."""
        # Version 1 is a new deck's and has no event: after 0 comes 2, as after 1. A version
        # past the deck's own was never sent: resuming from it would skip what comes next.
        self._delivery.cursor = DeliveryCursor(
            current if last_version is None else min(max(last_version, 1), current)
        )
        OPEN_WEBSOCKETS.inc()
        tasks: list[asyncio.Task[None]] = []
        try:
            if self._delivery.cursor.delivered < current:  # up to date: nothing to read
                async with self._lock:
                    await self._delivery.catch_up()
            with self._heads.watching(self._deck_id):
                tasks = [
                    asyncio.create_task(self._deliver()),
                    asyncio.create_task(self._read_frames()),
                ]
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if (exc := task.exception()) and not isinstance(exc, DISCONNECTED):
                    raise exc
        finally:
            OPEN_WEBSOCKETS.dec()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                    await task

    # -- events out -------------------------------------------------------------------------------

    async def _send_event(self, data: bytes) -> None:
        await self._socket.send_data(data, mode="text")
        _DELIVERED_BY_SOCKET.inc()
        if self._awaiting:
            await self._answer_if_awaited(data)

    async def _answer_if_awaited(self, data: bytes) -> None:
        """After the event of one of this socket's edits, its ack (or its error)."""
        try:
            event = _answer_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        request_id = event.payload.request_id
        if request_id is None or request_id not in self._awaiting:
            return
        if event.event_type == "EditFailed":
            code, message = event.payload.code or "edit_failed", event.payload.error or ""
            answer = error_frame(code, message, request_id)
        else:
            answer = ack_frame(request_id, event.version)
        for _ in range(self._awaiting.pop(request_id)):
            await self._send(answer)

    async def _send(self, frame: bytes) -> None:
        await self._socket.send_data(frame, mode="text")

    async def _deliver(self) -> None:
        """Live events as they arrive, a catch-up when told, and a heartbeat every period."""
        clock = asyncio.get_running_loop().time
        beat_at = clock() + self._heartbeat_seconds
        while True:
            await self.inbox.wait(beat_at)
            await self._offer_inbox()
            if clock() >= beat_at:
                await self._beat()
                beat_at = clock() + self._heartbeat_seconds

    async def _offer_inbox(self) -> None:
        await self._offer_waiting()
        if self._delivery.gap:
            await self._close_gap()
        if self.inbox.told_to_catch_up():
            async with self._lock:
                await self._delivery.catch_up()

    async def _offer_waiting(self) -> None:
        # One frame at a time, in the order they came: the rest wait in the inbox, which
        # bounds how many a socket that reads slowly holds.
        while (frame := self.inbox.pop()) is not None:
            async with self._lock:
                await self._delivery.offer(frame, hold=True)

    async def _close_gap(self) -> None:
        """A live event came before the one it follows. Each API instance fans out the stream
        entries it reads, so two consecutive events fanned out by two instances may arrive in
        either order: the missing one is given a moment to come before the database is read
        (by every socket of the deck at once, in a deployment of several instances)."""
        clock = asyncio.get_running_loop().time
        give_up_at = clock() + _REORDER_GRACE_SECONDS
        while self._delivery.gap and clock() < give_up_at:
            await self.inbox.wait(give_up_at)
            if self.inbox.told_to_catch_up():
                break
            await self._offer_waiting()
        if self._delivery.gap or self.inbox.told_to_catch_up():
            async with self._lock:
                await self._delivery.catch_up()

    async def _beat(self) -> None:
        # Also the safety net for a last event whose Pub/Sub message was lost: no later event
        # would reveal that gap. The deck's head, read for all of this process's sockets at
        # once, says whether there is one to look for.
        behind = await self._behind()
        async with self._lock:
            if behind:
                await self._delivery.catch_up()
            frame = heartbeat(str(self._deck_id), self._delivery.cursor.delivered)
            await self._send(encode_event(frame))

    async def _behind(self) -> bool:
        """Whether the deck has moved past what this socket sent and its live events are not
        bringing it: events still on their way to a socket that reads slowly, or fanned out
        behind thousands of others, get a moment to arrive before the database is asked."""
        head = await self._heads.version(self._deck_id)
        if head is None:
            return True
        clock = asyncio.get_running_loop().time
        give_up_at = clock() + self._live_grace
        while self._delivery.cursor.delivered < head and clock() < give_up_at:
            await self.inbox.wait(give_up_at)
            await self._offer_inbox()
        return self._delivery.cursor.delivered < head

    # -- frames in --------------------------------------------------------------------------------

    async def _read_frames(self) -> None:
        # The server's protocol throttles the client's frames (api/websocket_protocol.py): of a
        # run of messages over the rate only the first arrives, marked, and a flood ends the
        # socket after the messages that came before it.
        while True:
            message = await self._socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if is_over_the_rate(message):
                async with self._lock:
                    await self._send(_rate_limited(self._frames_per_second))
                continue
            text, data = message.get("text"), message.get("bytes")
            raw = text if isinstance(text, str) else data if isinstance(data, bytes) else b""
            await self._handle(raw)

    async def _handle(self, raw: str | bytes) -> None:
        if time.time() >= self._token_expires_at:
            raise TokenExpired
        try:
            frame = frame_decoder.decode(raw)
            edit = edit_of(frame)
        except (msgspec.DecodeError, msgspec.ValidationError, InvalidFrame) as exc:
            await self._refuse(request_id_of(raw), INVALID_FRAME, str(exc))
            return
        except UnicodeDecodeError:  # a binary frame whose JSON strings are not UTF-8
            await self._refuse(None, INVALID_FRAME, "The frame is not valid UTF-8.")
            return
        except RecursionError:  # JSON nested deeper than the decoder goes
            await self._refuse(request_id_of(raw), INVALID_FRAME, "The frame is nested too deep.")
            return
        await self._edit(edit, frame.request_id or uuid4().hex)

    async def _edit(self, edit: SlideEdit, request_id: str) -> None:
        # Awaited before it is submitted: its event may reach this socket before the answer.
        self._awaiting[request_id] += 1
        try:
            outcome = await self._edits.submit(self._user_id, self._deck_id, edit, request_id)
        except EditRejected as exc:
            await self._refuse(request_id, exc.code, str(exc))
        except DeckNotFound:
            await self._refuse(request_id, DECK_NOT_FOUND, "The deck no longer exists.")
        except (StorageError, RedisError) as exc:
            logger.warning("edit {} not made, a backing service failed: {}", request_id, exc)
            await self._refuse(request_id, UNAVAILABLE, "Service temporarily unavailable; retry.")
        else:
            await self._answer(outcome)

    async def _answer(self, outcome: EditOutcome) -> None:
        request_id = outcome.request_id
        async with self._lock:
            match outcome.status:
                case EditStatus.QUEUED:
                    return  # answered when the worker's event reaches this socket
                case EditStatus.APPLIED:
                    # Send the change first (it may not have come live yet), then its ack; a
                    # repeated request's change went out long ago: only the ack is left.
                    await self._delivery.catch_up()
                    if self._forget(request_id) and outcome.version is not None:
                        await self._send(ack_frame(request_id, outcome.version))
                case EditStatus.FAILED:
                    self._forget(request_id)
                    failure = outcome.failure
                    code, message = (
                        ("edit_failed", "") if failure is None else (failure.code, failure.error)
                    )
                    await self._send(error_frame(code, message, request_id))

    async def _refuse(self, request_id: str | None, code: str, message: str) -> None:
        if request_id is not None:
            self._forget(request_id)
        async with self._lock:
            await self._send(error_frame(code, message, request_id))

    def _forget(self, request_id: str) -> bool:
        """Count one frame of the request as answered; False if its event answered it already."""
        if self._awaiting[request_id] <= 0:
            del self._awaiting[request_id]
            return False
        self._awaiting[request_id] -= 1
        if not self._awaiting[request_id]:
            del self._awaiting[request_id]
        return True


def _rate_limited(frames_per_second: int) -> bytes:
    return error_frame(
        RATE_LIMITED,
        f"Over {frames_per_second} frames a second: frames are dropped until the rate falls.",
    )
