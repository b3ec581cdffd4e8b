"""The Locust scenario: users who create a deck and follow it over its WebSocket to its end, and
users who hold an idle socket on a deck of theirs, against a running `presto-deck serve` (with
a `work` process writing the decks).

    uv run python benchmarks/stack.py --port 8300            # a stack to load, in one terminal
    uv run --group bench locust -f benchmarks/locustfile.py --headless -u 20 -r 10 -t 30s
        --host http://127.0.0.1:8300                          # in another

Tokens are minted here with the server's secret, PRESTO_JWT_SECRET (the secret of the stacks
that benchmarks/stack.py starts unless set); every deck is created by a user of its own, so the
per-user limits of deck creations, active decks and sockets do not bite.

Locust's table then has, beside `POST /api/v1/decks`:
- `WS time to first slide` and `WS time to complete`: from the POST being sent to the first
  SlideAdded frame, and to DeckCompleted, of each followed deck (a deck that fails or is
  cancelled, a socket closed early or a deck not done within PRESTO_BENCH_DECK_SECONDS (60)
  counts as a failure of `WS time to complete`);
- `WS connect (follow)` and `WS connect (idle)`: the WebSocket handshakes;
- `WS heartbeat`: for each Heartbeat frame an idle socket gets, its delivery latency (the time it
  was read minus its timestamp); a socket closed by the server counts as a failure of it.
The deck-follower to idle-socket mix is 3 to 1 (`--class-picker` or the weights below change it).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import datetime
from typing import Any
from uuid import uuid4

import jwt
import websocket
from locust import HttpUser, between, constant, task
from locust.env import Environment

_SECRET = os.environ.get("PRESTO_JWT_SECRET") or os.environ.get(
    "PRESTO_BENCH_JWT_SECRET", "presto-bench-" + "0123456789" * 4
)
_DECK_SECONDS = float(os.environ.get("PRESTO_BENCH_DECK_SECONDS", "60"))
_SLIDES = int(os.environ.get("PRESTO_BENCH_SLIDES", "6"))
_TERMINAL = frozenset({"DeckCompleted", "DeckFailed", "DeckCancelled"})
_BODY = {"prompt": "Tides and towns: how harbours shaped trade", "slide_count": _SLIDES}


def _token(user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + 3600}, _SECRET, "HS256")


def _record(
    environment: Environment,
    name: str,
    started: float,
    error: Exception | None = None,
    *,
    milliseconds: float | None = None,
    length: int = 0,
) -> None:
    """One entry of Locust's table, timed from ``started`` (time.perf_counter) to now unless
    ``milliseconds`` says how long it took."""
    if milliseconds is None:
        milliseconds = 1000 * (time.perf_counter() - started)
    environment.events.request.fire(  # type: ignore[no-untyped-call]
        request_type="WS",
        name=name,
        response_time=milliseconds,
        response_length=length,
        exception=error,
        context={},
    )


def _close(socket: websocket.WebSocket) -> None:
    """Send the close frame and drop the connection, without waiting for the server's answer:
    websocket-client's close() waits for it inside a bare ``except``, which swallows the
    GreenletExit that Locust stops a user with; the user would then run on after the test, and
    Locust never exit."""
    with contextlib.suppress(OSError, websocket.WebSocketException):
        socket.send_close()
    socket.shutdown()


class DeckError(Exception):
    """A followed deck that did not end as it should."""


class _DeckUser(HttpUser):
    abstract = True

    def create_deck(self) -> tuple[str, str] | None:
        """A new user's deck: (its id, the user's token), or None if the POST failed (Locust
        counts the failure)."""
        token = _token(f"locust-{uuid4().hex[:16]}")
        with self.client.post(
            "/api/v1/decks",
            json=_BODY,
            headers={"Authorization": f"Bearer {token}"},
            name="POST /api/v1/decks",
            catch_response=True,
        ) as answer:
            if answer.status_code != 202:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                return None
            return str(answer.json()["deck_id"]), token

    def open_socket(self, deck_id: str, token: str, name: str) -> websocket.WebSocket | None:
        """The deck's WebSocket from version 1 (every event replayed), or None on failure."""
        url = str(self.host).replace("http", "ws", 1) + f"/ws/decks/{deck_id}?last_version=1"
        started = time.perf_counter()
        try:
            socket = websocket.create_connection(
                url, header=[f"Authorization: Bearer {token}"], timeout=_DECK_SECONDS
            )
        except (OSError, websocket.WebSocketException) as exc:
            _record(self.environment, name, started, exc)
            return None
        _record(self.environment, name, started)
        return socket


class DeckFollower(_DeckUser):
    """Creates a deck, follows it to its end over the WebSocket, and starts again."""

    weight = 3
    wait_time = between(0.5, 1.5)

    @task
    def create_and_follow(self) -> None:
        started = time.perf_counter()
        created = self.create_deck()
        if created is None:
            return
        socket = self.open_socket(*created, name="WS connect (follow)")
        if socket is None:
            return
        try:
            self._follow(socket, started)
        finally:
            _close(socket)

    def _follow(self, socket: websocket.WebSocket, started: float) -> None:
        deadline = started + _DECK_SECONDS
        first_slide = False
        while True:
            socket.settimeout(max(deadline - time.perf_counter(), 0.01))
            try:
                frame: dict[str, Any] = json.loads(socket.recv())
            except (OSError, websocket.WebSocketException, ValueError) as exc:
                _record(self.environment, "WS time to complete", started, DeckError(repr(exc)))
                return
            kind = frame.get("event_type")
            if kind == "SlideAdded" and not first_slide:
                first_slide = True
                _record(self.environment, "WS time to first slide", started)
            if kind in _TERMINAL:
                error = None if kind == "DeckCompleted" else DeckError(f"the deck ended {kind}")
                _record(self.environment, "WS time to complete", started, error)
                return


class IdleSocket(_DeckUser):
    """Holds a socket on a deck of its own for as long as the test runs, reading what comes."""

    weight = 1
    wait_time = constant(0)

    def on_start(self) -> None:
        self.socket: websocket.WebSocket | None = None
        created = self.create_deck()
        if created is not None:
            self.socket = self.open_socket(*created, name="WS connect (idle)")

    def on_stop(self) -> None:
        if self.socket is not None:
            _close(self.socket)

    @task
    def read(self) -> None:
        if self.socket is None:
            time.sleep(1)
            return
        self.socket.settimeout(1)
        try:
            text = self.socket.recv()
        except websocket.WebSocketTimeoutException:
            return
        except (OSError, websocket.WebSocketException) as exc:
            _record(self.environment, "WS heartbeat", time.perf_counter(), exc)
            self.socket = None
            return
        if not text:  # the server closed the socket
            _record(self.environment, "WS heartbeat", time.perf_counter(), DeckError("closed"))
            self.socket = None
            return
        frame = json.loads(text)
        if frame.get("event_type") == "Heartbeat":
            stamped = datetime.fromisoformat(frame["timestamp"]).timestamp()
            delay = 1000 * (time.time() - stamped)
            _record(self.environment, "WS heartbeat", 0, milliseconds=delay, length=len(text))
