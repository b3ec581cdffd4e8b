"""Fixtures of the end-to-end tests: the real ``presto-deck`` processes on a throw-away database,
a Redis db of their own and a free port, and clients that talk to them over the network."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt
import psycopg
import pytest

from tests.support.client import DeckClient
from tests.support.processes import (
    ManagedProcess,
    ProcessFailed,
    clean_environment,
    free_port,
)
from tests.support.services import (
    ADMIN_DATABASE_URL,
    flush_redis,
    reset_database,
    temporary_database,
)

E2E_REDIS_URL = os.environ.get("PRESTO_TEST_E2E_REDIS_URL", "redis://127.0.0.1:6379/14")
JWT_SECRET = "e2e-secret-that-is-long-enough-for-hs256"

#: Settings of every process unless a test says otherwise: fast slides, heartbeats, leases and
#: sweeps, so that streaming, gap backfill and the takeover of a dead worker take seconds.
BASE_SETTINGS = {
    "offline_slide_delay_ms": "50",
    "ws_heartbeat_seconds": "1",
    "worker_lease_seconds": "2",
    "worker_sweep_seconds": "1",
    # Abuse limits far above what the tests do (a test of the limits sets its own).
    "limit_deck_creations_per_minute": "100000",
    "limit_active_decks_per_user": "100000",
    "limit_sockets_per_user": "100000",
    "limit_sockets_total": "100000",
    "limit_frames_per_second": "100000",
    "limit_exports_per_minute": "100000",
    "limit_theme_changes_per_minute": "100000",
}

StackKind = Literal["separate", "combined"]

#: (process name, seconds from its start to the first 200 of /health/ready)
StartupTimes = list[tuple[str, float]]
_STARTUP_TIMES = pytest.StashKey[StartupTimes]()


def mint(user_id: str, *, secret: str = JWT_SECRET, ttl: int = 3600) -> str:
    """A token as an identity provider would issue it (PyJWT, not the product's code)."""
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl}, secret, algorithm="HS256")


@contextmanager
def empty_database() -> Iterator[str]:
    """A database with nothing in it (not even migrated), dropped afterwards."""
    name = f"presto_e2e_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DATABASE_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{ADMIN_DATABASE_URL.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(ADMIN_DATABASE_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Stack:
    """The API, and the worker when it runs as a process of its own."""

    serve: ManagedProcess
    work: ManagedProcess | None

    @property
    def processes(self) -> list[ManagedProcess]:
        return [self.serve] if self.work is None else [self.serve, self.work]


class Deployment:
    """Where the e2e tests run ``presto-deck``: one database, one Redis db, one port.

    Starting a process costs seconds (mostly imports), so a stack that one test leaves running is
    kept for the next test that asks for the same kind. A test that needs other settings, or that
    kills processes, calls ``fresh()`` and starts its own; the API always listens on ``port``, so
    a restarted API is where clients expect it.
    """

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        log_dir: Path,
        startup_times: list[tuple[str, float]],
    ) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self._startup_times = startup_times
        self._names: Counter[str] = Counter()
        self._processes: list[ManagedProcess] = []
        self._kept: tuple[StackKind, Stack] | None = None

    def settings(self, **overrides: str | None) -> dict[str, str]:
        """``PRESTO_*`` variables; an override of None leaves that variable unset."""
        values: dict[str, str | None] = {
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "jwt_secret": JWT_SECRET,
            **BASE_SETTINGS,
            **overrides,
        }
        return {f"PRESTO_{k.upper()}": v for k, v in values.items() if v is not None}

    def launch(
        self,
        name: str,
        *args: str,
        environment: Mapping[str, str] | None = None,
        **overrides: str | None,
    ) -> ManagedProcess:
        """Start ``presto-deck ARGS`` without waiting for anything; ``environment`` adds
        variables other than settings (``OTEL_*``)."""
        self._names[name] += 1
        if self._names[name] > 1:
            name = f"{name}-{self._names[name]}"
        env = clean_environment({**self.settings(**overrides), **(environment or {})})
        process = ManagedProcess.start(name, args, env, self.log_dir)
        self._processes.append(process)
        return process

    def run(self, *args: str, timeout: float = 60, **overrides: str | None) -> ManagedProcess:
        """Run a command to its end (``migrate``, ``token``, a start-up that must fail)."""
        process = self.launch(args[0], *args, **overrides)
        process.wait_for_exit(timeout)
        return process

    def start_serve(self, *flags: str, **overrides: str | None) -> ManagedProcess:
        name = "serve-with-worker" if "--with-worker" in flags else "serve"
        return self.launch(name, "serve", "--port", str(self.port), *flags, **overrides)

    def start_work(self, **overrides: str | None) -> ManagedProcess:
        return self.launch("work", "work", **overrides)

    def wait_until_ready(self, serve: ManagedProcess) -> None:
        self._startup_times.append((serve.name, serve.wait_until_ready(self.url)))

    def serve(self, *flags: str, **overrides: str | None) -> ManagedProcess:
        """Start the API and wait until ``/health/ready`` answers 200."""
        process = self.start_serve(*flags, **overrides)
        self.wait_until_ready(process)
        return process

    def stack(self, kind: StackKind) -> Stack:
        """``serve`` and ``work`` as two processes, or ``serve --with-worker``; reused if alive."""
        if self._kept is not None:
            kept_kind, kept = self._kept
            if kept_kind == kind and all(process.running for process in kept.processes):
                return kept
        self.fresh()
        if kind == "separate":
            stack = Stack(serve=self.start_serve(), work=self.start_work())  # both import at once
        else:
            stack = Stack(serve=self.start_serve("--with-worker"), work=None)
        self.wait_until_ready(stack.serve)
        if stack.work is not None:
            stack.work.wait_for_log("Starting worker")
        self._kept = (kind, stack)
        return stack

    def fresh(self) -> None:
        """Stop every process, then empty the database and the Redis db."""
        self.stop_all()
        reset_database(self.database_url)
        flush_redis(self.redis_url)

    def stop_all(self) -> None:
        """Stop whatever still runs; fail if a process had to be killed or left a child."""
        self._kept = None
        problems = []
        for process in self._processes:
            try:
                stopped = process.stop()
            except ProcessFailed as exc:
                problems.append(str(exc))
                continue
            if stopped.forced:
                problems.append(
                    f"{process.name} ignored SIGTERM for {stopped.seconds:.1f}s\n{process.tail()}"
                )
        self._processes.clear()
        if problems:
            raise ProcessFailed("\n".join(problems))


@pytest.fixture(scope="session")
def e2e_database() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture(scope="session")
def deployment(
    e2e_database: str, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Deployment]:
    flush_redis(E2E_REDIS_URL)
    startup_times = pytestconfig.stash.setdefault(_STARTUP_TIMES, [])
    deployed = Deployment(
        e2e_database, E2E_REDIS_URL, tmp_path_factory.mktemp("presto-e2e-logs"), startup_times
    )
    try:
        yield deployed
    finally:
        try:
            deployed.stop_all()
        finally:
            flush_redis(E2E_REDIS_URL)


@pytest.fixture
def separate_stack(deployment: Deployment) -> Stack:
    return deployment.stack("separate")


@pytest.fixture
def combined_stack(deployment: Deployment) -> Stack:
    return deployment.stack("combined")


@pytest.fixture
async def alice(deployment: Deployment) -> AsyncIterator[DeckClient]:
    client = DeckClient(deployment.url, deployment.ws_url, mint("alice"))
    yield client
    await client.aclose()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    times = config.stash.get(_STARTUP_TIMES, [])
    if times:
        terminalreporter.write_sep("-", "presto-deck serve: seconds from start to /health/ready")
        terminalreporter.write_line(", ".join(f"{name} {seconds:.1f}" for name, seconds in times))
