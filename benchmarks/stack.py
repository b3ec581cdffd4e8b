"""Real `presto-deck serve` and `presto-deck work` processes on a scratch database, for the load
tests: each process in a session of its own, its output in a log file, stopped with SIGTERM (then
SIGKILL) at the end; and what the drivers measure about them (RSS, CPU time, log errors).

    uv run python benchmarks/stack.py [--port 8300] [--serves 1] [--works 1]
        [--slide-delay-ms 50] [--heartbeat 15] [--seconds 600] [--keep-logs]

run by itself, keeps a stack up (serves on --port, --port + 1, …; workers with their metrics on
--port + 10, …) for Locust or a hand test until Ctrl-C or --seconds, and prints its address and
the JWT secret its tokens need, then each process's error lines at the end (--keep-logs keeps
their logs). Uses a database of its own (dropped at the end) on the PostgreSQL of
PRESTO_BENCH_DATABASE_URL and the Redis db of PRESTO_BENCH_REDIS_URL (db 12 by default, emptied),
on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt

#: The HS256 secret of every stack these scripts start (a scratch server on 127.0.0.1 only).
BENCH_JWT_SECRET = os.environ.get("PRESTO_BENCH_JWT_SECRET", "presto-bench-" + "0123456789" * 4)
PRESTO_DECK = Path(sys.executable).with_name("presto-deck")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
#: What a log line of trouble looks like, in text or JSON logs.
_TROUBLE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback|\"level\": ?\"(ERROR|CRITICAL)\"")


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the driver dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_on_sigterm() -> None:
    """SIGTERM ends the driver as Ctrl-C does, so that its processes and databases are cleaned
    up."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def mint(user_id: str, ttl_seconds: int = 3600, secret: str = BENCH_JWT_SECRET) -> str:
    """A token for ``user_id``, as `presto-deck token` makes it (HS256, ``sub``, ``exp``)."""
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_seconds}, secret, "HS256")


@contextlib.contextmanager
def steady_heap() -> Iterator[None]:
    """While a driver times what it sends or reads, a full garbage collection of its own heap
    (thousands of watchers, and whatever the parts before left in it) would delay every send and
    read by as long as it takes (0.2-0.3 s measured): what it holds by then is moved out of the
    collector's way."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def raise_open_files() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def rss_kib(pid: int) -> int:
    """The resident set size of a process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def cpu_by_command(*names: str) -> dict[int, float]:
    """CPU seconds used so far by every process whose command is one of ``names`` (PostgreSQL's
    backends, Redis), by pid."""
    used = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if stat.partition("(")[2].rpartition(")")[0] in names:
            fields = stat.rpartition(")")[2].split()
            used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return used


@contextlib.asynccontextmanager
async def recorded(pid: int, profile: str | None) -> AsyncIterator[None]:
    """py-spy records process ``pid`` while the block runs, its collapsed stacks written to
    ``profile`` (nothing without one)."""
    if profile is None:
        yield
        return
    spy = ["uvx", "--from", "py-spy", "py-spy", "record", "--format", "raw", "-r", "100"]
    recorder = await asyncio.create_subprocess_exec(
        *spy, "--pid", str(pid), "-o", profile, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        await recorder.wait()


@dataclass
class Process:
    """A command running in a session of its own, its output in ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(
        cls, name: str, command: Sequence[str], env: Mapping[str, str], logs: Path
    ) -> Process:
        log = logs / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                list(command),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return cls(name, popen, log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def require_running(self) -> None:
        if self.popen.poll() is not None:
            raise SystemExit(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def trouble(self) -> list[str]:
        """The log lines that report an error."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if _TROUBLE.search(line)]

    def pause(self) -> None:
        """SIGSTOP: it holds its connections and does nothing until ``resume``."""
        os.killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to its group, SIGKILL once ``timeout`` runs out."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            self.resume()  # a paused process acts on SIGTERM only once resumed
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()


def require_free(port: int) -> None:
    """Stop with a clear message if something listens on 127.0.0.1:``port`` already (it would
    answer for the process about to start there)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise SystemExit(f"port {port} is taken: is another stack still running?") from None


def wait_until(url: str, process: Process, timeout: float = 60) -> None:
    """Poll ``url`` until it answers 200 while ``process`` runs."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as http:
        while True:
            process.require_running()
            with contextlib.suppress(httpx.TransportError):
                if http.get(url).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer 200 within {timeout:g}s:\n{process.tail()}")
            time.sleep(0.1)


def environment(database_url: str, redis_url: str, settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without PRESTO_* or OTEL_*, plus the stack's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRESTO_", "OTEL_"))}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PRESTO_DATABASE_URL": database_url,
            "PRESTO_REDIS_URL": redis_url,
            "PRESTO_JWT_SECRET": BENCH_JWT_SECRET,
            "PRESTO_LOG_FORMAT": "text",
            "PRESTO_LOG_LEVEL": "WARNING",
        }
    )
    env.update(settings)
    return env


@dataclass
class Stack:
    """What ``running_stack`` started: the serve processes (one URL each) and the work ones."""

    database_url: str
    redis_url: str
    logs: Path
    env: dict[str, str]
    serves: list[Process] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    works: list[Process] = field(default_factory=list)
    _work_port: int = 0

    @property
    def url(self) -> str:
        return self.urls[0]

    def start_serve(self, port: int) -> Process:
        name = f"serve-{len(self.serves)}"
        require_free(port)
        command = [str(PRESTO_DECK), "serve", "--host", "127.0.0.1", "--port", str(port)]
        process = Process.start(name, command, self.env, self.logs)
        self.serves.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_until(f"{url}/health/ready", process)
        self.urls.append(url)
        return process

    def start_work(self) -> Process:
        """A work process; ready once its metrics port answers (its imports are done)."""
        port = self._work_port + len(self.works)
        name = f"work-{len(self.works)}"
        require_free(port)
        command = [str(PRESTO_DECK), "work", "--metrics-port", str(port)]
        process = Process.start(name, command, self.env, self.logs)
        self.works.append(process)
        wait_until(f"http://127.0.0.1:{port}/metrics", process)
        return process

    def trouble(self) -> dict[str, list[str]]:
        """Each process's log lines that report an error (only those that have any)."""
        found = {p.name: p.trouble() for p in [*self.serves, *self.works]}
        return {name: lines for name, lines in found.items() if lines}

    def stop(self) -> None:
        for process in [*self.works, *self.serves]:
            process.stop()


@contextlib.contextmanager
def running_stack(
    *,
    port: int = 8300,
    serves: int = 1,
    works: int = 1,
    settings: Mapping[str, str] | None = None,
    keep_logs: bool = False,
) -> Iterator[Stack]:
    """``serves`` API processes on ``port``, ``port`` + 1, … and ``works`` workers (metrics on
    ``port`` + 10, …), on a new migrated database and the benchmarks' Redis db; everything
    stopped and dropped at the end. ``settings`` are PRESTO_* variables for all of them."""
    from scratch import REDIS_URL, scratch_database

    for taken in [*range(port, port + serves), *range(port + 10, port + 10 + works)]:
        require_free(taken)  # before the Redis db is emptied under another stack
    with (
        scratch_database("presto_load") as database_url,
        tempfile.TemporaryDirectory(prefix="presto-load-") as logs,
    ):
        env = environment(database_url, REDIS_URL, settings or {})
        stack = Stack(database_url, REDIS_URL, Path(logs), env, _work_port=port + 10)
        try:
            for n in range(serves):
                stack.start_serve(port + n)
            for _ in range(works):
                stack.start_work()
            yield stack
        finally:
            stack.stop()
            if keep_logs:
                kept = Path(tempfile.mkdtemp(prefix="presto-load-logs-"))
                for log in Path(logs).iterdir():
                    log.rename(kept / log.name)
                print(f"logs kept in {kept}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--serves", type=int, default=1)
    parser.add_argument("--works", type=int, default=1)
    parser.add_argument("--slide-delay-ms", type=int, default=50)
    parser.add_argument("--heartbeat", type=float, default=15)
    parser.add_argument("--seconds", type=float, default=600, help="stop after this long")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    stop_on_sigterm()
    raise_open_files()
    settings = {
        "PRESTO_OFFLINE_SLIDE_DELAY_MS": str(args.slide_delay_ms),
        "PRESTO_WS_HEARTBEAT_SECONDS": str(args.heartbeat),
    }
    with running_stack(
        port=args.port,
        serves=args.serves,
        works=args.works,
        settings=settings,
        keep_logs=args.keep_logs,
    ) as stack:
        print(f"serving on {' '.join(stack.urls)} until Ctrl-C (at most {args.seconds:g}s)")
        print(f"tokens: PRESTO_JWT_SECRET={BENCH_JWT_SECRET} presto-deck token USER", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                for process in [*stack.serves, *stack.works]:
                    process.require_running()
                time.sleep(0.5)
        for name, lines in stack.trouble().items():
            print(f"{name}: {len(lines)} error line(s), the last: {lines[-1]}")


if __name__ == "__main__":
    main()
