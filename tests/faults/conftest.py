"""The fault suite: the real ``presto-deck`` processes on PostgreSQL and on a Redis server of the
test's own, and the faults done to them (kill -9, SIGSTOP, restarts, flushes, terminated
sessions, a model that misbehaves).

Every test ends with the contract checked on every deck (``contract.py``): a terminal state
within a bound, each slide exactly once, events contiguous, an exact replay from any version,
and a bounded number of model calls. Each test records what it did in a ``FaultRun``; the
counts are printed at the end of the run (and quoted in docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import Deployment, mint
from tests.support.client import DeckClient
from tests.support.redis_server import DisposableRedis, disposable_redis
from tests.support.services import temporary_database

#: Settings of every process of the fault suite: short leases, sweeps and lock waits, so that a
#: takeover happens within seconds; heartbeats far apart, so that no delivery within a test's
#: bound can be a heartbeat's catch-up.
FAULT_SETTINGS = {
    "offline_slide_delay_ms": "150",
    "ws_heartbeat_seconds": "60",
    "worker_lease_seconds": "2",
    "worker_sweep_seconds": "1",
    "db_lock_timeout_seconds": "1",
    "db_idle_transaction_timeout_seconds": "3",
}


@dataclass
class FaultRun:
    """What one test of the suite did, for the summary at the end of the run."""

    test: str
    faults: dict[str, int] = field(default_factory=dict)
    decks: int = 0
    events: int = 0
    replays: int = 0
    model_calls: int = 0

    def count(self, fault: str, times: int = 1) -> None:
        self.faults[fault] = self.faults.get(fault, 0) + times


_RUNS = pytest.StashKey[list[FaultRun]]()


@dataclass
class Cluster:
    """The processes of one test, on the suite's database and the test's own Redis."""

    deployment: Deployment
    redis: DisposableRedis

    def settings(self, **overrides: str) -> dict[str, str]:
        return {**FAULT_SETTINGS, **overrides}


@pytest.fixture(scope="session")
def fault_database() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@contextmanager
def running_cluster(database_url: str, directory: Path) -> Iterator[Cluster]:
    """A Redis of its own and a deployment on it, everything stopped afterwards."""
    with disposable_redis(directory / "redis") as redis:
        deployment = Deployment(database_url, redis.url(0), directory / "logs", [])
        deployment.fresh()
        try:
            yield Cluster(deployment, redis)
        finally:
            deployment.stop_all()


@pytest.fixture
def cluster(fault_database: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(fault_database, tmp_path) as running:
        yield running


@pytest.fixture
def fault_run(request: pytest.FixtureRequest) -> FaultRun:
    run = FaultRun(test=request.node.name)
    request.config.stash.setdefault(_RUNS, []).append(run)
    return run


@pytest.fixture
async def alice(cluster: Cluster) -> AsyncIterator[DeckClient]:
    client = DeckClient(cluster.deployment.url, cluster.deployment.ws_url, mint("alice"))
    yield client
    await client.aclose()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    runs = config.stash.get(_RUNS, [])
    if not runs:
        return
    terminalreporter.write_sep("-", "fault suite: what each test did")
    for run in runs:
        faults = ", ".join(f"{name} x{n}" for name, n in sorted(run.faults.items())) or "none"
        terminalreporter.write_line(
            f"{run.test}: {faults}; decks {run.decks}, events checked {run.events}, "
            f"replays {run.replays}, model calls {run.model_calls}"
        )
