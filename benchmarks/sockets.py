"""What Locust on two cores cannot reach: thousands of idle deck sockets held by one `serve`
process, and one deck's events fanned out to thousands of watchers, each beside the same
measurement against a bare ASGI application on the same uvicorn (benchmarks/bare_app.py).

    uv run python benchmarks/sockets.py [--sockets 5000] [--hold 20] [--watchers 2000]
        [--slides 10] [--slide-delay-ms 200] [--two-serves] [--heartbeat-storm] [--per-event]
        [--connects-at-once 50] [--skip idle|fanout] [--profile PREFIX] [--port 8300]

Idle: opens --sockets WebSockets (spread over 100 users' finished decks, each with its version as
``last_version``, so nothing is replayed; at most --connects-at-once handshakes at a time) and
holds them for --hold seconds, more than a heartbeat period. Prints the sockets held (the
client's view and the server's ``presto_open_websockets``), those refused and their close codes,
how long opening them took, the serve process's RSS before and after (VmRSS) and the RSS per
socket in KiB (target < 40), and, while the sockets only idle, the process's CPU, the frames
they received (heartbeats) and PostgreSQL's transactions per second.

Fan-out: --watchers sockets of one owner on one deck, arriving evenly over one heartbeat period
(15 s) as clients would, then a `work` process writes the deck (offline writer, one slide at a
time, --slide-delay-ms apart). For every event and watcher, the delivery latency is the time the
frame was read from the socket minus the event's ``timestamp`` (set as its transaction is built,
just before the commit); prints p50, p99 and max (target p99 < 250 ms), the frames received
against expected with any missing, repeated or out of order, each event's spread from its first
watcher to its last (--per-event: a line per event), the events the servers read from
PostgreSQL for the sockets meanwhile, and the serves' full garbage collections while the deck was
written (each one stops every socket of its process; ``presto_gc_pause_seconds``). The driver
moves what it holds out of its own collector's way while it times the frames. --two-serves runs
it again with the watchers split over two serve processes (no balancer); --heartbeat-storm with
the watchers opened all at once and the deck written just as their first heartbeats fall due,
together.

--profile records the serve process with py-spy while the sockets idle (PREFIX.idle.txt) and
while it fans out (PREFIX.fanout.txt), as collapsed stacks.

The driver raises its RLIMIT_NOFILE to the hard limit and the servers inherit it; the servers'
socket limits are raised so that they do not bite. Uses a database of its own (dropped at the end)
on the PostgreSQL of PRESTO_BENCH_DATABASE_URL and the Redis db of PRESTO_BENCH_REDIS_URL (db 12
by default), on 127.0.0.1, ports --port to --port + 29.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import cast

import httpx
import psycopg
from stack import (
    Process,
    cpu_seconds,
    mint,
    raise_open_files,
    recorded,
    require_free,
    rss_kib,
    running_stack,
    steady_heap,
    stop_on_sigterm,
    wait_until,
)
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

TERMINAL = frozenset({"DeckCompleted", "DeckFailed", "DeckCancelled"})
CONNECTS_AT_ONCE = 50
_BARE_PORT_OFFSET = 20
#: The servers' heartbeat period (PRESTO_WS_HEARTBEAT_SECONDS, its default).
HEARTBEAT_SECONDS = 15.0


# -- a lean WebSocket client: one asyncio protocol per socket, timestamps taken as bytes arrive --


class Watcher(asyncio.Protocol):
    """One client socket on websockets' sans-I/O protocol. Every text frame is kept with the
    wall-clock time at which the bytes that completed it were read; pings are answered."""

    def __init__(self, uri: str, token: str | None) -> None:
        self._conn = ClientProtocol(parse_uri(uri))
        self._token = token
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.opened.add_done_callback(_retrieved)  # a failed handshake is counted, not raised
        self.closed: asyncio.Future[None] = loop.create_future()
        self.frames: list[tuple[float, bytes]] = []
        self.close_code: int | None = None
        self.terminal = asyncio.Event()

    @classmethod
    def failed(cls, uri: str, error: Exception) -> Watcher:
        """One that could not even connect."""
        watcher = cls(uri, None)
        watcher.connection_lost(error)
        return watcher

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        request = self._conn.connect()
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        self._conn.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self._conn.receive_data(data)
        for event in self._conn.events_received():
            if isinstance(event, Response):
                if self._conn.handshake_exc is None and not self.opened.done():
                    self.opened.set_result(None)
                elif not self.opened.done():
                    self.opened.set_exception(ConnectionError(f"handshake: {event.status_code}"))
            elif isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self.frames.append((now, bytes(event.data)))
                    if any(f'"{name}"'.encode() in event.data for name in TERMINAL):
                        self.terminal.set()
                elif event.opcode is Opcode.CLOSE and self._conn.close_rcvd is not None:
                    self.close_code = self._conn.close_rcvd.code
        self._flush()

    def eof_received(self) -> bool | None:
        self._conn.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.terminal.set()

    def _flush(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        for chunk in self._conn.data_to_send():
            if chunk:
                self._transport.write(chunk)
        if self._conn.close_expected():
            self._transport.close()

    def send_text(self, text: str) -> None:
        self._conn.send_text(text.encode())
        self._flush()

    @property
    def is_open(self) -> bool:
        return self.opened.done() and not self.closed.done() and self.close_code is None

    def close(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        with contextlib.suppress(Exception):
            self._conn.send_close(1000)
        self._flush()
        self._transport.close()


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


async def open_watchers(
    targets: Sequence[tuple[str, str | None]],
    at_once: int = CONNECTS_AT_ONCE,
    spread_seconds: float = 0.0,
) -> list[Watcher]:
    """A watcher for each (ws:// URI, token), at most ``at_once`` handshakes at a time, their
    starts spread evenly over ``spread_seconds``; a failed one is returned closed, its error
    kept."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(at_once)
    start, step = loop.time(), spread_seconds / max(len(targets), 1)

    async def one(n: int, uri: str, token: str | None) -> Watcher:
        parsed = parse_uri(uri)
        await asyncio.sleep(max(start + n * step - loop.time(), 0))
        async with gate:
            try:
                _, watcher = await loop.create_connection(
                    lambda: Watcher(uri, token), parsed.host, parsed.port
                )
            except OSError as exc:
                return Watcher.failed(uri, exc)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(30):
                    await watcher.opened
        return watcher

    return await asyncio.gather(*(one(n, uri, token) for n, (uri, token) in enumerate(targets)))


async def close_all(watchers: Sequence[Watcher], within: float = 10) -> None:
    for watcher in watchers:
        watcher.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await asyncio.gather(*(w.closed for w in watchers))


# -- what the servers say ---------------------------------------------------------------------


async def metric(http: httpx.AsyncClient, url: str, name: str, label: str = "") -> float:
    """The sum of a Prometheus series' samples on ``url``/metrics (0 when absent); with
    ``label`` (``name="value"``), of those that carry it."""
    text = (await http.get(f"{url}/metrics")).text
    labels = rf"{{[^}}]*{re.escape(label)}[^}}]*}}" if label else r"(?:{[^}]*})?"
    pattern = re.compile(rf"^{re.escape(name)}{labels} ([0-9.e+-]+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


async def full_collections(http: httpx.AsyncClient, urls: Sequence[str]) -> tuple[float, float]:
    """The serves' full garbage collections so far: how many, and their pauses in seconds."""
    full = 'generation="2"'
    count = sum([await metric(http, u, "presto_gc_pause_seconds_count", full) for u in urls])
    pauses = sum([await metric(http, u, "presto_gc_pause_seconds_sum", full) for u in urls])
    return count, pauses


async def wait_for_gauge(
    http: httpx.AsyncClient, urls: Sequence[str], expected: int, within: float
) -> int:
    """Wait until the servers' ``presto_open_websockets`` add up to ``expected``; their sum."""
    deadline = time.monotonic() + within
    while True:
        held = sum([int(await metric(http, url, "presto_open_websockets")) for url in urls])
        if held >= expected or time.monotonic() > deadline:
            return held
        await asyncio.sleep(0.25)


def transactions(database_url: str) -> int:
    """Transactions committed and rolled back in the database so far."""
    name = database_url.rpartition("/")[2]
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()
    assert row is not None
    return int(row[0])


async def create_deck(
    http: httpx.AsyncClient, url: str, user: str, slides: int, prompt: str = "Tides and towns"
) -> str:
    answer = await http.post(
        f"{url}/api/v1/decks",
        json={"prompt": prompt, "slide_count": slides},
        headers={"Authorization": f"Bearer {mint(user)}"},
    )
    if answer.status_code != 202:
        raise SystemExit(f"POST /api/v1/decks: {answer.status_code} {answer.text}")
    return str(answer.json()["deck_id"])


async def finished_version(
    http: httpx.AsyncClient, url: str, user: str, deck_id: str, within: float = 60
) -> int:
    """Wait for the deck to end; its version."""
    deadline = time.monotonic() + within
    headers = {"Authorization": f"Bearer {mint(user)}"}
    while True:
        deck = (await http.get(f"{url}/api/v1/decks/{deck_id}", headers=headers)).json()
        if deck["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return int(deck["version"])
        if time.monotonic() > deadline:
            raise SystemExit(f"deck {deck_id} still {deck['status']} after {within:g}s")
        await asyncio.sleep(0.1)


def ws_uri(url: str, path: str) -> str:
    return url.replace("http://", "ws://", 1) + path


# -- the bare floor ---------------------------------------------------------------------------


@contextlib.contextmanager
def bare_server(port: int) -> Iterator[Process]:
    """benchmarks/bare_app.py under uvicorn on ``port``."""
    import tempfile

    here = Path(__file__).resolve().parent
    command = [
        *(sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(here)),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        *("--ws", "websockets-sansio", "--ws-per-message-deflate", "false"),
    ]
    with tempfile.TemporaryDirectory(prefix="presto-bare-") as logs:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PRESTO_", "OTEL_"))}
        require_free(port)
        process = Process.start("bare", command, env, Path(logs))
        try:
            wait_until(f"http://127.0.0.1:{port}/count", process)
            yield process
        finally:
            process.stop()


# -- idle sockets -------------------------------------------------------------------------------


@dataclass
class IdleResult:
    requested: int
    held: int  # open at the end of the hold, as the client sees them
    server_held: int | None  # presto_open_websockets once all were opened (None: bare)
    refused: Counter[str]
    rss_before_kib: int
    rss_after_kib: int
    connect_seconds: float
    hold_seconds: float
    cpu_percent: float  # the server's, while the sockets only idled
    transactions_per_second: float | None  # PostgreSQL's, meanwhile (None: bare)
    frames_while_idle: int

    @property
    def per_socket_kib(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / max(self.held, 1)

    def lines(self, label: str) -> list[str]:
        refused = ", ".join(f"{n} x {code}" for code, n in self.refused.items()) or "none"
        server = "" if self.server_held is None else f" (server's gauge: {self.server_held})"
        out = [
            f"{label}: {self.held}/{self.requested} sockets held{server}, refused: {refused}",
            f"  opened in {self.connect_seconds:.1f}s; RSS {self.rss_before_kib / 1024:.1f} MiB"
            f" -> {self.rss_after_kib / 1024:.1f} MiB: {self.per_socket_kib:.1f} KiB a socket",
            f"  while idle for {self.hold_seconds:.0f}s: CPU {self.cpu_percent:.1f}%,"
            f" {self.frames_while_idle} frames received",
        ]
        if self.transactions_per_second is not None:
            out[-1] += f", PostgreSQL {self.transactions_per_second:.0f} transactions/s"
        return out


async def hold_idle(
    pid: int,
    urls: Sequence[str],
    targets: Sequence[tuple[str, str | None]],
    hold: float,
    *,
    gauge: bool,
    database_url: str | None,
    at_once: int = CONNECTS_AT_ONCE,
    profile: str | None = None,
) -> IdleResult:
    """Open the targets, hold them ``hold`` seconds, measure the server process ``pid``; with
    ``profile``, record it with py-spy while the sockets idle (collapsed stacks written there)."""
    async with httpx.AsyncClient(timeout=10) as http:
        warm = await open_watchers(targets[:20])  # the code paths loaded before "before"
        await asyncio.sleep(1)
        await close_all(warm)
        await asyncio.sleep(2)
        before = rss_kib(pid)
        started = time.monotonic()
        watchers = await open_watchers(targets, at_once)
        server_held = await wait_for_gauge(http, urls, len(targets), within=30) if gauge else None
        connect_seconds = time.monotonic() - started
        await asyncio.sleep(1)
        frames = sum(len(w.frames) for w in watchers)
        cpu, xacts, idle_from = (
            cpu_seconds(pid),
            transactions(database_url) if database_url else 0,
            time.monotonic(),
        )
        async with recorded(pid, profile):
            await asyncio.sleep(hold)
        idle = time.monotonic() - idle_from
        cpu_percent = 100 * (cpu_seconds(pid) - cpu) / idle
        xact_rate = (transactions(database_url) - xacts) / idle if database_url else None
        after = rss_kib(pid)
        held = sum(w.is_open for w in watchers)
        refused = Counter(
            str(w.close_code) if w.close_code else "no handshake" for w in watchers if not w.is_open
        )
        frames = sum(len(w.frames) for w in watchers) - frames
        await close_all(watchers)
    return IdleResult(
        requested=len(targets),
        held=held,
        server_held=server_held,
        refused=refused,
        rss_before_kib=before,
        rss_after_kib=after,
        connect_seconds=connect_seconds,
        hold_seconds=idle,
        cpu_percent=cpu_percent,
        transactions_per_second=xact_rate,
        frames_while_idle=frames,
    )


async def bare_idle(
    sockets: int, hold: float, port: int, at_once: int = CONNECTS_AT_ONCE
) -> IdleResult:
    with bare_server(port + _BARE_PORT_OFFSET) as bare:
        url = f"http://127.0.0.1:{port + _BARE_PORT_OFFSET}"
        targets = [(ws_uri(url, "/ws"), None)] * sockets
        return await hold_idle(
            bare.pid, [url], targets, hold, gauge=False, database_url=None, at_once=at_once
        )


async def real_idle(
    sockets: int,
    hold: float,
    port: int,
    users: int = 100,
    at_once: int = CONNECTS_AT_ONCE,
    profile: str | None = None,
) -> IdleResult:
    """``sockets`` idle sockets over ``users`` users' finished decks, on one serve process."""
    per_user = math.ceil(sockets / users)
    settings = {
        "PRESTO_OFFLINE_SLIDE_DELAY_MS": "0",
        "PRESTO_LIMIT_SOCKETS_PER_USER": str(per_user + 20),
        "PRESTO_LIMIT_SOCKETS_TOTAL": str(sockets + 1000),
    }
    with running_stack(port=port, settings=settings) as stack:
        async with httpx.AsyncClient(timeout=30) as http:
            owners = [f"idle-{n}" for n in range(users)]
            decks = [await create_deck(http, stack.url, user, 2) for user in owners]
            versions = [
                await finished_version(http, stack.url, user, deck)
                for user, deck in zip(owners, decks, strict=True)
            ]
        for work in stack.works:  # the decks are done: PostgreSQL's load is the sockets'
            work.stop()
        targets = []
        for n in range(sockets):
            user, deck, version = owners[n % users], decks[n % users], versions[n % users]
            path = f"/ws/decks/{deck}?last_version={version}"
            targets.append((ws_uri(stack.url, path), mint(user)))
        result = await hold_idle(
            stack.serves[0].pid,
            stack.urls,
            targets,
            hold,
            gauge=True,
            database_url=stack.database_url,
            at_once=at_once,
            profile=profile,
        )
        report_trouble(stack.trouble())
        return result


# -- fan-out --------------------------------------------------------------------------------------


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class FanoutResult:
    watchers: int
    opened: int
    expected: list[int]  # the versions every watcher should have received
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0  # (watcher, version) pairs never received
    repeated: int = 0
    out_of_order: int = 0
    watchers_short: int = 0  # watchers that missed at least one event
    spread_ms: list[float] = field(default_factory=list)  # per event: first to last watcher
    #: Per event (version, type): the latency to its first watcher and to its last.
    per_event: dict[tuple[int, str], tuple[float, float]] = field(default_factory=dict)
    replayed: float = 0.0  # events the servers read from PostgreSQL for the sockets
    #: The serves' full garbage collections while the deck was written, and their pauses.
    collections: tuple[float, float] | None = None
    serves: int = 1
    connect_seconds: float = 0.0
    #: When the deck's writing started and when every watcher had its end, in seconds from
    #: the first connection.
    written_seconds: tuple[float, float] = (0.0, 0.0)

    @property
    def received(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def lines(self, label: str) -> list[str]:
        expected = len(self.expected) * self.watchers
        out = [
            f"{label}: {self.opened}/{self.watchers} watchers on {self.serves} process(es),"
            f" {len(self.expected)} events each{self._timing()}",
            f"  received {self.received}/{expected} (missing {self.missing} in"
            f" {self.watchers_short} watchers, repeated {self.repeated}, out of order"
            f" {self.out_of_order})",
            f"  delivery latency ms: p50 {self.percentile(50):.1f}  p99 {self.percentile(99):.1f}"
            f"  max {max(self.latencies_ms, default=math.nan):.1f};  an event's spread over"
            f" the watchers: p50 {percentile(self.spread_ms, 50):.1f}"
            f"  max {max(self.spread_ms, default=math.nan):.1f}",
        ]
        if self.replayed:
            out.append(f"  {self.replayed:.0f} events read from PostgreSQL for the sockets")
        if self.collections is not None:
            count, pauses = self.collections
            out.append(
                f"  full garbage collections while the deck was written: {count:.0f}"
                + (f", pausing {pauses * 1000:.0f} ms in all" if count else "")
            )
        return out

    def _timing(self) -> str:
        if not self.connect_seconds:
            return ""
        start, end = self.written_seconds
        return (
            f"; connected in {self.connect_seconds:.1f}s, the deck written {start:.1f}s to"
            f" {end:.1f}s after the first connection"
        )

    def event_lines(self) -> list[str]:
        """One line per event: its latency to its first watcher and to its last."""
        return [
            f"    v{version:<3} {kind:<14} first {first:7.1f} ms  last {last:7.1f} ms"
            for (version, kind), (first, last) in sorted(self.per_event.items())
        ]


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


def judge(watchers: Sequence[Watcher], expected: Sequence[int], serves: int = 1) -> FanoutResult:
    """Each watcher's event frames against the expected versions (Heartbeats aside)."""
    result = FanoutResult(
        watchers=len(watchers),
        opened=sum(w.opened.done() and w.opened.exception() is None for w in watchers),
        expected=list(expected),
        serves=serves,
    )
    wanted = set(expected)
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    made: dict[int, tuple[str, float]] = {}
    for watcher in watchers:
        seen: list[int] = []
        for received_at, data in watcher.frames:
            frame = json.loads(data)
            if frame.get("event_type") in (None, "Heartbeat") or "version" not in frame:
                continue
            version = int(frame["version"])
            if version not in wanted:
                continue
            if version in seen:
                result.repeated += 1
                continue
            if seen and version < seen[-1]:
                result.out_of_order += 1
            seen.append(version)
            if version not in made:
                made[version] = (frame["event_type"], _timestamp(frame["timestamp"]))
            result.latencies_ms.append(1000 * (received_at - made[version][1]))
            first[version] = min(first.get(version, received_at), received_at)
            last[version] = max(last.get(version, received_at), received_at)
        missing = len(wanted - set(seen))
        result.missing += missing
        result.watchers_short += missing > 0
    result.spread_ms = [1000 * (last[v] - first[v]) for v in first]
    result.per_event = {
        (v, made[v][0]): (1000 * (first[v] - made[v][1]), 1000 * (last[v] - made[v][1]))
        for v in first
    }
    return result


async def wait_terminal(watchers: Sequence[Watcher], within: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await asyncio.gather(*(w.terminal.wait() for w in watchers))


async def bare_fanout(watchers: int, events: int, delay_ms: int, port: int) -> FanoutResult:
    """The floor: ``events`` frames of a slide's size sent to ``watchers`` sockets in a loop."""
    with bare_server(port + _BARE_PORT_OFFSET):
        url = f"http://127.0.0.1:{port + _BARE_PORT_OFFSET}"
        opened = await open_watchers([(ws_uri(url, "/ws"), None)] * watchers)
        async with httpx.AsyncClient(timeout=10) as http:
            deadline = time.monotonic() + 30
            while int((await http.get(f"{url}/count")).text) < watchers:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        with steady_heap():
            opened[0].send_text(f"broadcast {events} {delay_ms} 1500")
            await wait_terminal(opened, within=events * delay_ms / 1000 + 30)
        await close_all(opened)
    return judge(opened, range(1, events + 1))


async def real_fanout(
    watchers: int,
    slides: int,
    delay_ms: int,
    port: int,
    serves: int = 1,
    profile: str | None = None,
    heartbeat_storm: bool = False,
    spread: float = HEARTBEAT_SECONDS,
) -> FanoutResult:
    """``watchers`` sockets of the deck's owner, split over ``serves`` API processes, watch a
    work process write the deck one slide at a time; with ``profile``, py-spy records the first
    serve process meanwhile.

    The work process is started first and paused (SIGSTOP) until every watcher is in, the
    watchers arriving evenly over ``spread`` seconds (one heartbeat period) as clients would:
    their heartbeats go on evenly while the deck is written. With ``heartbeat_storm``, they
    connect as fast as they can and the deck is written when their first heartbeats are due,
    all at once."""
    settings = {
        "PRESTO_OFFLINE_SLIDE_DELAY_MS": str(delay_ms),
        "PRESTO_LLM_CONCURRENT_SLIDES_PER_DECK": "1",
        "PRESTO_WS_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "PRESTO_LIMIT_SOCKETS_PER_USER": str(watchers + 100),
        "PRESTO_LIMIT_SOCKETS_TOTAL": str(watchers + 1000),
    }
    owner = "fanout-owner"
    token = mint(owner)
    with running_stack(port=port, serves=serves, works=1, settings=settings) as stack:
        work = stack.works[0]
        work.pause()
        async with httpx.AsyncClient(timeout=30) as http:
            deck = await create_deck(http, stack.url, owner, slides)
            path = f"/ws/decks/{deck}?last_version=1"
            targets = [(ws_uri(stack.urls[n % serves], path), token) for n in range(watchers)]
            started = time.monotonic()
            opened = await open_watchers(targets, spread_seconds=0 if heartbeat_storm else spread)
            await wait_for_gauge(http, stack.urls, watchers, within=30)
            connected = time.monotonic()
            if heartbeat_storm:  # the deck is written while the sockets' heartbeats are due
                await asyncio.sleep(max(started + HEARTBEAT_SECONDS - 1 - time.monotonic(), 0))
            replayed_before = sum(
                [await metric(http, u, "presto_events_replayed_total") for u in stack.urls]
            )
            collections_before = await full_collections(http, stack.urls)
            with steady_heap():
                async with recorded(stack.serves[0].pid, profile):
                    work.resume()
                    await wait_terminal(opened, within=slides * delay_ms / 1000 + 60)
            ended = time.monotonic()
            collections_after = await full_collections(http, stack.urls)
            await asyncio.sleep(0.5)  # frames of the last event still in flight elsewhere
            history = (
                await http.get(
                    f"{stack.url}/api/v1/decks/{deck}/events?after_version=1",
                    headers={"Authorization": f"Bearer {token}"},
                )
            ).json()
            replayed = (
                sum([await metric(http, u, "presto_events_replayed_total") for u in stack.urls])
                - replayed_before
            )
        await close_all(opened)
        report_trouble(stack.trouble())
    result = judge(opened, [int(event["version"]) for event in history], serves)
    result.replayed = replayed
    result.collections = (
        collections_after[0] - collections_before[0],
        collections_after[1] - collections_before[1],
    )
    result.connect_seconds = connected - started
    result.written_seconds = (connected - started, ended - started)
    return result


def report_trouble(trouble: dict[str, list[str]]) -> None:
    for name, lines in trouble.items():
        print(f"  {name}: {len(lines)} error line(s) in its log, e.g. {lines[-1][:300]}")


# -- the command ----------------------------------------------------------------------------------


@dataclass
class SocketFigures:
    idle: IdleResult | None = None
    bare_idle: IdleResult | None = None
    fanout: FanoutResult | None = None
    bare_fanout: FanoutResult | None = None
    fanout_two: FanoutResult | None = None
    fanout_storm: FanoutResult | None = None


async def measure(
    *,
    sockets: int,
    hold: float,
    watchers: int,
    slides: int,
    delay_ms: int,
    port: int,
    two_serves: bool,
    skip: Sequence[str] = (),
    at_once: int = CONNECTS_AT_ONCE,
    profile: str | None = None,
    per_event: bool = False,
    heartbeat_storm: bool = False,
) -> SocketFigures:
    """Run what ``skip`` leaves, printing each figure as it comes."""

    def show(result: FanoutResult, label: str) -> None:
        print(*result.lines(label), *(result.event_lines() if per_event else []), sep="\n")
        sys.stdout.flush()

    raise_open_files()
    figures = SocketFigures()
    if "idle" not in skip:
        figures.bare_idle = await bare_idle(sockets, hold, port, at_once)
        print(*figures.bare_idle.lines("idle, bare uvicorn"), sep="\n", flush=True)
        figures.idle = await real_idle(
            sockets, hold, port, at_once=at_once, profile=profile and f"{profile}.idle.txt"
        )
        print(*figures.idle.lines("idle, presto-deck serve"), sep="\n", flush=True)
    if "fanout" not in skip:
        events = slides + 3  # DeckStarted, PlanUpdated, a SlideAdded each, DeckCompleted
        figures.bare_fanout = await bare_fanout(watchers, events, delay_ms, port)
        show(figures.bare_fanout, "fan-out, bare uvicorn")
        figures.fanout = await real_fanout(
            watchers, slides, delay_ms, port, profile=profile and f"{profile}.fanout.txt"
        )
        show(figures.fanout, "fan-out, presto-deck")
        if two_serves:
            figures.fanout_two = await real_fanout(watchers, slides, delay_ms, port, serves=2)
            show(figures.fanout_two, "fan-out, two serves")
        if heartbeat_storm:
            figures.fanout_storm = await real_fanout(
                watchers, slides, delay_ms, port, heartbeat_storm=True
            )
            show(figures.fanout_storm, "fan-out, while the watchers' heartbeats are due")
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--hold", type=float, default=20, help="seconds the idle sockets stay")
    parser.add_argument("--watchers", type=int, default=2000)
    parser.add_argument("--slides", type=int, default=10)
    parser.add_argument("--slide-delay-ms", type=int, default=200)
    parser.add_argument("--two-serves", action="store_true")
    parser.add_argument(
        "--heartbeat-storm",
        action="store_true",
        help="also write the deck when the watchers' first heartbeats are due",
    )
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--per-event", action="store_true", help="a line per fanned-out event")
    parser.add_argument("--skip", action="append", choices=["idle", "fanout"], default=[])
    parser.add_argument(
        "--connects-at-once", type=int, default=CONNECTS_AT_ONCE, help="handshakes in flight"
    )
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="record the serve process with py-spy while idle (PREFIX.idle.txt) and while it"
        " fans out (PREFIX.fanout.txt), as collapsed stacks",
    )
    args = parser.parse_args()
    stop_on_sigterm()
    await measure(
        sockets=args.sockets,
        hold=args.hold,
        watchers=args.watchers,
        slides=args.slides,
        delay_ms=args.slide_delay_ms,
        port=args.port,
        two_serves=args.two_serves,
        skip=args.skip,
        at_once=args.connects_at_once,
        profile=args.profile,
        per_event=args.per_event,
        heartbeat_storm=args.heartbeat_storm,
    )


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
