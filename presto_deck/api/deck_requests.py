"""Requests about one deck belong to it: its trace and its log lines.

A request whose path names a deck (``/api/v1/decks/{id}/…``, ``/ws/decks/{id}``) that brings no
trace context of its own is given the deck's root span as its parent, before the OpenTelemetry
middleware reads the headers: its server span, and whatever it does (an edit, a cancellation),
joins the deck's trace. Its log lines, the access log's included, carry the deck's id.
"""

from __future__ import annotations

import re
from typing import cast
from uuid import UUID

from litestar.types import ASGIApp, Receive, Scope, Send
from loguru import logger
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan

from presto_deck.application.tracing import root_of, root_traceparent

_DECK_PATH = re.compile(r"^/(?:api/v1|ws)/decks/([^/]+)")
_TRACEPARENT = b"traceparent"


def joined_to_decks(app: ASGIApp) -> ASGIApp:
    async def deck_request(scope: Scope, receive: Receive, send: Send) -> None:
        deck_id = _deck_of(scope)
        if deck_id is None:
            await app(scope, receive, send)
            return
        headers = list(scope["headers"])
        if not any(name.lower() == _TRACEPARENT for name, _ in headers):
            headers.append((_TRACEPARENT, root_traceparent(deck_id).encode()))
        joined = cast(Scope, {**scope, "headers": headers})
        # Without an SDK no server span is started: the lines still name the deck's trace.
        with (
            logger.contextualize(deck_id=str(deck_id)),
            trace.use_span(NonRecordingSpan(root_of(deck_id)), end_on_exit=False),
        ):
            await app(joined, receive, send)

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
