"""The floor the socket figures are measured against: a bare ASGI application on the same uvicorn
(uvloop, httptools, websockets' sans-I/O protocol, no compression) that accepts any WebSocket,
holds it, and on a client's ``broadcast COUNT DELAY_MS PAD`` frame sends COUNT event-shaped
frames (``version`` 1, 2, …, ``timestamp`` when the event was made, PAD bytes of payload) to
every socket, one socket after another, DELAY_MS apart. No framework, no Redis, no database.

    uv run python -m uvicorn bare_app:app --app-dir benchmarks --port 8320 --ws websockets-sansio
        --ws-per-message-deflate false

``GET /count`` answers the number of sockets held; any other HTTP request answers 200.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

_sockets: set[Send] = set()
_tasks: set[asyncio.Task[None]] = set()


async def _broadcast(count: int, delay_ms: int, pad: int) -> None:
    for version in range(1, count + 1):
        await asyncio.sleep(delay_ms / 1000)
        frame = json.dumps(
            {
                # The last one ends the "deck", as DeckCompleted does.
                "event_type": "DeckCompleted" if version == count else "SlideAdded",
                "deck_id": "bare",
                "version": version,
                "timestamp": datetime.now(UTC).isoformat(),
                "payload": {"html_content": "x" * pad},
            }
        )
        for send in list(_sockets):
            try:
                await send({"type": "websocket.send", "text": frame})
            except Exception:  # gone meanwhile
                _sockets.discard(send)


async def _websocket(receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    _sockets.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            words = (message.get("text") or "").split()
            if words[:1] == ["broadcast"]:
                count, delay_ms, pad = (int(word) for word in words[1:4])
                task = asyncio.create_task(_broadcast(count, delay_ms, pad))
                _tasks.add(task)
                task.add_done_callback(_tasks.discard)
    finally:
        _sockets.discard(send)


async def _http(scope: MutableMapping[str, Any], send: Send) -> None:
    body = str(len(_sockets)).encode() if scope["path"] == "/count" else b'{"status":"ok"}'
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    match scope["type"]:
        case "websocket":
            await _websocket(receive, send)
        case "http":
            await _http(scope, send)
        case "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
