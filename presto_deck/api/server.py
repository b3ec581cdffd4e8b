"""How uvicorn runs the API: one configuration for ``serve``, ``dev`` and the tests."""

from __future__ import annotations

from typing import Any

import uvicorn

from presto_deck.api.deck_requests import named_by_deck
from presto_deck.api.http_protocol import bounded_http_protocol
from presto_deck.api.websocket_protocol import bounded_websocket_protocol
from presto_deck.settings import Settings

#: Client frames are small JSON objects; nothing legitimate comes near this.
_WS_MAX_MESSAGE_BYTES = 64 * 1024
_GRACEFUL_SHUTDOWN_SECONDS = 5


def server_config(app: Any, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` listening on ``host``:``port`` (0: any free port)."""
    return uvicorn.Config(
        named_by_deck(app),
        host=host,
        port=port,
        log_config=None,  # our logging is configured already; uvicorn's records flow into it
        lifespan="on",
        http=bounded_http_protocol(
            max_head_bytes=settings.http_max_header_bytes,
            head_timeout_seconds=settings.http_header_timeout_seconds,
        ),
        ws=bounded_websocket_protocol(
            write_timeout_seconds=settings.ws_write_timeout_seconds,
            frames_per_second=settings.limit_frames_per_second,
        ),
        ws_per_message_deflate=False,  # small frames; deflate costs tens of KiB a socket
        ws_max_size=_WS_MAX_MESSAGE_BYTES,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
    )
