"""``presto-deck watch``: follow a deck's events from a terminal, resuming after a drop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from urllib.parse import urlencode

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from presto_deck.api.errors import FINAL_CLOSE_CODES
from presto_deck.domain.events import TERMINAL_EVENTS


class WatchError(Exception):
    """The server refused the socket (bad token, unknown deck, bad version)."""


async def watch(
    server: str,
    deck_id: str,
    token: str,
    last_version: int,
    *,
    follow: bool,
    emit: Callable[[str], None],
) -> int:
    """Print events after ``last_version``; stop at the deck's end unless ``follow``.

    Returns the last version printed. A dropped connection is resumed from that version.
    """
    base = server.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    delay = 0.5
    while True:
        query = urlencode({"last_version": last_version})
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with websockets.connect(
                f"{base}/ws/decks/{deck_id}?{query}", additional_headers=headers
            ) as socket:
                delay = 0.5
                async for raw in socket:
                    frame = json.loads(raw)
                    if frame.get("event_type") == "Heartbeat":
                        continue
                    emit(raw if isinstance(raw, str) else raw.decode())
                    last_version = int(frame.get("version", last_version))
                    if not follow and frame.get("event_type") in TERMINAL_EVENTS:
                        return last_version
        except ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code in FINAL_CLOSE_CODES:
                raise WatchError(f"{closed.rcvd.code} {closed.rcvd.reason}") from None
        except (OSError, InvalidStatus, TimeoutError):
            pass
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
