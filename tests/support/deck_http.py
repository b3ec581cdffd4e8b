"""Small HTTP helpers on top of DeckClient: a client for a user of a running API, and a deck's
persisted events as ``GET /api/v1/decks/{id}/events`` returns them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from presto_deck.settings import Settings
from tests.conftest import token_for
from tests.support.client import DeckClient, Frame
from tests.support.running import RunningApi


@contextlib.asynccontextmanager
async def client_of(api: RunningApi, settings: Settings, user: str) -> AsyncIterator[DeckClient]:
    client = DeckClient(api.url, api.ws_url, token_for(settings, user))
    try:
        yield client
    finally:
        await client.aclose()


async def events_via_http(client: DeckClient, deck_id: str, after: int = 0) -> list[Frame]:
    response = await client.http.get(
        f"/api/v1/decks/{deck_id}/events", params={"after_version": after}
    )
    assert response.status_code == 200, response.text
    return list(response.json())
