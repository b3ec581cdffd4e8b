"""Limits of the HTTP edge against abusive clients, on the real uvicorn server: the size of a
request's head (431), the time to send it (408) and the size of a body (413)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from presto_deck.api.http_protocol import BoundedHttpProtocol
from presto_deck.settings import Settings
from tests.support.client import DeckClient, eventually
from tests.support.raw_http import (
    body_of,
    connection,
    read_response,
    read_until_closed,
    request_head,
    status_of,
)
from tests.support.running import RunningApi

HEAD_TIMEOUT = 1.0
#: Slack for the server's timer and the test's scheduling on a loaded machine.
MARGIN = 2.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, http_header_timeout_seconds=HEAD_TIMEOUT)


def assert_json_error(answer: bytes | httpx.Response, status: int) -> None:
    """A response with ``status`` and a JSON body like the application's other errors."""
    if isinstance(answer, httpx.Response):
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        body = answer.json()
    else:
        assert status_of(answer) == status, answer[:200]
        assert b"content-type: application/json" in answer.lower()
        body = json.loads(body_of(answer))
    assert body["status_code"] == status
    assert body["detail"].strip()


# -- the size of the head --------------------------------------------------------------------------


async def test_a_head_one_byte_over_the_limit_gets_431_as_json_and_the_connection_closes(
    api: RunningApi, settings: Settings
) -> None:
    limit = settings.http_max_header_bytes
    async with connection(api.url) as (reader, writer):
        writer.write(request_head("/health/live", limit + 1))
        answer = await read_until_closed(reader)

    assert_json_error(answer, 431)


async def test_a_head_of_exactly_the_limit_is_served(api: RunningApi, settings: Settings) -> None:
    limit = settings.http_max_header_bytes
    async with connection(api.url) as (reader, writer):
        writer.write(request_head("/health/live", limit, headers="Connection: close\r\n"))
        answer = await read_until_closed(reader)

    assert status_of(answer) == 200, answer[:200]


async def test_a_websocket_upgrade_with_an_oversized_head_gets_431(
    api: RunningApi, settings: Settings
) -> None:
    upgrade = (
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
    path = "/ws/decks/00000000-0000-4000-8000-000000000000"
    async with connection(api.url) as (reader, writer):
        writer.write(request_head(path, settings.http_max_header_bytes + 1, headers=upgrade))
        answer = await read_until_closed(reader)

    assert_json_error(answer, 431)


_UPGRADE = (
    "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


@pytest.mark.parametrize(
    ("what", "extra"),
    [
        ("a header line over websockets' 8 KiB", ""),
        ("more headers than websockets takes", "".join(f"X-H{n}: v\r\n" for n in range(130))),
    ],
)
async def test_an_upgrade_under_the_head_limit_that_websockets_refuses_gets_431_and_closes(
    api: RunningApi, what: str, extra: str
) -> None:
    """Under the server's own limit (16 KiB) but over websockets' (8 KiB a line, 128 headers):
    answered and closed, not left open with nothing said."""
    path = "/ws/decks/00000000-0000-4000-8000-000000000000"
    size = 12_000 if not extra else len(extra) + 400
    async with connection(api.url) as (reader, writer):
        writer.write(request_head(path, size, headers=_UPGRADE + extra))
        answer = await asyncio.wait_for(read_until_closed(reader), 5)

    assert_json_error(answer, 431)


async def test_the_limit_holds_for_the_next_request_on_a_kept_alive_connection(
    api: RunningApi, settings: Settings
) -> None:
    limit = settings.http_max_header_bytes
    async with connection(api.url) as (reader, writer):
        writer.write(request_head("/health/live", limit))
        first, _ = await read_response(reader)
        writer.write(request_head("/health/live", limit + 1))
        answer = await read_until_closed(reader)

    assert first == 200
    assert_json_error(answer, 431)


async def test_a_header_that_never_ends_is_cut_off_at_the_limit_instead_of_buffered(
    api: RunningApi,
) -> None:
    total = 64 * 1024 * 1024
    piece = b"a" * (256 * 1024)
    sent = 0
    async with connection(api.url) as (reader, writer):
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Endless: ")
        try:
            async with asyncio.timeout(30):
                while sent < total:
                    writer.write(piece)
                    await writer.drain()
                    sent += len(piece)
        except OSError:
            pass  # the server closed the connection while the header was still coming: good
        answer = await read_until_closed(reader, timeout=5)

    assert sent < total, "the server read the whole 64 MiB header"
    # The 431 is written before the close; a client still sending may see the reset first.
    assert status_of(answer) in (431, None), answer[:200]


# -- the time to send the head ---------------------------------------------------------------------


async def test_a_head_left_unfinished_gets_408_and_the_connection_closes_in_time(
    api: RunningApi,
) -> None:
    async with connection(api.url) as (reader, writer):
        started = time.monotonic()
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: test\r\n")
        answer = await read_until_closed(reader, timeout=HEAD_TIMEOUT + MARGIN)
        elapsed = time.monotonic() - started

    assert_json_error(answer, 408)
    assert HEAD_TIMEOUT * 0.9 <= elapsed <= HEAD_TIMEOUT + MARGIN


async def test_a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline(
    api: RunningApi,
) -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        while True:  # a byte every 50 ms: each one would reset an idle timer
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with connection(api.url) as (reader, writer):
        started = time.monotonic()
        sending = asyncio.create_task(trickle(writer))
        try:
            answer = await read_until_closed(reader, timeout=HEAD_TIMEOUT + MARGIN)
        finally:
            sending.cancel()
        elapsed = time.monotonic() - started

    assert status_of(answer) in (408, None), answer[:200]
    assert elapsed <= HEAD_TIMEOUT + MARGIN


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    api: RunningApi,
) -> None:
    async with connection(api.url) as (reader, _):
        started = time.monotonic()
        answer = await read_until_closed(reader, timeout=HEAD_TIMEOUT + MARGIN)
        elapsed = time.monotonic() - started

    assert answer == b""
    assert HEAD_TIMEOUT * 0.9 <= elapsed <= HEAD_TIMEOUT + MARGIN


async def test_the_next_head_on_a_kept_alive_connection_must_also_arrive_in_time(
    api: RunningApi,
) -> None:
    async with connection(api.url) as (reader, writer):
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
        first, _ = await read_response(reader)
        started = time.monotonic()
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: test\r\n")
        answer = await read_until_closed(reader, timeout=HEAD_TIMEOUT + MARGIN)
        elapsed = time.monotonic() - started

    assert first == 200
    assert_json_error(answer, 408)
    assert elapsed <= HEAD_TIMEOUT + MARGIN


def deck_request_head(token: str, length: int) -> bytes:
    return (
        f"POST /api/v1/decks HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_a_body_that_pauses_but_arrives_within_the_timeout_is_served(
    api: RunningApi, alice: DeckClient
) -> None:
    body = json.dumps({"prompt": "Tea", "slide_count": 1}).encode()
    async with connection(api.url) as (reader, writer):
        writer.write(deck_request_head(alice.token, len(body)) + body[:5])
        await writer.drain()
        await asyncio.sleep(HEAD_TIMEOUT * 0.5)  # the client pauses mid-body on purpose
        writer.write(body[5:])
        status, _ = await read_response(reader)

    assert status == 202


@pytest.mark.parametrize("trickle", [True, False], ids=["trickled", "stopped"])
async def test_a_body_not_all_sent_within_the_timeout_gets_408_and_the_handler_ends(
    api: RunningApi, alice: DeckClient, trickle: bool
) -> None:
    async def send_body(writer: asyncio.StreamWriter) -> None:
        writer.write(deck_request_head(alice.token, 60_000) + b'{"prompt": "')
        while trickle:  # a byte every 100 ms: each one would reset an idle timer
            await asyncio.sleep(0.1)
            writer.write(b"a")
            await writer.drain()

    async with connection(api.url) as (reader, writer):
        started = time.monotonic()
        sending = asyncio.create_task(send_body(writer))
        try:
            answer = await read_until_closed(reader, timeout=HEAD_TIMEOUT + MARGIN)
        finally:
            sending.cancel()
        elapsed = time.monotonic() - started

        async def handler_ended() -> bool:
            return not api.server.server_state.tasks

        # The request's handler was waiting for the body: it must not wait for ever.
        await eventually(handler_ended, timeout=MARGIN)

    assert_json_error(answer, 408)
    assert HEAD_TIMEOUT * 0.9 <= elapsed <= HEAD_TIMEOUT + MARGIN


# -- pipelined requests ----------------------------------------------------------------------------

#: The most requests a connection may hold waiting for the one being answered.
MOST_WAITING = 8


async def test_pipelined_requests_wait_at_most_eight_at_a_time_and_all_are_answered_in_order(
    api: RunningApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After each head the server parses: how many requests wait on that connection, and whether
    # it still reads from the client.
    seen: list[tuple[int, bool]] = []
    parse_head = BoundedHttpProtocol.on_headers_complete

    def recording(protocol: BoundedHttpProtocol) -> None:
        parse_head(protocol)
        seen.append((len(protocol.pipeline), protocol.transport.is_reading()))

    monkeypatch.setattr(BoundedHttpProtocol, "on_headers_complete", recording)
    # Two kinds of answers in a random order, so that answers out of order would show.
    paths = random.Random(7).choices(["/health/live", "/health/none"], k=500)
    requests = b"".join(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode() for path in paths)

    async with connection(api.url) as (reader, writer):
        writer.write(requests)  # all at once, without reading an answer
        await writer.drain()
        await asyncio.sleep(0.5)
        statuses = [(await read_response(reader))[0] for _ in paths]

    assert len(seen) == len(paths)
    assert max(waiting for waiting, _ in seen) == MOST_WAITING
    assert not any(reading for waiting, reading in seen if waiting == MOST_WAITING)
    assert statuses == [200 if path == "/health/live" else 404 for path in paths]


# -- the size of the body --------------------------------------------------------------------------


def padded_deck_request(size: int) -> bytes:
    """A valid deck creation body of exactly ``size`` bytes (JSON whitespace fills it)."""
    body = b'{"prompt": "Tea", "slide_count": 1}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_a_body_of_exactly_the_limit_is_accepted(
    alice: DeckClient, settings: Settings
) -> None:
    body = padded_deck_request(settings.http_max_body_bytes)

    response = await alice.http.post(
        "/api/v1/decks", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 202, response.text


async def test_a_body_one_byte_over_the_limit_gets_413_as_json(
    alice: DeckClient, settings: Settings
) -> None:
    body = padded_deck_request(settings.http_max_body_bytes + 1)

    response = await alice.http.post(
        "/api/v1/decks", content=body, headers={"Content-Type": "application/json"}
    )

    assert_json_error(response, 413)


async def test_a_chunked_body_without_a_length_gets_413_once_it_passes_the_limit(
    alice: DeckClient, settings: Settings
) -> None:
    body = padded_deck_request(settings.http_max_body_bytes * 4)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = await alice.http.post(
        "/api/v1/decks", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert_json_error(response, 413)
