"""The latency of `POST /api/v1/decks` at a fixed rate, open loop, against one `serve` process
while a `work` process writes the decks, beside the same rate of `GET /health/live` (no token, no
database, no Redis: the floor of the HTTP stack) measured in the same run.

    uv run python benchmarks/http_latency.py [--rate 100] [--seconds 10] [--slides 3]
        [--slide-delay-ms 50] [--works 1] [--per-second] [--profile FILE] [--port 8300]

Open loop: request n is sent at start + n / rate whatever became of the others, and its latency
counts from that planned time, so a server that falls behind shows as latency, not as fewer
requests. Each creation is by a user of its own (per-user limits do not bite). Prints, for each
route, p50, p99 and max in milliseconds, errors (by status or exception) and the serve process's
CPU meanwhile, then the ratio of the POST's p99 to the floor's (target: POST p99 < 25 ms), and how
many of the decks the worker had finished by the end. --works 0 leaves the decks queued (the
serve process alone, no worker beside it on the two cores); --per-second prints the POSTs' p50
and max second by second; --profile records the serve process with py-spy during the POSTs.

The client is a lean HTTP/1.1 one of its own (keep-alive connections, nothing else), so that the
driver's own CPU stays small beside the server's. Uses a database of its own (dropped at the end)
on the PostgreSQL of PRESTO_BENCH_DATABASE_URL and the Redis db of PRESTO_BENCH_REDIS_URL (db 12
by default), on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import psycopg
from stack import (
    cpu_seconds,
    mint,
    raise_open_files,
    recorded,
    running_stack,
    steady_heap,
    stop_on_sigterm,
)

#: Requests a client may have in flight: far more than a server that keeps up ever needs.
_CONNECTIONS = 256


class HttpPool:
    """A lean HTTP/1.1 client: up to ``size`` keep-alive connections to one server, one request
    at a time on each. (A general client's pool costs far more CPU per request once hundreds
    wait, and the driver would then measure itself.)"""

    def __init__(self, url: str, size: int = _CONNECTIONS) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self._host, self._port = host, int(port or 80)
        self._gate = asyncio.Semaphore(size)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: list[asyncio.StreamWriter] = []

    async def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> int:
        """The response's status; its body is read and dropped."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        message = head.encode() + b"\r\n" + body
        async with self._gate:
            while self._idle:
                reader, writer = self._idle.pop()
                if not reader.at_eof() and not writer.is_closing():
                    try:
                        return await self._exchange(reader, writer, message)
                    except asyncio.IncompleteReadError as exc:
                        if exc.partial:
                            raise
                    # The server had closed the idle connection (its keep-alive timeout) before
                    # it read the request: as any client does, try again on a new one.
            reader, writer = await asyncio.open_connection(self._host, self._port)
            self._all.append(writer)
            return await self._exchange(reader, writer, message)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes
    ) -> int:
        try:
            writer.write(message)
            status, length, closing = _parse_head(await reader.readuntil(b"\r\n\r\n"))
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if closing:
            writer.close()
        else:
            self._idle.append((reader, writer))
        return status

    async def close(self) -> None:
        for writer in self._all:
            writer.close()


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, Content-Length and whether the server closes the connection."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" not in fields:
        raise ConnectionError("a response without Content-Length")
    return status, int(fields["content-length"]), fields.get("connection") == "close"


@dataclass
class Latencies:
    route: str
    rate: float
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    #: Each answered request's planned start, in seconds from the first, and its latency.
    timeline: list[tuple[float, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_percent: float = 0.0  # the serve process's
    late_sends_ms: float = 0.0  # how far behind its plan the driver sent its worst request

    def percentile(self, q: float) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=1000, method="inclusive")[
            round(q * 10) - 1
        ]

    def line(self) -> str:
        errors = ", ".join(f"{n} x {kind}" for kind, n in self.errors.items()) or "none"
        return (
            f"{self.route:<22} {len(self.latencies_ms):>5} at {self.rate:g}/s:"
            f" p50 {self.percentile(50):6.1f} ms  p99 {self.percentile(99):6.1f} ms"
            f"  max {max(self.latencies_ms, default=float('nan')):6.1f} ms;"
            f" errors: {errors}; serve CPU {self.cpu_percent:.0f}%"
        )

    def seconds_lines(self) -> list[str]:
        """A line per second of the run: its requests' p50 and max."""
        by_second: dict[int, list[float]] = {}
        for at, latency in self.timeline:
            by_second.setdefault(int(at), []).append(latency)
        return [
            f"  {second:3d}s: {len(found):4d} answered, p50 {statistics.median(found):6.1f} ms,"
            f" max {max(found):6.1f} ms"
            for second, found in sorted(by_second.items())
        ]


async def open_loop(
    route: str,
    rate: float,
    seconds: float,
    pid: int,
    call: Callable[[int], Awaitable[int]],
    expected_status: int,
) -> Latencies:
    """``call(n)`` for n below rate * seconds, each at its planned time; ``pid``: the server."""
    loop = asyncio.get_running_loop()
    result = Latencies(route, rate, seconds)
    count = round(rate * seconds)

    async def one(n: int, planned: float) -> None:
        # uvloop's clock counts whole milliseconds: latencies are read on perf_counter's.
        planned = time.perf_counter() - (loop.time() - planned)
        try:
            status = await call(n)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            result.errors[type(exc).__name__] += 1
            return
        if status != expected_status:
            result.errors[str(status)] += 1
            return
        latency = 1000 * (time.perf_counter() - planned)
        result.latencies_ms.append(latency)
        result.timeline.append((n / rate, latency))

    cpu, start = cpu_seconds(pid), loop.time() + 0.05
    tasks = []
    for n in range(count):
        planned = start + n / rate
        await asyncio.sleep(max(planned - loop.time(), 0))
        result.late_sends_ms = max(result.late_sends_ms, 1000 * (loop.time() - planned))
        tasks.append(asyncio.create_task(one(n, planned)))
    await asyncio.gather(*tasks)
    result.cpu_percent = 100 * (cpu_seconds(pid) - cpu) / (loop.time() - start)
    return result


@dataclass
class HttpFigures:
    floor: Latencies
    create: Latencies
    decks_done: int
    decks_created: int

    def lines(self) -> list[str]:
        ratio = self.create.percentile(99) / self.floor.percentile(99)
        late = max(self.floor.late_sends_ms, self.create.late_sends_ms)
        return [
            self.floor.line(),
            self.create.line(),
            f"POST p99 / GET /health/live p99: {ratio:.1f}; decks finished by the end:"
            f" {self.decks_done}/{self.decks_created}",
            f"(the driver sent its latest request {late:.1f} ms behind its plan)",
        ]


def finished_decks(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM decks WHERE status = 'COMPLETED'").fetchone()
    return int(row[0]) if row else 0


async def measure(
    rate: float,
    seconds: float,
    slides: int,
    delay_ms: int,
    port: int,
    profile: str | None = None,
    works: int = 1,
) -> HttpFigures:
    """The floor, then the creations, on one stack with ``works`` work processes; with
    ``profile``, py-spy records the serve process during the creations (collapsed stacks)."""
    raise_open_files()
    settings = {"PRESTO_OFFLINE_SLIDE_DELAY_MS": str(delay_ms)}
    count = round(rate * seconds)
    tokens = [mint(f"http-{n}") for n in range(count)]  # before the clock starts
    body = json.dumps({"prompt": "Tides and towns", "slide_count": slides}).encode()
    kind = {"Content-Type": "application/json"}
    with running_stack(port=port, works=works, settings=settings) as stack:
        pid = stack.serves[0].pid
        http = HttpPool(stack.url)
        try:
            for _ in range(20):  # connections and code paths warm
                await http.request("GET", "/health/live")
            warm = {**kind, "Authorization": f"Bearer {mint('warm')}"}
            await http.request("POST", "/api/v1/decks", warm, body)

            def live(_: int) -> Awaitable[int]:
                return http.request("GET", "/health/live")

            def create(n: int) -> Awaitable[int]:
                headers = {**kind, "Authorization": f"Bearer {tokens[n]}"}
                return http.request("POST", "/api/v1/decks", headers, body)

            with steady_heap():
                floor = await open_loop("GET /health/live", rate, seconds, pid, live, 200)
                async with recorded(pid, profile):
                    created = await open_loop("POST /api/v1/decks", rate, seconds, pid, create, 202)
        finally:
            await http.close()
        done = finished_decks(stack.database_url)
        for name, lines in stack.trouble().items():
            print(f"  {name}: {len(lines)} error line(s) in its log, e.g. {lines[-1][:300]}")
    return HttpFigures(floor, created, done, len(created.latencies_ms) + 1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=100, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--slides", type=int, default=3, help="slides of each deck")
    parser.add_argument("--slide-delay-ms", type=int, default=50)
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--profile", help="record the serve process with py-spy during the POSTs")
    parser.add_argument(
        "--works", type=int, default=1, help="work processes (0: the decks are only queued)"
    )
    parser.add_argument(
        "--per-second", action="store_true", help="the POSTs' p50 and max, second by second"
    )
    args = parser.parse_args()
    stop_on_sigterm()
    figures = await measure(
        args.rate,
        args.seconds,
        args.slides,
        args.slide_delay_ms,
        args.port,
        args.profile,
        args.works,
    )
    print(*figures.lines(), sep="\n")
    if args.per_second:
        print(*figures.create.seconds_lines(), sep="\n")


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
