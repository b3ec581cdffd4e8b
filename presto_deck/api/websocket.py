"""``/ws/decks/{deck_id}``: a deck's events, replayed then live, each version once and in order."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from uuid import UUID

import msgspec
from litestar import WebSocket, websocket
from litestar.channels import ChannelsPlugin
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath
from loguru import logger
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from presto_deck.api.auth import InvalidToken, TokenVerifier, bearer_token
from presto_deck.api.errors import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN_ORIGIN,
    CLOSE_NOT_FOUND,
    CLOSE_POLICY_VIOLATION,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNAVAILABLE,
    close_reason,
)
from presto_deck.api.frames import error_frame, frame_decoder
from presto_deck.api.live_sockets import LiveSockets
from presto_deck.api.websocket_protocol import is_over_the_rate
from presto_deck.application.decks import DeckService
from presto_deck.application.limits import LimitExceeded, SocketAdmission
from presto_deck.application.ports import StorageError
from presto_deck.application.replay import DeliveryCursor, EventDelivery
from presto_deck.domain.deck import DeckNotFound
from presto_deck.domain.events import encode_event, heartbeat
from presto_deck.infrastructure.messaging.keys import deck_channel
from presto_deck.infrastructure.observability.metrics import EVENTS_DELIVERED, OPEN_WEBSOCKETS
from presto_deck.settings import Settings

_AnySocket = WebSocket[Any, Any, Any]
#: How a client that went away shows up when we read or write (uvicorn's ClientDisconnected is
#: an OSError); none of these is an error of ours.
_DISCONNECTED = (WebSocketDisconnect, OSError)


class _Rejected(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@websocket("/ws/decks/{deck_id:str}")
async def deck_events_socket(
    socket: _AnySocket,
    deck_id: FromPath[str],
    decks: NamedDependency[DeckService],
    verifier: NamedDependency[TokenVerifier],
    channels: NamedDependency[ChannelsPlugin],
    settings: NamedDependency[Settings],
    live_sockets: NamedDependency[LiveSockets],
    sockets: NamedDependency[SocketAdmission],
) -> None:
    await socket.accept()
    try:
        user_id, deck_uuid, last_version = _handshake(socket, deck_id, verifier, settings)
        async with (
            sockets.seat(user_id),
            channels.start_subscription([deck_channel(deck_uuid)]) as subscriber,
        ):
            # Subscribed before reading the version: whatever is committed from here on arrives
            # live, or shows up as a gap that is backfilled from the database.
            try:
                current = await decks.current_version(user_id, deck_uuid)
            except DeckNotFound:
                raise _Rejected(CLOSE_NOT_FOUND, "deck not found") from None
            with logger.contextualize(deck_id=str(deck_uuid)):
                session = _Session(socket, decks, deck_uuid, settings)
                live_sockets.add(session)
                try:
                    await session.run(subscriber.iter_events(), last_version, current)
                finally:
                    live_sockets.discard(session)
    except _Rejected as rejection:
        await socket.close(code=rejection.code, reason=close_reason(rejection.reason))
    except LimitExceeded as refusal:
        logger.info("socket closed by a limit: {}", refusal)
        with contextlib.suppress(*_DISCONNECTED):
            await socket.close(code=CLOSE_POLICY_VIOLATION, reason=close_reason(str(refusal)))
    except (StorageError, SQLAlchemyError, RedisError) as exc:
        logger.error("socket closed, a backing service is unavailable: {}", exc)
        with contextlib.suppress(*_DISCONNECTED):
            await socket.close(code=CLOSE_UNAVAILABLE, reason=close_reason("service unavailable"))
    except _DISCONNECTED:
        pass


def _handshake(
    socket: _AnySocket, deck_id: str, verifier: TokenVerifier, settings: Settings
) -> tuple[str, UUID, int | None]:
    """Check origin, token, deck id and ``last_version``, in that order of close codes."""
    origin = socket.headers.get("origin")
    if settings.ws_allowed_origins and origin and origin not in settings.ws_allowed_origins:
        raise _Rejected(CLOSE_FORBIDDEN_ORIGIN, "origin not allowed")
    token = bearer_token(socket.headers.get("authorization")) or socket.query_params.get("token")
    if not token:
        raise _Rejected(CLOSE_UNAUTHORIZED, "missing token")
    try:
        user_id = verifier.verify(token)
    except InvalidToken as exc:
        raise _Rejected(CLOSE_UNAUTHORIZED, str(exc)) from None
    raw_version = socket.query_params.get("last_version")
    last_version: int | None = None
    if raw_version is not None:
        if not raw_version.isascii() or not raw_version.isdigit() or len(raw_version) > 9:
            raise _Rejected(CLOSE_BAD_REQUEST, "last_version must be a non-negative integer")
        last_version = int(raw_version)
    try:
        deck_uuid = UUID(deck_id)
    except ValueError:
        raise _Rejected(CLOSE_NOT_FOUND, "deck not found") from None
    return user_id, deck_uuid, last_version


class _Session:
    """One open socket: replay, then live events and heartbeats, while reading client frames."""

    def __init__(
        self, socket: _AnySocket, decks: DeckService, deck_id: UUID, settings: Settings
    ) -> None:
        self._socket = socket
        self._decks = decks
        self._deck_id = deck_id
        self._heartbeat_seconds = settings.ws_heartbeat_seconds
        self._frames_per_second = settings.limit_frames_per_second
        # A page of history stays in memory until its last event is sent: no more of it than
        # of live events may wait for a client that reads slowly.
        self._history_page = settings.ws_send_queue
        self._lock = asyncio.Lock()  # one writer at a time; also guards the cursor
        self._catch_up_now = asyncio.Event()

    def catch_up_soon(self) -> None:
        """Live events may have been lost: read the database now, not at the next heartbeat."""
        self._catch_up_now.set()

    async def run(self, live: Any, last_version: int | None, current: int) -> None:
        delivery = EventDelivery(
            # Version 1 is a new deck's and has no event: after 0 comes 2, as after 1.
            DeliveryCursor(current if last_version is None else max(last_version, 1)),
            history=lambda version, limit: self._decks.history(self._deck_id, version, limit),
            send=self._send_event,
            page=self._history_page,
        )
        OPEN_WEBSOCKETS.inc()
        tasks: list[asyncio.Task[None]] = []
        try:
            async with self._lock:
                await delivery.catch_up()
            tasks = [
                asyncio.create_task(self._pump(live, delivery)),
                asyncio.create_task(self._beat(delivery)),
                asyncio.create_task(self._read_frames()),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if (exc := task.exception()) and not isinstance(exc, _DISCONNECTED):
                    raise exc
        finally:
            OPEN_WEBSOCKETS.dec()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                    await task

    async def _send_event(self, data: bytes) -> None:
        await self._socket.send_data(data, mode="text")
        EVENTS_DELIVERED.labels(source="socket").inc()

    async def _pump(self, live: Any, delivery: EventDelivery) -> None:
        async for data in live:
            async with self._lock:
                await delivery.offer(data)

    async def _beat(self, delivery: EventDelivery) -> None:
        while True:
            told = await self._wait_for_beat()
            async with self._lock:
                # Also the safety net for a last event whose Pub/Sub message was lost: no later
                # event would reveal that gap.
                await delivery.catch_up()
                if told:
                    continue
                frame = heartbeat(str(self._deck_id), delivery.cursor.delivered)
                await self._socket.send_data(encode_event(frame), mode="text")

    async def _wait_for_beat(self) -> bool:
        """Sleep until the next heartbeat, or until told to catch up (True)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._heartbeat_seconds):
                await self._catch_up_now.wait()
        told = self._catch_up_now.is_set()
        self._catch_up_now.clear()
        return told

    async def _read_frames(self) -> None:
        # The server's protocol throttles the client's frames (api/websocket_protocol.py): of a
        # run of messages over the rate only the first arrives, marked, and a flood ends the
        # socket after the messages that came before it.
        while True:
            message = await self._socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if is_over_the_rate(message):
                reply = _rate_limited(self._frames_per_second)
            else:
                text, data = message.get("text"), message.get("bytes")
                raw = text if isinstance(text, str) else data if isinstance(data, bytes) else b""
                reply = _answer(raw)
            async with self._lock:
                await self._socket.send_data(reply, mode="text")


def _rate_limited(frames_per_second: int) -> bytes:
    return error_frame(
        "rate_limited",
        f"Over {frames_per_second} frames a second: frames are dropped until the rate falls.",
    )


def _answer(raw: str | bytes) -> bytes:
    try:
        frame = frame_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return error_frame("invalid_frame", str(exc))
    return error_frame("not_supported", f"{type(frame).__name__} is not supported yet.")
