"""``presto-deck watch``: follow a deck's events from a terminal, resuming after a drop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlencode

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from presto_deck.api.errors import FINAL_CLOSE_CODES
from presto_deck.domain.events import TERMINAL_EVENTS

_T = TypeVar("_T")
_ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
_FIRST_DELAY_SECONDS = 0.5
_MAX_DELAY_SECONDS = 10.0
#: Tries in a row that may fail to reach the server before the watch gives up (about 30 s).
DEFAULT_TRIES = 6


class WatchError(Exception):
    """Why the watch ended without the deck: the server refused the deck, the token or the
    socket (with its close code), or could not be reached; the message says which."""


def server_url(server: str) -> str:
    """``server`` as a base URL: ``host:port`` gets ``http://``; a ``ws(s)://`` URL becomes
    ``http(s)://``."""
    value = server.strip().rstrip("/")
    scheme, found, rest = value.partition("://")
    if not found:
        return f"http://{value}"
    scheme = {"ws": "http", "wss": "https"}.get(scheme.lower(), scheme.lower())
    if scheme not in ("http", "https"):
        raise WatchError(f"--server {server!r}: expected host:port or an http(s):// URL")
    return f"{scheme}://{rest}"


async def watch(
    server: str,
    deck_id: str,
    token: str,
    last_version: int,
    *,
    follow: bool,
    emit: Callable[[str], None],
    warn: Callable[[str], None] = lambda message: None,
    tries: int = DEFAULT_TRIES,
) -> int:
    """Print events after ``last_version`` as JSON lines; returns the last version printed.

    Without ``follow`` it stops once the deck has ended: at its last event if it ends while
    watched; for a deck that had already ended (edits included), at the version it had when
    the watch began (at once, saying so, if that is not after ``last_version``). A dropped
    connection is resumed from the last version printed; while the server cannot be reached,
    ``warn`` says so once and the watch tries again with backoff, ``tries`` times in a row at
    most, then raises ``WatchError`` naming the address it tried.
    """
    server = server_url(server)
    retry = _Retry(server, warn, tries)
    stop_at = None if follow else await retry.until_done(lambda: _ended_at(server, deck_id, token))
    if stop_at is not None and last_version >= stop_at:
        warn(f"the deck has ended at version {stop_at}: no event after version {last_version}")
        return last_version
    base = server.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    while True:
        query = urlencode({"last_version": last_version})
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with websockets.connect(
                f"{base}/ws/decks/{deck_id}?{query}",
                additional_headers=headers,
                max_size=None,  # an event is as large as its deck's slides, and it is ours
            ) as socket:
                async for raw in socket:
                    retry.reached()  # reached means a frame came, not only a handshake
                    frame = json.loads(raw)
                    if "event_type" not in frame or frame["event_type"] == "Heartbeat":
                        continue  # an answer to another client's frame, or a heartbeat
                    emit(raw if isinstance(raw, str) else raw.decode())
                    last_version = int(frame.get("version", last_version))
                    if stop_at is not None and last_version >= stop_at:
                        return last_version
                    if stop_at is None and not follow and frame["event_type"] in TERMINAL_EVENTS:
                        return last_version
        except ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code in FINAL_CLOSE_CODES:
                reason = f"{closed.rcvd.code} {closed.rcvd.reason}"
                raise WatchError(f"the server closed the socket: {reason}") from None
            await retry.wait(f"the connection was closed ({closed})")
        except (OSError, InvalidStatus, TimeoutError) as exc:
            await retry.wait(str(exc) or type(exc).__name__)


async def _ended_at(server: str, deck_id: str, token: str) -> int | None:
    """The deck's version if it has ended, None while it is being generated."""
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        response = await http.get(
            f"/api/v1/decks/{deck_id}", headers={"Authorization": f"Bearer {token}"}
        )
    if response.status_code in (401, 404):
        raise WatchError(f"the server refused: {response.status_code} {_detail(response)}")
    response.raise_for_status()
    deck = response.json()
    return int(deck["version"]) if deck["status"] in _ENDED else None


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", ""))
    except ValueError:
        return response.text[:200]


class _Retry:
    """Backoff between tries, and one warning per outage rather than one per try."""

    def __init__(self, server: str, warn: Callable[[str], None], tries: int) -> None:
        self._server = server
        self._warn = warn
        self._tries = tries
        self._failed = 0
        self._delay = _FIRST_DELAY_SECONDS

    async def until_done(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """``attempt``'s answer, trying again while the server cannot be reached."""
        while True:
            try:
                answer = await attempt()
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                await self.wait(str(exc) or type(exc).__name__)
                continue
            self.reached()
            return answer

    def reached(self) -> None:
        if self._failed:
            self._warn(f"reached {self._server} again")
        self._delay, self._failed = _FIRST_DELAY_SECONDS, 0

    async def wait(self, why: str) -> None:
        """Wait before the next try; raise ``WatchError`` once the tries are spent."""
        self._failed += 1
        if self._failed >= self._tries:
            raise WatchError(f"cannot reach {self._server} after {self._failed} tries: {why}")
        if self._failed == 1:
            self._warn(f"cannot reach {self._server}: {why}; trying again")
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, _MAX_DELAY_SECONDS)
