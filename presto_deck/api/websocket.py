"""``/ws/decks/{deck_id}``: a deck's events, replayed then live, each version once and in order."""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID

from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from litestar.params import FromPath
from loguru import logger
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from presto_deck.api.auth import bearer_token
from presto_deck.api.errors import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN_ORIGIN,
    CLOSE_NOT_FOUND,
    CLOSE_POLICY_VIOLATION,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNAVAILABLE,
    close_reason,
)
from presto_deck.api.socket_session import DISCONNECTED, SocketSession, TokenExpired
from presto_deck.application.decks import DeckService
from presto_deck.application.editing import EditService
from presto_deck.application.heads import DeckHeads
from presto_deck.application.limits import LimitExceeded, SocketAdmission
from presto_deck.application.ports import StorageError
from presto_deck.domain.deck import DeckNotFound
from presto_deck.infrastructure.messaging.live import DeckFeeds
from presto_deck.infrastructure.tokens import Identity, InvalidToken, TokenVerifier
from presto_deck.settings import Settings

_AnySocket = WebSocket[Any, Any, Any]
#: The largest version a client may name (PostgreSQL's integer).
_MAX_VERSION = 2**31 - 1


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
    settings: NamedDependency[Settings],
    feeds: NamedDependency[DeckFeeds],
    sockets: NamedDependency[SocketAdmission],
    edits: NamedDependency[EditService],
    heads: NamedDependency[DeckHeads],
) -> None:
    await socket.accept()
    try:
        identity, deck_uuid, last_version = _handshake(socket, deck_id, verifier, settings)
        user_id = identity.user_id
        session = SocketSession(socket, decks, edits, identity, deck_uuid, settings, heads)
        async with sockets.seat(user_id), feeds.following(deck_uuid, session.inbox):
            # Following before reading the version: whatever is committed from here on arrives
            # live, or shows up as a gap that is backfilled from the database.
            try:
                current = await decks.current_version(user_id, deck_uuid)
            except DeckNotFound:
                raise _Rejected(CLOSE_NOT_FOUND, "deck not found") from None
            with logger.contextualize(deck_id=str(deck_uuid)):
                await session.run(last_version, current)
    except _Rejected as rejection:
        await socket.close(code=rejection.code, reason=close_reason(rejection.reason))
    except TokenExpired:
        with contextlib.suppress(*DISCONNECTED):
            await socket.close(code=CLOSE_UNAUTHORIZED, reason="token has expired")
    except LimitExceeded as refusal:
        logger.info("socket closed by a limit: {}", refusal)
        with contextlib.suppress(*DISCONNECTED):
            await socket.close(code=CLOSE_POLICY_VIOLATION, reason=close_reason(str(refusal)))
    except (StorageError, SQLAlchemyError, RedisError) as exc:
        logger.error("socket closed, a backing service is unavailable: {}", exc)
        with contextlib.suppress(*DISCONNECTED):
            await socket.close(code=CLOSE_UNAVAILABLE, reason=close_reason("service unavailable"))
    except DISCONNECTED:
        pass


def _handshake(
    socket: _AnySocket, deck_id: str, verifier: TokenVerifier, settings: Settings
) -> tuple[Identity, UUID, int | None]:
    """Check origin, token, deck id and ``last_version``, in that order of close codes."""
    origin = socket.headers.get("origin")
    if settings.ws_allowed_origins and origin and origin not in settings.ws_allowed_origins:
        raise _Rejected(CLOSE_FORBIDDEN_ORIGIN, "origin not allowed")
    token = bearer_token(socket.headers.get("authorization")) or socket.query_params.get("token")
    if not token:
        raise _Rejected(CLOSE_UNAUTHORIZED, "missing token")
    try:
        identity = verifier.identify(token)
    except InvalidToken as exc:
        raise _Rejected(CLOSE_UNAUTHORIZED, str(exc)) from None
    raw_version = socket.query_params.get("last_version")
    last_version: int | None = None
    if raw_version is not None:
        # The range of the HTTP API's after_version; the length bounds int()'s work first.
        if (
            not raw_version.isascii()
            or not raw_version.isdigit()
            or len(raw_version) > 20
            or int(raw_version) > _MAX_VERSION
        ):
            raise _Rejected(
                CLOSE_BAD_REQUEST, f"last_version must be an integer from 0 to {_MAX_VERSION}"
            )
        last_version = int(raw_version)
    try:
        deck_uuid = UUID(deck_id)
    except ValueError:
        raise _Rejected(CLOSE_NOT_FOUND, "deck not found") from None
    return identity, deck_uuid, last_version
