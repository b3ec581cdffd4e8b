"""Every benchmark in one command, each figure beside a baseline measured in the same run, in one
table: figure | value | baseline | ratio | target | met?

    uv run --group bench python benchmarks/run.py [--quick] [--port 8300] [--skip NAME ...]

In order: the baselines (pgbench's TPC-B-like TPS with 8 clients; redis-benchmark's XADD and
PUBLISH rates on the benchmarks' Redis db, when the binary is there), the pipeline's slides per
second (benchmarks/pipeline.py), the time to a finished deck on a slow model one slide at a time
and four at once (benchmarks/model_latency.py), idle sockets and fan-out (benchmarks/sockets.py,
beside a bare ASGI application on the same uvicorn), the latency of POST /api/v1/decks at a fixed
rate beside GET /health/live, with the serve alone and with a work process writing the decks on the
same cores (benchmarks/http_latency.py), and a short headless Locust run
(benchmarks/locustfile.py, needs the `bench` dependency group). Each part prints its own lines as
it goes; the table comes last. About six minutes in full; --quick takes smaller sizes and shorter
times (about two minutes), for a check that everything runs rather than for figures.

NAME for --skip: pipeline, model, idle, fanout, http, locust. Uses databases of their own
(dropped at the end) on the PostgreSQL of PRESTO_BENCH_DATABASE_URL and the Redis db of
PRESTO_BENCH_REDIS_URL (db 12 by default), on 127.0.0.1, and ports --port to --port + 29.
A part that fails says why and shows as "did not complete" in the table; the others still run.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import http_latency
import sockets
from scratch import REDIS_URL, scratch_database
from stack import BENCH_JWT_SECRET, raise_open_files, running_stack, stop_on_sigterm

PARTS = ("pipeline", "model", "idle", "fanout", "http", "locust")


@dataclass(frozen=True)
class Sizes:
    pgbench_seconds: int
    redis_requests: int
    pipeline_decks: int
    pipeline_slides: int
    model_slides: int
    model_latency: float
    sockets: int
    hold: float
    watchers: int
    fanout_slides: int
    fanout_delay_ms: int
    spread: bool  # watchers arrive over a heartbeat period (else all at once)
    two_serves: bool
    heartbeat_storm: bool
    http_rate: float
    http_seconds: float
    locust_users: int
    locust_seconds: int


FULL = Sizes(
    pgbench_seconds=10,
    redis_requests=100_000,
    pipeline_decks=500,
    pipeline_slides=10,
    model_slides=10,
    model_latency=1.0,
    sockets=5000,
    hold=16,
    watchers=2000,
    fanout_slides=10,
    fanout_delay_ms=200,
    spread=True,
    two_serves=True,
    heartbeat_storm=True,
    http_rate=100,
    http_seconds=10,
    locust_users=20,
    locust_seconds=30,
)
QUICK = Sizes(
    pgbench_seconds=3,
    redis_requests=20_000,
    pipeline_decks=10,
    pipeline_slides=5,
    model_slides=4,
    model_latency=0.25,
    sockets=500,
    hold=3,
    watchers=300,
    fanout_slides=5,
    fanout_delay_ms=100,
    spread=False,
    two_serves=False,
    heartbeat_storm=False,
    http_rate=100,
    http_seconds=3,
    locust_users=10,
    locust_seconds=10,
)
#: benchmarks/pipeline.py's serve process listens on --port plus this.
_PIPELINE_PORT = 25
#: Slide delay and slides per deck of the Locust run's stack and decks.
LOCUST_DELAY_MS = 50
LOCUST_SLIDES = 6


@dataclass
class Row:
    figure: str
    value: float
    baseline: float | None = None
    target: str = ""  # "< 40", ">= 0.25 ratio", "= 0": what must hold for "met?"
    unit: str = ""
    failed: bool = False  # the part did not complete

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.baseline is None or math.isnan(self.value):
            return None
        return self.value / self.baseline

    def met(self) -> str:
        if self.failed:
            return "NO"
        if not self.target:
            return "-"
        op, _, rest = self.target.partition(" ")
        bound, _, what = rest.partition(" ")
        subject = self.ratio if what == "ratio" else self.value
        if subject is None or math.isnan(subject):
            return "?"
        checks = {
            "<": subject < float(bound),
            "<=": subject <= float(bound),
            ">=": subject >= float(bound),
            "=": subject == float(bound),
        }
        return "yes" if checks[op] else "NO"


def number(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def table(rows: Sequence[Row]) -> str:
    lines = [("figure", "value", "baseline", "ratio", "target", "met?")]
    for row in rows:
        ratio = row.ratio
        lines.append(
            (
                row.figure,
                number(row.value, row.unit),
                number(row.baseline, row.unit) if row.baseline is not None else "-",
                "-" if ratio is None else f"{ratio:.3g}",
                row.target or "-",
                row.met(),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    out = []
    for n, line in enumerate(lines):
        out.append(" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if n == 0:
            out.append("-+-".join("-" * width for width in widths))
    return "\n".join(out)


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


# -- baselines --------------------------------------------------------------------------------


def redis_rates(requests: int) -> dict[str, float]:
    """redis-benchmark's XADD (of a 1 KB field, as big as a slide's event) and PUBLISH rates,
    50 clients, on the benchmarks' Redis db; empty without the binary."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        print("redis-benchmark not found (apt-get install redis-tools): no Redis baselines")
        return {}
    url = urlsplit(REDIS_URL)
    db = url.path.strip("/") or "0"
    base = [binary, "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379)]
    base += ["--dbnum", db, "-c", "50", "-n", str(requests), "-q"]
    payload = "x" * 1000
    commands = {
        "XADD": ["XADD", "presto-bench:stream", "MAXLEN", "~", "10000", "*", "event", payload],
        "PUBLISH": ["PUBLISH", "presto-bench:channel", payload],
    }
    rates = {}
    for name, command in commands.items():
        out = subprocess.run(
            [*base, *command], check=True, capture_output=True, text=True, timeout=120
        ).stdout
        found = re.findall(r"([\d.]+) requests per second", out)
        if not found:
            raise SystemExit(f"could not read redis-benchmark's output:\n{out}")
        rates[name] = float(found[-1])
        print(f"redis-benchmark {name}: {rates[name]:,.0f} requests/s")
    import redis

    redis.Redis.from_url(REDIS_URL).delete("presto-bench:stream")
    return rates


# -- the parts --------------------------------------------------------------------------------


async def model_times(slides: int, latency: float) -> dict[int, tuple[float, float]]:
    """benchmarks/model_latency.py's figures: for 1 and 4 slides at once, (first slide,
    complete) in seconds."""
    import model_latency

    from tests.support.fake_openai import FakeOpenAI

    times = {}
    with (
        scratch_database("presto_bench") as url,
        FakeOpenAI(plan_slides=slides, latency=latency) as model,
    ):
        for ahead in (1, 4):
            times[ahead] = await model_latency.one_deck(url, model, slides, ahead)
            print(
                f"{slides} slides, {ahead} at once: first slide {times[ahead][0]:.2f}s,"
                f" complete {times[ahead][1]:.2f}s"
            )
    return times


@dataclass
class LocustFigures:
    first_slide_p50: float
    complete_p50: float
    complete_p99: float
    post_p99: float
    requests: int
    failures: int


def locust_run(port: int, users: int, seconds: int) -> LocustFigures | None:
    """benchmarks/locustfile.py headless against a stack of its own; None without Locust."""
    binary = Path(sys.executable).with_name("locust")
    if not binary.exists():
        print("Locust is not installed: run with `uv run --group bench ...`")
        return None
    settings = {"PRESTO_OFFLINE_SLIDE_DELAY_MS": str(LOCUST_DELAY_MS)}
    here = Path(__file__).resolve().parent
    with (
        running_stack(port=port, settings=settings) as stack,
        tempfile.TemporaryDirectory(prefix="presto-locust-") as out,
    ):
        env = {
            **os.environ,
            "PRESTO_JWT_SECRET": BENCH_JWT_SECRET,
            "PRESTO_BENCH_SLIDES": str(LOCUST_SLIDES),
        }
        command = [
            *(str(binary), "-f", str(here / "locustfile.py"), "--headless"),
            *("-u", str(users), "-r", str(max(users // 2, 1)), "-t", f"{seconds}s"),
            *("--host", stack.url, "--csv", f"{out}/locust", "--only-summary"),
            *("--stop-timeout", "5", "--loglevel", "WARNING"),
        ]
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=seconds + 60
            )
        except subprocess.TimeoutExpired:
            print(f"Locust did not stop within {seconds + 60}s")
            return None
        stats_file = Path(out) / "locust_stats.csv"
        if done.returncode not in (0, 1) or not stats_file.exists():  # 1: some requests failed
            print(done.stderr[-3000:])
            return None
        with stats_file.open(newline="") as stats:
            rows = {row["Name"]: row for row in csv.DictReader(stats)}
        sockets.report_trouble(stack.trouble())
    for name, row in rows.items():
        print(
            f"{name:<28} {row['Request Count']:>6} requests, {row['Failure Count']:>4} failed;"
            f" ms: p50 {row['50%']:>5}  p99 {row['99%']:>5}  max {row['100%']:>5}"
        )

    def cell(name: str, column: str) -> float:
        row = rows.get(name)
        return float(row[column]) if row and row[column] not in ("", "N/A") else math.nan

    total = rows["Aggregated"]
    return LocustFigures(
        first_slide_p50=cell("WS time to first slide", "50%"),
        complete_p50=cell("WS time to complete", "50%"),
        complete_p99=cell("WS time to complete", "99%"),
        post_p99=cell("POST /api/v1/decks", "99%"),
        requests=int(total["Request Count"]),
        failures=int(total["Failure Count"]),
    )


# -- all of it ----------------------------------------------------------------------------------


class Bench:
    """The parts, in order, each adding its rows; a part that fails is reported as such."""

    def __init__(self, sizes: Sizes, port: int) -> None:
        self.sizes = sizes
        self.port = port
        self.rows: list[Row] = []
        self.tps = math.nan
        self.redis: dict[str, float] = {}

    async def run(self, skip: Sequence[str]) -> list[Row]:
        for name in ("baselines", *PARTS):
            if name in skip:
                continue
            try:
                await getattr(self, name)()
            except (Exception, SystemExit) as exc:  # the other parts still run
                print(f"{name} failed: {exc!r}")
                self.rows.append(Row(f"{name}: did not complete", math.nan, failed=True))
        return self.rows

    async def baselines(self) -> None:
        say("baselines: pgbench, redis-benchmark")
        import pipeline

        self.tps = pipeline.pgbench_tps(self.sizes.pgbench_seconds)
        print(f"pgbench (TPC-B-like, 8 clients): {self.tps:,.0f} TPS")
        self.rows.append(Row("pgbench TPC-B-like, 8 clients (TPS)", self.tps))
        self.redis = redis_rates(self.sizes.redis_requests)
        for name, rate in self.redis.items():
            self.rows.append(Row(f"redis-benchmark {name}, 50 clients (/s)", rate))

    async def pipeline(self) -> None:
        import pipeline

        decks, slides = self.sizes.pipeline_decks, self.sizes.pipeline_slides
        say(f"pipeline: {decks} decks x {slides} slides, a socket on each")
        figures = await pipeline.pipeline_figures(decks, slides, self.port + _PIPELINE_PORT, None)
        delays = [1000 * seconds for seconds in figures.watched.latencies]
        committed, delivered = figures.committed_per_second, figures.delivered_per_second
        print(f"one work process: {committed:,.0f} slides/s committed, {delivered:,.0f} delivered")
        print(
            f"commit -> client: p50 {sockets.percentile(delays, 50):.0f} ms,"
            f" p99 {sockets.percentile(delays, 99):.0f} ms; missing {figures.watched.missing}"
        )
        self.rows += [
            Row(
                "pipeline: slides committed/s vs pgbench TPS", committed, self.tps, ">= 0.25 ratio"
            ),
            Row("pipeline: slides delivered/s vs pgbench", delivered, self.tps),
            Row(
                "pipeline: commit -> client p99",
                sockets.percentile(delays, 99),
                target="< 100",
                unit="ms",
            ),
            Row("pipeline: events missing at the sockets", figures.watched.missing, target="= 0"),
        ]
        if "XADD" in self.redis:
            # A slide is one event, and a deck has three more; each is one XADD.
            events = committed * (slides + 3) / slides
            self.rows.append(
                Row("pipeline: events published/s vs XADD/s", events, self.redis["XADD"])
            )

    async def model(self) -> None:
        n, latency = self.sizes.model_slides, self.sizes.model_latency
        say(f"model latency: {n} slides, {latency:g} s a call")
        times = await model_times(n, latency)
        for ahead in (1, 4):
            floor = latency * (1 + math.ceil(n / ahead))
            self.rows.append(
                Row(
                    f"model: {n} slides complete, {ahead} at once vs the model alone",
                    times[ahead][1],
                    floor,
                    unit="s",
                )
            )
        self.rows += [
            Row(
                "model: first slide, 4 at once vs the model alone",
                times[4][0],
                2 * latency,
                unit="s",
            ),
            Row("model: complete, 4 at once vs 1 at once", times[4][1], times[1][1], unit="s"),
        ]

    async def idle(self) -> None:
        count, hold = self.sizes.sockets, self.sizes.hold
        say(f"idle sockets: {count}, held {hold:g}s")
        bare = await sockets.bare_idle(count, hold, self.port)
        print(*bare.lines("idle, bare uvicorn"), sep="\n")
        idle = await sockets.real_idle(count, hold, self.port)
        print(*idle.lines("idle, presto-deck serve"), sep="\n")
        self.rows += [
            Row("idle: sockets held of those opened", idle.held, idle.requested, "= 1 ratio"),
            Row(
                "idle: RSS per socket vs bare uvicorn",
                idle.per_socket_kib,
                bare.per_socket_kib,
                "< 40",
                "KiB",
            ),
            Row(
                "idle: serve CPU while idle vs bare uvicorn",
                idle.cpu_percent,
                bare.cpu_percent,
                unit="%",
            ),
            Row(
                "idle: sockets opened per second vs bare uvicorn",
                idle.requested / idle.connect_seconds,
                bare.requested / bare.connect_seconds,
            ),
        ]
        if idle.transactions_per_second is not None:
            self.rows.append(Row("idle: PostgreSQL transactions/s", idle.transactions_per_second))

    async def fanout(self) -> None:
        sizes, port = self.sizes, self.port
        events = sizes.fanout_slides + 3
        say(f"fan-out: {sizes.watchers} watchers, {events} events {sizes.fanout_delay_ms} ms apart")
        bare = await sockets.bare_fanout(sizes.watchers, events, sizes.fanout_delay_ms, port)
        print(*bare.lines("fan-out, bare uvicorn"), sep="\n")
        spread = sockets.HEARTBEAT_SECONDS if sizes.spread else 0.0
        fan = await sockets.real_fanout(
            sizes.watchers, sizes.fanout_slides, sizes.fanout_delay_ms, port, spread=spread
        )
        print(*fan.lines("fan-out, presto-deck"), sep="\n")
        self.rows += [
            Row(
                "fan-out: delivery p50 vs bare uvicorn",
                fan.percentile(50),
                bare.percentile(50),
                unit="ms",
            ),
            Row(
                "fan-out: delivery p99 vs bare uvicorn",
                fan.percentile(99),
                bare.percentile(99),
                "< 250",
                "ms",
            ),
            Row(
                "fan-out: delivery max vs bare uvicorn",
                max(fan.latencies_ms, default=math.nan),
                max(bare.latencies_ms, default=math.nan),
                unit="ms",
            ),
            Row(
                "fan-out: frames received of expected",
                fan.received,
                len(fan.expected) * fan.watchers,
                "= 1 ratio",
            ),
            Row(
                "fan-out: frames missing, repeated, out of order",
                fan.missing + fan.repeated + fan.out_of_order,
                target="= 0",
            ),
            Row("fan-out: events read from PostgreSQL for sockets", fan.replayed),
            Row(
                "fan-out: full GC pauses while written, in all",
                (fan.collections or (0, 0.0))[1] * 1000,
                unit="ms",
            ),
        ]
        if sizes.two_serves:
            two = await sockets.real_fanout(
                sizes.watchers,
                sizes.fanout_slides,
                sizes.fanout_delay_ms,
                port,
                serves=2,
                spread=spread,
            )
            print(*two.lines("fan-out, two serves"), sep="\n")
            self.rows += [
                Row(
                    "fan-out, 2 serves: p99 vs 1 serve",
                    two.percentile(99),
                    fan.percentile(99),
                    "< 250",
                    "ms",
                ),
                Row("fan-out, 2 serves: frames missing", two.missing, target="= 0"),
            ]
        if sizes.heartbeat_storm:
            storm = await sockets.real_fanout(
                sizes.watchers,
                sizes.fanout_slides,
                sizes.fanout_delay_ms,
                port,
                heartbeat_storm=True,
            )
            print(*storm.lines("fan-out, while the watchers' heartbeats are due"), sep="\n")
            self.rows.append(
                Row(
                    "fan-out, heartbeats all due: p99 vs spread",
                    storm.percentile(99),
                    fan.percentile(99),
                    "< 250",
                    "ms",
                )
            )

    async def http(self) -> None:
        rate, seconds = self.sizes.http_rate, self.sizes.http_seconds
        for works, beside in ((0, "the serve alone"), (1, "a work beside")):
            say(f"POST /api/v1/decks: {rate:g}/s for {seconds:g}s, {beside}")
            http = await http_latency.measure(rate, seconds, 3, 50, self.port, works=works)
            print(*http.lines(), sep="\n")
            self.rows += [
                Row(
                    f"POST /api/v1/decks p50, {beside}, vs GET",
                    http.create.percentile(50),
                    http.floor.percentile(50),
                    unit="ms",
                ),
                Row(
                    f"POST /api/v1/decks p99, {beside}, vs GET",
                    http.create.percentile(99),
                    http.floor.percentile(99),
                    "< 25",
                    "ms",
                ),
                Row(
                    f"POST /api/v1/decks errors, {beside}",
                    sum(http.create.errors.values()),
                    target="= 0",
                ),
            ]

    async def locust(self) -> None:
        users, seconds = self.sizes.locust_users, self.sizes.locust_seconds
        say(f"Locust: {users} users for {seconds}s")
        found = locust_run(self.port, users, seconds)
        if found is None:
            raise RuntimeError("no figures from Locust")
        rounds = math.ceil(LOCUST_SLIDES / 4)  # four slides of a deck are written at once
        self.rows += [
            Row(
                "Locust: time to first slide p50 vs the writer's",
                found.first_slide_p50,
                LOCUST_DELAY_MS,
                unit="ms",
            ),
            Row(
                "Locust: time to complete p50 vs the writer's",
                found.complete_p50,
                rounds * LOCUST_DELAY_MS,
                unit="ms",
            ),
            Row("Locust: time to complete p99", found.complete_p99, unit="ms"),
            Row("Locust: POST p99", found.post_p99, target="< 25", unit="ms"),
            Row("Locust: failed requests of all", found.failures, found.requests, "= 0"),
        ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, short times")
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--skip", nargs="+", choices=PARTS, default=[])
    args = parser.parse_args()
    stop_on_sigterm()
    raise_open_files()
    from loguru import logger

    logger.remove()  # the in-process parts' (pipeline, model latency) logs
    load = os.getloadavg()[0]
    print(f"load average {load:.2f} on {os.cpu_count()} cores at the start", end="")
    print(": other work on this machine makes every figure noisier" if load > 0.5 else "")
    started = time.monotonic()
    rows = await Bench(QUICK if args.quick else FULL, args.port).run(args.skip)
    say(f"all figures ({time.monotonic() - started:.0f}s)")
    print(table(rows))


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
