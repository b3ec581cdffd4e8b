"""The WebSocket handshake: who may watch which deck, and how refusals close (SPEC §4, §6).

A refused socket is accepted and closed at once, before any frame, with 4401 (token), 4404 (deck
missing or not the caller's, indistinguishable) or 4400 (bad ``last_version``). Each test sweeps
its cases on one running API and compares all outcomes at once, so a failure lists every case.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import quote

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from presto_deck.settings import Settings
from tests.support.client import DeckClient, receive_events
from tests.support.running import RunningApi
from tests.support.sockets import wait_until_live
from tests.support.tokens import (
    BAD_TOKENS,
    huge_crit_header,
    lone_surrogate_in_sub,
    nul_in_sub,
)

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
#: What a close frame has room for (RFC 6455 §5.5: 125 bytes of payload, 2 for the code).
MAX_CLOSE_REASON_BYTES = 123


async def close_of(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Open a socket that the server must refuse; the close code and reason it sent.

    Fails if the server sends any frame before closing.
    """
    async with websockets.connect(url, additional_headers=headers) as ws, asyncio.timeout(5):
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    close = closed.value.rcvd
    assert close is not None, "the connection ended without a close frame"
    return close.code, close.reason


def socket_url(api: RunningApi, deck_id: str, **query: str) -> str:
    params = "&".join(f"{name}={quote(value, safe='')}" for name, value in query.items())
    return f"{api.ws_url}/ws/decks/{deck_id}" + (f"?{params}" if params else "")


async def cancelled_deck(client: DeckClient) -> str:
    """A deck of the client's with exactly one event (DeckCancelled, version 2); no worker."""
    deck_id = await client.create("Handshake")
    response = await client.http.post(f"/api/v1/decks/{deck_id}/cancel")
    assert response.status_code == 202, response.text
    return deck_id


async def first_events(url: str, headers: dict[str, str] | None = None) -> list[tuple[str, int]]:
    async with websockets.connect(url, additional_headers=headers) as ws:
        events = await receive_events(ws, lambda frame: True, timeout=5)
    return [(e["event_type"], e["version"]) for e in events]


# -- 4401: the token -------------------------------------------------------------------------------


async def test_a_missing_or_bad_query_token_is_closed_4401_before_any_event(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    deck_id = await cancelled_deck(alice)  # it has an event that a leak would show
    tokens = {kind: make(settings) for kind, make in BAD_TOKENS.items()}

    closes = {"missing": await close_of(socket_url(api, deck_id, last_version="1"))}
    closes["empty"] = await close_of(socket_url(api, deck_id, token="", last_version="1"))
    for kind, token in tokens.items():
        closes[kind] = await close_of(socket_url(api, deck_id, token=token, last_version="1"))

    assert {kind: code for kind, (code, _) in closes.items()} == dict.fromkeys(
        closes, CLOSE_UNAUTHORIZED
    )
    for kind, token in tokens.items():
        assert token not in closes[kind][1], f"the close reason echoes the {kind} token"


async def test_a_bad_bearer_header_is_closed_4401(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    deck_id = await cancelled_deck(alice)
    headers = {f"Bearer <{kind}>": f"Bearer {make(settings)}" for kind, make in BAD_TOKENS.items()}
    headers.update(
        {value: value for value in ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer ", "alice"]}
    )

    codes = {
        name: (await close_of(socket_url(api, deck_id), {"Authorization": value}))[0]
        for name, value in headers.items()
    }

    assert codes == dict.fromkeys(headers, CLOSE_UNAUTHORIZED)


async def test_a_signed_token_whose_user_id_holds_a_nul_character_is_closed_4401(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    deck_id = await alice.create()

    code, _ = await close_of(socket_url(api, deck_id, token=nul_in_sub(settings)))

    assert code == CLOSE_UNAUTHORIZED


async def test_a_signed_token_whose_user_id_is_a_lone_surrogate_is_closed_4401(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    deck_id = await alice.create()

    code, _ = await close_of(socket_url(api, deck_id, token=lone_surrogate_in_sub(settings)))

    assert code == CLOSE_UNAUTHORIZED


async def test_every_close_reason_fits_a_close_frame_whatever_the_token_quotes(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    deck_id = await alice.create()
    headers = {"Authorization": f"Bearer {huge_crit_header(settings)}"}

    code, reason = await close_of(socket_url(api, deck_id), headers)

    assert code == CLOSE_UNAUTHORIZED
    assert 0 < len(reason.encode()) <= MAX_CLOSE_REASON_BYTES


async def test_the_token_is_checked_before_anything_about_the_deck(
    api: RunningApi, alice: DeckClient, settings: Settings
) -> None:
    deck_id = await alice.create()
    bad = BAD_TOKENS["bad-signature"](settings)
    cases = {
        "own deck": socket_url(api, deck_id, token=bad),
        "missing deck": socket_url(api, str(uuid.uuid4()), token=bad),
        "non-UUID id": socket_url(api, "not-a-uuid", token=bad),
        "bad last_version": socket_url(api, deck_id, token=bad, last_version="abc"),
        "no token, bad last_version": socket_url(api, deck_id, last_version="abc"),
    }

    codes = {name: (await close_of(url))[0] for name, url in cases.items()}

    assert codes == dict.fromkeys(cases, CLOSE_UNAUTHORIZED)


# -- accepted tokens -------------------------------------------------------------------------------


async def test_a_token_in_the_bearer_header_is_accepted(api: RunningApi, alice: DeckClient) -> None:
    deck_id = await cancelled_deck(alice)

    events = await first_events(
        socket_url(api, deck_id, last_version="1"), {"Authorization": f"Bearer {alice.token}"}
    )

    assert events == [("DeckCancelled", 2)]


async def test_a_token_in_the_query_is_accepted(api: RunningApi, alice: DeckClient) -> None:
    deck_id = await cancelled_deck(alice)

    events = await first_events(socket_url(api, deck_id, token=alice.token, last_version="1"))

    assert events == [("DeckCancelled", 2)]


# -- 4404: the deck --------------------------------------------------------------------------------


async def test_missing_foreign_and_malformed_deck_ids_close_4404_with_one_same_reason(
    api: RunningApi, alice: DeckClient, bob: DeckClient
) -> None:
    bobs_deck = await cancelled_deck(bob)
    targets = {
        "missing": str(uuid.uuid4()),
        "another user's": bobs_deck,
        "another user's, upper case": bobs_deck.upper(),
        "not a UUID": "not-a-uuid",
        "one character short": bobs_deck[:-1],
    }

    closes = {
        name: await close_of(socket_url(api, target, token=alice.token, last_version="1"))
        for name, target in targets.items()
    }

    assert {name: code for name, (code, _) in closes.items()} == dict.fromkeys(
        targets, CLOSE_NOT_FOUND
    )
    assert len({reason for _, reason in closes.values()}) == 1, closes
    # The deck is there all the same: Bob sees it.
    url = socket_url(api, bobs_deck, token=bob.token, last_version="1")
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["event_type"] == "DeckCancelled"


# -- 4400: last_version ----------------------------------------------------------------------------


async def test_a_last_version_up_to_the_largest_version_is_taken(
    api: RunningApi, alice: DeckClient
) -> None:
    """As the HTTP API's after_version: any integer PostgreSQL holds, leading zeros or not."""
    deck_id = await cancelled_deck(alice)

    for value in ("1000000000", "2147483647", "00000000002"):
        url = socket_url(api, deck_id, token=alice.token, last_version=value)
        async with websockets.connect(url) as ws:
            await wait_until_live(ws)  # accepted, and nothing replayed: it has version 2


async def test_a_bad_last_version_is_closed_4400(api: RunningApi, alice: DeckClient) -> None:
    deck_id = await cancelled_deck(alice)
    values = [
        "-1", "abc", "1.5", "99999999999999999999", "", " 1", "+1", "1e3", "0x10", "\u0661",
        "2147483648", "1" * 21,
    ]  # fmt: skip

    closes = {
        value: await close_of(socket_url(api, deck_id, token=alice.token, last_version=value))
        for value in values
    }

    assert {value: code for value, (code, _) in closes.items()} == dict.fromkeys(
        values, CLOSE_BAD_REQUEST
    )
    assert all("last_version" in reason for _, reason in closes.values()), closes
