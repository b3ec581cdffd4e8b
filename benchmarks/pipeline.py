"""What the pipeline costs beside what PostgreSQL costs: slides committed, and delivered to a
socket on each deck, per second by one real `presto-deck work` process with the offline writer at
zero delay, against pgbench's TPS (TPC-B-like, 8 clients) measured in the same run on the same
server; and the delay of every event from its commit to the client at that load.

    uv run python benchmarks/pipeline.py [--decks 40] [--slides 10] [--pgbench-seconds 10]
        [--port 8390] [--serves 1] [--workers 1] [--profile worker.txt]

The decks are queued first; one `serve` process on --port holds a socket on each (its owner's);
then the worker starts (its metrics on --port + 10) and writes them all. --serves and --workers
run more of each on the same PostgreSQL and Redis, the sockets split evenly over the serves
(scaling out). "committed" counts from the first commit to the last as PostgreSQL stamped them,
"delivered" to the last event read by a socket. An event's delay is the moment a socket read it
minus its ``timestamp`` (the worker's clock as it built the transaction). --profile records the
first worker with py-spy (collapsed stacks).

Uses databases of its own (dropped at the end) on the PostgreSQL of PRESTO_BENCH_DATABASE_URL
and the Redis db of PRESTO_BENCH_REDIS_URL (db 12 by default), on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import websockets
from scratch import REDIS_URL, between, scratch_database, summary
from sockets import percentile
from stack import cpu_by_command, cpu_seconds, mint, recorded, running_stack
from websockets.asyncio.client import ClientConnection

from presto_deck.bootstrap import Role, build_container
from presto_deck.domain.content import DeckBrief
from presto_deck.settings import Settings


def pgbench_tps(seconds: int) -> float:
    """pgbench's TPC-B-like TPS with 8 clients on 2 threads, on a scratch database."""
    binary = shutil.which("pgbench") or next(
        (str(p) for p in Path("/usr/lib/postgresql").glob("*/bin/pgbench")), None
    )
    if binary is None:
        raise SystemExit("pgbench not found (apt-get install postgresql-client)")
    with scratch_database("presto_pgbench", migrated=False) as url:
        subprocess.run([binary, "-q", "-i", "-s", "8", url], check=True, capture_output=True)
        out = subprocess.run(
            [binary, "-c", "8", "-j", "2", "-T", str(seconds), url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    found = re.search(r"tps = ([\d.]+)", out)
    if found is None:
        raise SystemExit(f"could not read pgbench's output:\n{out}")
    return float(found[1])


TERMINAL = {"DeckCompleted", "DeckFailed", "DeckCancelled"}
#: The offline writer at zero delay: the pipeline's own cost, no model's. The worker's other
#: settings are the product's defaults, unless PRESTO_BENCH_WORKER_MAX_JOBS says how many decks
#: it writes at once.
_SETTINGS = {
    "PRESTO_OFFLINE_SLIDE_DELAY_MS": "0",
    **(
        {"PRESTO_WORKER_MAX_JOBS": jobs}
        if (jobs := os.environ.get("PRESTO_BENCH_WORKER_MAX_JOBS"))
        else {}
    ),
}


@dataclass
class Watched:
    """What the watchers of every deck saw: each event's delay from the worker's clock at its
    commit to the moment a watcher read it, and when the last one arrived."""

    latencies: list[float] = field(default_factory=list)
    last_seen: float = 0.0
    missing: int = 0


async def open_watchers(ws_url: str, decks: Sequence[tuple[str, str]]) -> list[ClientConnection]:
    """A socket on each deck (its owner's), open once this returns (the serve may still be
    setting them up: see ``sockets_followed``)."""

    async def one(deck_id: str, owner: str) -> ClientConnection:
        url = f"{ws_url}/ws/decks/{deck_id}?token={mint(owner)}&last_version=1"
        return await websockets.connect(url, max_size=None, open_timeout=30)

    return list(await asyncio.gather(*(one(deck_id, owner) for deck_id, owner in decks)))


async def sockets_followed(urls: Sequence[str], count: int) -> None:
    """Until the serves at ``urls`` follow ``count`` sockets in all (their open-sockets gauge):
    a socket's handshake is answered before the serve has looked up its deck and subscribed,
    and the figure is of the pipeline, not of sockets being set up while it runs."""
    deadline = time.monotonic() + _SETTLE_SECONDS
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            pages = [(await http.get(f"{url}/metrics")).text for url in urls]
            following = sum(
                float(found[1]) for page in pages if (found := _OPEN_SOCKETS.search(page))
            )
            if following >= count:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"the serves follow {following:.0f} of {count} sockets")
            await asyncio.sleep(0.1)


_SETTLE_SECONDS = 60
_OPEN_SOCKETS = re.compile(r"^presto_open_websockets ([\d.e+]+)$", re.MULTILINE)


async def follow(sockets: Sequence[ClientConnection], events_per_deck: int) -> Watched:
    """Read every socket to its deck's terminal event."""
    watched = Watched()

    async def one(ws: ClientConnection) -> None:
        seen = 0
        try:
            async for raw in ws:
                now = time.time()
                frame = json.loads(raw)
                if frame["event_type"] == "Heartbeat":
                    continue
                sent = datetime.fromisoformat(frame["timestamp"]).timestamp()
                watched.latencies.append(now - sent)
                watched.last_seen = max(watched.last_seen, now)
                seen += 1
                if frame["event_type"] in TERMINAL:
                    break
        finally:
            watched.missing += max(events_per_deck - seen, 0)
            await ws.close()

    await asyncio.gather(*(one(ws) for ws in sockets))
    return watched


async def queue_decks(database_url: str, decks: int, slides: int) -> list[tuple[str, str]]:
    """Create the decks, queued for a worker, as users would over the API (a user per deck, so
    that any number of them is under the per-user limits); each deck's id and owner."""
    settings = Settings(database_url=database_url, redis_url=REDIS_URL, log_level="WARNING")
    container = build_container(settings, Role.API)
    created = []
    try:
        decks_service = container.api_role().services.decks
        brief = DeckBrief(prompt="Tides and towns", slide_count=slides)
        for n in range(decks):
            deck = await decks_service.create(f"bench-{n}", brief)
            created.append((str(deck.id), deck.user_id))
    finally:
        await container.close()
    return created


async def committed_per_second(database_url: str, decks: int, slides: int) -> float:
    """Wait for the decks to complete; slides committed per second, from the first commit of a
    deck to the last one, as PostgreSQL's clock saw them."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cursor = await conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'COMPLETED'), count(*) FROM decks"
            )
            row = await cursor.fetchone()
            assert row is not None
            if row[0] == row[1] == decks:
                break
            if time.perf_counter() - started > 30 + decks * slides / 10:
                raise SystemExit(f"only {row[0]} of {decks} decks completed: is the worker up?")
            await asyncio.sleep(0.02)
        cursor = await conn.execute(
            "SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM deck_events"
        )
        window = await cursor.fetchone()
    assert window is not None
    return decks * slides / float(window[0])


#: CPU seconds used so far, by what used them: each of our processes by name, PostgreSQL's and
#: Redis's processes by pid.
_CpuUsed = dict[str, dict[int, float]]


def _cpu_used(ours: dict[str, int]) -> _CpuUsed:
    used = {name: {pid: cpu_seconds(pid)} for name, pid in ours.items()}
    used["this script"] = {os.getpid(): sum(os.times()[:2])}
    used["postgres"] = cpu_by_command("postgres")
    used["redis"] = cpu_by_command("redis-server")
    return used


def _cpu_share(before: _CpuUsed, after: _CpuUsed, seconds: float) -> dict[str, float]:
    """Each part's CPU between two readings, in cores (1.0 is a core all the time); a process
    that started in between counts from zero, one that ended is missing."""
    return {
        name: sum(used - before[name].get(pid, 0.0) for pid, used in pids.items()) / seconds
        for name, pids in after.items()
    }


@dataclass
class Figures:
    committed_per_second: float
    #: Each part's CPU while the decks were written, in cores (see ``_cpu_share``).
    cpu: dict[str, float]
    #: Slides read by the watchers per second, from the first commit to the last delivery.
    delivered_per_second: float
    watched: Watched


async def pipeline_figures(
    decks: int, slides: int, port: int, profile: str | None, *, serves: int = 1, workers: int = 1
) -> Figures:
    """Decks queued, a socket open on each through ``serves`` `serve` processes (split evenly,
    no balancer), then ``workers`` `work` processes write them; with ``profile``, py-spy records
    the first worker."""
    with running_stack(port=port, serves=serves, works=0, settings=_SETTINGS) as stack:
        # All queued before a worker starts: the figure is the workers', not this script's.
        queued = await queue_decks(stack.database_url, decks, slides)
        ws_urls = [url.replace("http://", "ws://", 1) for url in stack.urls]
        sockets = await asyncio.gather(
            *(open_watchers(ws_urls[n], queued[n::serves]) for n in range(serves))
        )
        following = asyncio.create_task(
            follow([ws for some in sockets for ws in some], events_per_deck=slides + 3)
        )
        await sockets_followed(stack.urls, decks)
        # Off the loop: the sockets are read while a worker starts (the first one writes at once).
        first_worker = await asyncio.to_thread(stack.start_work)
        for _ in range(workers - 1):
            await asyncio.to_thread(stack.start_work)
        ours = {"work": first_worker.pid} | {
            f"serve {n + 1}": serve.pid for n, serve in enumerate(stack.serves)
        }
        before, started = _cpu_used(ours), time.perf_counter()
        async with recorded(first_worker.pid, profile):
            committed = await committed_per_second(stack.database_url, decks, slides)
        cpu = _cpu_share(before, _cpu_used(ours), time.perf_counter() - started)
        watched = await asyncio.wait_for(following, 60)
        async with await psycopg.AsyncConnection.connect(stack.database_url) as conn:
            cursor = await conn.execute(
                "SELECT extract(epoch FROM min(created_at)) FROM deck_events"
            )
            first = await cursor.fetchone()
    assert first is not None
    delivered = decks * slides / (watched.last_seen - float(first[0]))
    return Figures(committed, cpu, delivered, watched)


async def main() -> None:
    parser = argparse.ArgumentParser(description=summary(__doc__))
    parser.add_argument("--decks", type=between(1, 10_000), default=40)
    parser.add_argument("--slides", type=between(1, 30), default=10)
    parser.add_argument("--pgbench-seconds", type=between(1, 600), default=10)
    parser.add_argument("--profile", help="record the worker with py-spy (collapsed stacks)")
    parser.add_argument(
        "--port", type=between(1, 65_000), default=8390, help="the first serve's port"
    )
    parser.add_argument("--serves", type=between(1, 8), default=1, help="serve processes")
    parser.add_argument("--workers", type=between(1, 8), default=1, help="work processes")
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    tps = pgbench_tps(args.pgbench_seconds)
    figures = await pipeline_figures(
        args.decks,
        args.slides,
        args.port,
        args.profile,
        serves=args.serves,
        workers=args.workers,
    )
    latencies = [seconds * 1000 for seconds in figures.watched.latencies]
    print(f"pgbench (TPC-B-like, 8 clients): {tps:8.0f} TPS")
    print(f"{args.decks} decks x {args.slides} slides, {args.workers} work, {args.serves} serve:")
    for what, rate in (
        ("committed", figures.committed_per_second),
        ("delivered", figures.delivered_per_second),
    ):
        print(f"  {what}: {rate:8.0f} slides/s  ratio {rate / tps:.3f}")
    cores = ", ".join(f"{name} {share:.2f}" for name, share in figures.cpu.items())
    print(f"CPU while written, in cores of {os.cpu_count()}: {cores}")
    print(
        f"commit -> client, {len(latencies)} events on {args.decks} sockets:"
        f" p50 {percentile(latencies, 50):.0f} ms, p99 {percentile(latencies, 99):.0f} ms,"
        f" max {max(latencies):.0f} ms; missing {figures.watched.missing}"
    )


if __name__ == "__main__":
    asyncio.run(main())
