"""Requests about one deck name it in their log lines.

A request whose path names a deck (``/api/v1/decks/{id}/…``, ``/ws/decks/{id}``) logs with the
deck's id, uvicorn's access line included, so filtering a deck's logs finds them too. The
request's span stays in a trace of its own (its caller's, if it brought one): only what an
authenticated owner does to the deck (an edit, a cancellation) is a span of the deck's trace,
linked to the request, so that nobody can write into a deck's trace by naming it in a URL.
"""

from __future__ import annotations

import re
from uuid import UUID

from litestar.types import ASGIApp, Receive, Scope, Send
from loguru import logger

_DECK_PATH = re.compile(r"^/(?:api/v1|ws)/decks/([^/]+)")


def named_by_deck(app: ASGIApp) -> ASGIApp:
    async def deck_request(scope: Scope, receive: Receive, send: Send) -> None:
        deck_id = _deck_of(scope)
        if deck_id is None:
            await app(scope, receive, send)
            return
        with logger.contextualize(deck_id=str(deck_id)):
            await app(scope, receive, send)

    return deck_request


def _deck_of(scope: Scope) -> UUID | None:
    if scope["type"] not in ("http", "websocket"):
        return None
    match = _DECK_PATH.match(scope["path"])
    if match is None:
        return None
    try:
        return UUID(match[1])
    except ValueError:  # the router answers 404 for it
        return None
