"""End to end: ``presto-deck dev`` on a machine with no database, Redis or secret configured.

It starts embedded PostgreSQL and Redis in its data dir, prints an address with a token, serves
decks, stops everything it started on SIGTERM and finds its decks again on the next start.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.client import DeckClient
from tests.support.processes import CLEAN_EXIT_CODES, ManagedProcess, clean_environment, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

#: SIGTERM must stop the API, the worker and both servers within this many seconds.
STOP_SECONDS = 10.0
#: A cold start runs initdb and the migrations; both starts import the whole product.
START_SECONDS = 90.0

_ANNOUNCEMENT = re.compile(r"running at (http://[^/\s]+)/#token=(\S+)")


@dataclass
class RunningDev:
    process: ManagedProcess
    url: str
    token: str

    def client(self) -> DeckClient:
        return DeckClient(self.url, self.url.replace("http://", "ws://", 1), self.token)


class DevRuns:
    """Starts ``presto-deck dev`` on one data dir and port, with no ``PRESTO_*`` server setting."""

    def __init__(self, data_dir: Path, log_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.port = free_port()
        self._started = 0
        self._processes: list[ManagedProcess] = []

    def launch(self) -> ManagedProcess:
        self._started += 1
        env = clean_environment({"PRESTO_OFFLINE_SLIDE_DELAY_MS": "20"})
        args = ["dev", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        process = ManagedProcess.start(f"dev-{self._started}", args, env, self.log_dir)
        self._processes.append(process)
        return process

    def start(self) -> RunningDev:
        process = self.launch()
        process.wait_for_log(_ANNOUNCEMENT.pattern, timeout=START_SECONDS)
        found = _ANNOUNCEMENT.search(process.stdout())
        assert found is not None, process.output()
        process.wait_until_ready(found[1])
        return RunningDev(process, found[1], found[2])

    def command(self, *args: str) -> ManagedProcess:
        """Run another ``presto-deck`` command to its end in the same clean environment."""
        self._started += 1
        name = f"{args[0]}-{self._started}"
        process = ManagedProcess.start(name, list(args), clean_environment({}), self.log_dir)
        process.wait_for_exit(timeout=60)
        return process

    def stop_all(self) -> None:
        for process in self._processes:
            process.stop()


@pytest.fixture
def dev_runs(tmp_path: Path) -> Iterator[DevRuns]:
    runs = DevRuns(tmp_path / "data", tmp_path / "logs")
    yield runs
    runs.stop_all()
    _assert_no_server_left(runs.data_dir)


def _servers_of(data_dir: Path) -> list[psutil.Process]:
    """PostgreSQL and Redis processes working in ``data_dir`` (both chdir into their data)."""
    found = []
    for process in psutil.process_iter(["cwd", "cmdline"]):
        cwd = process.info["cwd"] or ""
        cmdline = " ".join(process.info["cmdline"] or [])
        if cwd.startswith(str(data_dir)) or str(data_dir) in cmdline:
            found.append(process)
    return found


def _assert_no_server_left(data_dir: Path) -> None:
    left = _servers_of(data_dir)
    for process in left:
        process.kill()
    assert not left, f"processes outlived presto-deck dev: {left}"


async def test_dev_serves_decks_stops_cleanly_and_keeps_them_across_a_restart(
    dev_runs: DevRuns,
) -> None:
    first = dev_runs.start()
    assert _servers_of(dev_runs.data_dir), "dev should run PostgreSQL and Redis in its data dir"
    client = first.client()
    try:
        deck_id = await client.create("Onboarding for new engineers", slide_count=3)
        completed = await client.wait_for_status(deck_id, "COMPLETED")
    finally:
        await client.aclose()
    assert len(completed["slides"]) == 3

    stopped = first.process.stop(timeout=STOP_SECONDS)
    assert stopped.returncode in CLEAN_EXIT_CODES, first.process.output()
    assert not stopped.forced
    _assert_no_server_left(dev_runs.data_dir)

    second = dev_runs.start()
    client = second.client()
    try:
        again = await client.deck(deck_id)
    finally:
        await client.aclose()
    assert again["status"] == "COMPLETED"
    assert [slide["id"] for slide in again["slides"]] == [
        slide["id"] for slide in completed["slides"]
    ]
    # The secret lives in the data dir, so a token printed before the restart still works.
    assert (await _status_with_token(second.url, first.token, deck_id)) == 200
    # A developer mints a token for a second user with that secret: no database, Redis or
    # secret is configured for the command.
    minted = dev_runs.command("token", "bob", "--data-dir", str(dev_runs.data_dir))
    assert minted.returncode == 0, minted.output()
    bobs = minted.stdout().strip()
    assert (await _status_with_token(second.url, bobs, deck_id)) == 404  # alice's deck: not his
    async with httpx.AsyncClient(base_url=second.url) as http:
        listed = await http.get("/api/v1/decks", headers={"Authorization": f"Bearer {bobs}"})
    assert listed.status_code == 200


def test_dev_on_a_port_in_use_refuses_before_it_starts_anything(dev_runs: DevRuns) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", dev_runs.port))
        taken.listen()
        refused = dev_runs.launch()
        returncode = refused.wait_for_exit(timeout=30)

    lines = [line for line in refused.stderr().splitlines() if line.strip()]
    assert returncode == 2
    assert lines == [
        f"presto-deck: cannot listen on 127.0.0.1:{dev_runs.port} (Address already in use); "
        "pick another port with --port"
    ]
    assert not (dev_runs.data_dir / "postgres").exists(), "PostgreSQL was started"
    assert not _servers_of(dev_runs.data_dir)


async def test_a_second_dev_on_the_same_data_dir_refuses_to_start(dev_runs: DevRuns) -> None:
    running = dev_runs.start()

    intruder = dev_runs.launch()
    returncode = intruder.wait_for_exit(timeout=START_SECONDS)

    assert returncode != 0
    assert "in use by presto-deck dev" in intruder.stderr()
    assert running.process.running
    client = running.client()
    try:
        deck_id = await client.create("Still serving", slide_count=1)
        await client.wait_for_status(deck_id, "COMPLETED")
    finally:
        await client.aclose()


async def _status_with_token(url: str, token: str, deck_id: str) -> int:
    client = DeckClient(url, url, token)
    try:
        return (await client.http.get(f"/api/v1/decks/{deck_id}")).status_code
    finally:
        await client.aclose()


def test_dev_on_a_database_it_cannot_use_says_why_in_one_line(dev_runs: DevRuns) -> None:
    env = clean_environment(
        {
            "PRESTO_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/presto",
            "PRESTO_REDIS_URL": "redis://127.0.0.1:6379/15",
        }
    )
    args = ["dev", "--port", str(dev_runs.port), "--data-dir", str(dev_runs.data_dir)]
    refused = ManagedProcess.start("dev-no-db", args, env, dev_runs.log_dir)
    returncode = refused.wait_for_exit(timeout=60)

    lines = [line for line in refused.stderr().splitlines() if line.strip()]
    assert returncode == 2, refused.output()
    assert lines[-1] == (
        "presto-deck: no PostgreSQL answers at 127.0.0.1:9 (connection refused); start it or "
        "fix PRESTO_DATABASE_URL"
    )
    assert "Traceback" not in refused.output()
