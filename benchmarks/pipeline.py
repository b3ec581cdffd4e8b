"""What the pipeline costs beside what PostgreSQL costs: slides committed per second by one real
`presto-deck work` process with the offline writer at zero delay, against pgbench's TPS
(TPC-B-like, 8 clients) measured in the same run on the same server.

    uv run python benchmarks/pipeline.py [--decks 40] [--slides 10] [--pgbench-seconds 10]
        [--profile worker.txt]

Uses databases of its own (dropped at the end) on the PostgreSQL of PRESTO_BENCH_DATABASE_URL
and the Redis db of PRESTO_BENCH_REDIS_URL (db 12 by default), on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from scratch import REDIS_URL, scratch_database

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


@contextlib.contextmanager
def work_process(database_url: str, profile: str | None) -> Iterator[None]:
    """One real `presto-deck work`, offline writer at zero delay; with ``profile``, run under
    py-spy, whose collapsed stacks are written there."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PRESTO_", "OTEL_"))},
        "PRESTO_DATABASE_URL": database_url,
        "PRESTO_REDIS_URL": REDIS_URL,
        "PRESTO_OFFLINE_SLIDE_DELAY_MS": "0",
        "PRESTO_LOG_LEVEL": "WARNING",
        "PRESTO_WORKER_MAX_JOBS": os.environ.get("PRESTO_BENCH_WORKER_MAX_JOBS", "10"),
    }
    command = [str(Path(sys.executable).with_name("presto-deck")), "work"]
    if profile:
        spy = ["uvx", "--from", "py-spy", "py-spy", "record", "--format", "raw", "-r", "200"]
        command = [*spy, "-o", profile, "--", *command]
    work = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # its imports
        yield
    finally:
        work.send_signal(signal.SIGINT if profile else signal.SIGTERM)  # py-spy writes on SIGINT
        work.wait(30)


async def queue_decks(database_url: str, decks: int, slides: int) -> None:
    """Create the decks, queued for a worker, as users would over the API."""
    settings = Settings(database_url=database_url, redis_url=REDIS_URL, log_level="WARNING")
    container = build_container(settings, Role.API)
    try:
        decks_service = container.api_role().services.decks
        brief = DeckBrief(prompt="Tides and towns", slide_count=slides)
        for n in range(decks):
            await decks_service.create(f"bench-{n}", brief)  # under any per-user limit
    finally:
        await container.close()


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


async def slides_per_second(database_url: str, decks: int, slides: int) -> float:
    """Create the decks for the running worker and count its slides committed per second."""
    await queue_decks(database_url, decks, slides)
    return await committed_per_second(database_url, decks, slides)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--decks", type=int, default=40)
    parser.add_argument("--slides", type=int, default=10)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--profile", help="record the worker with py-spy (collapsed stacks)")
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    tps = pgbench_tps(args.pgbench_seconds)
    with scratch_database("presto_bench") as url:
        # All queued before the worker starts: the figure is the worker's, not this script's.
        await queue_decks(url, args.decks, args.slides)
        with work_process(url, args.profile):
            rate = await committed_per_second(url, args.decks, args.slides)
    print(f"pgbench (TPC-B-like, 8 clients): {tps:8.0f} TPS")
    print(f"{args.decks} decks x {args.slides} slides, one work process: {rate:8.0f} slides/s")
    print(f"ratio: {rate / tps:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
