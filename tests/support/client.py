"""A small client of the product, as a user's script would drive it: HTTP with httpx and the
WebSocket with the websockets library."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

Frame = dict[str, Any]


class DeckClient:
    def __init__(self, base_url: str, ws_url: str, token: str) -> None:
        self.token = token
        self.ws_url = ws_url
        self.http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def create(self, prompt: str = "The history of tea", **fields: Any) -> str:
        response = await self.http.post("/api/v1/decks", json={"prompt": prompt, **fields})
        assert response.status_code == 202, response.text
        return str(response.json()["deck_id"])

    async def deck(self, deck_id: str) -> Frame:
        response = await self.http.get(f"/api/v1/decks/{deck_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait_for_status(self, deck_id: str, *statuses: str, timeout: float = 20) -> Frame:
        async with asyncio.timeout(timeout):
            while True:
                deck = await self.deck(deck_id)
                if deck["status"] in statuses:
                    return deck
                await asyncio.sleep(0.05)

    @asynccontextmanager
    async def socket(
        self, deck_id: str, last_version: int | None = None, token: str | None = None
    ) -> AsyncIterator[ClientConnection]:
        query = f"?token={token or self.token}"
        if last_version is not None:
            query += f"&last_version={last_version}"
        async with websockets.connect(f"{self.ws_url}/ws/decks/{deck_id}{query}") as ws:
            yield ws


async def receive_events(
    ws: ClientConnection,
    until: Callable[[Frame], bool],
    timeout: float = 20,
) -> list[Frame]:
    """Deck events (heartbeats left out) up to and including the first that satisfies ``until``."""
    events: list[Frame] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("event_type") == "Heartbeat":
                continue
            events.append(frame)
            if until(frame):
                return events


def is_terminal(frame: Frame) -> bool:
    return frame.get("event_type") in {"DeckCompleted", "DeckFailed", "DeckCancelled"}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    """Wait until ``check`` holds (no fixed sleeps in tests)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


def assert_contiguous(events: list[Frame], first: int) -> None:
    versions = [event["version"] for event in events]
    assert versions == list(range(first, first + len(versions))), versions
